"""The store: every read and write of tierset's data, over an asyncpg pool.

The SQL lives in ``sql/queries.sql`` as named statements; this module runs
them and turns PostgreSQL's answers (and errors, by asyncpg exception class)
into domain results and :class:`~tierset.core.errors.TiersetError`.

A read is judged by its size in the database before any value is fetched:
the first statement carries values only if they add up to LARGE_READ_BYTES
or less. A larger one is refused above MAX_READ_BYTES (after the caller's
permission on the owning account is checked), else it waits for room in the
process's read budget and is fetched again, and converted off the event loop
(see ``large_reads``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import asyncpg

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import MAX_READ_BYTES, Level, SettingType, compact_json
from tierset.ops.large_reads import LARGE_READ_BYTES, ReadBudget, off_loop

# Told the account owning a scope before a large read is fetched or refused; raises to stop it.
OwnerCheck = Callable[[int], None]


@cache
def queries() -> dict[str, str]:
    """The named statements of ``sql/queries.sql``, by name."""
    text = (resources.files("tierset.store") / "sql" / "queries.sql").read_text()
    named: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        named[name.strip()] = body.strip()
    return named


def query(name: str) -> str:
    """One named statement."""
    return queries()[name]


@dataclass(frozen=True)
class ScopeRef:
    """An ACCOUNT or RETAILER scope by id."""

    level: Level
    id: int

    def owner_columns(self) -> tuple[int | None, int | None]:
        """The (account_id, retailer_id) pair a setting at this scope is stored under."""
        if self.level is Level.ACCOUNT:
            return self.id, None
        return None, self.id


@dataclass(frozen=True)
class StoredSetting:
    """A setting as resolved for a scope; `value` is its JSON text."""

    id: int
    key: str
    type: SettingType
    value: str
    level: Level
    version: int
    update_time: datetime


@dataclass(frozen=True)
class Resolution:
    """The answer to a read: the account owning the scope and the settings found.

    `renderings` keeps what callers built from it (the gRPC response), so that an
    answer served many times from the read cache is built only once.
    """

    account_id: int
    settings: list[StoredSetting]
    # What the values add up to as fetched from the database, in bytes.
    read_bytes: int = 0
    renderings: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class WriteResult:
    """What a write did."""

    id: int
    version: int
    created: bool


@dataclass(frozen=True)
class AccountRow:
    """An account."""

    id: int
    display_name: str
    create_time: datetime


@dataclass(frozen=True)
class RetailerRow:
    """A retailer and its account."""

    id: int
    account_id: int
    display_name: str
    create_time: datetime


@dataclass(frozen=True)
class IntegrationRow:
    """A saved integration configuration; `config` is its JSON text."""

    id: int
    name: str
    config: str
    created: bool = False


def read_too_large(read_bytes: int) -> errors.TiersetError:
    """A read whose values add up to more than one response may carry."""
    description = (
        f"the values of these keys add up to {read_bytes} bytes, more than the"
        f" {MAX_READ_BYTES // (1024 * 1024)} MiB one read may return; read fewer keys at once"
    )
    error = errors.bad_field("keys", description, Reason.READ_TOO_LARGE)
    error.metadata["read_bytes"] = str(read_bytes)
    return error


def _settings_from_rows(rows: Sequence[Any]) -> list[StoredSetting]:
    return [
        StoredSetting(
            id=row["id"],
            key=row["key"],
            type=SettingType(row["type"]),
            value=compact_json(row["value"]) if row["type"] == "JSON" else row["value"],
            level=Level(row["level"]),
            version=row["version"],
            update_time=row["update_time"],
        )
        for row in rows
        if row["key"] is not None
    ]


_NOT_FOUND_REASONS = {
    Level.ACCOUNT: Reason.ACCOUNT_NOT_FOUND,
    Level.RETAILER: Reason.RETAILER_NOT_FOUND,
}


def _scope_not_found(scope: ScopeRef) -> errors.TiersetError:
    noun = scope.level.lower()
    return errors.not_found(
        f"{noun} {scope.id} does not exist",
        _NOT_FOUND_REASONS[scope.level],
        **{f"{noun}_id": str(scope.id)},
    )


def _is_lost(connection: Any) -> bool:
    """Whether a connection this call still holds is gone: closed, or already taken back by
    the pool because it closed (asyncpg then detaches it, and every use raises
    InterfaceError; code still inside its ``acquire`` block cannot have released it)."""
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:
        return True


class PoolClient:
    """What every part that queries the pool shares: connections that give up waiting after
    the acquire timeout, and that are never reused once asyncpg has lost track of them.

    Given one connection instead of a pool, every call runs on it, so calls made inside
    its open transaction are part of that transaction (the first start's demo set-up).
    """

    def __init__(
        self, pool: asyncpg.Pool | asyncpg.Connection, acquire_timeout: float | None = None
    ) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        """A pool connection; waiting longer than the acquire timeout raises TimeoutError."""
        acquired: contextlib.AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext(self._pool)
            if isinstance(self._pool, asyncpg.Connection)
            else self._pool.acquire(timeout=self._acquire_timeout)
        )
        async with acquired as connection:
            try:
                yield connection
            except asyncpg.InternalClientError:
                # asyncpg lost track of the protocol state, as it can when PostgreSQL ends
                # the session mid-call (MagicStack/asyncpg#1069): never hand it out again.
                connection.terminate()
                raise
            except asyncpg.InterfaceError as error:
                # asyncpg says InterfaceError both for a connection that is gone and for misuse
                # of its API (a bug). Which one it was is in the connection's state, never in
                # the message: a lost connection is an outage, raised as the class 08 error
                # asyncpg itself uses for one lost mid-call; anything else stays a bug.
                if _is_lost(connection):
                    raise asyncpg.ConnectionDoesNotExistError(
                        "the database connection was lost during the call"
                    ) from error
                raise

    async def _fetch(self, sql: str, *args: object) -> Any:
        async with self._acquire() as connection:
            return await connection.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: object) -> Any:
        async with self._acquire() as connection:
            return await connection.fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: object) -> Any:
        async with self._acquire() as connection:
            return await connection.fetchval(sql, *args)


class Store(PoolClient):
    """Reads and writes of settings, accounts, retailers and integrations.

    `read_budget` admits large reads; without one (tools, tests) they are not limited.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        acquire_timeout: float | None = None,
        read_budget: ReadBudget | None = None,
    ) -> None:
        super().__init__(pool, acquire_timeout)
        self.read_budget = read_budget

    async def ping(self) -> None:
        """Returns when the database answers a trivial query; raises when it does not."""
        async with self._acquire() as connection:
            await connection.fetchval(query("ping"))

    async def resolve(
        self,
        scope: ScopeRef,
        keys: list[str],
        visible_to: int | None = None,
        check_owner: OwnerCheck | None = None,
        lease: contextlib.AsyncExitStack | None = None,
    ) -> Resolution:
        """Each key's most specific value for the scope, in one statement (two if large).

        Raises NOT_FOUND when the account or retailer does not exist, or when
        `visible_to` names an account and the scope belongs to another (the same
        statement, the same answer, so the two cannot be told apart); INVALID_ARGUMENT
        (READ_TOO_LARGE) when the values add up to more than MAX_READ_BYTES, UNAVAILABLE
        when the read budget has no room in time. `check_owner` is called with the owning
        account before a large read is fetched or refused. A large read's share of the
        budget is held until `lease` closes (the caller has built its response from it),
        or only while it is fetched when no lease is given.
        """
        rows = await self._resolve_rows(scope, keys, visible_to, LARGE_READ_BYTES)
        read_bytes = int(rows[0]["read_bytes"])
        account_id = rows[0]["scope_account_id"]
        if read_bytes <= LARGE_READ_BYTES:
            return Resolution(account_id, _settings_from_rows(rows), read_bytes)
        if check_owner is not None:
            check_owner(account_id)
        if read_bytes > MAX_READ_BYTES:
            raise read_too_large(read_bytes)
        async with contextlib.AsyncExitStack() as fetching:
            if self.read_budget is not None:
                holder = lease if lease is not None else fetching
                await holder.enter_async_context(self.read_budget.reserve(read_bytes))
            rows = await self._resolve_rows(scope, keys, visible_to, MAX_READ_BYTES)
            read_bytes = int(rows[0]["read_bytes"])
            if read_bytes > MAX_READ_BYTES:  # written larger in between
                raise read_too_large(read_bytes)
            settings = await off_loop(read_bytes, lambda: _settings_from_rows(rows))
        return Resolution(rows[0]["scope_account_id"], settings, read_bytes)

    async def _resolve_rows(
        self, scope: ScopeRef, keys: list[str], visible_to: int | None, max_bytes: int
    ) -> Any:
        rows = await self._fetch(
            query("effective_settings"), scope.level.value, scope.id, keys, visible_to, max_bytes
        )
        if not rows:
            raise _scope_not_found(scope)
        return rows

    async def write(
        self,
        scope: ScopeRef | None,
        key: str,
        setting_type: SettingType,
        value_json: str,
        expected_version: int | None = None,
    ) -> WriteResult:
        """Creates or updates one setting atomically; `scope` None means GLOBAL.

        With `expected_version`, writes only if the stored version matches (0:
        only if it does not exist yet), else raises ABORTED.
        """
        level = Level.GLOBAL if scope is None else scope.level
        account_id, retailer_id = (None, None) if scope is None else scope.owner_columns()
        args = (level.value, account_id, retailer_id, key, setting_type.value, value_json)
        async with self._acquire() as connection:
            try:
                if expected_version is None or expected_version == 0:
                    row = await connection.fetchrow(
                        query("upsert_setting"), *args, expected_version == 0
                    )
                else:
                    row = await connection.fetchrow(
                        query("update_setting_if_version"), *args, expected_version
                    )
            except asyncpg.ForeignKeyViolationError:
                assert scope is not None  # GLOBAL rows reference nothing
                raise _scope_not_found(scope) from None
            if row is not None:
                return WriteResult(row["id"], row["version"], row["created"])
            if scope is not None and not await connection.fetchval(
                query("scope_exists"), scope.level.value, scope.id
            ):
                raise _scope_not_found(scope)
            current = await connection.fetchval(
                query("setting_version"), level.value, account_id, retailer_id, key
            )
        raise errors.aborted(
            f"{key}: expected version {expected_version}, "
            + ("but it does not exist" if current is None else f"but it is at version {current}"),
            Reason.VERSION_MISMATCH,
            key=key,
            current_version=str(current or 0),
        )

    async def create_account(self, account_id: int | None, display_name: str) -> AccountRow:
        """Creates an account; `account_id` None lets the database choose."""
        try:
            row = await self._fetchrow(query("create_account"), account_id, display_name)
        except asyncpg.UniqueViolationError:
            raise errors.already_exists(
                f"account {account_id} already exists",
                Reason.ACCOUNT_EXISTS,
                account_id=str(account_id),
            ) from None
        return AccountRow(**dict(row))

    async def get_account(self, account_id: int) -> AccountRow:
        """One account, or NOT_FOUND."""
        row = await self._fetchrow(query("get_account"), account_id)
        if row is None:
            raise _scope_not_found(ScopeRef(Level.ACCOUNT, account_id))
        return AccountRow(**dict(row))

    async def create_retailer(
        self, retailer_id: int | None, account_id: int, display_name: str
    ) -> RetailerRow:
        """Registers a retailer under an account; NOT_FOUND if the account is unknown."""
        try:
            row = await self._fetchrow(
                query("create_retailer"), retailer_id, account_id, display_name
            )
        except asyncpg.UniqueViolationError:
            raise errors.already_exists(
                f"retailer {retailer_id} already exists",
                Reason.RETAILER_EXISTS,
                retailer_id=str(retailer_id),
            ) from None
        except asyncpg.ForeignKeyViolationError:
            raise _scope_not_found(ScopeRef(Level.ACCOUNT, account_id)) from None
        return RetailerRow(**dict(row))

    async def get_retailer(self, retailer_id: int) -> RetailerRow:
        """One retailer, or NOT_FOUND."""
        row = await self._fetchrow(query("get_retailer"), retailer_id)
        if row is None:
            raise _scope_not_found(ScopeRef(Level.RETAILER, retailer_id))
        return RetailerRow(**dict(row))

    async def save_integration(
        self, account_id: int, name: str, config_json: str, integration_id: int
    ) -> IntegrationRow:
        """Saves an account's configuration of an integration by name (id 0) or by id.

        Raises NOT_FOUND when `integration_id` is not a saved integration of that
        name in that account (another account's id is as unknown as a made-up one).
        """
        if integration_id == 0:
            row = await self._fetchrow(
                query("upsert_integration_by_name"), account_id, name, config_json
            )
        else:
            row = await self._fetchrow(
                query("update_integration_by_id"), account_id, integration_id, name, config_json
            )
        if row is None:
            raise errors.not_found(
                "Integration not found",
                Reason.INTEGRATION_NOT_FOUND,
                integration_id=str(integration_id),
                integration_name=name,
            )
        return IntegrationRow(row["id"], name, row["config"], row["created"])

    async def get_integration(self, account_id: int, name: str) -> IntegrationRow | None:
        """An account's saved configuration of an integration, or None when none is saved."""
        row = await self._fetchrow(query("get_integration"), account_id, name)
        return None if row is None else IntegrationRow(row["id"], row["name"], row["config"])

    async def retailer_account(self, retailer_id: int) -> int | None:
        """The account owning a retailer, or None when there is no such retailer."""
        account_id = await self._fetchval(query("retailer_account"), retailer_id)
        return None if account_id is None else int(account_id)
