"""WatchSettings: one hub per process fans the change log out to every watch stream.

The hub (:class:`WatchHub`) follows NOTIFY ``tierset_changes`` (a doorbell whose
payload is only a revision, migration 0006) through the process's one
:class:`~tierset.store.listener.Listener`. On each doorbell, and on every
(re)connection of the listener (whatever an outage lost is then read back), it reads
the log after the last revision it handled ONCE, works out which watched (scope, key)
pairs the rows may affect (:mod:`tierset.services.watch_events`), re-resolves those
pairs' levels in ONE statement of the same snapshot, and offers each watcher one
message per revision that changed its effective values. Doorbells that arrive while it
works fold into one more pass; a doorbell for a revision already handled is dropped.

Invariants a stream relies on:

* **In order, no gap, no duplicate.** The hub handles revisions strictly in order and
  offers a revision's message to every registered watcher before it moves its
  ``revision`` on, with no await in between: a watcher whose queue is empty has been
  offered everything up to ``hub.revision``, so a PROGRESS message at that revision is
  true. A stream registers first, waits until the hub covers it (the hub's
  ``revision`` when it registered, or the end of the batch in flight), then reads its
  snapshot (or replays the log from ``start_revision``) at a revision S that is at
  least that, and drops queued messages at or below S: what the hub offers after S and
  what the stream read up to S meet exactly.
* **Bounded.** A watcher's queue holds at most ``buffer_messages``; one more ends the
  stream with ABORTED, reason WATCH_OVERFLOW, metadata ``revision`` = the last revision
  delivered, from which the client resumes. A process holds at most ``max_streams``
  watch streams (RESOURCE_EXHAUSTED, TOO_MANY_STREAMS past it).
* **Live only while trusted.** The stream re-checks its caller every
  ``recheck_seconds`` (the adapter's callback re-authenticates the credentials it came
  with), so a revoked credential or an expired access token ends it UNAUTHENTICATED.
* **Shutdown.** :meth:`WatchHub.close` ends every stream with UNAVAILABLE (after health
  went NOT_SERVING, App.stop's order), so clients resume from another server.

If the listener is down, the hub polls the log every ``poll_seconds`` instead, so
streams stay live (later, not wrong) until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tierset.core import authz, errors
from tierset.core.authz import Permission, Principal
from tierset.core.reasons import Reason
from tierset.core.values import Level, check_key
from tierset.ops import metrics
from tierset.services.keydefs import Definitions, Masking, masking_for, may_see_secrets
from tierset.services.watch_events import (
    KIND_EVENTS,
    KIND_PROGRESS,
    KIND_SNAPSHOT,
    Event,
    Message,
    Pair,
    effective,
    reaches,
    replay,
    triples,
)
from tierset.store.database import ScopeRef, StoredSetting
from tierset.store.definitions import DefinitionStore
from tierset.store.listener import Listener, Subscription
from tierset.store.revisions import check_readable
from tierset.store.watch import LoggedChange, Triple, WatchStore

log = logging.getLogger(__name__)

CHANNEL = "tierset_changes"
# Revisions read per log statement: a long outage is caught up in bounded pieces.
LOG_WINDOW = 1000


@dataclass(frozen=True)
class WatchSpec:
    """What one stream watches: a scope (its retailer, if any, and account) and either
    a set of keys or a key prefix."""

    retailer_id: int | None
    account_id: int
    keys: frozenset[str] | None
    prefix: str | None

    def watches(self, key: str) -> bool:
        if self.keys is not None:
            return key in self.keys
        return key.startswith(self.prefix or "")

    def pair(self, key: str) -> Pair:
        return (self.retailer_id, self.account_id, key)


def overflow(revision: int) -> errors.TiersetError:
    """A watcher that fell too far behind."""
    return errors.aborted(
        f"the watch fell behind by more than its buffer; resume from revision {revision}",
        Reason.WATCH_OVERFLOW,
        revision=str(revision),
    )


def shutting_down() -> errors.TiersetError:
    return errors.unavailable(
        "the server is shutting down; resume the watch (on another server) from the last"
        " revision received"
    )


class Watcher:
    """One stream's queue of messages, as the hub offers them."""

    def __init__(self, spec: WatchSpec, buffer_messages: int) -> None:
        self.spec = spec
        self._buffer = buffer_messages
        self._queue: deque[Message] = deque()
        self._wake = asyncio.Event()
        # Set once the hub covers this watcher: every revision after `since` is offered.
        self.covered = asyncio.Event()
        self.since = 0
        # Offered messages at or below this are dropped (the stream read them itself).
        self._floor = -1
        self.delivered = 0
        self.ended: errors.TiersetError | None = None

    def offer(self, message: Message) -> None:
        """Queues a message (the hub's, never awaiting); past the buffer, ends the stream."""
        if self.ended is not None or message.revision <= self._floor:
            return
        if len(self._queue) >= self._buffer:
            metrics.WATCH_DROPS.labels("overflow").inc()
            self.end(overflow(self.delivered))
            return
        self._queue.append(message)
        self._wake.set()

    def end(self, error: errors.TiersetError) -> None:
        """Ends the stream with `error` as soon as it looks (queued messages are dropped)."""
        if self.ended is None:
            self.ended = error
            self._queue.clear()
            self._wake.set()

    def go_live(self, revision: int) -> None:
        """The stream has sent everything up to `revision` itself."""
        self._floor = revision
        self.delivered = revision
        while self._queue and self._queue[0].revision <= revision:
            self._queue.popleft()

    @property
    def idle(self) -> bool:
        return not self._queue

    async def next(self, seconds: float) -> Message | None:
        """The next message, None after `seconds` without one; raises how the stream ended."""
        if not self._queue and self.ended is None:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        if self.ended is not None:
            if self.ended.reason is Reason.WATCH_OVERFLOW:
                # The revision to resume from is the last one delivered when the stream
                # looks, not when the queue overflowed: a write in flight then (the
                # client not reading) has completed since, and resuming from before it
                # would send that revision twice.
                raise overflow(self.delivered)
            raise self.ended
        return self._queue.popleft() if self._queue else None


class _Group:
    """The watchers of one spec: a revision's message is built once for all of them."""

    __slots__ = ("spec", "watchers")

    def __init__(self, spec: WatchSpec) -> None:
        self.spec = spec
        self.watchers: set[Watcher] = set()


class WatchHub:
    """The process's fan-out; see the module docstring. `log_reads` and `state_reads`
    count its statements (tests hold it to one of each per doorbell)."""

    def __init__(
        self,
        store: WatchStore,
        *,
        max_streams: int,
        buffer_messages: int,
        poll_seconds: float = 1.0,
        window: int = LOG_WINDOW,
    ) -> None:
        self._store = store
        self.max_streams = max_streams
        self._buffer = buffer_messages
        self._poll_seconds = poll_seconds
        self._window = window
        self.revision = 0
        self.log_reads = 0
        self.state_reads = 0
        self._groups: dict[WatchSpec, _Group] = {}
        self._by_key: dict[str, set[_Group]] = {}
        self._prefixed: set[_Group] = set()
        self._count = 0
        self._reading = False
        self._waiting: list[Watcher] = []
        self._wake = asyncio.Event()
        self._connected = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._listener: Listener | None = None
        self._subscription: Subscription | None = None

    @property
    def streams(self) -> int:
        return self._count

    async def start(self, listener: Listener) -> None:
        """Starts at the current revision and follows the doorbell."""
        self.revision, _ = await self._store.current()
        self._listener = listener
        self._subscription = await listener.subscribe(
            CHANNEL,
            self._on_notify,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tierset-watch")

    async def close(self) -> None:
        """Ends every stream with UNAVAILABLE and stops following the log."""
        self._closed = True
        for group in list(self._groups.values()):
            for watcher in list(group.watchers):
                metrics.WATCH_DROPS.labels("shutdown").inc()
                watcher.end(shutting_down())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None and self._subscription is not None:
            await self._listener.unsubscribe(self._subscription)
            self._subscription = None

    def register(self, spec: WatchSpec) -> Watcher:
        """A new watcher of `spec`; its `covered` is set once the hub offers it everything."""
        if self._closed:
            raise shutting_down()
        if self._count >= self.max_streams:
            raise errors.resource_exhausted(
                f"this server already holds {self.max_streams} watch streams, its limit;"
                " retry later or on another server",
                Reason.TOO_MANY_STREAMS,
            )
        watcher = Watcher(spec, self._buffer)
        group = self._groups.get(spec)
        if group is None:
            group = self._groups[spec] = _Group(spec)
            if spec.keys is not None:
                for key in spec.keys:
                    self._by_key.setdefault(key, set()).add(group)
            else:
                self._prefixed.add(group)
        group.watchers.add(watcher)
        self._count += 1
        metrics.WATCH_STREAMS.inc()
        if self._reading:
            self._waiting.append(watcher)  # covered from the end of the batch in flight
        else:
            watcher.since = self.revision
            watcher.covered.set()
        return watcher

    def unregister(self, watcher: Watcher) -> None:
        group = self._groups.get(watcher.spec)
        if group is None or watcher not in group.watchers:
            return
        group.watchers.discard(watcher)
        self._count -= 1
        metrics.WATCH_STREAMS.dec()
        if not group.watchers:
            del self._groups[watcher.spec]
            if watcher.spec.keys is not None:
                for key in watcher.spec.keys:
                    keyed = self._by_key.get(key)
                    if keyed is not None:
                        keyed.discard(group)
                        if not keyed:
                            del self._by_key[key]
            else:
                self._prefixed.discard(group)

    # --- the doorbell ------------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        try:
            revision = int(payload)
        except ValueError:
            revision = self.revision + 1  # not ours to judge: read the log anyway
        if revision > self.revision:
            self._wake.set()

    def _on_connected(self) -> None:
        self._connected = True
        self._wake.set()  # catch up on whatever the outage lost

    def _on_disconnected(self) -> None:
        self._connected = False

    async def _run(self) -> None:
        while True:
            if not self._connected:
                # No doorbell: poll, so streams stay live while the listener is away.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_seconds):
                        await self._wake.wait()
            else:
                await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception as error:  # the database is away: keep streams, try again
                log.warning("watch: cannot read the change log: %r", error)
                self._release_waiting()
                await asyncio.sleep(self._poll_seconds)
                self._wake.set()

    async def catch_up(self) -> None:
        """Handles every revision committed so far, in windows, in order."""
        while True:
            if not self._groups:
                # Nobody to tell: jump. A watcher registering while the jump is read waits
                # for it as for a batch in flight (else it would be covered from the old
                # revision, and the jump would skip what was committed meanwhile: events
                # it is never offered); it is covered from where the hub lands.
                self._reading = True
                try:
                    current = (await self._store.current())[0]
                finally:
                    self._reading = False
                self.revision = max(self.revision, current)
                self._release_waiting()
                return
            if await self._one_batch():
                return

    async def _one_batch(self) -> bool:
        """One window of the log; True when it reached the current revision."""
        routes: dict[Triple, list[Pair]] = {}
        groups_of: dict[Pair, list[_Group]] = {}
        self._reading = True
        try:
            self.log_reads += 1
            batch = await self._store.read_batch(
                self.revision, self._window, lambda changes: self._route(changes, routes, groups_of)
            )
        finally:
            self._reading = False
        if batch.states:
            self.state_reads += 1
        if batch.compacted > batch.after:
            # The log lost what happened since we read it last: nobody can be told.
            log.warning("watch: log compacted past revision %d; ending streams", batch.after)
            for group in list(self._groups.values()):
                for watcher in list(group.watchers):
                    metrics.WATCH_DROPS.labels("compacted").inc()
                    watcher.end(shutting_down())
            self.revision = batch.current
            self._release_waiting()
            return True
        events = replay(batch.changes, routes, dict(batch.states))
        for revision, changed in events.items():
            by_group: dict[_Group, list[Event]] = {}
            for pair, event in changed.items():
                for group in groups_of[pair]:
                    by_group.setdefault(group, []).append(event)
            for group, group_events in by_group.items():
                group_events.sort(key=lambda e: e.key)
                message = Message(KIND_EVENTS, revision, events=tuple(group_events))
                for watcher in list(group.watchers):
                    watcher.offer(message)
        # Offered everything up to `upper` to everyone: only now does the hub move on.
        self.revision = batch.upper
        self._release_waiting()
        return batch.upper >= batch.current

    def _release_waiting(self) -> None:
        for watcher in self._waiting:
            watcher.since = self.revision
            watcher.covered.set()
        self._waiting.clear()

    def _route(
        self,
        changes: list[LoggedChange],
        routes: dict[Triple, list[Pair]],
        groups_of: dict[Pair, list[_Group]],
    ) -> list[Triple]:
        """The triples to re-resolve for `changes`, filling who each pair belongs to."""
        for change in changes:
            candidates = set(self._by_key.get(change.key, ()))
            candidates.update(g for g in self._prefixed if g.spec.watches(change.key))
            for group in candidates:
                spec = group.spec
                if not reaches(change, spec.retailer_id, spec.account_id):
                    continue
                pair = spec.pair(change.key)
                owners = groups_of.get(pair)
                if owners is None:
                    groups_of[pair] = owners = []
                    for triple in triples(pair):
                        routes.setdefault(triple, []).append(pair)
                if group not in owners:
                    owners.append(group)
        return list(routes)


@dataclass(frozen=True)
class WatchRequest:
    """A WatchSettings request as the adapter read it."""

    scope: ScopeRef
    keys: list[str]
    key_prefix: str
    start_revision: int | None


def _check_request(
    request: WatchRequest, max_keys: int
) -> tuple[frozenset[str] | None, str | None]:
    if request.keys and request.key_prefix:
        raise errors.bad_field("key_prefix", "set either keys or key_prefix, not both")
    if not request.keys and not request.key_prefix:
        raise errors.bad_field("keys", "set keys or key_prefix to say what to watch")
    if request.start_revision is not None and request.start_revision < 0:
        raise errors.bad_field("start_revision", "start_revision must not be negative")
    if request.key_prefix:
        # A prefix is a key's beginning: the same characters (a trailing '.' included).
        check_key(request.key_prefix + "0", "key_prefix")
        return None, request.key_prefix
    if len(request.keys) > max_keys:
        raise errors.bad_field("keys", f"at most {max_keys} keys may be watched at once")
    seen: set[str] = set()
    for index, key in enumerate(request.keys):
        check_key(key, f"keys[{index}]")
        if key in seen:
            raise errors.bad_field(f"keys[{index}]", f"key {key!r} is repeated")
        seen.add(key)
    return frozenset(request.keys), None


def _masked(masking: Masking, message: Message) -> Message:
    """`message` with the hidden keys' values masked: itself when it holds none, else a
    copy made once per message (which every watcher of its scope and keys shares)."""
    if not masking or not any(
        k in masking.hidden
        for k in (*(s.key for s in message.settings), *(e.key for e in message.events))
    ):
        return message
    memo = f"masked@{masking.version}"
    masked: Message | None = message.renderings.get(memo)
    if masked is None:
        masked = Message(
            message.kind,
            message.revision,
            settings=tuple(masking.settings(message.settings)),
            events=tuple(
                Event(
                    e.key,
                    None if e.setting is None else masking.setting(e.setting),
                    None if e.previous is None else masking.setting(e.previous),
                )
                for e in message.events
            ),
        )
        message.renderings[memo] = masked
    return masked


class WatchService:
    """The rules of a watch stream: validation, authorisation (as GetSettings), the first
    message, the replay, then the hub's messages, progress and the caller's re-check."""

    def __init__(
        self,
        store: WatchStore,
        hub: WatchHub,
        *,
        max_keys: int,
        progress_seconds: float,
        recheck_seconds: float = 1.0,
        definitions: Definitions | None = None,
    ) -> None:
        self._store = store
        self._definitions = definitions or Definitions(DefinitionStore.sharing(store))
        self.hub = hub
        self._max_keys = max_keys
        self._progress_seconds = progress_seconds
        self._recheck_seconds = recheck_seconds

    async def _spec(self, principal: Principal, request: WatchRequest) -> WatchSpec:
        keys, prefix = _check_request(request, self._max_keys)
        if Permission.SETTINGS_VIEW not in principal.permissions:
            raise authz.denied(Permission.SETTINGS_VIEW)
        scope = request.scope
        if scope.level is Level.ACCOUNT:
            authz.require(principal, Permission.SETTINGS_VIEW, scope.id)
            if not await self._store.account_exists(scope.id):
                raise errors.not_found(
                    f"account {scope.id} does not exist",
                    Reason.ACCOUNT_NOT_FOUND,
                    account_id=str(scope.id),
                )
            return WatchSpec(None, scope.id, keys, prefix)
        account_id = await self._store.retailer_account(scope.id)
        # Missing and another account's look the same to a confined caller.
        authz.require(principal, Permission.SETTINGS_VIEW, account_id)
        if account_id is None:
            raise errors.not_found(
                f"retailer {scope.id} does not exist",
                Reason.RETAILER_NOT_FOUND,
                retailer_id=str(scope.id),
            )
        return WatchSpec(scope.id, account_id, keys, prefix)

    async def watch(
        self,
        principal: Principal,
        request: WatchRequest,
        recheck: Callable[[], Awaitable[None]],
    ) -> AsyncIterator[Message]:
        """The stream's messages, secret values masked for a caller who may not see them
        (by the definitions as each message leaves); raises how it ends (see the module
        docstring)."""
        # aclosing: a stream ended by its client unregisters its watcher at once.
        async with contextlib.aclosing(self._watch(principal, request, recheck)) as messages:
            if may_see_secrets(principal):
                async for message in messages:
                    yield message
                return
            async for message in messages:
                yield _masked(await masking_for(principal, self._definitions), message)

    async def _watch(
        self,
        principal: Principal,
        request: WatchRequest,
        recheck: Callable[[], Awaitable[None]],
    ) -> AsyncGenerator[Message, None]:
        spec = await self._spec(principal, request)
        watcher = self.hub.register(spec)
        try:
            await watcher.covered.wait()
            if request.start_revision is None:
                first = await self._snapshot(spec)
                reached = first.revision
                yield first
                metrics.WATCH_MESSAGES.labels(KIND_SNAPSHOT).inc()
            else:
                replayed = [request.start_revision]
                async for message in self._replay(spec, watcher, replayed):
                    yield message
                    self._count(message)
                    watcher.delivered = message.revision
                reached = replayed[0]
            watcher.go_live(reached)
            async for message in self._live(watcher, recheck):
                yield message
        finally:
            self.hub.unregister(watcher)

    async def _live(
        self, watcher: Watcher, recheck: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[Message]:
        last_sent = last_checked = time.monotonic()
        while True:
            now = time.monotonic()
            wait = min(
                self._progress_seconds - (now - last_sent),
                self._recheck_seconds - (now - last_checked),
            )
            message = await watcher.next(max(wait, 0.0))
            now = time.monotonic()
            if now - last_checked >= self._recheck_seconds:
                try:
                    await recheck()
                except errors.TiersetError:
                    metrics.WATCH_DROPS.labels("credentials").inc()
                    raise
                last_checked = now
            if message is None:
                if now - last_sent < self._progress_seconds or not watcher.idle:
                    continue
                # Queue empty: everything up to the hub's revision has been sent.
                message = Message(KIND_PROGRESS, max(self.hub.revision, watcher.delivered))
            yield message
            self._count(message)
            watcher.delivered = message.revision
            last_sent = time.monotonic()

    @staticmethod
    def _count(message: Message) -> None:
        metrics.WATCH_MESSAGES.labels(message.kind).inc()
        if message.events:
            metrics.WATCH_EVENTS.inc(len(message.events))

    async def _snapshot(self, spec: WatchSpec) -> Message:
        if spec.keys is not None:
            keys = sorted(spec.keys)
            pairs = [spec.pair(k) for k in keys]
            wanted = [t for p in pairs for t in triples(p)]
            current, _, states = await self._store.states_now(wanted)
        else:
            current, _, rows, states = await self._store.range_now(
                spec.retailer_id, spec.account_id, spec.prefix or "", 3 * self._max_keys + 1
            )
            keys = sorted({row.key for row in rows})
            if len(keys) > self._max_keys or len(rows) > 3 * self._max_keys:
                raise errors.bad_field(
                    "key_prefix",
                    f"the prefix matches more than {self._max_keys} keys, the most one watch"
                    " may follow",
                )
            pairs = [spec.pair(k) for k in keys]
        settings: list[StoredSetting] = []
        for pair in pairs:
            setting = effective(states, pair)
            if setting is not None:
                settings.append(setting)
        return Message(KIND_SNAPSHOT, current, settings=tuple(settings))

    async def _replay(
        self, spec: WatchSpec, watcher: Watcher, reached: list[int]
    ) -> AsyncIterator[Message]:
        """The log after ``reached[0]`` (the start revision), as this watcher would have
        been sent it, up to a revision at or after the hub's cover of it; ``reached[0]``
        is then that revision."""
        start = after = reached[0]
        first = True
        while True:
            routes: dict[Triple, list[Pair]] = {}

            def route(
                changes: list[LoggedChange], routes: dict[Triple, list[Pair]] = routes
            ) -> list[Triple]:
                for change in changes:
                    if spec.watches(change.key) and reaches(
                        change, spec.retailer_id, spec.account_id
                    ):
                        pair = spec.pair(change.key)
                        for triple in triples(pair):
                            pairs = routes.setdefault(triple, [])
                            if pair not in pairs:
                                pairs.append(pair)
                return list(routes)

            batch = await self._store.read_batch(after, LOG_WINDOW, route)
            if first:
                check_readable(start, batch.compacted, batch.current, "start_revision")
                first = False
            elif batch.compacted > after:
                raise errors.failed_precondition(
                    "the change log was compacted while the watch replayed it; start again"
                    " without start_revision",
                    Reason.REVISION_COMPACTED,
                    compacted_revision=str(batch.compacted),
                )
            events = replay(batch.changes, routes, dict(batch.states))
            for revision, changed in events.items():
                ordered = sorted(changed.values(), key=lambda e: e.key)
                yield Message(KIND_EVENTS, revision, events=tuple(ordered))
            after = batch.upper
            if after >= batch.current and after >= watcher.since:
                reached[0] = after
                return
