-- Locks (issue 14, DESIGN.md section 5): a locked GLOBAL value cannot be
-- overridden by any account or retailer; a locked ACCOUNT value cannot be
-- overridden by that account's retailers.
--
-- A lock belongs to a stored value: it lives on the settings row, so it goes
-- where the value goes (a locked value cannot be deleted: unlock it first) and
-- reading a setting reads its lock in the same row. Locking and unlocking
-- change no value: `version` and `mod_revision` stay those of the value; the
-- lock has its own revision. Every lock and unlock takes a revision and a
-- change_log row (operation LOCK / UNLOCK, old and new side the unchanged
-- value), so history shows it and the NOTIFY triggers (0003, 0006) ring.
ALTER TABLE settings
    ADD COLUMN lock_revision        bigint,
    ADD COLUMN lock_time            timestamptz,
    ADD COLUMN lock_user_id         bigint,
    ADD COLUMN lock_username        text,
    ADD COLUMN lock_credential_kind text,
    ADD COLUMN lock_credential_id   bigint,
    ADD COLUMN lock_request_id      text,
    ADD CONSTRAINT settings_lock_whole CHECK ((lock_revision IS NULL) = (lock_time IS NULL)),
    ADD CONSTRAINT settings_lock_level CHECK (lock_revision IS NULL OR level <> 'RETAILER');

-- "Who overrides this key below?": a lock's check over every account and
-- retailer, by key, instead of a scan of the table. Partial, so that it holds
-- only overrides and the precedence statements keep their own index
-- (settings_level_scope_key, tests/test_query_plan.py).
CREATE INDEX settings_override_key ON settings (key) WHERE level <> 'GLOBAL';

-- The lock a write at ($1 level, $2 account_id, $3 retailer_id) of key $4 would
-- override, if any: a locked GLOBAL value for an ACCOUNT or RETAILER write, a
-- locked value of the retailer's ACCOUNT for a RETAILER write (GLOBAL first).
-- No row: nothing above is locked. $5 is the revision the caller holds: unused
-- by the body, it makes the call depend on the counter bump, so that the
-- planner cannot run it before.
--
-- Why a VOLATILE plpgsql function: every writer takes the revision counter
-- first (0005), and a lock is taken under it too, so once a write holds the
-- counter no lock can change until it commits. But a single put is one
-- statement whose snapshot was taken BEFORE it waited for the counter: a lock
-- committed while it waited would be invisible to it (a GLOBAL value created
-- and locked meanwhile is not even a row it could re-check). A VOLATILE
-- function takes a fresh snapshot for each query it runs, so called after the
-- counter bump (the statements make it depend on `rev`) it sees every lock
-- committed before this writer got the counter. plpgsql is never inlined into
-- the caller, which would share the caller's snapshot.
CREATE FUNCTION tierset_lock_above(p_level setting_level, p_account_id bigint,
                                   p_retailer_id bigint, p_key text, p_after bigint)
RETURNS TABLE (level setting_level, scope_id bigint, lock_revision bigint,
               lock_time timestamptz, lock_user_id bigint, lock_username text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_level = 'GLOBAL' THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT s.level, s.scope_id, s.lock_revision, s.lock_time, s.lock_user_id, s.lock_username
      FROM settings s
     WHERE s.key = p_key AND s.lock_revision IS NOT NULL
       AND (   (s.level = 'GLOBAL' AND s.scope_id = 0)
            OR (p_level = 'RETAILER' AND s.level = 'ACCOUNT'
                AND s.scope_id = (SELECT r.account_id FROM retailers r
                                   WHERE r.id = p_retailer_id)))
     ORDER BY s.level
     LIMIT 1;
END $$;

-- Raised by put_setting when a lock above refuses it (SQLSTATE TS423), so the
-- statement, counter bump included, rolls back; the store maps it by code.
CREATE FUNCTION tierset_refuse_locked() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'change refused by a lock' USING ERRCODE = 'TS423';
END $$;
