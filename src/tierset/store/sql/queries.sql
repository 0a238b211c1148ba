-- Every statement the store runs, by name. `store/database.py` loads this file once.
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
-- `revision` is the counter as this statement's snapshot sees it: every change
-- up to it is in the answer and none after it (revisions commit in order,
-- migration 0005).
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
       coalesce(sum(eff.value_bytes) OVER (), 0) AS read_bytes,
       eff.create_revision, eff.mod_revision,
       (SELECT revision FROM revision_counter) AS revision,
       eff.lock_revision, eff.lock_time, eff.lock_user_id, eff.lock_username,
       eff.lock_credential_kind, eff.lock_credential_id, eff.lock_request_id
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

-- name: put_setting
-- Creates or updates one setting and logs it, in ONE statement run in
-- autocommit: the revision counter's row lock (taken first, by `rev`) is then
-- held only for the rest of this statement and its commit, the shortest window
-- that still hands revisions out in commit order (migration 0005).
-- $1 level, $2 account_id, $3 retailer_id, $4 key, $5 type, $6 value (JSON
-- text), $7 expected version (NULL: any; 0: only if it does not exist yet; n:
-- only if it is at version n), $8..$12 the actor (user id, username, credential
-- kind, credential id, request id), $13 the reason, $14 the definitions version
-- the value was checked against (NULL: none checked; migration 0007).
-- Two checks run once the counter is held, so nothing can change them before
-- the commit: the definitions are still those of $14 (else TS412: check again),
-- and no other (level, scope) holds the key with another type
-- (tierset_check_key_type, TS422), which the insert waits for (`checked`).
-- Order inside the statement is forced by data dependencies, not hoped for:
-- `old` waits for `rev` (its gating condition reads it), the insert reads
-- `old` (the count), so every writer takes the counter before any settings row
-- lock and writers cannot deadlock. `old` locks the row FOR UPDATE, so it is
-- the latest committed version even if it changed while this statement waited
-- for the counter. A row created meanwhile is invisible to this statement's
-- snapshot, though the upsert finds it: that case raises TS503 and the store
-- runs the statement again. Nothing written (a stale or create-only write)
-- raises TS409, so the counter bump rolls back with it: no revision is spent.
-- A lock above (migration 0008's tierset_lock_above, called with the bumped
-- revision so it runs after the bump, in a fresh snapshot) refuses the write
-- with TS423, rolled back the same way; the store reads who locked it.
WITH rev AS (
    UPDATE revision_counter SET revision = revision + 1 WHERE only_row = true
    RETURNING revision, definitions_version
), checked AS (
    SELECT tierset_check_key_type($1::text::setting_level, coalesce($3, $2, 0), $4,
                                  $5::text::setting_type) AS ok
      FROM rev
     WHERE $14::bigint IS NULL OR rev.definitions_version = $14::bigint
), locked AS (
    SELECT l.level FROM rev CROSS JOIN LATERAL tierset_lock_above(
        $1::text::setting_level, $2::bigint, $3::bigint, $4::text, rev.revision) l
), old AS (
    SELECT s.* FROM settings s
     WHERE (SELECT revision FROM rev) IS NOT NULL
       AND s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = $4
       FOR UPDATE
), up AS (
    INSERT INTO settings AS s
           (level, account_id, retailer_id, key, type, value, create_revision, mod_revision)
    SELECT $1::text::setting_level, $2, $3, $4, $5::text::setting_type, $6::text::jsonb,
           rev.revision, rev.revision
      FROM rev, checked, (SELECT count(*) AS n FROM old) o, (SELECT count(*) AS n FROM locked) l
     WHERE ($7::bigint IS NULL OR $7 = 0 OR o.n > 0) AND l.n = 0
    ON CONFLICT (level, scope_id, key) DO UPDATE
       SET type = EXCLUDED.type, value = EXCLUDED.value, version = s.version + 1,
           update_time = now(), mod_revision = EXCLUDED.mod_revision
     WHERE $7::bigint IS NULL OR s.version = $7
    RETURNING s.*, (s.xmax = 0) AS inserted
), logged AS (
    INSERT INTO change_log
           (revision, seq, operation, level, account_id, retailer_id, owner_account_id, key,
            setting_id, old_type, old_value, old_version, old_create_revision,
            old_mod_revision, old_update_time, new_type, new_value, new_version,
            actor_user_id, actor_username, credential_kind, credential_id, request_id, reason)
    -- An unknown retailer has no account: 0 keeps this row's CHECK quiet so that the
    -- settings row's foreign key (checked at the end of the statement) refuses it.
    SELECT rev.revision, 0, 'PUT', up.level, up.account_id, up.retailer_id,
           CASE WHEN up.retailer_id IS NOT NULL
                THEN coalesce((SELECT r.account_id FROM retailers r WHERE r.id = up.retailer_id), 0)
                ELSE up.account_id END,
           up.key, up.id, old.type, old.value, old.version, old.create_revision,
           old.mod_revision, old.update_time, up.type, up.value, up.version,
           $8, $9, $10, $11, $12, $13
      FROM rev JOIN up ON true LEFT JOIN old ON true
    RETURNING revision
)
SELECT up.id, up.version, up.create_revision, up.mod_revision, up.update_time,
       old.id IS NULL AS created, rev.revision,
       CASE WHEN $14::bigint IS NOT NULL AND rev.definitions_version <> $14::bigint
                 THEN tierset_definitions_changed()
            WHEN EXISTS (SELECT 1 FROM locked) THEN tierset_refuse_locked()
            WHEN up.id IS NULL THEN tierset_refuse_change()
            WHEN old.id IS NULL AND NOT up.inserted THEN tierset_retry_change()
       END AS refused,
       (SELECT count(*) FROM logged) AS logged
  FROM rev LEFT JOIN up ON true LEFT JOIN old ON true;

-- name: delete_setting
-- Removes one setting (the key inherits again) and logs it, in one statement
-- shaped like put_setting: the counter first (the gating condition reads
-- `rev`), then the row; a concurrent update is re-checked against
-- $5 (expected version, NULL: any) on its latest version. Nothing deleted (no
-- such setting, a stale version) raises TS409, rolling the bump back. A row
-- created while this statement waited for the counter is invisible to it, so
-- the delete answers NOT_FOUND: it overlapped that create and is ordered
-- before it, which is as correct (linearisable) as after. Run in autocommit,
-- like put_setting: the counter is held for this one statement and its commit.
-- The same statement answers what the scope now inherits (`eff`, NULL columns:
-- nothing, or a GLOBAL delete): 0009's tierset_inherited_setting, called with
-- the bumped revision so that it reads in a snapshot taken after the bump.
-- $1 level, $2 account_id, $3 retailer_id, $4 key, $6..$10 the actor, $11 the reason.
WITH rev AS (
    UPDATE revision_counter SET revision = revision + 1 WHERE only_row = true RETURNING revision
), gone AS (
    DELETE FROM settings s
     WHERE (SELECT revision FROM rev) IS NOT NULL
       AND s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = $4
       AND ($5::bigint IS NULL OR s.version = $5)
       AND s.lock_revision IS NULL  -- a locked value is unlocked first (0008)
    RETURNING s.*
), logged AS (
    INSERT INTO change_log
           (revision, seq, operation, level, account_id, retailer_id, owner_account_id, key,
            setting_id, old_type, old_value, old_version, old_create_revision,
            old_mod_revision, old_update_time,
            actor_user_id, actor_username, credential_kind, credential_id, request_id, reason)
    SELECT rev.revision, 0, 'DELETE', gone.level, gone.account_id, gone.retailer_id,
           CASE WHEN gone.retailer_id IS NOT NULL
                THEN (SELECT r.account_id FROM retailers r WHERE r.id = gone.retailer_id)
                ELSE gone.account_id END,
           gone.key, gone.id, gone.type, gone.value, gone.version, gone.create_revision,
           gone.mod_revision, gone.update_time, $6, $7, $8, $9, $10, $11
      FROM rev JOIN gone ON true
    RETURNING revision
)
SELECT rev.revision, gone.id AS deleted_id,
       CASE WHEN gone.id IS NULL THEN tierset_refuse_change() END AS refused,
       (SELECT count(*) FROM logged) AS logged,
       -- One value is far below MAX_READ_BYTES (values.py), so no read budget here.
       eff.id, eff.key, eff.type::text AS type, eff.value::text AS value,
       eff.level::text AS level, eff.version, eff.update_time, eff.create_revision,
       eff.mod_revision, eff.lock_revision, eff.lock_time, eff.lock_user_id,
       eff.lock_username, eff.lock_credential_kind, eff.lock_credential_id,
       eff.lock_request_id
  FROM rev LEFT JOIN gone ON true
  LEFT JOIN LATERAL tierset_inherited_setting($1::text::setting_level, $2::bigint, $3::bigint,
                                              $4::text, rev.revision) eff ON true;

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

-- name: list_accounts
-- One page of accounts by id after $1 (0: from the start), $2 rows (one more than the
-- page, so the caller knows whether another page follows). The primary key's order.
SELECT id, display_name, create_time FROM accounts WHERE id > $1 ORDER BY id LIMIT $2;

-- name: list_retailers
-- One page of account $1's retailers by id after $2, $3 rows (as list_accounts).
SELECT id, account_id, display_name, create_time
  FROM retailers
 WHERE account_id = $1 AND id > $2
 ORDER BY id
 LIMIT $3;

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

-- History and listing: everything below reads the change log (migration 0005).
-- Each read also returns the revision counter (and the compacted revision) as
-- its own snapshot sees them, so the revision it reports is exactly the one it
-- read at: revisions commit in order, so a snapshot holding counter N holds
-- every change up to N and none after.

-- name: list_settings
-- One page of a scope's settings, ordered by key (bytewise: the C collation).
-- $1 scope level ('GLOBAL', 'ACCOUNT', 'RETAILER'), $2 its id (0 for GLOBAL),
-- $3 level_only (just what is set at that exact scope, else the effective
-- setting per key, most specific level first), $4 the last key of the previous
-- page ('' for the first), [$5, $6) the key range of the prefix, $7 the number
-- of rows to read (a page and one more, to know whether another follows), $8 the only account the caller may see (NULL: any), $9 the bytes a
-- page's values may add up to: the page ends before the row that would take
-- it over (never before its first row).
-- Each level's branch is an index range scan of settings_level_scope_key with
-- its own LIMIT: the first $7 distinct keys are among the first $7 of each.
-- No row: the scope does not exist (or is another account's).
WITH scope AS (
    SELECT NULL::bigint AS retailer_id, NULL::bigint AS account_id WHERE $1::text = 'GLOBAL'
    UNION ALL
    SELECT NULL::bigint, a.id FROM accounts a
     WHERE $1::text = 'ACCOUNT' AND a.id = $2 AND ($8::bigint IS NULL OR a.id = $8::bigint)
    UNION ALL
    SELECT r.id, r.account_id FROM retailers r
     WHERE $1::text = 'RETAILER' AND r.id = $2 AND ($8::bigint IS NULL OR r.account_id = $8::bigint)
), levels AS (
    SELECT 'RETAILER'::setting_level AS level, scope.retailer_id AS scope_id
      FROM scope WHERE scope.retailer_id IS NOT NULL
    UNION ALL
    SELECT 'ACCOUNT'::setting_level, scope.account_id
      FROM scope WHERE scope.account_id IS NOT NULL AND (NOT $3::bool OR $1::text = 'ACCOUNT')
    UNION ALL
    SELECT 'GLOBAL'::setting_level, 0::bigint FROM scope WHERE NOT $3::bool OR $1::text = 'GLOBAL'
), page AS (
    SELECT DISTINCT ON (c.key) c.*
      FROM levels l
     CROSS JOIN LATERAL (
         SELECT s.id, s.key, s.type, s.value, s.level, s.version, s.update_time,
                s.create_revision, s.mod_revision, s.value_bytes, s.lock_revision, s.lock_time,
                s.lock_user_id, s.lock_username, s.lock_credential_kind, s.lock_credential_id,
                s.lock_request_id
           FROM settings s
          WHERE s.level = l.level AND s.scope_id = l.scope_id
            AND s.key > $4::text AND s.key >= $5::text AND s.key < $6::text
          ORDER BY s.key
          LIMIT $7
     ) c
     ORDER BY c.key, c.level DESC
     LIMIT $7
), sized AS (
    SELECT page.*, sum(page.value_bytes) OVER (ORDER BY page.key) - page.value_bytes AS before,
           row_number() OVER (ORDER BY page.key) AS n, count(*) OVER () AS page_rows
      FROM page
)
SELECT counter.revision, counter.compacted_revision, scope.account_id AS scope_account_id,
       sized.id, sized.key, sized.type::text AS type, sized.value::text AS value,
       sized.level::text AS level, sized.version, sized.update_time,
       sized.create_revision, sized.mod_revision, sized.page_rows,
       sized.lock_revision, sized.lock_time, sized.lock_user_id, sized.lock_username,
       sized.lock_credential_kind, sized.lock_credential_id, sized.lock_request_id
  FROM scope
 CROSS JOIN revision_counter counter
  LEFT JOIN sized ON sized.n = 1 OR sized.before < $9::bigint
 ORDER BY sized.key;

-- name: list_settings_at_revision
-- list_settings as it stood after revision $10 (parameters as list_settings),
-- answered from the log: a (level, scope, key) then held the old side of its
-- first change after $10, if it has one, else what it holds now. Candidates
-- are the keys set now and the keys changed since $10 (a key deleted since
-- then is found in the log). The caller checks $10 against the compacted and
-- current revisions this statement returns (the same snapshot).
WITH scope AS (
    SELECT NULL::bigint AS retailer_id, NULL::bigint AS account_id WHERE $1::text = 'GLOBAL'
    UNION ALL
    SELECT NULL::bigint, a.id FROM accounts a
     WHERE $1::text = 'ACCOUNT' AND a.id = $2 AND ($8::bigint IS NULL OR a.id = $8::bigint)
    UNION ALL
    SELECT r.id, r.account_id FROM retailers r
     WHERE $1::text = 'RETAILER' AND r.id = $2 AND ($8::bigint IS NULL OR r.account_id = $8::bigint)
), levels AS (
    SELECT 'RETAILER'::setting_level AS level, scope.retailer_id AS scope_id
      FROM scope WHERE scope.retailer_id IS NOT NULL
    UNION ALL
    SELECT 'ACCOUNT'::setting_level, scope.account_id
      FROM scope WHERE scope.account_id IS NOT NULL AND (NOT $3::bool OR $1::text = 'ACCOUNT')
    UNION ALL
    SELECT 'GLOBAL'::setting_level, 0::bigint FROM scope WHERE NOT $3::bool OR $1::text = 'GLOBAL'
), candidates AS (
    SELECT l.level, l.scope_id, s.key
      FROM levels l JOIN settings s ON s.level = l.level AND s.scope_id = l.scope_id
     WHERE s.key > $4::text AND s.key >= $5::text AND s.key < $6::text
    UNION
    SELECT l.level, l.scope_id, c.key
      FROM levels l JOIN change_log c ON c.level = l.level AND c.scope_id = l.scope_id
     WHERE c.key > $4::text AND c.key >= $5::text AND c.key < $6::text
       AND c.revision > $10::bigint
), states AS (
    SELECT cand.key, cand.level,
           CASE WHEN fc.revision IS NULL THEN s.id ELSE fc.setting_id END AS id,
           CASE WHEN fc.revision IS NULL THEN s.type ELSE fc.old_type END AS type,
           CASE WHEN fc.revision IS NULL THEN s.value ELSE fc.old_value END AS value,
           CASE WHEN fc.revision IS NULL THEN s.version ELSE fc.old_version END AS version,
           CASE WHEN fc.revision IS NULL THEN s.update_time ELSE fc.old_update_time END
               AS update_time,
           CASE WHEN fc.revision IS NULL THEN s.create_revision ELSE fc.old_create_revision END
               AS create_revision,
           CASE WHEN fc.revision IS NULL THEN s.mod_revision ELSE fc.old_mod_revision END
               AS mod_revision
      FROM candidates cand
      LEFT JOIN LATERAL (
          SELECT c.* FROM change_log c
           WHERE c.level = cand.level AND c.scope_id = cand.scope_id AND c.key = cand.key
             AND c.revision > $10::bigint
           ORDER BY c.revision, c.seq
           LIMIT 1
      ) fc ON true
      LEFT JOIN settings s
        ON s.level = cand.level AND s.scope_id = cand.scope_id AND s.key = cand.key
), page AS (
    SELECT DISTINCT ON (st.key) st.*, octet_length(st.value::text) AS value_bytes
      FROM states st
     WHERE st.value IS NOT NULL
     ORDER BY st.key, st.level DESC
     LIMIT $7
), sized AS (
    SELECT page.*, sum(page.value_bytes) OVER (ORDER BY page.key) - page.value_bytes AS before,
           row_number() OVER (ORDER BY page.key) AS n, count(*) OVER () AS page_rows
      FROM page
)
SELECT counter.revision, counter.compacted_revision, scope.account_id AS scope_account_id,
       sized.id, sized.key, sized.type::text AS type, sized.value::text AS value,
       sized.level::text AS level, sized.version, sized.update_time,
       sized.create_revision, sized.mod_revision, sized.page_rows
  FROM scope
 CROSS JOIN revision_counter counter
  LEFT JOIN sized ON sized.n = 1 OR sized.before < $9::bigint
 ORDER BY sized.key;

-- name: settings_at_revision
-- effective_settings as it stood after revision $5, from the log (as
-- list_settings_at_revision): $1 scope level, $2 its id, $3 the keys, $4 the
-- only account the caller may see. No row: the scope does not exist; one row
-- with a NULL key: none of the keys was set then.
WITH scope AS (
    SELECT NULL::bigint AS retailer_id, a.id AS account_id FROM accounts a
     WHERE $1::text = 'ACCOUNT' AND a.id = $2 AND ($4::bigint IS NULL OR a.id = $4::bigint)
    UNION ALL
    SELECT r.id, r.account_id FROM retailers r
     WHERE $1::text = 'RETAILER' AND r.id = $2 AND ($4::bigint IS NULL OR r.account_id = $4::bigint)
), candidates AS (
    SELECT l.level, l.scope_id, k.key
      FROM scope
     CROSS JOIN LATERAL (VALUES ('RETAILER'::setting_level, scope.retailer_id),
                                ('ACCOUNT'::setting_level, scope.account_id),
                                ('GLOBAL'::setting_level, 0::bigint)) l (level, scope_id)
     CROSS JOIN unnest($3::text[]) k (key)
     WHERE l.scope_id IS NOT NULL
), states AS (
    SELECT cand.key, cand.level,
           CASE WHEN fc.revision IS NULL THEN s.id ELSE fc.setting_id END AS id,
           CASE WHEN fc.revision IS NULL THEN s.type ELSE fc.old_type END AS type,
           CASE WHEN fc.revision IS NULL THEN s.value ELSE fc.old_value END AS value,
           CASE WHEN fc.revision IS NULL THEN s.version ELSE fc.old_version END AS version,
           CASE WHEN fc.revision IS NULL THEN s.update_time ELSE fc.old_update_time END
               AS update_time,
           CASE WHEN fc.revision IS NULL THEN s.create_revision ELSE fc.old_create_revision END
               AS create_revision,
           CASE WHEN fc.revision IS NULL THEN s.mod_revision ELSE fc.old_mod_revision END
               AS mod_revision
      FROM candidates cand
      LEFT JOIN LATERAL (
          SELECT c.* FROM change_log c
           WHERE c.level = cand.level AND c.scope_id = cand.scope_id AND c.key = cand.key
             AND c.revision > $5::bigint
           ORDER BY c.revision, c.seq
           LIMIT 1
      ) fc ON true
      LEFT JOIN settings s
        ON s.level = cand.level AND s.scope_id = cand.scope_id AND s.key = cand.key
), eff AS (
    SELECT DISTINCT ON (st.key) st.*
      FROM states st WHERE st.value IS NOT NULL
     ORDER BY st.key, st.level DESC
)
SELECT counter.revision, counter.compacted_revision, scope.account_id AS scope_account_id,
       eff.id, eff.key, eff.type::text AS type, eff.value::text AS value,
       eff.level::text AS level, eff.version, eff.update_time,
       eff.create_revision, eff.mod_revision,
       coalesce(sum(octet_length(eff.value::text)) OVER (), 0) AS read_bytes
  FROM scope
 CROSS JOIN revision_counter counter
  LEFT JOIN eff ON true
 ORDER BY array_position($3::text[], eff.key);

-- name: explain_settings
-- For a scope ($1 'ACCOUNT' or 'RETAILER', $2 its id) and keys ($3): every
-- level's row for each key, with its last change (the log row at its
-- mod_revision, if not compacted; none for revisions given by migration 0005).
-- $4 the only account the caller may see. Values are NULL when they add up to
-- more than $5 bytes (as effective_settings). No row: no such scope.
WITH scope AS (
    SELECT NULL::bigint AS retailer_id, a.id AS account_id FROM accounts a
     WHERE $1::text = 'ACCOUNT' AND a.id = $2 AND ($4::bigint IS NULL OR a.id = $4::bigint)
    UNION ALL
    SELECT r.id, r.account_id FROM retailers r
     WHERE $1::text = 'RETAILER' AND r.id = $2 AND ($4::bigint IS NULL OR r.account_id = $4::bigint)
), found AS (
    SELECT k.n, s.*, last.change_time, last.actor_user_id, last.actor_username,
           last.credential_kind, last.credential_id, last.request_id, last.reason
      FROM scope
     CROSS JOIN LATERAL (VALUES ('RETAILER'::setting_level, scope.retailer_id),
                                ('ACCOUNT'::setting_level, scope.account_id),
                                ('GLOBAL'::setting_level, 0::bigint)) l (level, scope_id)
     CROSS JOIN unnest($3::text[]) WITH ORDINALITY k (key, n)
      JOIN settings s ON s.level = l.level AND s.scope_id = l.scope_id AND s.key = k.key
      LEFT JOIN change_log last
        ON last.revision = s.mod_revision AND last.level = s.level
       AND last.scope_id = s.scope_id AND last.key = s.key
       -- the value's change: a lock of it in the same revision (a changeset) is not
       AND last.operation = 'PUT'
)
SELECT counter.revision, scope.account_id AS scope_account_id,
       found.id, found.key, found.type::text AS type, found.level::text AS level,
       CASE WHEN coalesce(sum(found.value_bytes) OVER (), 0) <= $5::bigint
            THEN found.value::text END AS value,
       coalesce(sum(found.value_bytes) OVER (), 0) AS read_bytes,
       found.version, found.update_time, found.create_revision, found.mod_revision,
       found.change_time, found.actor_user_id, found.actor_username, found.credential_kind,
       found.credential_id, found.request_id, found.reason,
       found.lock_revision, found.lock_time, found.lock_user_id, found.lock_username,
       found.lock_credential_kind, found.lock_credential_id, found.lock_request_id
  FROM scope
 CROSS JOIN revision_counter counter
  LEFT JOIN found ON true
 ORDER BY found.n, found.level DESC;

-- name: changes_oldest_first
-- One page of the change log, oldest first. Every filter is optional (NULL: not
-- applied) and written so that, planned for the values given, it folds into a
-- plain index condition: $1 scope kind ('GLOBAL': GLOBAL changes only,
-- 'ACCOUNT': account $2 and its retailers, 'RETAILER': retailer $2), $3 the
-- only account the caller may see (its changes and GLOBAL ones), $4 a key,
-- [$5, $6) a key prefix's range, $7..$8 a revision range and $9..$10 a time
-- range (inclusive), $11 an actor's user id, ($12, $13) the (revision, seq)
-- of the last row of the previous page, $14 the page size, $15 the bytes the
-- page's old and new values may add up to (the page ends before the row that
-- would take it over, never before its first). The counter's revision and
-- compacted revision come from the same snapshot: the caller refuses a start
-- below the compacted revision by them.
SELECT counter.revision AS current_revision, counter.compacted_revision, sized.*
  FROM revision_counter counter
  LEFT JOIN LATERAL (
      SELECT page.*,
             sum(page.value_bytes) OVER (ORDER BY page.revision ASC, page.seq ASC)
                 - page.value_bytes AS before,
             row_number() OVER (ORDER BY page.revision ASC, page.seq ASC) AS n,
             count(*) OVER () AS page_rows
        FROM (
          SELECT c.revision, c.seq, c.change_time, c.operation::text AS operation,
                 c.level::text AS level, c.account_id, c.retailer_id, c.owner_account_id,
                 c.key, c.setting_id, c.old_type::text AS old_type, c.old_value::text AS old_value,
                 c.old_version, c.new_type::text AS new_type, c.new_value::text AS new_value,
                 c.new_version, c.actor_user_id, c.actor_username, c.credential_kind,
                 c.credential_id, c.request_id, c.reason,
                 coalesce(octet_length(c.old_value::text), 0)
                     + coalesce(octet_length(c.new_value::text), 0) AS value_bytes
            FROM change_log c
           WHERE ($1::text IS NULL
                  OR ($1::text = 'GLOBAL' AND c.owner_account_id IS NULL)
                  OR ($1::text = 'ACCOUNT' AND c.owner_account_id = $2::bigint)
                  OR ($1::text = 'RETAILER' AND c.level = 'RETAILER' AND c.scope_id = $2::bigint))
             AND ($3::bigint IS NULL OR c.owner_account_id = $3::bigint
                  OR c.owner_account_id IS NULL)
             AND ($4::text IS NULL OR c.key = $4::text)
             AND ($5::text IS NULL OR (c.key >= $5::text AND c.key < $6::text))
             AND ($7::bigint IS NULL OR c.revision >= $7::bigint)
             AND ($8::bigint IS NULL OR c.revision <= $8::bigint)
             AND ($9::timestamptz IS NULL OR c.change_time >= $9::timestamptz)
             AND ($10::timestamptz IS NULL OR c.change_time <= $10::timestamptz)
             AND ($11::bigint IS NULL OR c.actor_user_id = $11::bigint)
             AND ($12::bigint IS NULL OR (c.revision, c.seq) > ($12::bigint, $13::integer))
           ORDER BY c.revision ASC, c.seq ASC
           LIMIT $14
        ) page
  ) sized ON sized.n = 1 OR sized.before < $15::bigint
 ORDER BY sized.revision ASC, sized.seq ASC;

-- name: changes_newest_first
-- One page of the change log, newest first. Every filter is optional (NULL: not
-- applied) and written so that, planned for the values given, it folds into a
-- plain index condition: $1 scope kind ('GLOBAL': GLOBAL changes only,
-- 'ACCOUNT': account $2 and its retailers, 'RETAILER': retailer $2), $3 the
-- only account the caller may see (its changes and GLOBAL ones), $4 a key,
-- [$5, $6) a key prefix's range, $7..$8 a revision range and $9..$10 a time
-- range (inclusive), $11 an actor's user id, ($12, $13) the (revision, seq)
-- of the last row of the previous page, $14 the page size, $15 the bytes the
-- page's old and new values may add up to (the page ends before the row that
-- would take it over, never before its first). The counter's revision and
-- compacted revision come from the same snapshot: the caller refuses a start
-- below the compacted revision by them.
SELECT counter.revision AS current_revision, counter.compacted_revision, sized.*
  FROM revision_counter counter
  LEFT JOIN LATERAL (
      SELECT page.*,
             sum(page.value_bytes) OVER (ORDER BY page.revision DESC, page.seq DESC)
                 - page.value_bytes AS before,
             row_number() OVER (ORDER BY page.revision DESC, page.seq DESC) AS n,
             count(*) OVER () AS page_rows
        FROM (
          SELECT c.revision, c.seq, c.change_time, c.operation::text AS operation,
                 c.level::text AS level, c.account_id, c.retailer_id, c.owner_account_id,
                 c.key, c.setting_id, c.old_type::text AS old_type, c.old_value::text AS old_value,
                 c.old_version, c.new_type::text AS new_type, c.new_value::text AS new_value,
                 c.new_version, c.actor_user_id, c.actor_username, c.credential_kind,
                 c.credential_id, c.request_id, c.reason,
                 coalesce(octet_length(c.old_value::text), 0)
                     + coalesce(octet_length(c.new_value::text), 0) AS value_bytes
            FROM change_log c
           WHERE ($1::text IS NULL
                  OR ($1::text = 'GLOBAL' AND c.owner_account_id IS NULL)
                  OR ($1::text = 'ACCOUNT' AND c.owner_account_id = $2::bigint)
                  OR ($1::text = 'RETAILER' AND c.level = 'RETAILER' AND c.scope_id = $2::bigint))
             AND ($3::bigint IS NULL OR c.owner_account_id = $3::bigint
                  OR c.owner_account_id IS NULL)
             AND ($4::text IS NULL OR c.key = $4::text)
             AND ($5::text IS NULL OR (c.key >= $5::text AND c.key < $6::text))
             AND ($7::bigint IS NULL OR c.revision >= $7::bigint)
             AND ($8::bigint IS NULL OR c.revision <= $8::bigint)
             AND ($9::timestamptz IS NULL OR c.change_time >= $9::timestamptz)
             AND ($10::timestamptz IS NULL OR c.change_time <= $10::timestamptz)
             AND ($11::bigint IS NULL OR c.actor_user_id = $11::bigint)
             AND ($12::bigint IS NULL OR (c.revision, c.seq) < ($12::bigint, $13::integer))
           ORDER BY c.revision DESC, c.seq DESC
           LIMIT $14
        ) page
  ) sized ON sized.n = 1 OR sized.before < $15::bigint
 ORDER BY sized.revision DESC, sized.seq DESC;

-- name: restore_take_revision
-- A restore changes several keys under one revision, reading each one's state
-- at the target revision first, so it takes the counter FIRST and holds it for
-- its whole transaction: every other writer waits (they all take the counter
-- before touching a settings row), so what it reads stays true until it
-- commits. Restores are rare; single writes keep the short window.
UPDATE revision_counter SET revision = revision + 1 WHERE only_row = true
RETURNING revision, compacted_revision, definitions_version;

-- name: setting_states_at
-- For one level ($1), scope ($2 account_id, $3 retailer_id) and keys ($4):
-- each key's setting now and as it stood after revision $5 (the old side of its
-- first change after $5, else the current row). NULL values: none.
SELECT k.key,
       s.type::text AS current_type, s.value::text AS current_value,
       CASE WHEN fc.revision IS NULL THEN s.type ELSE fc.old_type END::text AS target_type,
       CASE WHEN fc.revision IS NULL THEN s.value ELSE fc.old_value END::text AS target_value
  FROM unnest($4::text[]) WITH ORDINALITY k (key, n)
  LEFT JOIN settings s
    ON s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = k.key
  LEFT JOIN LATERAL (
      SELECT c.* FROM change_log c
       WHERE c.level = $1::text::setting_level AND c.scope_id = coalesce($3, $2, 0)
         AND c.key = k.key AND c.revision > $5::bigint
       ORDER BY c.revision, c.seq
       LIMIT 1
  ) fc ON true
 ORDER BY k.n;

-- name: current_revision
-- The counter and the compacted revision, in one snapshot.
SELECT revision, compacted_revision FROM revision_counter;

-- name: lock_compaction
-- One compaction at a time across every server process; the others skip their
-- turn. The key is "tierset" and 3 in bytes (migrate.py's is 1, the demo's 2).
SELECT pg_try_advisory_xact_lock(x'7469657273657403'::bigint);

-- name: compaction_target
-- The highest revision such that it and every revision below it are older
-- than $1. Revisions follow commit order but a change's time is its
-- transaction's start, so times are not quite monotonic in revision: the log
-- is cut before the first recent row, never past it. No recent row: all of it.
SELECT coalesce(
           (SELECT c.revision - 1 FROM change_log c
             WHERE c.change_time >= $1::timestamptz ORDER BY c.revision LIMIT 1),
           counter.revision) AS target,
       counter.compacted_revision
  FROM revision_counter counter;

-- name: compact_change_log
-- Removes the log up to and including revision $1.
DELETE FROM change_log WHERE revision <= $1;

-- name: record_compaction
-- Records the compacted revision: last, so the counter's row is locked (and
-- writers wait) only from here to the commit.
UPDATE revision_counter SET compacted_revision = greatest(compacted_revision, $1)
 WHERE only_row = true
RETURNING compacted_revision;

-- Watch (src/tierset/services/watch.py): the hub reads these three in one
-- REPEATABLE READ transaction per doorbell, so the log it reads and the states
-- it resolves are one snapshot.

-- name: watch_log
-- The change log after revision $1 up to and including $2 (a window, so a
-- long outage is caught up in bounded pieces; revisions have no gaps above the
-- compacted one, so a window never splits one), with the counter as this
-- snapshot sees it. One row with NULL columns when the window holds nothing.
-- The new side is the setting after the change, as a resolved read shows it.
-- A lock or unlock (0008) changes no value but what a scope may do: its row
-- comes too, `lock_change` (one JSON column, NULL for a put or delete, so rows
-- of values never locked cost nothing more) saying which and who; the lock's
-- time and revision are the row's.
SELECT counter.revision AS current_revision, counter.compacted_revision,
       c.revision, c.seq, c.change_time, c.level::text AS level, c.scope_id,
       c.owner_account_id, c.key, c.setting_id, c.new_type::text AS new_type,
       c.new_value::text AS new_value, c.new_version,
       CASE WHEN c.old_version IS NULL THEN c.revision ELSE c.old_create_revision END
           AS new_create_revision,
       CASE WHEN c.operation IN ('LOCK', 'UNLOCK') THEN
           json_build_object('locked', c.operation = 'LOCK', 'user_id', c.actor_user_id,
                             'username', c.actor_username,
                             'credential_kind', c.credential_kind,
                             'credential_id', c.credential_id,
                             'request_id', c.request_id)::text
       END AS lock_change
  FROM revision_counter counter
  LEFT JOIN change_log c ON c.revision > $1::bigint AND c.revision <= $2::bigint
 ORDER BY c.revision, c.seq;

-- name: watch_level_states
-- The re-resolution: for each (level, scope_id, key) triple ($1, $2, $3, one
-- element each), the setting it held after revision $4 (the old side of its
-- first change after $4, else the current row; no row: none). The hub asks for
-- the three levels of every affected (scope, key) pair at once and resolves
-- precedence and each revision's changes from them and the log it just read.
-- Each triple is one probe of settings' unique (level, scope_id, key) index
-- and one of change_log_setting_revision.
--
-- Its lock after $4 (0008), from the log as well: with no lock, unlock or
-- delete of the triple after $4 (`nl`), the current row's lock (a put keeps
-- the lock of the row it updates); else the last lock, unlock or delete at or
-- before $4 (`pl`, probed only then) says: a LOCK row is the lock (its time,
-- revision and actor). When `pl` was compacted away and `nl` is an UNLOCK, the
-- value was locked but who and when are lost: revision 0, the epoch, no actor.
-- Both lock probes go through change_log_lock_rows (0010), which holds only
-- those rows: one descent each, however many puts the key has.
SELECT t.n, t.level, t.scope_id, t.key,
       CASE WHEN nl.revision IS NULL THEN s.lock_revision
            WHEN pl.operation = 'LOCK' THEN pl.revision
            WHEN pl.revision IS NULL AND nl.operation = 'UNLOCK' THEN 0 END AS lock_revision,
       CASE WHEN nl.revision IS NULL THEN s.lock_time
            WHEN pl.operation = 'LOCK' THEN pl.change_time
            WHEN pl.revision IS NULL AND nl.operation = 'UNLOCK' THEN 'epoch'::timestamptz
       END AS lock_time,
       CASE WHEN nl.revision IS NULL THEN s.lock_user_id
            WHEN pl.operation = 'LOCK' THEN pl.actor_user_id END AS lock_user_id,
       CASE WHEN nl.revision IS NULL THEN s.lock_username
            WHEN pl.operation = 'LOCK' THEN pl.actor_username END AS lock_username,
       CASE WHEN nl.revision IS NULL THEN s.lock_credential_kind
            WHEN pl.operation = 'LOCK' THEN pl.credential_kind END AS lock_credential_kind,
       CASE WHEN nl.revision IS NULL THEN s.lock_credential_id
            WHEN pl.operation = 'LOCK' THEN pl.credential_id END AS lock_credential_id,
       CASE WHEN nl.revision IS NULL THEN s.lock_request_id
            WHEN pl.operation = 'LOCK' THEN pl.request_id END AS lock_request_id,
       CASE WHEN fc.revision IS NULL THEN s.id ELSE fc.setting_id END AS id,
       CASE WHEN fc.revision IS NULL THEN s.type ELSE fc.old_type END::text AS type,
       CASE WHEN fc.revision IS NULL THEN s.value ELSE fc.old_value END::text AS value,
       CASE WHEN fc.revision IS NULL THEN s.version ELSE fc.old_version END AS version,
       CASE WHEN fc.revision IS NULL THEN s.update_time ELSE fc.old_update_time END
           AS update_time,
       CASE WHEN fc.revision IS NULL THEN s.create_revision ELSE fc.old_create_revision END
           AS create_revision,
       CASE WHEN fc.revision IS NULL THEN s.mod_revision ELSE fc.old_mod_revision END
           AS mod_revision
  FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY t (level, scope_id, key, n)
  LEFT JOIN LATERAL (
      SELECT c.* FROM change_log c
       WHERE c.level = t.level::setting_level AND c.scope_id = t.scope_id AND c.key = t.key
         AND c.revision > $4::bigint
       ORDER BY c.revision, c.seq
       LIMIT 1
  ) fc ON true
  LEFT JOIN LATERAL (
      SELECT c.revision, c.operation FROM change_log c
       WHERE c.level = t.level::setting_level AND c.scope_id = t.scope_id AND c.key = t.key
         AND c.revision > $4::bigint AND c.operation IN ('LOCK', 'UNLOCK', 'DELETE')
       ORDER BY c.revision, c.seq
       LIMIT 1
  ) nl ON true
  LEFT JOIN LATERAL (
      SELECT c.revision, c.operation, c.change_time, c.actor_user_id, c.actor_username,
             c.credential_kind, c.credential_id, c.request_id
        FROM change_log c
       WHERE nl.revision IS NOT NULL
         AND c.level = t.level::setting_level AND c.scope_id = t.scope_id AND c.key = t.key
         AND c.revision <= $4::bigint AND c.operation IN ('LOCK', 'UNLOCK', 'DELETE')
       ORDER BY c.revision DESC, c.seq DESC
       LIMIT 1
  ) pl ON true
  LEFT JOIN settings s
    ON s.level = t.level::setting_level AND s.scope_id = t.scope_id AND s.key = t.key
 ORDER BY t.n;

-- name: watch_range_levels
-- A prefix watch's snapshot: every row under the key range [$3, $4) at the
-- three levels of a scope (retailer $1, NULL for an account scope; account
-- $2; GLOBAL), current. Precedence is resolved by the caller, with the counter
-- read in the same snapshot.
SELECT s.id, s.key, s.type::text AS type, s.value::text AS value, s.level::text AS level,
       s.scope_id, s.version, s.update_time, s.create_revision, s.mod_revision,
       s.lock_revision, s.lock_time, s.lock_user_id, s.lock_username,
       s.lock_credential_kind, s.lock_credential_id, s.lock_request_id
  FROM settings s
 WHERE (   (s.level = 'RETAILER' AND s.scope_id = $1::bigint)
        OR (s.level = 'ACCOUNT'  AND s.scope_id = $2::bigint)
        OR (s.level = 'GLOBAL'   AND s.scope_id = 0))
   AND s.key >= $3::text AND s.key < $4::text
 ORDER BY s.key, s.level DESC
 LIMIT $5;

-- Locks and changesets (migration 0008, src/tierset/store/changes.py). A changeset
-- (and a lock or unlock, a changeset of one change) runs in ONE transaction that
-- takes the counter first (changeset_take_revision) and holds it to the commit:
-- every other writer waits for it, so each statement below, in READ COMMITTED,
-- reads a snapshot taken after the bump that nothing else changes until the
-- commit; each change sees the changes before it. A refused change makes the
-- store raise, and the whole transaction, bump included, rolls back.

-- name: changeset_take_revision
-- As restore_take_revision: the counter, first, for the whole transaction, with
-- the definitions version the changeset's puts must have been checked against.
UPDATE revision_counter SET revision = revision + 1 WHERE only_row = true
RETURNING revision, definitions_version;

-- name: lock_above
-- The lock a write at ($1 level, $2 account_id, $3 retailer_id) of key $4 would
-- override (tierset_lock_above; $5 the revision held, or the current one), with
-- who took it. No row: none.
SELECT l.level::text AS level, l.scope_id, l.lock_revision, l.lock_time, l.lock_user_id,
       l.lock_username
  FROM tierset_lock_above($1::text::setting_level, $2::bigint, $3::bigint, $4::text,
                          $5::bigint) l;

-- name: changeset_put
-- One put of a changeset holding revision $8, logged as row $9 of it: $1 level,
-- $2 account_id, $3 retailer_id, $4 key, $5 type, $6 value (JSON text), $7
-- expected version (NULL: any; 0: must not exist), $10..$14 the actor, $15 the
-- reason. Writes only when no lock above refuses it, the version matches and
-- the value differs from what is stored (the same text: `1.50` is not `1.5`);
-- the verdict columns say which, and the store raises for a refusal. No other
-- (level, scope) may hold the key with another type (tierset_check_key_type,
-- TS422, as put_setting checks it; the insert reads `checked`, so it runs).
WITH checked AS (
    SELECT tierset_check_key_type($1::text::setting_level, coalesce($3, $2, 0), $4,
                                  $5::text::setting_type) AS ok
), locked AS (
    SELECT * FROM tierset_lock_above($1::text::setting_level, $2::bigint, $3::bigint,
                                     $4::text, $8::bigint)
), old AS (
    SELECT s.* FROM settings s
     WHERE s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = $4
), verdict AS (
    SELECT NOT EXISTS (SELECT 1 FROM locked) AS unlocked,
           ($7::bigint IS NULL OR $7 = coalesce((SELECT version FROM old), 0)) AS version_ok,
           NOT EXISTS (SELECT 1 FROM old
                        WHERE old.type = $5::text::setting_type
                          AND old.value::text = ($6::text::jsonb)::text) AS differs
), up AS (
    INSERT INTO settings AS s
           (level, account_id, retailer_id, key, type, value, create_revision, mod_revision)
    SELECT $1::text::setting_level, $2, $3, $4, $5::text::setting_type, $6::text::jsonb, $8, $8
      FROM verdict, checked
     WHERE verdict.unlocked AND verdict.version_ok AND verdict.differs
    ON CONFLICT (level, scope_id, key) DO UPDATE
       SET type = EXCLUDED.type, value = EXCLUDED.value, version = s.version + 1,
           update_time = now(), mod_revision = EXCLUDED.mod_revision
    RETURNING s.*
), logged AS (
    INSERT INTO change_log
           (revision, seq, operation, level, account_id, retailer_id, owner_account_id, key,
            setting_id, old_type, old_value, old_version, old_create_revision,
            old_mod_revision, old_update_time, new_type, new_value, new_version,
            actor_user_id, actor_username, credential_kind, credential_id, request_id, reason)
    SELECT $8, $9, 'PUT', up.level, up.account_id, up.retailer_id,
           CASE WHEN up.retailer_id IS NOT NULL
                THEN coalesce((SELECT r.account_id FROM retailers r WHERE r.id = up.retailer_id), 0)
                ELSE up.account_id END,
           up.key, up.id, old.type, old.value, old.version, old.create_revision,
           old.mod_revision, old.update_time, up.type, up.value, up.version,
           $10, $11, $12, $13, $14, $15
      FROM up LEFT JOIN old ON true
    RETURNING seq
)
SELECT verdict.unlocked, verdict.version_ok, verdict.differs,
       old.id AS old_id, old.version AS old_version, up.id, up.version,
       (SELECT count(*) FROM logged) AS logged
  FROM verdict LEFT JOIN old ON true LEFT JOIN up ON true;

-- name: changeset_delete
-- One delete of a changeset holding revision $6, logged as row $7: $1 level,
-- $2 account_id, $3 retailer_id, $4 key, $5 expected version, $8..$12 the actor,
-- $13 the reason. Deletes only an unlocked value at the expected version; the
-- verdict columns say why not (a missing value is no refusal: UNCHANGED).
WITH old AS (
    SELECT s.* FROM settings s
     WHERE s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = $4
), verdict AS (
    SELECT ($5::bigint IS NULL OR $5 = coalesce((SELECT version FROM old), 0)) AS version_ok,
           NOT EXISTS (SELECT 1 FROM old WHERE old.lock_revision IS NOT NULL) AS unlocked
), gone AS (
    DELETE FROM settings s
     USING verdict
     WHERE s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = $4
       AND verdict.version_ok AND verdict.unlocked
    RETURNING s.*
), logged AS (
    INSERT INTO change_log
           (revision, seq, operation, level, account_id, retailer_id, owner_account_id, key,
            setting_id, old_type, old_value, old_version, old_create_revision,
            old_mod_revision, old_update_time,
            actor_user_id, actor_username, credential_kind, credential_id, request_id, reason)
    SELECT $6, $7, 'DELETE', gone.level, gone.account_id, gone.retailer_id,
           CASE WHEN gone.retailer_id IS NOT NULL
                THEN (SELECT r.account_id FROM retailers r WHERE r.id = gone.retailer_id)
                ELSE gone.account_id END,
           gone.key, gone.id, gone.type, gone.value, gone.version, gone.create_revision,
           gone.mod_revision, gone.update_time, $8, $9, $10, $11, $12, $13
      FROM gone
    RETURNING seq
)
SELECT verdict.version_ok, verdict.unlocked, old.id AS old_id, old.version AS old_version,
       old.lock_revision, old.lock_time, old.lock_user_id, old.lock_username,
       gone.id AS gone_id, (SELECT count(*) FROM logged) AS logged
  FROM verdict LEFT JOIN old ON true LEFT JOIN gone ON true;

-- name: setting_for_lock
-- The value a lock or unlock is of ($1 level, $2 account_id, $3 retailer_id, $4
-- key), with its lock. No row: not set.
SELECT s.id, s.key, s.type::text AS type, s.value::text AS value, s.level::text AS level,
       s.version, s.update_time, s.create_revision, s.mod_revision, s.lock_revision,
       s.lock_time, s.lock_user_id, s.lock_username, s.lock_credential_kind,
       s.lock_credential_id, s.lock_request_id, s.scope_id
  FROM settings s
 WHERE s.level = $1::text::setting_level AND s.scope_id = coalesce($3, $2, 0) AND s.key = $4;

-- name: lock_overrides
-- The values below a ($1 'GLOBAL' or 'ACCOUNT') value of key $3 that would
-- override it: for GLOBAL every ACCOUNT and RETAILER value of the key, for
-- ACCOUNT $2 its retailers' values (settings_override_key serves both).
SELECT s.level::text AS level, s.scope_id,
       coalesce(s.account_id, (SELECT r.account_id FROM retailers r WHERE r.id = s.retailer_id))
           AS owner_account_id
  FROM settings s
 WHERE s.key = $3::text
   AND s.level <> 'GLOBAL'
   AND ($1::text = 'GLOBAL'
        OR (s.level = 'RETAILER'
            AND s.retailer_id IN (SELECT r.id FROM retailers r WHERE r.account_id = $2::bigint)))
 ORDER BY s.level, s.scope_id;

-- name: delete_overrides_at_revision
-- Deletes the values lock_overrides finds (same $1..$3) in revision $4, logged
-- as rows $5, $5 + 1, ... in (level, scope) order; $6..$10 the actor, $11 the
-- reason. Returns the deleted scopes.
WITH gone AS (
    DELETE FROM settings s
     WHERE s.key = $3::text
       AND s.level <> 'GLOBAL'
       AND ($1::text = 'GLOBAL'
            OR (s.level = 'RETAILER'
                AND s.retailer_id IN (SELECT r.id FROM retailers r
                                       WHERE r.account_id = $2::bigint)))
    RETURNING s.*
), numbered AS (
    SELECT gone.*, row_number() OVER (ORDER BY gone.level, gone.scope_id) - 1 AS n FROM gone
), logged AS (
    INSERT INTO change_log
           (revision, seq, operation, level, account_id, retailer_id, owner_account_id, key,
            setting_id, old_type, old_value, old_version, old_create_revision,
            old_mod_revision, old_update_time,
            actor_user_id, actor_username, credential_kind, credential_id, request_id, reason)
    SELECT $4, $5 + n, 'DELETE', g.level, g.account_id, g.retailer_id,
           CASE WHEN g.retailer_id IS NOT NULL
                THEN (SELECT r.account_id FROM retailers r WHERE r.id = g.retailer_id)
                ELSE g.account_id END,
           g.key, g.id, g.type, g.value, g.version, g.create_revision,
           g.mod_revision, g.update_time, $6, $7, $8, $9, $10, $11
      FROM numbered g
    RETURNING level, scope_id
)
SELECT level::text AS level, scope_id FROM logged ORDER BY level, scope_id;

-- name: set_lock_at_revision
-- Locks ($10 true) or unlocks ($10 false) setting $1 in revision $2, logged as
-- row $3 (operation LOCK or UNLOCK; old and new side the unchanged value, so
-- reads at a revision and Watch's states stay right); $4..$8 the actor, $9 the
-- reason. The value's version and mod_revision are not touched.
WITH old AS (
    SELECT s.* FROM settings s WHERE s.id = $1::bigint
), up AS (
    UPDATE settings s
       SET lock_revision = CASE WHEN $10::bool THEN $2::bigint END,
           lock_time = CASE WHEN $10::bool THEN now() END,
           lock_user_id = CASE WHEN $10::bool THEN $4::bigint END,
           lock_username = CASE WHEN $10::bool THEN $5::text END,
           lock_credential_kind = CASE WHEN $10::bool THEN $6::text END,
           lock_credential_id = CASE WHEN $10::bool THEN $7::bigint END,
           lock_request_id = CASE WHEN $10::bool THEN $8::text END
     WHERE s.id = $1::bigint
    RETURNING s.*
), logged AS (
    INSERT INTO change_log
           (revision, seq, operation, level, account_id, retailer_id, owner_account_id, key,
            setting_id, old_type, old_value, old_version, old_create_revision,
            old_mod_revision, old_update_time, new_type, new_value, new_version,
            actor_user_id, actor_username, credential_kind, credential_id, request_id, reason)
    SELECT $2, $3, CASE WHEN $10::bool THEN 'LOCK' ELSE 'UNLOCK' END::change_operation,
           up.level, up.account_id, up.retailer_id, up.account_id,
           up.key, up.id, old.type, old.value, old.version, old.create_revision,
           old.mod_revision, old.update_time, up.type, up.value, up.version,
           $4, $5, $6, $7, $8, $9
      FROM up JOIN old ON true
    RETURNING seq
)
SELECT up.id, up.key, up.type::text AS type, up.value::text AS value, up.level::text AS level,
       up.version, up.update_time, up.create_revision, up.mod_revision, up.lock_revision,
       up.lock_time, up.lock_user_id, up.lock_username, up.lock_credential_kind,
       up.lock_credential_id, up.lock_request_id, (SELECT count(*) FROM logged) AS logged
  FROM up;

-- name: retailers_of_accounts
-- The first $2 retailers (by id) of each account in $1: the scopes a dry run
-- looks at for an ACCOUNT change.
SELECT a.id AS account_id, r.id AS retailer_id
  FROM unnest($1::bigint[]) a (id)
 CROSS JOIN LATERAL (SELECT id FROM retailers WHERE account_id = a.id ORDER BY id LIMIT $2) r;

-- name: retailer_accounts
-- The account of each retailer in $1 (a retailer that does not exist has no row).
SELECT id, account_id FROM retailers WHERE id = ANY($1::bigint[]);

-- name: effective_for_pairs
-- Each (retailer $1[i] or NULL, account $2[i] or NULL, key $3[i]) pair's
-- effective setting, now: the most specific of its RETAILER, ACCOUNT and GLOBAL
-- values (both NULL: the GLOBAL value alone). One probe of the unique index per
-- level and pair; the answer is keyed by i (`n`, from 1), no row when none is set.
SELECT p.n, e.id, e.key, e.type::text AS type, e.value::text AS value, e.level::text AS level,
       e.version, e.update_time, e.create_revision, e.mod_revision
  FROM unnest($1::bigint[], $2::bigint[], $3::text[]) WITH ORDINALITY p (retailer_id, account_id, key, n)
 CROSS JOIN LATERAL (
      SELECT s.* FROM settings s
       WHERE s.key = p.key
         AND (   (s.level = 'RETAILER' AND s.scope_id = p.retailer_id)
              OR (s.level = 'ACCOUNT'  AND s.scope_id = p.account_id)
              OR (s.level = 'GLOBAL'   AND s.scope_id = 0))
       ORDER BY s.level DESC
       LIMIT 1
  ) e
 ORDER BY p.n;
-- Key definitions and one type per key (migration 0007, store/definitions.py).

-- name: key_definitions_all
-- Every definition and the definitions version, in one snapshot (one row with a
-- NULL key when there are none).
SELECT c.definitions_version, d.key, d.type::text AS type, d.description,
       d.value_schema::text AS value_schema, d.secret, d.allowed_levels::text[] AS allowed_levels,
       d.version, d.create_time, d.update_time, d.updated_by
  FROM revision_counter c
  LEFT JOIN key_definitions d ON true
 ORDER BY d.key;

-- name: key_definition_get
SELECT key, type::text AS type, description, value_schema::text AS value_schema, secret,
       allowed_levels::text[] AS allowed_levels, version, create_time, update_time, updated_by
  FROM key_definitions WHERE key = $1;

-- name: key_definitions_page
-- Definitions by key after $1 (bytewise), at most $2.
SELECT key, type::text AS type, description, value_schema::text AS value_schema, secret,
       allowed_levels::text[] AS allowed_levels, version, create_time, update_time, updated_by
  FROM key_definitions WHERE key > $1::text ORDER BY key LIMIT $2;

-- name: take_definitions_version
-- A definition change takes the revision counter's row lock first, like every
-- setting write, and holds it to its commit: writers and definers take turns.
-- It bumps only the definitions version (a write checked against an older one
-- is refused TS412 and checked again), spending no revision.
UPDATE revision_counter SET definitions_version = definitions_version + 1
 WHERE only_row = true
RETURNING definitions_version;

-- name: stored_values_of_key
-- Every stored value of key $1, least specific level first (settings_type_key:
-- one probe per type).
SELECT level::text AS level, account_id, retailer_id, type::text AS type, value::text AS value
  FROM settings
 WHERE type = ANY (enum_range(NULL::setting_type)) AND key = $1
 ORDER BY level, scope_id;

-- name: key_definition_upsert
-- $1 key, $2 type, $3 description, $4 JSON Schema (JSON text or NULL), $5 secret,
-- $6 allowed levels, $7 who, $8 the definitions version taken for it.
INSERT INTO key_definitions AS d
       (key, type, description, value_schema, secret, allowed_levels, updated_by,
        definitions_version)
VALUES ($1, $2::text::setting_type, $3, $4::text::jsonb, $5, $6::text[]::setting_level[], $7, $8)
ON CONFLICT (key) DO UPDATE
   SET type = EXCLUDED.type, description = EXCLUDED.description,
       value_schema = EXCLUDED.value_schema, secret = EXCLUDED.secret,
       allowed_levels = EXCLUDED.allowed_levels, updated_by = EXCLUDED.updated_by,
       definitions_version = EXCLUDED.definitions_version, version = d.version + 1,
       update_time = now()
RETURNING d.key, d.type::text AS type, d.description, d.value_schema::text AS value_schema,
          d.secret, d.allowed_levels::text[] AS allowed_levels, d.version, d.create_time,
          d.update_time, d.updated_by, (d.xmax = 0) AS created;

-- name: key_definition_delete
DELETE FROM key_definitions WHERE key = $1
RETURNING key, type::text AS type, description, value_schema::text AS value_schema, secret,
          allowed_levels::text[] AS allowed_levels, version, create_time, update_time, updated_by;

-- name: notify_definitions
-- Tells every process to read its definitions again (sent at commit).
SELECT pg_notify('tierset_key_definitions', $1);

-- name: mixed_type_keys
-- Keys stored with more than one type (databases written before migration 0007
-- allowed it): per key and type, how many (level, scope)s hold it and the first
-- $1 of them. Reported by `tierset check`, never rewritten.
WITH mixed AS (
    SELECT key FROM settings GROUP BY key HAVING count(DISTINCT type) > 1
)
SELECT s.key, s.type::text AS type, count(*) AS n,
       (array_agg(CASE WHEN s.level = 'GLOBAL' THEN 'GLOBAL'
                       ELSE s.level::text || ' ' || s.scope_id END
                  ORDER BY s.level, s.scope_id))[1:$1] AS scopes
  FROM settings s JOIN mixed USING (key)
 GROUP BY s.key, s.type
 ORDER BY s.key, s.type;
