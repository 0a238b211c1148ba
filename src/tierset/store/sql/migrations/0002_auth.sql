-- Who may call: users with roles, their credentials, OAuth clients; and
-- integration settings owned by an account instead of by the whole platform.

-- A user belongs to one account. `password_hash` is an argon2id hash (NULL: the
-- user cannot use the password grant, e.g. a service holding only an API token).
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES accounts (id),
    username      text NOT NULL UNIQUE,
    password_hash text,
    roles         text[] NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_known_roles CHECK (
        cardinality(roles) > 0 AND roles <@ ARRAY['ADMIN', 'VIEWER', 'PLATFORM']
    )
);
CREATE INDEX users_account_id ON users (account_id);

-- Registered OAuth clients; the secret is kept only as its SHA-256 digest.
CREATE TABLE oauth_clients (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id     text NOT NULL UNIQUE,
    secret_digest bytea NOT NULL,
    display_name  text NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    revoke_time   timestamptz
);

-- Every bearer secret and application password a user holds, as the SHA-256
-- digest of the secret (the secret itself is shown once, then forgotten).
-- Verification is one lookup through the unique index on `digest`.
-- `family` groups an OAuth grant's access and refresh tokens, so that a
-- reused refresh token can revoke everything issued from that grant.
CREATE TABLE credentials (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    name        text,
    digest      bytea NOT NULL,
    family      uuid,
    client_id   bigint REFERENCES oauth_clients (id),
    expire_time timestamptz,
    used_time   timestamptz,
    revoke_time timestamptz,
    create_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credentials_known_kind CHECK (
        kind IN ('ACCESS_TOKEN', 'REFRESH_TOKEN', 'API_TOKEN', 'APP_PASSWORD')
    ),
    CONSTRAINT credentials_digest_is_sha256 CHECK (octet_length(digest) = 32),
    CONSTRAINT credentials_digest UNIQUE (digest)
);
CREATE INDEX credentials_user_id ON credentials (user_id);
CREATE INDEX credentials_family ON credentials (family) WHERE family IS NOT NULL;

-- Integration settings now belong to an account: each account has its own
-- "global" (account-wide) configuration per integration name. Rows saved
-- before this migration had no owner; they move to a holding account that
-- only PLATFORM users can reach, rather than to some customer's account.
ALTER TABLE integrations ADD COLUMN account_id bigint REFERENCES accounts (id);
DO $$
DECLARE
    holder bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM integrations) THEN
        INSERT INTO accounts (display_name)
        VALUES ('Integrations saved before accounts owned them')
        RETURNING id INTO holder;
        UPDATE integrations SET account_id = holder;
    END IF;
END
$$;
ALTER TABLE integrations ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE integrations DROP CONSTRAINT integrations_name_key;
ALTER TABLE integrations ADD CONSTRAINT integrations_account_name UNIQUE (account_id, name);
