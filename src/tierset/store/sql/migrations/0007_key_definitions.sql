-- One key, one meaning (DESIGN.md section 5, issue 14): one type per key across
-- every level, and key definitions.
--
-- Race-freedom comes from the revision counter (migration 0005): every writer
-- takes its row lock first and holds it to its commit, so writers of settings
-- and of definitions run one after another. What a writer checks AFTER it holds
-- that lock is therefore true until it commits, provided the check reads with a
-- snapshot taken after the lock was granted: a statement's own snapshot is older
-- (taken before it waited), so the checks below run in VOLATILE functions, whose
-- every query takes a fresh snapshot (READ COMMITTED).

-- "A row of this key of another type than t": one probe per other type (there
-- are four), each stopping at its first row, however many scopes hold the key.
-- The type leads so that reads by key (effective_settings and the listings) keep
-- planning on settings_level_scope_key: an index led by the key would tempt the
-- planner into reading every scope's row of a key (tests/test_query_plan.py).
CREATE INDEX settings_type_key ON settings (type, key);

-- Bumped (under the counter's row lock) by every change of a definition. A write
-- checked its value against the definitions as of some `definitions_version`;
-- the write statement compares that with this column as it holds the lock, and
-- refuses with TS412 when they differ, so the server re-reads the definitions
-- and checks again: no value is ever written against a definition it was not
-- checked against. A definition change spends no revision: it changes no
-- setting, and the change log (and Watch, history, reads at a revision, which
-- all read it) holds only changes of settings.
ALTER TABLE revision_counter ADD COLUMN definitions_version bigint NOT NULL DEFAULT 0;

-- A key's definition (PLATFORM writes it): the type every level must use, a
-- description, an optional JSON Schema (Draft 2020-12) every value must satisfy,
-- whether the value is secret (masked for those who may not see secrets), and
-- the levels allowed to set it. Keys without a definition work as before.
CREATE TABLE key_definitions (
    key                 text COLLATE "C" PRIMARY KEY,
    type                setting_type NOT NULL,
    description         text NOT NULL DEFAULT '',
    value_schema        jsonb,
    secret              boolean NOT NULL DEFAULT false,
    allowed_levels      setting_level[] NOT NULL CHECK (cardinality(allowed_levels) > 0),
    version             bigint NOT NULL DEFAULT 1,
    create_time         timestamptz NOT NULL DEFAULT now(),
    update_time         timestamptz NOT NULL DEFAULT now(),
    -- Who last defined it (username, or the admin command's operator name).
    updated_by          text NOT NULL DEFAULT '',
    -- The revision_counter.definitions_version this definition was last written at.
    definitions_version bigint NOT NULL
);

-- Raised by a write whose value was checked against definitions that have since
-- changed (see definitions_version): nothing is written; the server checks again.
CREATE FUNCTION tierset_definitions_changed() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'key definitions changed' USING ERRCODE = 'TS412';
END $$;

-- One type per key: raises TS422 when `p_key` is stored with a type other than
-- `p_type` at any (level, scope) but (`p_level`, `p_scope_id`), the one being
-- written (which may change type when no other level holds the key). DETAIL is
-- JSON naming one such row: its type, level, account_id, retailer_id and the
-- account owning it, so the store can say where the key is set without a second
-- look that could race (and the service can keep another account's ids from a
-- caller confined to its own).
-- Call it only while holding the revision counter (see above). VOLATILE, so its
-- query sees everything committed before the caller got the counter.
CREATE FUNCTION tierset_check_key_type(
    p_level setting_level, p_scope_id bigint, p_key text, p_type setting_type
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    clash record;
BEGIN
    -- ORDER BY the index's columns: with LIMIT 1 and a hot key (many rows of one type)
    -- the planner's estimate of matching rows is far too high and a sequential scan
    -- looks cheap; in index order the first row is one probe away, and the plan stays
    -- the index's even when generic (tests/test_query_plan.py).
    SELECT s.type, s.level, s.account_id, s.retailer_id INTO clash
      FROM settings s
     WHERE s.type = ANY (array_remove(enum_range(NULL::setting_type), p_type))
       AND s.key = p_key
       AND NOT (s.level = p_level AND s.scope_id = p_scope_id)
     ORDER BY s.type, s.key
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'key type mismatch' USING ERRCODE = 'TS422',
            DETAIL = json_build_object('type', clash.type, 'level', clash.level,
                                       'account_id', clash.account_id,
                                       'retailer_id', clash.retailer_id,
                                       'owner_account_id', coalesce(clash.account_id,
            (SELECT r.account_id FROM retailers r WHERE r.id = clash.retailer_id)))::text;
    END IF;
    RETURN true;
END $$;
