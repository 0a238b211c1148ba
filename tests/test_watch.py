"""WatchSettings against the real server: the first message, the event matrix across
levels (keys and prefixes), resume, refusals. Waits are deadlines on messages, never
timings: the absence of an event is shown by the next message being a later one."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.helpers import error_info
from tests.watching import Response, delete, events, put, values, watching
from tierset.core.values import Level, SettingType
from tierset.services.watch import WatchHub, WatchSpec
from tierset.store.database import ScopeRef, Store
from tierset.store.watch import WatchStore
from tierset.v1 import settings_pb2


async def test_snapshot_then_effective_events_for_a_retailer(
    platform_caller, settings_stub, db, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    other_retailer = await new_retailer(await new_account())
    key, marker = unique_key("W"), unique_key("M")
    await put(settings_stub, "GLOBAL", key, "g1")
    await put(settings_stub, "RETAILER", key, "r1", retailer=retailer)
    async with watching(
        settings_stub,
        platform_caller.metadata,
        scope=settings_pb2.Scope(retailer_id=retailer),
        keys=[key, marker],
    ) as stream:
        first = await stream.next()
        assert first.kind == Response.KIND_SNAPSHOT
        assert values(first) == {key: ("SETTING_LEVEL_RETAILER", "r1")}
        # A GLOBAL change the retailer overrides, an ACCOUNT one it overrides, another
        # account's retailer: nothing. Then a marker proves nothing came before it.
        await put(settings_stub, "GLOBAL", key, "g2")
        await put(settings_stub, "ACCOUNT", key, "a1", account=account)
        await put(settings_stub, "RETAILER", key, "x", retailer=other_retailer)
        await put(settings_stub, "GLOBAL", marker, 1)
        message = await stream.next()
        assert message.kind == Response.KIND_EVENTS
        assert events(message) == [(marker, ("SETTING_LEVEL_GLOBAL", 1), None)]
        assert message.revision > first.revision
        # Deleting the override sends the inherited (ACCOUNT) value.
        revision = await delete(db, "RETAILER", key, retailer=retailer)
        message = await stream.next()
        assert message.revision == revision
        assert events(message) == [
            (key, ("SETTING_LEVEL_ACCOUNT", "a1"), ("SETTING_LEVEL_RETAILER", "r1"))
        ]
        # Now the account's value reaches the retailer; deleting it the GLOBAL one.
        await put(settings_stub, "ACCOUNT", key, "a2", account=account)
        assert events(await stream.next()) == [
            (key, ("SETTING_LEVEL_ACCOUNT", "a2"), ("SETTING_LEVEL_ACCOUNT", "a1"))
        ]
        await delete(db, "ACCOUNT", key, account=account)
        assert events(await stream.next()) == [
            (key, ("SETTING_LEVEL_GLOBAL", "g2"), ("SETTING_LEVEL_ACCOUNT", "a2"))
        ]
        await delete(db, "GLOBAL", key)
        assert events(await stream.next()) == [(key, None, ("SETTING_LEVEL_GLOBAL", "g2"))]


async def test_an_account_watch_sees_account_and_global_but_not_its_retailers(
    platform_caller, settings_stub, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key("W")
    async with watching(
        settings_stub,
        platform_caller.metadata,
        scope=settings_pb2.Scope(account_id=account),
        keys=[key],
    ) as stream:
        assert values(await stream.next()) == {}
        await put(settings_stub, "RETAILER", key, "r", retailer=retailer)
        await put(settings_stub, "GLOBAL", key, "g")
        assert events(await stream.next()) == [(key, ("SETTING_LEVEL_GLOBAL", "g"), None)]
        await put(settings_stub, "ACCOUNT", key, "a", account=account)
        assert events(await stream.next()) == [
            (key, ("SETTING_LEVEL_ACCOUNT", "a"), ("SETTING_LEVEL_GLOBAL", "g"))
        ]
        await put(settings_stub, "GLOBAL", key, "g2")  # shadowed
        await put(settings_stub, "ACCOUNT", key, "a2", account=account)
        message = await stream.next()
        assert events(message) == [
            (key, ("SETTING_LEVEL_ACCOUNT", "a2"), ("SETTING_LEVEL_ACCOUNT", "a"))
        ]


async def test_a_prefix_watch_sees_keys_created_and_removed_under_it(
    platform_caller, settings_stub, db, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    prefix = unique_key("P") + "."
    await put(settings_stub, "ACCOUNT", prefix + "A", 1, account=account)
    async with watching(
        settings_stub,
        platform_caller.metadata,
        scope=settings_pb2.Scope(retailer_id=retailer),
        key_prefix=prefix,
    ) as stream:
        assert values(await stream.next()) == {prefix + "A": ("SETTING_LEVEL_ACCOUNT", 1)}
        await put(settings_stub, "RETAILER", prefix + "B", 2, retailer=retailer)
        assert events(await stream.next()) == [(prefix + "B", ("SETTING_LEVEL_RETAILER", 2), None)]
        await put(settings_stub, "GLOBAL", prefix[:-1] + "X", 0)  # not under the prefix
        await delete(db, "ACCOUNT", prefix + "A", account=account)
        assert events(await stream.next()) == [(prefix + "A", None, ("SETTING_LEVEL_ACCOUNT", 1))]


async def test_resuming_from_a_revision_replays_exactly_what_an_unbroken_stream_saw(
    platform_caller, settings_stub, db, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    key1, key2 = unique_key("R"), unique_key("R")
    scope = settings_pb2.Scope(retailer_id=retailer)
    async with watching(
        settings_stub, platform_caller.metadata, scope=scope, keys=[key1, key2]
    ) as unbroken:
        start = (await unbroken.next()).revision
        await put(settings_stub, "GLOBAL", key1, 1)
        await put(settings_stub, "ACCOUNT", key1, 2, account=account)
        await put(settings_stub, "GLOBAL", key1, 3)  # shadowed: no event
        await put(settings_stub, "RETAILER", key2, 4, retailer=retailer)
        await delete(db, "ACCOUNT", key1, account=account)
        seen = [await unbroken.next() for _ in range(4)]
    async with watching(
        settings_stub,
        platform_caller.metadata,
        scope=scope,
        keys=[key1, key2],
        start_revision=start,
    ) as resumed:
        replayed = [await resumed.next() for _ in range(4)]
        assert [(m.revision, events(m)) for m in replayed] == [
            (m.revision, events(m)) for m in seen
        ]
        # Then live, with nothing in between.
        await put(settings_stub, "RETAILER", key1, 5, retailer=retailer)
        live = await resumed.next()
        assert live.revision > replayed[-1].revision
        assert events(live) == [(key1, ("SETTING_LEVEL_RETAILER", 5), ("SETTING_LEVEL_GLOBAL", 3))]


async def test_the_hub_reads_the_log_once_and_resolves_once_per_doorbell(
    platform_caller, server, settings_stub, new_account, new_retailer, unique_key
):
    hub = server.watch_hub
    key = unique_key("F")
    accounts = [await new_account() for _ in range(3)]
    retailers = [await new_retailer(a) for a in accounts for _ in range(2)]
    scopes = [settings_pb2.Scope(account_id=a) for a in accounts] + [
        settings_pb2.Scope(retailer_id=r) for r in retailers
    ]
    streams = []
    try:
        for scope in scopes:
            context = watching(settings_stub, platform_caller.metadata, scope=scope, keys=[key])
            streams.append((context, await context.__aenter__()))
        for _, stream in streams:
            await stream.next()
        reads, states = hub.log_reads, hub.state_reads
        await put(settings_stub, "GLOBAL", key, "all")
        for _, stream in streams:
            assert events(await stream.next()) == [(key, ("SETTING_LEVEL_GLOBAL", "all"), None)]
        assert (hub.log_reads - reads, hub.state_reads - states) == (1, 1)
    finally:
        for context, _ in streams:
            await context.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"keys": ["A"], "key_prefix": "A"}, "key_prefix"),
        ({}, "keys"),
        ({"keys": ["A", "A"]}, "keys[1]"),
        ({"keys": ["bad key"]}, "keys[0]"),
        ({"keys": ["A"], "start_revision": -1}, "start_revision"),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    platform_caller, settings_stub, new_account, request_fields, field
):
    from tests.helpers import field_violations

    account = await new_account()
    async with watching(
        settings_stub,
        platform_caller.metadata,
        scope=settings_pb2.Scope(account_id=account),
        **request_fields,
    ) as stream:
        error = await stream.error()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(error)


# The largest int64 too: the replay's first window (start + its size) must not overflow
# the database's bigint (it did: a DataError where the contract says FUTURE_REVISION).
@pytest.mark.parametrize("ahead", [10, None], ids=["ahead", "int64-max"])
async def test_a_compacted_or_future_start_is_refused(
    platform_caller, settings_stub, db, new_account, unique_key, ahead
):
    account = await new_account()
    current, compacted = await db.fetchrow(
        "SELECT revision, compacted_revision FROM revision_counter"
    )
    scope = settings_pb2.Scope(account_id=account)
    async with watching(
        settings_stub,
        platform_caller.metadata,
        scope=scope,
        keys=["A"],
        start_revision=2**63 - 1 if ahead is None else current + ahead,
    ) as s:
        error = await s.error()
    assert error.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error_info(error).reason == "FUTURE_REVISION"
    if compacted > 0:
        async with watching(
            settings_stub,
            platform_caller.metadata,
            scope=scope,
            keys=["A"],
            start_revision=compacted - 1,
        ) as s:
            error = await s.error()
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == "REVISION_COMPACTED"


class _GatedWatchStore(WatchStore):
    """The real store, but `current()` waits for the test's go-ahead: the hub's jump (it
    has no watcher, so it skips to the current revision) is held in flight."""

    def __init__(self, pool) -> None:
        super().__init__(pool)
        self.asked = asyncio.Event()
        self.go = asyncio.Event()

    async def current(self) -> tuple[int, int]:
        self.asked.set()
        await self.go.wait()
        return await super().current()


async def test_a_watcher_registering_while_the_idle_hub_jumps_misses_nothing(
    db, new_account, unique_key
):
    """The hub with no watcher jumps to the current revision. A watcher registering while
    that read is in flight must not be covered from the old revision: the jump would then
    skip a change committed meanwhile, an event it is never offered (seen under load as a
    stream hearing only PROGRESS after a write)."""
    store = _GatedWatchStore(db)
    hub = WatchHub(store, max_streams=10, buffer_messages=10)
    account, key = await new_account(), unique_key()
    jumping = asyncio.ensure_future(hub.catch_up())
    await asyncio.wait_for(store.asked.wait(), 10)

    watcher = hub.register(WatchSpec(None, account, frozenset({key}), None))
    written = await Store(db).write(ScopeRef(Level.ACCOUNT, account), key, SettingType.INTEGER, "7")
    store.go.set()
    await asyncio.wait_for(jumping, 10)
    await asyncio.wait_for(hub.catch_up(), 10)  # the write's doorbell

    await asyncio.wait_for(watcher.covered.wait(), 10)
    offered = await watcher.next(0)
    # Either the stream's own start (a snapshot at or after `since`) holds the write, or
    # the hub offers its event: never neither.
    assert watcher.since >= written.revision or (
        offered is not None and offered.revision == written.revision
    ), (watcher.since, written.revision, offered)
    hub.unregister(watcher)
