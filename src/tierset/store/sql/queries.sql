-- Every statement the store runs, by name. `store.py` loads this file once.
-- Levels and types are the enum labels of 0001_init.sql.

-- name: effective_settings
-- Precedence in one statement: for an ACCOUNT or RETAILER scope ($1, $2),
-- each key in $3 resolves to its most specific level (RETAILER > ACCOUNT >
-- GLOBAL; the enum's order). No row at all means the scope does not exist;
-- one row with a NULL key means it exists but none of the keys do.
-- $4, when not NULL, is the only account whose scopes the caller may see: a
-- scope of another account then yields no row, exactly like a missing one, so
-- the two refusals do the same work and cannot be told apart.
-- `read_bytes` is what the resolved values add up to as fetched (value_bytes,
-- migration 0004). Over $5 bytes, every value is NULL: the read is judged by
-- its size before a single value is rendered or sent.
WITH scope AS (
    SELECT NULL::bigint AS retailer_id, a.id AS account_id
      FROM accounts a
     WHERE $1::text = 'ACCOUNT' AND a.id = $2
       AND ($4::bigint IS NULL OR a.id = $4::bigint)
    UNION ALL
    SELECT r.id, r.account_id
      FROM retailers r
     WHERE $1::text = 'RETAILER' AND r.id = $2
       AND ($4::bigint IS NULL OR r.account_id = $4::bigint)
)
SELECT scope.account_id AS scope_account_id,
       eff.id, eff.key, eff.type::text AS type,
       CASE WHEN coalesce(sum(eff.value_bytes) OVER (), 0) <= $5::bigint
            THEN eff.value::text END AS value,
       eff.level::text AS level, eff.version, eff.update_time,
       coalesce(sum(eff.value_bytes) OVER (), 0) AS read_bytes
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
-- Integrations belong to an account ($1): one configuration per (account, name).
INSERT INTO integrations AS i (account_id, name, config)
VALUES ($1, $2, $3::text::jsonb)
ON CONFLICT (account_id, name) DO UPDATE
   SET config = EXCLUDED.config, version = i.version + 1, update_time = now()
RETURNING i.id, (i.xmax = 0) AS created, i.config::text AS config;

-- name: update_integration_by_id
-- Another account's id matches nothing, exactly like an id that does not exist.
UPDATE integrations
   SET config = $4::text::jsonb, version = version + 1, update_time = now()
 WHERE id = $2 AND account_id = $1 AND name = $3
RETURNING id, false AS created, config::text AS config;

-- name: get_integration
SELECT id, name, config::text AS config FROM integrations WHERE account_id = $1 AND name = $2;

-- Authentication: users, credentials (stored as SHA-256 digests) and OAuth clients.

-- name: retailer_account
-- The account owning a retailer (no row: no such retailer).
SELECT account_id FROM retailers WHERE id = $1;

-- name: create_user
INSERT INTO users (account_id, username, password_hash, roles)
VALUES ($1, $2, $3, $4::text[])
RETURNING id, account_id, username, roles;

-- name: user_by_username
SELECT id, account_id, username, password_hash, roles FROM users WHERE username = $1;

-- name: set_user_password
UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING id;

-- name: principal_by_digest
-- The one lookup behind every authenticated call: through the unique index
-- on `digest`, with the owner needed to build the principal.
SELECT c.id AS credential_id, c.kind, c.expire_time, c.revoke_time,
       c.expire_time IS NOT NULL AND c.expire_time <= now() AS expired,
       u.id AS user_id, u.username, u.account_id, u.roles
  FROM credentials c
  JOIN users u ON u.id = c.user_id
 WHERE c.digest = $1;

-- name: insert_credential
INSERT INTO credentials (user_id, kind, name, digest, family, client_id, expire_time)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7::double precision))
RETURNING id, create_time, expire_time;

-- name: consume_refresh_token
-- Spends a refresh token: succeeds once, for the client it was issued to.
UPDATE credentials c
   SET used_time = now()
  FROM users u
 WHERE c.digest = $1 AND c.kind = 'REFRESH_TOKEN' AND c.client_id = $2
   AND c.used_time IS NULL AND c.revoke_time IS NULL AND c.expire_time > now()
   AND u.id = c.user_id
RETURNING c.id, c.family, u.id AS user_id, u.account_id, u.username, u.roles;

-- name: spent_refresh_token_family
-- The grant a refresh token belongs to, when the token was already spent or revoked.
SELECT family FROM credentials
 WHERE digest = $1 AND kind = 'REFRESH_TOKEN'
   AND (used_time IS NOT NULL OR revoke_time IS NOT NULL);

-- name: revoke_family
-- Revokes every token of a grant and tells other processes to forget them
-- (the NOTIFY payload is the revoked ids, or '*' when too many to list; no row
-- back when nothing was left to revoke). Same shape for the two below.
WITH revoked AS (
    UPDATE credentials SET revoke_time = now()
     WHERE family = $1 AND revoke_time IS NULL
    RETURNING id
)
, ids AS (SELECT string_agg(id::text, ',') AS ids FROM revoked)
SELECT ids, pg_notify('tierset_credentials_revoked',
                      CASE WHEN length(ids) > 7000 THEN '*' ELSE ids END)
  FROM ids WHERE ids IS NOT NULL;

-- name: revoke_credential
-- Revokes one API token or application password of a kind; notifies other processes.
WITH revoked AS (
    UPDATE credentials SET revoke_time = now()
     WHERE id = $1 AND kind = $2 AND revoke_time IS NULL
    RETURNING id
)
, ids AS (SELECT string_agg(id::text, ',') AS ids FROM revoked)
SELECT ids, pg_notify('tierset_credentials_revoked',
                      CASE WHEN length(ids) > 7000 THEN '*' ELSE ids END)
  FROM ids WHERE ids IS NOT NULL;

-- name: revoke_user_grants
-- Revokes a user's OAuth tokens (after a password change); notifies other processes.
WITH revoked AS (
    UPDATE credentials SET revoke_time = now()
     WHERE user_id = $1 AND kind IN ('ACCESS_TOKEN', 'REFRESH_TOKEN') AND revoke_time IS NULL
    RETURNING id
)
, ids AS (SELECT string_agg(id::text, ',') AS ids FROM revoked)
SELECT ids, pg_notify('tierset_credentials_revoked',
                      CASE WHEN length(ids) > 7000 THEN '*' ELSE ids END)
  FROM ids WHERE ids IS NOT NULL;

-- name: delete_stale_grants
-- Forgets a user's OAuth tokens that expired more than a day ago.
DELETE FROM credentials
 WHERE user_id = $1 AND kind IN ('ACCESS_TOKEN', 'REFRESH_TOKEN')
   AND expire_time < now() - interval '1 day';

-- name: list_credentials
SELECT c.id, c.kind, c.name, c.create_time, c.expire_time, c.revoke_time
  FROM credentials c JOIN users u ON u.id = c.user_id
 WHERE u.username = $1 AND c.kind = $2
 ORDER BY c.id;

-- name: create_oauth_client
INSERT INTO oauth_clients (client_id, secret_digest, display_name)
VALUES ($1, $2, $3)
RETURNING id, client_id;

-- name: oauth_client
SELECT id, secret_digest FROM oauth_clients WHERE client_id = $1 AND revoke_time IS NULL;

-- name: revoke_oauth_client
-- Retires a client and every token issued through it.
WITH client AS (
    UPDATE oauth_clients SET revoke_time = now()
     WHERE client_id = $1 AND revoke_time IS NULL
    RETURNING id
), revoked AS (
    UPDATE credentials SET revoke_time = now()
     WHERE client_id IN (SELECT id FROM client) AND revoke_time IS NULL
    RETURNING id
), ids AS (SELECT string_agg(id::text, ',') AS ids FROM revoked)
SELECT client.id, pg_notify('tierset_credentials_revoked',
                            CASE WHEN length(ids) > 7000 THEN '*' ELSE coalesce(ids, '') END)
  FROM client, ids;

-- name: count_users
SELECT count(*) FROM users;

-- name: lock_demo_bootstrap
-- Held to the end of the first start's transaction: two first starts at once take turns,
-- and the second then finds the users the first made. The key is "tierset" and 2 in
-- bytes (migrate.py's is "tierset" and 1).
SELECT pg_advisory_xact_lock(x'7469657273657402'::bigint);
