"""A per-process read cache of resolved settings, kept coherent by PostgreSQL.

Reads far outnumber writes, so each server process keeps the last resolutions
it computed (a bounded LRU keyed by scope and key list). PostgreSQL tells every
process what changed: migration 0003 makes each write NOTIFY the channel
``tierset_settings`` from its own transaction; every process hears it on its one
LISTEN connection (:mod:`tierset.store.listener`, subscribed by :func:`follow_changes`)
and drops what a change can affect. The process that wrote also drops it itself before answering the
write, so its own next read never needs to wait for the notification.

Three rules keep the cache from ever serving something stale for longer than
a notification takes to arrive:

* It is only used while the listener is connected. When that connection drops
  (or its liveness probe finds it silently dead) the whole cache is cleared and
  reads go to the database until the listener is back (reconnecting with
  backoff); then it starts again empty, because notifications sent in between
  were lost.
* A read that misses records the cache's generation before asking the
  database and stores its answer only if no invalidation happened meanwhile:
  a notification for a write the read's snapshot did not see always comes
  after that write commits, so it either bumps the generation before the
  answer is stored, or evicts the answer after.
* Unknown scopes (NOT_FOUND) are never cached, so a retailer registered later
  is readable at once. A caller confined to one account reads with that account
  named (``visible_to``): another account's scope is then NOT_FOUND from the same
  statement, never stored, and a cached entry of another account is a miss. A
  refused read costs the same whether or not the scope exists.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Sequence

import asyncpg

from tierset.core.values import Level, SettingType
from tierset.ops import metrics
from tierset.ops.large_reads import ReadBudget
from tierset.store.changes import ChangesetResult, PlannedChange
from tierset.store.database import (
    DeleteResult,
    OwnerCheck,
    Resolution,
    RestoreResult,
    ScopeRef,
    Store,
    WriteResult,
)
from tierset.store.listener import Listener, Subscription
from tierset.store.revisions import NO_ACTOR, Actor

CHANNEL = "tierset_settings"

# What a notification payload names (see migration 0003): everything, an
# account with its retailers, or one retailer.
EVERYTHING = "*"
ACCOUNT_PREFIX = "a:"
RETAILER_PREFIX = "r:"

CacheKey = tuple[Level, int, tuple[str, ...]]


class ResolutionCache:
    """A bounded LRU of :class:`Resolution` by (level, scope id, keys), with invalidation.

    Disabled (every lookup misses, nothing is stored) until :meth:`enable`.
    `hits`, `misses` and `invalidations` count what happened in this cache; the
    same events also move the process's Prometheus counters (metrics.py).
    """

    def __init__(self, max_entries: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        # Entries vary from a few bytes to many MiB (LOBs), so a count alone bounds nothing.
        self.max_bytes = max_bytes
        self.bytes = 0
        self._sizes: dict[CacheKey, int] = {}
        self._entries: OrderedDict[CacheKey, Resolution] = OrderedDict()
        # Which entries each account (itself and its retailers) and retailer affects.
        self._by_account: dict[int, set[CacheKey]] = {}
        self._by_retailer: dict[int, set[CacheKey]] = {}
        self.generation = 0
        self.enabled = False
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @staticmethod
    def key(scope: ScopeRef, keys: list[str]) -> CacheKey:
        """The cache key of a read."""
        return (scope.level, scope.id, tuple(keys))

    def get(self, key: CacheKey, visible_to: int | None = None) -> Resolution | None:
        """The cached resolution, or None (counted as a hit or a miss).

        With `visible_to`, an entry of another account is a miss like an absent one, so
        a caller confined to its account cannot learn from speed what others read.
        """
        found = self._entries.get(key)
        if found is None or (visible_to is not None and found.account_id != visible_to):
            self.misses += 1
            metrics.CACHE_MISSES.inc()
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        metrics.CACHE_HITS.inc()
        return found

    @staticmethod
    def weight(resolution: Resolution) -> int:
        """About what an entry holds in memory: its values twice (the stored text and the
        response built from it), plus a fixed overhead per entry and per setting."""
        return 256 + sum(2 * (len(s.key) + len(s.value)) + 128 for s in resolution.settings)

    def put(self, key: CacheKey, resolution: Resolution, generation: int) -> None:
        """Stores a resolution read at `generation`, unless something was invalidated since.

        One larger than an eighth of the byte budget is not kept: it would push out many
        small, hot entries to make room for itself.
        """
        if not self.enabled or generation != self.generation or key in self._entries:
            return
        size = self.weight(resolution)
        if size > self.max_bytes // 8:
            return
        self._entries[key] = resolution
        self._sizes[key] = size
        self.bytes += size
        self._by_account.setdefault(resolution.account_id, set()).add(key)
        level, scope_id, _ = key
        if level is Level.RETAILER:
            self._by_retailer.setdefault(scope_id, set()).add(key)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._unindex(*self._entries.popitem(last=False))

    def _unindex(self, key: CacheKey, resolution: Resolution) -> None:
        self.bytes -= self._sizes.pop(key, 0)
        self._discard(self._by_account, resolution.account_id, key)
        level, scope_id, _ = key
        if level is Level.RETAILER:
            self._discard(self._by_retailer, scope_id, key)

    def _drop(self, keys: set[CacheKey]) -> None:
        for key in keys:
            resolution = self._entries.pop(key, None)
            if resolution is not None:
                self._unindex(key, resolution)

    @staticmethod
    def _discard(index: dict[int, set[CacheKey]], owner: int, key: CacheKey) -> None:
        members = index.get(owner)
        if members is not None:
            members.discard(key)
            if not members:
                del index[owner]

    def invalidate(self, payload: str) -> None:
        """Drops what a change notification names: '*', 'a:<account>' or 'r:<retailer>'."""
        self.generation += 1
        self.invalidations += 1
        metrics.CACHE_INVALIDATIONS.inc()
        if payload.startswith(ACCOUNT_PREFIX):
            owner = _id(payload, ACCOUNT_PREFIX)
            if owner is not None:
                self._drop(set(self._by_account.get(owner, ())))
                return
        elif payload.startswith(RETAILER_PREFIX):
            owner = _id(payload, RETAILER_PREFIX)
            if owner is not None:
                self._drop(set(self._by_retailer.get(owner, ())))
                return
        # '*', or anything not understood: dropping everything is always safe.
        self.clear()

    def invalidate_scope(self, scope: ScopeRef | None) -> None:
        """Drops what a write at `scope` (None: GLOBAL) can affect."""
        if scope is None:
            self.invalidate(EVERYTHING)
        elif scope.level is Level.ACCOUNT:
            self.invalidate(f"{ACCOUNT_PREFIX}{scope.id}")
        else:
            self.invalidate(f"{RETAILER_PREFIX}{scope.id}")

    def clear(self) -> None:
        """Drops every entry; reads in flight will not store their answers."""
        self.generation += 1
        self._entries.clear()
        self._sizes.clear()
        self.bytes = 0
        self._by_account.clear()
        self._by_retailer.clear()

    def enable(self) -> None:
        """Starts caching, empty (called once the listener is connected)."""
        self.clear()
        self.enabled = True

    def disable(self) -> None:
        """Stops caching and drops everything (called when the listener is lost)."""
        self.enabled = False
        self.clear()


def _id(payload: str, prefix: str) -> int | None:
    try:
        return int(payload.removeprefix(prefix))
    except ValueError:
        return None


class CachedStore(Store):
    """A :class:`Store` whose reads go through a :class:`ResolutionCache`.

    Writes drop what they affect from this process's cache before returning;
    other processes learn of them through the notification.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: ResolutionCache,
        acquire_timeout: float | None = None,
        read_budget: ReadBudget | None = None,
    ) -> None:
        super().__init__(pool, acquire_timeout, read_budget)
        self.cache = cache

    async def resolve(
        self,
        scope: ScopeRef,
        keys: list[str],
        visible_to: int | None = None,
        check_owner: OwnerCheck | None = None,
        lease: contextlib.AsyncExitStack | None = None,
    ) -> Resolution:
        """Like :meth:`Store.resolve`, from the cache when it holds an answer the caller
        may see. Only answers the database gave are stored, and with `visible_to` it
        gives none for another account's scope, so a refused read never fills the cache."""
        cache = self.cache
        if not cache.enabled:
            return await super().resolve(scope, keys, visible_to, check_owner, lease)
        key = cache.key(scope, keys)
        found = cache.get(key, visible_to)
        if found is not None:
            return found
        generation = cache.generation
        resolution = await super().resolve(scope, keys, visible_to, check_owner, lease)
        cache.put(key, resolution, generation)
        return resolution

    async def write(
        self,
        scope: ScopeRef | None,
        key: str,
        setting_type: SettingType,
        value_json: str,
        expected_version: int | None = None,
        actor: Actor = NO_ACTOR,
        reason: str = "",
    ) -> WriteResult:
        """Like :meth:`Store.write`; this process's cache forgets the scope either way.

        Also on failure: a write whose commit was cut off may have happened.
        """
        try:
            return await super().write(
                scope, key, setting_type, value_json, expected_version, actor, reason
            )
        finally:
            self.cache.invalidate_scope(scope)

    async def delete(
        self,
        scope: ScopeRef | None,
        key: str,
        expected_version: int | None = None,
        actor: Actor = NO_ACTOR,
        reason: str = "",
    ) -> DeleteResult:
        """Like :meth:`Store.delete`; this process's cache forgets the scope either way."""
        try:
            return await super().delete(scope, key, expected_version, actor, reason)
        finally:
            self.cache.invalidate_scope(scope)

    async def restore(
        self,
        scope: ScopeRef | None,
        keys: list[str],
        revision: int,
        actor: Actor = NO_ACTOR,
        reason: str = "",
    ) -> RestoreResult:
        """Like :meth:`Store.restore`; this process's cache forgets the scope either way."""
        try:
            return await super().restore(scope, keys, revision, actor, reason)
        finally:
            self.cache.invalidate_scope(scope)

    async def apply_changes(
        self,
        changes: Sequence[PlannedChange],
        actor: Actor = NO_ACTOR,
        reason: str = "",
        *,
        dry_run: bool = False,
        indexed: bool = True,
    ) -> ChangesetResult:
        """Like :meth:`Store.apply_changes`; this process's cache forgets every scope the
        changeset names (everything, when it changes GLOBAL or a lock removes overrides)."""
        try:
            return await super().apply_changes(
                changes, actor, reason, dry_run=dry_run, indexed=indexed
            )
        finally:
            if not dry_run:
                if any(c.scope is None or c.remove_overrides for c in changes):
                    self.cache.invalidate_scope(None)
                else:
                    for scope in dict.fromkeys(c.scope for c in changes):
                        self.cache.invalidate_scope(scope)


async def follow_changes(listener: Listener, cache: ResolutionCache) -> Subscription:
    """Keeps `cache` coherent through the process's listener: each notification on
    ``tierset_settings`` drops what it names; the cache is enabled (empty) once LISTEN is
    in force and disabled (emptied) the moment the connection is lost."""
    return await listener.subscribe(
        CHANNEL, cache.invalidate, on_connected=cache.enable, on_disconnected=cache.disable
    )
