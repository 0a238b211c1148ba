-- The Watch doorbell (DESIGN.md section 3): every row written to the change
-- log sends NOTIFY `tierset_changes` with its revision as the payload, from
-- the writing transaction itself, so every write path (single writes,
-- deletes, restores, a future changeset, psql) rings it and nothing can
-- forget to. PostgreSQL delivers it only when (and if) the transaction
-- commits, in commit order, and folds identical payloads of one transaction
-- into one: a revision of many rows rings once.
--
-- The payload is only a hint: whoever hears it reads the log after the last
-- revision it handled (the log is the truth), so a lost or folded
-- notification costs latency, never a change.
CREATE FUNCTION tierset_notify_change_logged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tierset_changes', NEW.revision::text);
    RETURN NULL;
END $$;

CREATE TRIGGER change_log_notify
    AFTER INSERT ON change_log
    FOR EACH ROW EXECUTE FUNCTION tierset_notify_change_logged();
