-- Every statement the store runs, by name. `store.py` loads this file once.
-- Levels and types are the enum labels of 0001_init.sql.

-- name: effective_settings
-- Precedence in one statement: for an ACCOUNT or RETAILER scope ($1, $2),
-- each key in $3 resolves to its most specific level (RETAILER > ACCOUNT >
-- GLOBAL; the enum's order). No row at all means the scope does not exist;
-- one row with a NULL key means it exists but none of the keys do.
WITH scope AS (
    SELECT NULL::bigint AS retailer_id, a.id AS account_id
      FROM accounts a
     WHERE $1::text = 'ACCOUNT' AND a.id = $2
    UNION ALL
    SELECT r.id, r.account_id
      FROM retailers r
     WHERE $1::text = 'RETAILER' AND r.id = $2
)
SELECT scope.account_id AS scope_account_id,
       eff.id, eff.key, eff.type::text AS type, eff.value::text AS value,
       eff.level::text AS level, eff.version, eff.update_time
  FROM scope
  LEFT JOIN LATERAL (
      SELECT DISTINCT ON (s.key) s.*
        FROM settings s
       WHERE s.key = ANY($3::text[])
         AND (   (s.level = 'RETAILER' AND s.scope_id = scope.retailer_id)
              OR (s.level = 'ACCOUNT'  AND s.scope_id = scope.account_id)
              OR (s.level = 'GLOBAL'   AND s.scope_id = 0))
       ORDER BY s.key, s.level DESC
  ) eff ON true
 ORDER BY array_position($3::text[], eff.key);

-- name: ping
-- The health probe's question: does the database answer at all?
SELECT 1;

-- name: upsert_setting
-- Creates or updates one setting; `version` grows by one on update. With
-- $7 = true the update half only fires when nothing exists yet, i.e. never,
-- so an existing row returns nothing (a create-only write). `created` tells
-- an insert (xmax = 0) from an update.
INSERT INTO settings AS s (level, account_id, retailer_id, key, type, value)
VALUES ($1::text::setting_level, $2, $3, $4, $5::text::setting_type, $6::text::jsonb)
ON CONFLICT (level, scope_id, key) DO UPDATE
   SET type = EXCLUDED.type, value = EXCLUDED.value,
       version = s.version + 1, update_time = now()
 WHERE NOT $7::bool
RETURNING s.id, s.version, (s.xmax = 0) AS created;

-- name: update_setting_if_version
-- Updates an existing setting only when its version is $7 (optimistic
-- concurrency); no row back means it is missing or stale.
UPDATE settings AS s
   SET type = $5::text::setting_type, value = $6::text::jsonb,
       version = s.version + 1, update_time = now()
 WHERE s.level = $1::text::setting_level
   AND s.scope_id = coalesce($3, $2, 0)
   AND s.key = $4
   AND s.version = $7
RETURNING s.id, s.version, false AS created;

-- name: setting_version
-- The stored version of one setting, to explain a refused conditional write.
SELECT version FROM settings
 WHERE level = $1::text::setting_level AND scope_id = coalesce($3, $2, 0) AND key = $4;

-- name: scope_exists
SELECT EXISTS (SELECT 1 FROM accounts  WHERE $1::text = 'ACCOUNT'  AND id = $2)
    OR EXISTS (SELECT 1 FROM retailers WHERE $1::text = 'RETAILER' AND id = $2);

-- name: create_account
INSERT INTO accounts (id, display_name)
VALUES (coalesce($1, nextval(pg_get_serial_sequence('accounts', 'id'))), $2)
RETURNING id, display_name, create_time;

-- name: get_account
SELECT id, display_name, create_time FROM accounts WHERE id = $1;

-- name: create_retailer
INSERT INTO retailers (id, account_id, display_name)
VALUES (coalesce($1, nextval(pg_get_serial_sequence('retailers', 'id'))), $2, $3)
RETURNING id, account_id, display_name, create_time;

-- name: get_retailer
SELECT id, account_id, display_name, create_time FROM retailers WHERE id = $1;

-- name: upsert_integration_by_name
INSERT INTO integrations AS i (name, config)
VALUES ($1, $2::text::jsonb)
ON CONFLICT (name) DO UPDATE
   SET config = EXCLUDED.config, version = i.version + 1, update_time = now()
RETURNING i.id, (i.xmax = 0) AS created, i.config::text AS config;

-- name: update_integration_by_id
UPDATE integrations
   SET config = $3::text::jsonb, version = version + 1, update_time = now()
 WHERE id = $1 AND name = $2
RETURNING id, false AS created, config::text AS config;

-- name: get_integration
SELECT id, name, config::text AS config FROM integrations WHERE name = $1;
