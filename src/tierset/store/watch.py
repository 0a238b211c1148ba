"""The store's side of Watch: the log and the level states a doorbell needs, one snapshot.

Everything here runs in one REPEATABLE READ, read-only transaction per call, so the
change log read and the states resolved from it come from the same snapshot: the
states "after revision N" and the log rows after N describe one history, whatever
commits meanwhile. Revisions commit in order (revisions.py), so the snapshot's counter
C says exactly which changes it holds: all up to C, none after.

The statements (``watch_log``, ``watch_level_states``, ``watch_range_levels`` in
``sql/queries.sql``) return rows; precedence and events are the service's rules
(:mod:`tierset.services.watch_events`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tierset.core.values import INT64_MAX, Level, SettingType, compact_json
from tierset.store.database import PoolClient, SettingLock, StoredSetting, lock_from_row, query
from tierset.store.revisions import Actor, key_range

# (level, scope_id, key): one stored setting's address; scope_id is 0 for GLOBAL.
Triple = tuple[Level, int, str]


@dataclass(frozen=True)
class LoggedChange:
    """One log row as Watch needs it: where, at which revision, and the setting after it
    (None: deleted). A lock or unlock row (`relock`) changes no value: `lock` is the lock
    it set (None: it unlocked), and the service keeps the value as it stood."""

    revision: int
    level: Level
    scope_id: int
    owner_account_id: int | None
    key: str
    after: StoredSetting | None
    relock: bool = False
    lock: SettingLock | None = None

    @property
    def triple(self) -> Triple:
        return (self.level, self.scope_id, self.key)


@dataclass(frozen=True)
class LogBatch:
    """The log after `after` up to `upper` (at most), read in one snapshot with the states
    of the triples asked for, as they stood after `after`."""

    after: int
    upper: int  # the last revision this batch covers: min(window end, current)
    current: int
    compacted: int
    changes: list[LoggedChange]
    states: dict[Triple, StoredSetting | None]


def _setting(row: Any, level: Level, key: str) -> StoredSetting | None:
    if row["value"] is None:
        return None
    kind = SettingType(row["type"])
    return StoredSetting(
        id=row["id"],
        key=key,
        type=kind,
        value=compact_json(row["value"]) if kind is SettingType.JSON else row["value"],
        level=level,
        version=row["version"],
        update_time=row["update_time"],
        create_revision=row["create_revision"],
        mod_revision=row["mod_revision"],
        lock=lock_from_row(row),
    )


def _change(row: Any) -> LoggedChange:
    level = Level(row["level"])
    after = None
    if row["new_value"] is not None:
        kind = SettingType(row["new_type"])
        value = row["new_value"]
        after = StoredSetting(
            id=row["setting_id"],
            key=row["key"],
            type=kind,
            value=compact_json(value) if kind is SettingType.JSON else value,
            level=level,
            version=row["new_version"],
            update_time=row["change_time"],
            create_revision=row["new_create_revision"],
            mod_revision=row["revision"],
        )
    relock, lock = False, None
    if row["lock_change"] is not None:
        relock, change = True, json.loads(row["lock_change"])
        if change["locked"]:
            lock = SettingLock(
                row["revision"],
                row["change_time"],
                Actor(
                    change["user_id"],
                    change["username"],
                    change["credential_kind"],
                    change["credential_id"],
                    change["request_id"],
                ),
            )
    return LoggedChange(
        row["revision"],
        level,
        row["scope_id"],
        row["owner_account_id"],
        row["key"],
        after,
        relock,
        lock,
    )


def _columns(triples: Sequence[Triple]) -> tuple[list[str], list[int], list[str]]:
    return [t[0].value for t in triples], [t[1] for t in triples], [t[2] for t in triples]


class WatchStore(PoolClient):
    """The reads of :class:`~tierset.services.watch.WatchHub` and of a watcher's start."""

    async def read_batch(
        self,
        after: int,
        window: int,
        triples_of: Callable[[list[LoggedChange]], Sequence[Triple]],
    ) -> LogBatch:
        """The log after `after` (at most `window` revisions) and, in the same snapshot,
        the states after `after` of the triples `triples_of(changes)` names: one log
        read, and one re-resolution statement when any triple is named."""
        # Within bigint: a start_revision near the int64 limit is the caller's (a future
        # revision, refused by the service once `current` is known), not a DataError.
        upper = min(after + window, INT64_MAX)
        async with (
            self._acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await connection.fetch(query("watch_log"), after, upper)
            changes = [_change(row) for row in rows if row["revision"] is not None]
            triples = list(dict.fromkeys(triples_of(changes)))
            states = await self._states(connection, triples, after) if triples else {}
        current, compacted = rows[0]["current_revision"], rows[0]["compacted_revision"]
        return LogBatch(after, min(upper, current), current, compacted, changes, states)

    async def states_now(
        self, triples: Sequence[Triple]
    ) -> tuple[int, int, dict[Triple, StoredSetting | None]]:
        """(current revision, compacted revision, each triple's current setting), one
        snapshot: a keys watch's first message."""
        async with (
            self._acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            counter = await connection.fetchrow(query("current_revision"))
            states = await self._states(connection, list(triples), counter["revision"])
        return counter["revision"], counter["compacted_revision"], states

    async def range_now(
        self, retailer_id: int | None, account_id: int, prefix: str, limit: int
    ) -> tuple[int, int, list[StoredSetting], dict[Triple, StoredSetting | None]]:
        """A prefix watch's first message: (current, compacted, rows under the prefix at
        the scope's levels, at most `limit`, as triples) in one snapshot."""
        low, high = key_range(prefix)
        async with (
            self._acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            counter = await connection.fetchrow(query("current_revision"))
            rows = await connection.fetch(
                query("watch_range_levels"), retailer_id, account_id, low, high, limit
            )
        found: dict[Triple, StoredSetting | None] = {}
        settings = []
        for row in rows:
            setting = _setting(row, Level(row["level"]), row["key"])
            assert setting is not None
            settings.append(setting)
            found[(setting.level, row["scope_id"], setting.key)] = setting
        return counter["revision"], counter["compacted_revision"], settings, found

    async def current(self) -> tuple[int, int]:
        """The current and the compacted revision."""
        row = await self._fetchrow(query("current_revision"))
        return row["revision"], row["compacted_revision"]

    async def retailer_account(self, retailer_id: int) -> int | None:
        """The account owning a retailer (None: no such retailer)."""
        return await self._fetchval(query("retailer_account"), retailer_id)

    async def account_exists(self, account_id: int) -> bool:
        """Whether the account exists."""
        return bool(await self._fetchval(query("scope_exists"), "ACCOUNT", account_id))

    @staticmethod
    async def _states(
        connection: Any, triples: list[Triple], after: int
    ) -> dict[Triple, StoredSetting | None]:
        rows = await connection.fetch(query("watch_level_states"), *_columns(triples), after)
        return {
            triples[row["n"] - 1]: _setting(row, triples[row["n"] - 1][0], triples[row["n"] - 1][2])
            for row in rows
        }
