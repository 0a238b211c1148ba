"""Users, their credentials and OAuth clients: making, hashing, storing, revoking.

Secrets are random strings with a prefix that says what they are
(``tsk_`` an API token, ``tsat_`` an access token, ...), so that a leaked one
is recognisable by secret scanners and in a header. Each is shown once, to
whoever creates it, and stored only as its SHA-256 digest. A fast hash is
right here, unlike for passwords: a secret carries 256 random bits, so there
is nothing to guess and no dictionary to precompute, and a fast digest lets
every call be verified with one lookup through a unique index. Passwords are
chosen by people, so they get argon2id (slow, salted, memory-hard); the server
checks them through ``password_hashing.PasswordHashing``, within a memory budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import argon2
import asyncpg

from tierset.core import errors
from tierset.core.authz import Role
from tierset.core.reasons import Reason
from tierset.store.database import PoolClient, query


class Kind(StrEnum):
    """The kinds of stored credential (names, not secrets)."""

    ACCESS_TOKEN = "ACCESS_TOKEN"  # noqa: S105
    REFRESH_TOKEN = "REFRESH_TOKEN"  # noqa: S105
    API_TOKEN = "API_TOKEN"  # noqa: S105
    APP_PASSWORD = "APP_PASSWORD"  # noqa: S105


PREFIXES = {
    Kind.ACCESS_TOKEN: "tsat_",
    Kind.REFRESH_TOKEN: "tsrt_",
    Kind.API_TOKEN: "tsk_",
    Kind.APP_PASSWORD: "tsap_",
}
CLIENT_SECRET_PREFIX = "tscs_"  # noqa: S105 - a prefix, not a secret
MAX_USERNAME_CHARS = 150

_hasher = argon2.PasswordHasher()


def new_secret(prefix: str) -> str:
    """A fresh secret: the prefix and 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    """The SHA-256 digest a secret is stored and looked up by."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def hash_password(password: str) -> str:
    """An argon2id hash of a password (salted, with its parameters)."""
    return _hasher.hash(password)


def check_username(username: str) -> str:
    """A username: 1-150 printable characters without spaces or ':' (Basic needs the colon)."""
    if (
        not username
        or len(username) > MAX_USERNAME_CHARS
        or ":" in username
        or not username.isprintable()
        or any(c.isspace() for c in username)
    ):
        raise errors.bad_field(
            "username",
            f"username must be 1-{MAX_USERNAME_CHARS} printable characters, no spaces or ':'",
        )
    return username


@dataclass(frozen=True)
class User:
    """A user as stored (never with its password hash outside this module)."""

    id: int
    account_id: int
    username: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class Issued:
    """A credential just created: the secret (shown once) and its record."""

    id: int
    secret: str
    expire_time: datetime | None


@dataclass(frozen=True)
class CredentialRecord:
    """A stored credential as listed (no secret, no digest)."""

    id: int
    kind: Kind
    name: str | None
    create_time: datetime
    expire_time: datetime | None
    revoke_time: datetime | None


def _user(row: Any) -> User:
    return User(row["id"], row["account_id"], row["username"], frozenset(map(Role, row["roles"])))


def _revoked_ids(row: Any) -> list[int]:
    return [] if row is None or not row["ids"] else [int(i) for i in row["ids"].split(",")]


class CredentialStore(PoolClient):
    """Every read and write of users, credentials and OAuth clients."""

    async def create_user(
        self, account_id: int, username: str, password: str | None, roles: frozenset[Role]
    ) -> User:
        """Creates a user; ALREADY_EXISTS for a taken username, NOT_FOUND for no account."""
        if not roles:
            raise errors.bad_field("roles", "a user needs at least one role")
        password_hash = (
            None if password is None else await asyncio.to_thread(hash_password, password)
        )
        try:
            row = await self._fetchrow(
                query("create_user"),
                account_id,
                check_username(username),
                password_hash,
                sorted(roles),
            )
        except asyncpg.UniqueViolationError:
            raise errors.already_exists(
                f"username {username!r} is taken", Reason.USERNAME_TAKEN, username=username
            ) from None
        except asyncpg.ForeignKeyViolationError:
            raise errors.not_found(
                f"account {account_id} does not exist",
                Reason.ACCOUNT_NOT_FOUND,
                account_id=str(account_id),
            ) from None
        return _user(row)

    async def user_by_username(self, username: str) -> tuple[User, str | None] | None:
        """A user and its password hash, or None."""
        row = await self._fetchrow(query("user_by_username"), username)
        return None if row is None else (_user(row), row["password_hash"])

    async def require_user(self, username: str) -> User:
        """A user by name, or NOT_FOUND."""
        found = await self.user_by_username(username)
        if found is None:
            raise errors.not_found(
                f"user {username!r} does not exist", Reason.USER_NOT_FOUND, username=username
            )
        return found[0]

    async def set_password(self, username: str, password: str) -> list[int]:
        """Changes a password and revokes the user's OAuth tokens; returns their ids."""
        user = await self.require_user(username)
        password_hash = await asyncio.to_thread(hash_password, password)
        async with self._acquire() as connection, connection.transaction():
            await connection.execute(query("set_user_password"), user.id, password_hash)
            return _revoked_ids(await connection.fetchrow(query("revoke_user_grants"), user.id))

    async def issue(
        self,
        user_id: int,
        kind: Kind,
        *,
        name: str | None = None,
        ttl_seconds: float | None = None,
        family: uuid.UUID | None = None,
        client_pk: int | None = None,
        connection: asyncpg.Connection | None = None,
    ) -> Issued:
        """Creates a credential of `kind` for a user; the secret is in the result only."""
        secret = new_secret(PREFIXES[kind])
        fetchrow = self._fetchrow if connection is None else connection.fetchrow
        row = await fetchrow(
            query("insert_credential"),
            user_id,
            kind.value,
            name,
            digest(secret),
            family,
            client_pk,
            ttl_seconds,
        )
        return Issued(row["id"], secret, row["expire_time"])

    async def principal_row(self, secret_digest: bytes) -> Any:
        """The credential with this digest and its user, or None (one index lookup)."""
        return await self._fetchrow(query("principal_by_digest"), secret_digest)

    async def consume_refresh_token(self, secret_digest: bytes, client_pk: int) -> Any:
        """Spends a refresh token once; None when unknown, spent, revoked, expired or foreign."""
        return await self._fetchrow(query("consume_refresh_token"), secret_digest, client_pk)

    async def revoke_spent_family(self, secret_digest: bytes) -> list[int]:
        """When a spent refresh token comes back, revokes its whole grant; returns the ids."""
        family = await self._fetchval(query("spent_refresh_token_family"), secret_digest)
        if family is None:
            return []
        return _revoked_ids(await self._fetchrow(query("revoke_family"), family))

    async def issue_grant(
        self,
        user_id: int,
        family: uuid.UUID,
        client_pk: int,
        access_seconds: int,
        refresh_seconds: int,
    ) -> tuple[Issued, Issued]:
        """An access token and a refresh token of one grant, in one transaction.

        The user's OAuth tokens that expired over a day ago are deleted on the
        way, so the table does not grow with every login.
        """
        async with self._acquire() as connection, connection.transaction():
            await connection.execute(query("delete_stale_grants"), user_id)
            access = await self.issue(
                user_id,
                Kind.ACCESS_TOKEN,
                ttl_seconds=access_seconds,
                family=family,
                client_pk=client_pk,
                connection=connection,
            )
            refresh = await self.issue(
                user_id,
                Kind.REFRESH_TOKEN,
                ttl_seconds=refresh_seconds,
                family=family,
                client_pk=client_pk,
                connection=connection,
            )
        return access, refresh

    async def revoke(self, credential_id: int, kind: Kind) -> list[int]:
        """Revokes one API token or application password; [] when none such is active."""
        return _revoked_ids(
            await self._fetchrow(query("revoke_credential"), credential_id, kind.value)
        )

    async def list(self, username: str, kind: Kind) -> list[CredentialRecord]:
        """A user's credentials of one kind, revoked ones included."""
        rows = await self._fetch(query("list_credentials"), username, kind.value)
        return [
            CredentialRecord(
                r["id"],
                Kind(r["kind"]),
                r["name"],
                r["create_time"],
                r["expire_time"],
                r["revoke_time"],
            )
            for r in rows
        ]

    async def create_oauth_client(
        self, client_id: str | None, display_name: str
    ) -> tuple[str, str]:
        """Registers an OAuth client; returns (client_id, client_secret), the secret once."""
        client_id = client_id or "tsc_" + secrets.token_hex(8)
        secret = new_secret(CLIENT_SECRET_PREFIX)
        try:
            await self._fetchrow(
                query("create_oauth_client"), client_id, digest(secret), display_name
            )
        except asyncpg.UniqueViolationError:
            raise errors.already_exists(
                f"client_id {client_id!r} is taken", Reason.CLIENT_EXISTS, client_id=client_id
            ) from None
        return client_id, secret

    async def oauth_client(self, client_id: str) -> tuple[int, bytes] | None:
        """An active client's key and secret digest, or None."""
        row = await self._fetchrow(query("oauth_client"), client_id)
        return None if row is None else (row["id"], bytes(row["secret_digest"]))

    async def revoke_oauth_client(self, client_id: str) -> bool:
        """Retires a client and its tokens; False when no such active client."""
        return await self._fetchrow(query("revoke_oauth_client"), client_id) is not None

    async def count_users(self) -> int:
        """How many users exist (zero on a fresh installation)."""
        return int(await self._fetchval(query("count_users")))
