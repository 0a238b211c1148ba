-- Every change that can alter what a read resolves to sends a NOTIFY on the
-- channel `tierset_settings`, from the writing transaction itself, so that
-- every writer (the API, a migration, psql, a future bulk loader) keeps the
-- server processes' read caches coherent. PostgreSQL delivers the
-- notification only when (and if) the transaction commits.
--
-- Payloads name what to drop (src/tierset/cache/reads.py reads them):
--   '*'         everything: a GLOBAL setting changed, or a table was truncated
--   'a:<id>'    account <id> and every retailer under it
--   'r:<id>'    retailer <id>
-- Identical payloads within one transaction are folded into one by PostgreSQL.

CREATE FUNCTION tierset_setting_scope(level setting_level, account_id bigint, retailer_id bigint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE level
        WHEN 'GLOBAL'  THEN '*'
        WHEN 'ACCOUNT' THEN 'a:' || account_id
        ELSE                'r:' || retailer_id
    END
$$;

CREATE FUNCTION tierset_notify_setting_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('tierset_settings',
                          tierset_setting_scope(OLD.level, OLD.account_id, OLD.retailer_id));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('tierset_settings',
                          tierset_setting_scope(NEW.level, NEW.account_id, NEW.retailer_id));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER settings_notify
    AFTER INSERT OR UPDATE OR DELETE ON settings
    FOR EACH ROW EXECUTE FUNCTION tierset_notify_setting_change();

-- A retailer moved to another account, or removed, resolves differently.
-- A new retailer or account needs no notice: unknown scopes are never cached.
CREATE FUNCTION tierset_notify_retailer_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tierset_settings', 'r:' || OLD.id);
    RETURN NULL;
END $$;

CREATE TRIGGER retailers_notify
    AFTER UPDATE OR DELETE ON retailers
    FOR EACH ROW EXECUTE FUNCTION tierset_notify_retailer_change();

CREATE FUNCTION tierset_notify_account_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tierset_settings', 'a:' || OLD.id);
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_notify
    AFTER UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION tierset_notify_account_change();

CREATE FUNCTION tierset_notify_everything() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tierset_settings', '*');
    RETURN NULL;
END $$;

CREATE TRIGGER settings_truncate_notify AFTER TRUNCATE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION tierset_notify_everything();
CREATE TRIGGER retailers_truncate_notify AFTER TRUNCATE ON retailers
    FOR EACH STATEMENT EXECUTE FUNCTION tierset_notify_everything();
CREATE TRIGGER accounts_truncate_notify AFTER TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION tierset_notify_everything();
