-- A delete in one round trip (issue 12's DeleteSetting throughput).
--
-- A delete answers with what its scope inherits now. That read must see every
-- change committed before the delete got the revision counter (0005), or it
-- could answer with an ACCOUNT or GLOBAL value that a put committed while the
-- delete waited. So far the store ran it as a second statement (a fresh
-- snapshot) in the delete's transaction, then COMMIT: two more round trips
-- while holding the counter, the one lock every writer queues on.
--
-- This function is that read, for delete_setting to call in its own single
-- autocommit statement, after its counter bump (it takes the bumped revision,
-- unused by the body, so that the call depends on the bump). VOLATILE plpgsql,
-- as 0008's tierset_lock_above and for the same reason: its query takes a
-- fresh snapshot, so it sees everything committed before the counter was
-- granted, and nothing can change those levels until the delete commits (every
-- writer, lock and unlock takes the counter first).
--
-- Arguments as tierset_lock_above's: the deleted level, account_id, retailer_id
-- (as stored: a RETAILER's account is looked up), key, the revision held.
-- What the scope inherits is its most specific level ABOVE the deleted one
-- (the deleted level is the scope's own): GLOBAL for an ACCOUNT, the
-- retailer's ACCOUNT or else GLOBAL for a RETAILER, nothing for GLOBAL. The
-- deleted level itself is left out rather than read: that row is gone once the
-- delete commits, and whether this query, run mid-statement, would still see
-- it is an accident of execution order that nothing here relies on.
CREATE FUNCTION tierset_inherited_setting(p_level setting_level, p_account_id bigint,
                                          p_retailer_id bigint, p_key text, p_after bigint)
RETURNS SETOF settings
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_level = 'GLOBAL' THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT s.*
      FROM settings s
     WHERE s.key = p_key
       AND (   (s.level = 'GLOBAL' AND s.scope_id = 0)
            OR (p_level = 'RETAILER' AND s.level = 'ACCOUNT'
                AND s.scope_id = (SELECT r.account_id FROM retailers r
                                   WHERE r.id = p_retailer_id)))
     ORDER BY s.level DESC
     LIMIT 1;
END $$;
