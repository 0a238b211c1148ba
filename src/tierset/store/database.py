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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import MAX_READ_BYTES, Level, SettingType, compact_json
from tierset.ops.large_reads import LARGE_READ_BYTES, Lease, ReadBudget, off_loop
from tierset.store.keytypes import DefinitionsChanged, raise_for_statement
from tierset.store.locks import key_locked, version_mismatch
from tierset.store.revisions import (
    NO_ACTOR,
    Actor,
    Change,
    check_readable,
    key_range,
    revision_compacted,
)

if TYPE_CHECKING:
    from tierset.store.changes import ChangesetResult, PlannedChange

# SQLSTATEs raised by the write statements' own functions (migration 0005).
_REFUSED = "TS409"  # nothing was changed: the statement, counter bump included, rolled back
_RACED = "TS503"  # a concurrent create made the old side unknowable: run the statement again
_LOCKED = "TS423"  # a lock above refused the write (0008): nothing was changed
_RACE_RETRIES = 5

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
class SettingLock:
    """A lock on a stored value (migration 0008): when, at which revision, by whom."""

    revision: int
    time: datetime
    actor: Actor


@dataclass(frozen=True)
class StoredSetting:
    """A setting as resolved for a scope; `value` is its JSON text; `lock` is set when the
    value is locked (and the read knows: reads at a revision do not; Watch does)."""

    id: int
    key: str
    type: SettingType
    value: str
    level: Level
    version: int
    update_time: datetime
    create_revision: int = 0
    mod_revision: int = 0
    lock: SettingLock | None = None
    # The value is a secret this caller may not see: `value` holds nothing (services/keydefs.py).
    masked: bool = False


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
    # The revision the read's snapshot saw (revisions.py).
    revision: int = 0
    renderings: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class WriteResult:
    """What a write did."""

    id: int
    version: int
    created: bool
    revision: int = 0
    create_revision: int = 0
    mod_revision: int = 0


@dataclass(frozen=True)
class DeleteResult:
    """What a delete did: its revision, and what the scope now inherits (None: nothing,
    or the delete was of a GLOBAL setting)."""

    revision: int
    effective: StoredSetting | None


@dataclass(frozen=True)
class SettingsPage:
    """One page of a listing, the revision it was read at, and the last key on it
    (None: this was the last page)."""

    settings: list[StoredSetting]
    revision: int
    last_key: str | None


@dataclass(frozen=True)
class LevelEntry:
    """One level's setting of a key, and who changed it last (unknown when compacted)."""

    setting: StoredSetting
    last_change_time: datetime | None
    actor: Actor
    reason: str | None


@dataclass(frozen=True)
class Explanation:
    """A key's setting at every level that has one, most specific first; the first wins
    and shadows the rest."""

    key: str
    levels: list[LevelEntry]

    @property
    def winner(self) -> Level | None:
        return self.levels[0].setting.level if self.levels else None


@dataclass(frozen=True)
class ChangesPage:
    """One page of the change log, the revision it was read at, and where it stopped
    ((revision, seq) of its last row; None: this was the last page)."""

    changes: list[Change]
    revision: int
    last: tuple[int, int] | None


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did: its revision (None when every key already held its value)
    and the keys it put or deleted."""

    revision: int | None
    changed: list[str]


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


def lock_from_row(row: Any) -> SettingLock | None:
    """The lock columns of a settings row (0008), when the statement read them and set."""
    revision = row.get("lock_revision")
    if revision is None:
        return None
    return SettingLock(
        revision,
        row["lock_time"],
        Actor(
            row["lock_user_id"],
            row["lock_username"],
            row.get("lock_credential_kind"),
            row.get("lock_credential_id"),
            row.get("lock_request_id"),
        ),
    )


# The enums by their text, as the statements return them: a dict lookup, where calling
# the enum class costs several Python calls per column of every row read.
_TYPES = {member.value: member for member in SettingType}
_LEVELS = {member.value: member for member in Level}


def setting_from_row(row: Any) -> StoredSetting:
    """One settings row as read (value text, type and level as text)."""
    setting_type = _TYPES[row["type"]]
    return StoredSetting(
        id=row["id"],
        key=row["key"],
        type=setting_type,
        value=compact_json(row["value"]) if setting_type is SettingType.JSON else row["value"],
        level=_LEVELS[row["level"]],
        version=row["version"],
        update_time=row["update_time"],
        create_revision=row["create_revision"],
        mod_revision=row["mod_revision"],
        lock=lock_from_row(row),
    )


def _settings_from_rows(rows: Sequence[Any]) -> list[StoredSetting]:
    return [setting_from_row(row) for row in rows if row["key"] is not None]


_NOT_FOUND_REASONS = {
    Level.ACCOUNT: Reason.ACCOUNT_NOT_FOUND,
    Level.RETAILER: Reason.RETAILER_NOT_FOUND,
}


def _canonical(value_json: str | None) -> str | None:
    """JSON text in one spelling, to tell whether two stored values are the same."""
    return None if value_json is None else compact_json(value_json)


def _page(items: list[Any], page_rows: int | None, page_size: int) -> tuple[list[Any], bool]:
    """A page from the rows a listing read (page_size + 1 asked for, then cut to the byte
    budget, `page_rows` before the cut): the page, and whether more follow."""
    if len(items) > page_size:
        return items[:page_size], True
    return items, bool(items) and (page_rows or 0) > len(items)


def _change_from_row(row: Any) -> Change:
    return Change(
        revision=row["revision"],
        seq=row["seq"],
        change_time=row["change_time"],
        operation=row["operation"],
        level=Level(row["level"]),
        account_id=row["account_id"],
        retailer_id=row["retailer_id"],
        owner_account_id=row["owner_account_id"],
        key=row["key"],
        setting_id=row["setting_id"],
        old_type=None if row["old_type"] is None else SettingType(row["old_type"]),
        old_value=row["old_value"],
        old_version=row["old_version"],
        new_type=None if row["new_type"] is None else SettingType(row["new_type"]),
        new_value=row["new_value"],
        new_version=row["new_version"],
        actor=Actor(
            row["actor_user_id"],
            row["actor_username"],
            row["credential_kind"],
            row["credential_id"],
            row["request_id"],
        ),
        reason=row["reason"],
    )


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


class WriteRules(Protocol):
    """What a put is checked against besides its type: the key definitions as of
    `version` (services/keydefs.py). `check_write` raises the refusal of one put."""

    @property
    def version(self) -> int: ...

    def check_write(
        self, level: Level, key: str, setting_type: SettingType, value_json: str
    ) -> None: ...


class _Held:
    """``async with`` one pool connection (PoolClient._acquire), never reused once asyncpg
    has lost track of it.

    A plain class, not a generator-based context manager: every statement passes here.
    The acquire stays asyncpg's own, timeout included. Taking a free connection in the
    caller's step instead (no timer, no task) was tried and measured unfair: a call
    that releases and acquires again in one step takes the connection a woken waiter
    was handed, and under load waiters starved past the acquire timeout.
    """

    __slots__ = ("_connection", "_pool", "_timeout")

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._connection: Any = None

    async def __aenter__(self) -> Any:
        pool = self._pool
        if isinstance(pool, asyncpg.Connection):
            self._connection = pool
        else:
            self._connection = await pool.acquire(timeout=self._timeout)
        return self._connection

    async def __aexit__(self, kind: Any, error: BaseException | None, _traceback: Any) -> None:
        connection = self._connection
        raised: BaseException | None = None
        if isinstance(error, asyncpg.InternalClientError):
            # asyncpg lost track of the protocol state, as it can when PostgreSQL ends the
            # session mid-call (MagicStack/asyncpg#1069): never hand it out again.
            connection.terminate()
        elif isinstance(error, asyncpg.InterfaceError) and _is_lost(connection):
            # asyncpg says InterfaceError both for a connection that is gone and for misuse
            # of its API (a bug). Which one it was is in the connection's state, never in
            # the message: a lost connection is an outage, raised as the class 08 error
            # asyncpg itself uses for one lost mid-call; anything else stays a bug.
            raised = asyncpg.ConnectionDoesNotExistError(
                "the database connection was lost during the call"
            )
        if connection is not self._pool:
            await self._pool.release(connection)
        if raised is not None:
            raise raised from error


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

    def _acquire(self) -> _Held:
        """A pool connection; waiting longer than the acquire timeout raises TimeoutError."""
        return _Held(self._pool, self._acquire_timeout)

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
        lease: Lease | None = None,
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
            return Resolution(
                account_id, _settings_from_rows(rows), read_bytes, rows[0]["revision"]
            )
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
        return Resolution(rows[0]["scope_account_id"], settings, read_bytes, rows[0]["revision"])

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
        actor: Actor = NO_ACTOR,
        reason: str = "",
        definitions_version: int | None = None,
    ) -> WriteResult:
        """Creates or updates one setting atomically and logs it; `scope` None means GLOBAL.

        With `expected_version`, writes only if the stored version matches (0:
        only if it does not exist yet), else raises ABORTED. One statement in
        autocommit (``put_setting``): the change, its log row and its revision
        commit together, or none of them does. Raises FAILED_PRECONDITION
        (TYPE_MISMATCH) when the key is stored with another type at another level,
        and DefinitionsChanged when the key definitions are no longer those of
        `definitions_version` (the version the value was checked against; None: not
        checked). Either way nothing is written (store/keytypes.py).
        """
        level = Level.GLOBAL if scope is None else scope.level
        account_id, retailer_id = (None, None) if scope is None else scope.owner_columns()
        args = (level.value, account_id, retailer_id, key, setting_type.value, value_json)
        async with self._acquire() as connection:
            for _ in range(_RACE_RETRIES):
                try:
                    row = await connection.fetchrow(
                        query("put_setting"),
                        *args,
                        expected_version,
                        *actor.columns(),
                        reason,
                        definitions_version,
                    )
                except asyncpg.ForeignKeyViolationError:
                    assert scope is not None  # GLOBAL rows reference nothing
                    raise _scope_not_found(scope) from None
                except asyncpg.PostgresError as error:
                    raise_for_statement(error, key, setting_type)
                    if error.sqlstate == _RACED:
                        continue
                    if error.sqlstate == _LOCKED:
                        # Who locked it, read after the rollback; unlocked meanwhile: again.
                        lock = await connection.fetchrow(query("lock_above"), *args[:4], 0)
                        if lock is None:
                            continue
                        raise key_locked(key, lock, level) from None
                    if error.sqlstate != _REFUSED:
                        raise
                    break
                return WriteResult(
                    row["id"],
                    row["version"],
                    row["created"],
                    row["revision"],
                    row["create_revision"],
                    row["mod_revision"],
                )
            else:
                raise errors.aborted(
                    f"{key}: kept changing while being written; retry",
                    Reason.WRITE_CONTENDED,
                    key=key,
                )
            await self._explain_refusal(connection, scope, level, key, expected_version)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _explain_refusal(
        self,
        connection: Any,
        scope: ScopeRef | None,
        level: Level,
        key: str,
        expected_version: int | None,
        deleting: bool = False,
    ) -> None:
        """Raises the error a refused write or delete deserves: NOT_FOUND for an unknown
        scope or for a delete of a missing setting, else ABORTED."""
        if scope is not None and not await connection.fetchval(
            query("scope_exists"), scope.level.value, scope.id
        ):
            raise _scope_not_found(scope)
        account_id, retailer_id = (None, None) if scope is None else scope.owner_columns()
        row = await connection.fetchrow(
            query("setting_for_lock"), level.value, account_id, retailer_id, key
        )
        current = None if row is None else row["version"]
        if (
            deleting
            and row is not None
            and row["lock_revision"] is not None
            and (expected_version is None or expected_version == current)
        ):
            raise key_locked(key, row, None)
        if current is None and deleting:
            raise errors.not_found(
                f"{key} is not set at {level.lower()} level"
                + ("" if scope is None else f" for {scope.level.lower()} {scope.id}"),
                Reason.SETTING_NOT_FOUND,
                key=key,
            )
        raise version_mismatch(key, expected_version, current)

    async def delete(
        self,
        scope: ScopeRef | None,
        key: str,
        expected_version: int | None = None,
        actor: Actor = NO_ACTOR,
        reason: str = "",
    ) -> DeleteResult:
        """Removes one setting so the key inherits again; `scope` None means GLOBAL.

        Raises NOT_FOUND when the scope or the setting does not exist, ABORTED when
        `expected_version` is given and differs. The delete, its log row and the read of
        what the scope now inherits are ONE statement (``delete_setting``) in autocommit,
        so the revision counter, which every writer queues on, is held for one round trip
        and the commit, as a put holds it; the inherited setting is exactly the one after
        this revision (migration 0009). For GLOBAL, nothing is inherited.
        """
        level = Level.GLOBAL if scope is None else scope.level
        account_id, retailer_id = (None, None) if scope is None else scope.owner_columns()
        async with self._acquire() as connection:
            try:
                row = await connection.fetchrow(
                    query("delete_setting"),
                    level.value,
                    account_id,
                    retailer_id,
                    key,
                    expected_version,
                    *actor.columns(),
                    reason,
                )
                effective = None if row["key"] is None else setting_from_row(row)
                return DeleteResult(row["revision"], effective)
            except asyncpg.PostgresError as error:
                if error.sqlstate != _REFUSED:
                    raise
            await self._explain_refusal(
                connection, scope, level, key, expected_version, deleting=True
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def apply_changes(
        self,
        changes: Sequence[PlannedChange],
        actor: Actor = NO_ACTOR,
        reason: str = "",
        *,
        dry_run: bool = False,
        indexed: bool = True,
        rules_version: int | None = None,
    ) -> ChangesetResult:
        """Applies `changes` in order, all or nothing, in one transaction and one revision
        (see :mod:`tierset.store.changes`); with `dry_run`, works it all out and rolls back.
        `indexed` names the failing change's index in the error (a changeset's);
        `rules_version` is the key definitions' version its puts were checked against."""
        from tierset.store.changes import run_changes  # here: that module imports this one

        async with self._acquire() as connection:
            return await run_changes(
                connection,
                changes,
                actor,
                reason,
                dry_run=dry_run,
                indexed=indexed,
                rules_version=rules_version,
            )

    async def retailer_accounts(self, retailer_ids: list[int]) -> dict[int, int]:
        """The account of each retailer that exists, by retailer id (one statement)."""
        rows = await self._fetch(query("retailer_accounts"), retailer_ids)
        return {row["id"]: row["account_id"] for row in rows}

    async def resolve_at(
        self,
        scope: ScopeRef,
        keys: list[str],
        revision: int,
        visible_to: int | None = None,
    ) -> Resolution:
        """Each key's most specific value for the scope as it stood after `revision`,
        answered from the change log in one statement (``settings_at_revision``).

        Raises NOT_FOUND as :meth:`resolve`, FAILED_PRECONDITION (REVISION_COMPACTED)
        below the compacted revision, OUT_OF_RANGE (FUTURE_REVISION) past the current
        one, INVALID_ARGUMENT (READ_TOO_LARGE) over MAX_READ_BYTES.
        """
        rows = await self._fetch(
            query("settings_at_revision"), scope.level.value, scope.id, keys, visible_to, revision
        )
        if not rows:
            raise _scope_not_found(scope)
        first = rows[0]
        check_readable(revision, first["compacted_revision"], first["revision"], "at_revision")
        read_bytes = int(first["read_bytes"])
        if read_bytes > MAX_READ_BYTES:
            raise read_too_large(read_bytes)
        return Resolution(
            first["scope_account_id"], _settings_from_rows(rows), read_bytes, revision
        )

    async def list_settings(
        self,
        scope: ScopeRef | None,
        key_prefix: str = "",
        level_only: bool = False,
        page_size: int = 100,
        after_key: str = "",
        at_revision: int | None = None,
        visible_to: int | None = None,
    ) -> SettingsPage:
        """One page of a scope's settings by key, in one statement that also reads the
        revision (``list_settings``, or ``list_settings_at_revision`` from the log).

        `scope` None lists GLOBAL settings. Effective settings (each key's most specific
        level) unless `level_only`, which lists what is set at exactly that scope. A
        page holds at most `page_size` settings and at most MAX_READ_BYTES of values.
        The next page is asked for with `after_key` = the returned `last_key`; keys
        that exist throughout are each listed exactly once across the pages. Raises
        NOT_FOUND for an unknown (or invisible) scope; with `at_revision`, as
        :meth:`resolve_at`.
        """
        level = "GLOBAL" if scope is None else scope.level.value
        scope_id = 0 if scope is None else scope.id
        low, high = key_range(key_prefix)
        args: list[object] = [
            level,
            scope_id,
            level_only,
            after_key,
            low,
            high,
            page_size + 1,
            visible_to,
            MAX_READ_BYTES,
        ]
        name = "list_settings"
        if at_revision is not None:
            name = "list_settings_at_revision"
            args.append(at_revision)
        rows = await self._fetch(query(name), *args)
        if not rows:
            raise _scope_not_found(scope)  # type: ignore[arg-type]  # GLOBAL always exists
        first = rows[0]
        if at_revision is not None:
            check_readable(
                at_revision, first["compacted_revision"], first["revision"], "at_revision"
            )
        settings, more = _page(_settings_from_rows(rows), first["page_rows"], page_size)
        return SettingsPage(
            settings,
            at_revision if at_revision is not None else first["revision"],
            settings[-1].key if more else None,
        )

    async def explain(
        self, scope: ScopeRef, keys: list[str], visible_to: int | None = None
    ) -> tuple[int, list[Explanation]]:
        """For each key, every level's setting for the scope with its last change, most
        specific first, and the revision read at (one statement, ``explain_settings``).

        Keys set at no level get an Explanation with no levels. Raises NOT_FOUND for an
        unknown scope, INVALID_ARGUMENT (READ_TOO_LARGE) over MAX_READ_BYTES.
        """
        rows = await self._fetch(
            query("explain_settings"), scope.level.value, scope.id, keys, visible_to, MAX_READ_BYTES
        )
        if not rows:
            raise _scope_not_found(scope)
        if rows[0]["read_bytes"] > MAX_READ_BYTES:
            raise read_too_large(int(rows[0]["read_bytes"]))
        by_key: dict[str, list[LevelEntry]] = {key: [] for key in keys}
        for row, setting in zip(
            [r for r in rows if r["key"] is not None], _settings_from_rows(rows), strict=True
        ):
            by_key[setting.key].append(
                LevelEntry(
                    setting,
                    row["change_time"],
                    Actor(
                        row["actor_user_id"],
                        row["actor_username"],
                        row["credential_kind"],
                        row["credential_id"],
                        row["request_id"],
                    ),
                    row["reason"],
                )
            )
        return rows[0]["revision"], [Explanation(k, v) for k, v in by_key.items()]

    async def changes(
        self,
        *,
        scope: ScopeRef | None = None,
        global_only: bool = False,
        visible_to: int | None = None,
        key: str | None = None,
        key_prefix: str | None = None,
        min_revision: int | None = None,
        max_revision: int | None = None,
        min_time: datetime | None = None,
        max_time: datetime | None = None,
        actor_user_id: int | None = None,
        newest_first: bool = False,
        after: tuple[int, int] | None = None,
        page_size: int = 100,
    ) -> ChangesPage:
        """One page of the change log, filtered, in revision order (or newest first).

        `scope` an account includes its retailers; `global_only` keeps GLOBAL changes;
        `visible_to` keeps that account's changes and GLOBAL ones. Continue with
        `after` = the returned `last`. Raises FAILED_PRECONDITION (REVISION_COMPACTED)
        when the changes asked for start at or below the compacted revision (an
        explicit `min_revision`, or an oldest-first page continuing below it), so a
        reader never takes a compacted gap for "nothing happened".
        """
        kind: str | None = "GLOBAL" if global_only else None
        scope_id = None
        if scope is not None:
            kind, scope_id = scope.level.value, scope.id
        low, high = key_range(key_prefix) if key_prefix else (None, None)
        name = "changes_newest_first" if newest_first else "changes_oldest_first"
        async with self._acquire() as connection, connection.transaction(readonly=True):
            # Every filter is optional; planned once for all values (a generic plan) they
            # could not use an index. Planned for the values given, they fold into plain
            # index conditions (tests/test_query_plan.py).
            await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await connection.fetch(
                query(name),
                kind,
                scope_id,
                visible_to,
                key,
                low,
                high,
                min_revision,
                max_revision,
                min_time,
                max_time,
                actor_user_id,
                None if after is None else after[0],
                None if after is None else after[1],
                page_size + 1,
                MAX_READ_BYTES,
            )
        first = rows[0]
        compacted = first["compacted_revision"]
        starts_after = None if min_revision is None else min_revision - 1
        if not newest_first and after is not None:
            starts_after = max(starts_after or 0, after[0])
        if starts_after is not None and starts_after < compacted:
            raise revision_compacted(compacted)
        changes, more = _page(
            [_change_from_row(r) for r in rows if r["revision"] is not None],
            first["page_rows"],
            page_size,
        )
        last = (changes[-1].revision, changes[-1].seq) if more else None
        return ChangesPage(changes, first["current_revision"], last)

    async def restore(
        self,
        scope: ScopeRef | None,
        keys: list[str],
        revision: int,
        actor: Actor = NO_ACTOR,
        reason: str = "",
        rules: WriteRules | None = None,
    ) -> RestoreResult:
        """Sets `keys` of one level and scope (None: GLOBAL) back to their value after
        `revision`: a put or a delete per key that differs, a no-op for one that does
        not; all in one transaction under one new revision, logged with the reason
        "restore to revision R" and the caller's own. Nothing to change: no revision.

        Raises NOT_FOUND for an unknown scope, FAILED_PRECONDITION (REVISION_COMPACTED)
        below the compacted revision, OUT_OF_RANGE (FUTURE_REVISION) past the current.
        Each put is checked as a single write is: `rules` (the key definitions, checked
        against the version this transaction holds; DefinitionsChanged when it moved)
        and one type per key (TYPE_MISMATCH); any refusal restores nothing.
        """
        from tierset.store.changes import Operation, PlannedChange, apply_one  # as apply_changes

        level = Level.GLOBAL if scope is None else scope.level
        account_id, retailer_id = (None, None) if scope is None else scope.owner_columns()
        if scope is not None and not await self._fetchval(
            query("scope_exists"), scope.level.value, scope.id
        ):
            raise _scope_not_found(scope)
        logged_reason = f"restore to revision {revision}" + (f": {reason}" if reason else "")
        where = (level.value, account_id, retailer_id)

        class _NothingToDo(Exception):
            pass

        changed: list[str] = []
        new_revision: int | None = None
        async with self._acquire() as connection:
            try:
                async with connection.transaction():
                    taken = await connection.fetchrow(query("restore_take_revision"))
                    new_revision = taken["revision"]
                    check_readable(
                        revision, taken["compacted_revision"], new_revision - 1, "revision"
                    )
                    if rules is not None and rules.version != taken["definitions_version"]:
                        raise DefinitionsChanged
                    states = await connection.fetch(
                        query("setting_states_at"), *where, keys, revision
                    )
                    seq = 0
                    for state in states:
                        if (state["current_type"], _canonical(state["current_value"])) == (
                            state["target_type"],
                            _canonical(state["target_value"]),
                        ):
                            continue
                        # The changeset's own change: the same lock checks, the same log rows.
                        deleting = state["target_value"] is None
                        target_type = None if deleting else SettingType(state["target_type"])
                        if rules is not None and target_type is not None:
                            rules.check_write(
                                level, state["key"], target_type, state["target_value"]
                            )
                        change = PlannedChange(
                            Operation.DELETE if deleting else Operation.PUT,
                            scope,
                            state["key"],
                            setting_type=target_type,
                            value_json=state["target_value"],
                        )
                        _, after = await apply_one(
                            connection, change, new_revision, seq, actor, logged_reason
                        )
                        if after > seq:
                            changed.append(state["key"])
                            seq = after
                    if not changed:
                        raise _NothingToDo  # rolls the counter back: no revision spent
            except _NothingToDo:
                return RestoreResult(None, [])
        return RestoreResult(new_revision, changed)

    async def current_revision(self) -> tuple[int, int]:
        """The current and the compacted revision."""
        row = await self._fetchrow(query("current_revision"))
        return row["revision"], row["compacted_revision"]

    async def compact(self, before: datetime) -> int | None:
        """Removes the change log older than `before` (cut before its first newer row)
        and records the compacted revision; returns it, or None when another process
        is compacting right now (one at a time, by an advisory lock)."""
        async with self._acquire() as connection, connection.transaction():
            if not await connection.fetchval(query("lock_compaction")):
                return None
            row = await connection.fetchrow(query("compaction_target"), before)
            target = max(row["target"], row["compacted_revision"])
            await connection.execute(query("compact_change_log"), target)
            return int(await connection.fetchval(query("record_compaction"), target))

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

    async def list_accounts(self, after_id: int, limit: int) -> list[AccountRow]:
        """Up to `limit` accounts with ids above `after_id`, by id."""
        rows = await self._fetch(query("list_accounts"), after_id, limit)
        return [AccountRow(**dict(row)) for row in rows]

    async def list_retailers(self, account_id: int, after_id: int, limit: int) -> list[RetailerRow]:
        """Up to `limit` of `account_id`'s retailers with ids above `after_id`, by id."""
        rows = await self._fetch(query("list_retailers"), account_id, after_id, limit)
        return [RetailerRow(**dict(row)) for row in rows]

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
