-- One change log, one revision counter (DESIGN.md section 1).
--
-- The invariant everything later reads by (Watch, the client's view, history):
-- a reader that has seen revision N and later asks for `revision > N` never
-- misses a change. A sequence does not give it (two transactions can commit in
-- the opposite order of their nextval). A one-row counter does: every writing
-- transaction bumps it, and the bump's row lock is held until that transaction
-- commits, so the next writer gets N+1 only after N is committed and visible.
-- Revisions are therefore handed out in commit order, and a transaction that
-- rolls back also rolls its bump back: the counter has no gaps.
--
-- The price: writers serialise on one row for the window from their bump to
-- their commit (the store keeps that window to one statement and its commit;
-- docs/performance.md has the measured ceiling), as etcd's single leader does.

-- A change's kind; lock and unlock are reserved for issue 15's locks.
CREATE TYPE change_operation AS ENUM ('PUT', 'DELETE', 'LOCK', 'UNLOCK');

-- The counter: exactly one row. `revision` is the last revision handed out;
-- every change_log row at or below `compacted_revision` has been removed (or
-- never existed: the revisions this migration gives existing settings).
CREATE TABLE revision_counter (
    only_row           boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    revision           bigint NOT NULL,
    compacted_revision bigint NOT NULL,
    CHECK (0 <= compacted_revision AND compacted_revision <= revision)
);

-- Keys compare byte by byte: a key prefix is then one contiguous index range
-- (in a natural-language collation `.`, `_` and `-` are ignored at first and
-- `PAY.` would not be a range), and page tokens mean the same on every server.
ALTER TABLE settings ALTER COLUMN key TYPE text COLLATE "C";

-- Existing settings get one revision each, in the order they were last written
-- (then by id, so the numbering is stable), and the counter starts after them.
-- No history is invented: their revisions count as compacted, so a read "as of"
-- a revision before this migration is refused rather than answered wrongly.
ALTER TABLE settings ADD COLUMN create_revision bigint, ADD COLUMN mod_revision bigint;
UPDATE settings s
   SET create_revision = numbered.n, mod_revision = numbered.n
  FROM (SELECT id, row_number() OVER (ORDER BY update_time, id) AS n FROM settings) numbered
 WHERE numbered.id = s.id;
INSERT INTO revision_counter (revision, compacted_revision)
SELECT count(*), count(*) FROM settings;
-- The store writes both revisions itself. A row written behind its back (psql,
-- a bulk load) takes the current revision and leaves no log row: it spends no
-- revision, so it is not history, only state (as the rows numbered above).
CREATE FUNCTION tierset_current_revision() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT revision FROM revision_counter
$$;
ALTER TABLE settings ALTER COLUMN create_revision SET NOT NULL,
                     ALTER COLUMN create_revision SET DEFAULT tierset_current_revision(),
                     ALTER COLUMN mod_revision SET NOT NULL,
                     ALTER COLUMN mod_revision SET DEFAULT tierset_current_revision();
-- Statistics from the start: planned as a table of unknown size, the one-row
-- counter makes every write statement look costly enough to be JIT-compiled
-- (hundreds of milliseconds a write). The statements also name the row by its
-- primary key, so the estimate is one row whatever the statistics say.
ANALYZE revision_counter;

-- One row per change of one (level, scope, key), written in the same
-- transaction (the same statement, for a single write) as the change itself.
-- `seq` numbers the rows of one revision, so that a restore or a later
-- changeset can change many keys under one revision. Old and new are the whole
-- setting before and after (NULL: there was none / there is none now), so the
-- state after any retained revision can be replayed: the value of a (level,
-- scope, key) after revision R is the old side of its first change after R,
-- else the current row. The scope is kept as ids, not foreign keys: history
-- outlives what it describes. `owner_account_id` is the account owning the
-- scope (NULL for GLOBAL), so "an account and its retailers" is one index range.
CREATE TABLE change_log (
    revision            bigint NOT NULL,
    seq                 integer NOT NULL,
    change_time         timestamptz NOT NULL DEFAULT now(),
    operation           change_operation NOT NULL,
    level               setting_level NOT NULL,
    account_id          bigint,
    retailer_id         bigint,
    scope_id            bigint GENERATED ALWAYS AS (coalesce(retailer_id, account_id, 0)) STORED,
    owner_account_id    bigint,
    key                 text COLLATE "C" NOT NULL,
    setting_id          bigint NOT NULL,
    old_type            setting_type,
    old_value           jsonb,
    old_version         bigint,
    old_create_revision bigint,
    old_mod_revision    bigint,
    old_update_time     timestamptz,
    new_type            setting_type,
    new_value           jsonb,
    new_version         bigint,
    actor_user_id       bigint,
    actor_username      text,
    credential_kind     text,
    credential_id       bigint,
    request_id          text,
    reason              text NOT NULL DEFAULT '',
    PRIMARY KEY (revision, seq),
    CONSTRAINT change_log_owner_matches_level CHECK (
        (level = 'GLOBAL'   AND account_id IS NULL     AND retailer_id IS NULL
                            AND owner_account_id IS NULL) OR
        (level = 'ACCOUNT'  AND account_id IS NOT NULL AND retailer_id IS NULL
                            AND owner_account_id = account_id) OR
        (level = 'RETAILER' AND account_id IS NULL     AND retailer_id IS NOT NULL
                            AND owner_account_id IS NOT NULL)
    ),
    CONSTRAINT change_log_sides CHECK (
        (old_value IS NULL) = (old_version IS NULL) AND
        (new_value IS NULL) = (new_version IS NULL) AND
        (operation <> 'DELETE' OR new_value IS NULL) AND
        (operation <> 'PUT' OR new_value IS NOT NULL)
    )
);
-- The hot filters: an account's history (ADMIN and VIEWER callers always have
-- one), a key's or prefix's history, and one setting's changes after R (reads
-- at a revision). The primary key serves "everything after N" and compaction.
CREATE INDEX change_log_owner_revision ON change_log (owner_account_id, revision);
CREATE INDEX change_log_key_revision ON change_log (key, revision);
CREATE INDEX change_log_setting_revision ON change_log (level, scope_id, key, revision);
CREATE INDEX change_log_time ON change_log (change_time);

-- Raised by a write statement that changed nothing (a stale expected version,
-- a create of an existing key, a delete of a missing one), so the whole
-- statement, counter bump included, rolls back. SQLSTATE TS409: the store maps
-- it by code, never by message.
CREATE FUNCTION tierset_refuse_change() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'change refused' USING ERRCODE = 'TS409';
END $$;

-- Raised by a write statement whose snapshot predates a row it then found (a
-- concurrent create committed while it waited for the counter): its "old" side
-- would be wrong, so it rolls back and the store runs it again. SQLSTATE TS503.
CREATE FUNCTION tierset_retry_change() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'change raced a concurrent create' USING ERRCODE = 'TS503';
END $$;
