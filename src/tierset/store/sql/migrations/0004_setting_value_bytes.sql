-- How many bytes each setting's value is as PostgreSQL writes it out: the text
-- every read of it fetches. jsonb writes numbers out in full (1e-999 is 1,001
-- bytes) and escapes some characters, so this can be far more than was sent.
-- effective_settings adds these up to refuse a read by its size before any
-- value is rendered or sent. A stored generated column, so every writer (the
-- API, psql, a migration) keeps it right without knowing of it.
ALTER TABLE settings
    ADD COLUMN value_bytes integer GENERATED ALWAYS AS (octet_length(value::text)) STORED;
