"""The read cache: coherent across server processes through PostgreSQL LISTEN/NOTIFY.

The session server is one replica; `start_server` starts others on the same
database, each with its own pool, cache and listener. Cross-process
visibility is awaited with a deadline (never timed: speed is `make bench`'s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import pytest

from tierset.cache.reads import CHANNEL, ResolutionCache
from tierset.core.values import Level, SettingType
from tierset.store.database import Resolution, ScopeRef, Store, StoredSetting
from tierset.v1 import accounts_pb2, settings_pb2

DEADLINE_SECONDS = 10.0


def scope_proto(scope: ScopeRef) -> settings_pb2.Scope:
    if scope.level is Level.ACCOUNT:
        return settings_pb2.Scope(account_id=scope.id)
    return settings_pb2.Scope(retailer_id=scope.id)


async def put(stub, scope: ScopeRef | None, key: str, value: int) -> None:
    """Writes an INTEGER setting at `scope` (None: GLOBAL)."""
    fields = dict(
        key=key,
        type=settings_pb2.SETTING_TYPE_INTEGER,
        value=settings_pb2.SettingValue(integer_value=value),
    )
    if scope is None:
        await stub.SetGlobal(settings_pb2.SetGlobalRequest(**fields))
    else:
        await stub.PutSetting(settings_pb2.PutSettingRequest(scope=scope_proto(scope), **fields))


async def read(stub, scope: ScopeRef, key: str) -> int | None:
    """The effective INTEGER value of `key` at `scope`, or None when it exists nowhere."""
    reply = await stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=scope_proto(scope), keys=[key])
    )
    return reply.settings[0].value.integer_value if reply.settings else None


async def eventually(stub, scope: ScopeRef, key: str, expected: int) -> None:
    """Polls until `stub` reads `expected`, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (seen := await read(stub, scope, key)) != expected:
        assert time.monotonic() < deadline, f"{scope} still reads {seen}, not {expected}"
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def drain_notifications(db, cache: ResolutionCache, before: int, sent: int) -> None:
    """Waits until `cache` has applied the `sent` notifications sent since it counted `before`.

    Notifications reach a listener in commit order, so once a marker (for a
    retailer that cannot exist) sent after them is applied, they all have been.
    """
    target = before + sent + 1
    await db.execute("SELECT pg_notify('tierset_settings', 'r:0')")
    await until(lambda: cache.invalidations >= target, "notifications to arrive")


async def test_a_write_is_read_at_once_by_its_writer_and_soon_by_another_process(
    settings_stub, server, start_server, new_account, unique_key, db
):
    other = await start_server()
    account = ScopeRef(Level.ACCOUNT, await new_account())
    key = unique_key("CACHE")
    before = other.app.cache.invalidations
    await put(settings_stub, account, key, 1)
    await eventually(other.settings, account, key, 1)
    await eventually(settings_stub, account, key, 1)
    # The put's notification may still be on its way when the second process first reads
    # the new value, and a fill raced by an invalidation is not kept (it once failed this
    # test): once it is applied, one read fills the cache and the next is served from it.
    await drain_notifications(db, other.app.cache, before, sent=1)
    assert await read(other.settings, account, key) == 1
    hits = other.app.cache.hits
    assert await read(other.settings, account, key) == 1
    assert other.app.cache.hits == hits + 1, "the second process serves the read from its cache"

    await put(settings_stub, account, key, 2)
    assert await read(settings_stub, account, key) == 2, "the writer sees its write at once"
    await eventually(other.settings, account, key, 2)


@pytest.mark.parametrize(
    ("written", "changed"),
    [
        ("GLOBAL", {"account", "retailer", "sibling", "other_account", "other_retailer"}),
        ("account", {"account", "retailer", "sibling"}),
        ("retailer", {"retailer"}),
    ],
)
async def test_an_invalidation_reaches_exactly_the_scopes_a_write_affects(
    written, changed, settings_stub, db, start_server, new_account, new_retailer, unique_key
):
    other = await start_server()
    cache = other.app.cache
    account, other_account = await new_account(), await new_account()
    scopes = {
        "account": ScopeRef(Level.ACCOUNT, account),
        "retailer": ScopeRef(Level.RETAILER, await new_retailer(account)),
        "sibling": ScopeRef(Level.RETAILER, await new_retailer(account)),
        "other_account": ScopeRef(Level.ACCOUNT, other_account),
        "other_retailer": ScopeRef(Level.RETAILER, await new_retailer(other_account)),
    }
    key = unique_key("INVALIDATE")
    before = cache.invalidations
    await put(settings_stub, None, key, 1)
    await drain_notifications(db, cache, before, sent=1)
    for scope in scopes.values():
        assert await read(other.settings, scope, key) == 1
        assert ResolutionCache.key(scope, [key]) in cache

    before = cache.invalidations
    await put(settings_stub, None if written == "GLOBAL" else scopes[written], key, 2)
    await drain_notifications(db, cache, before, sent=1)

    for name, scope in scopes.items():
        cached = ResolutionCache.key(scope, [key]) in cache
        assert cached is (name not in changed), f"{name} cached: {cached}"
        assert await read(other.settings, scope, key) == (2 if name in changed else 1), name


async def test_a_lost_listener_drops_the_cache_and_reads_are_never_stale(
    settings_stub, db, start_server, new_account, unique_key
):
    other = await start_server()
    cache, listener = other.app.cache, other.app.listener
    account = ScopeRef(Level.ACCOUNT, await new_account())
    key = unique_key("LISTENER")
    before = cache.invalidations
    await put(settings_stub, account, key, 1)
    await drain_notifications(db, cache, before, sent=1)
    assert await read(other.settings, account, key) == 1
    assert ResolutionCache.key(account, [key]) in cache
    lost_pid = listener.backend_pid

    # Cut the listener and change the value with the notifying trigger off, so
    # that only dropping the cache on the loss can keep the other process fresh.
    async with db.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL session_replication_role = replica")
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", lost_pid)
        await connection.execute(
            "UPDATE settings SET value = '3', version = version + 1"
            " WHERE level = 'ACCOUNT' AND account_id = $1 AND key = $2",
            account.id,
            key,
        )
    await until(lambda: listener.backend_pid != lost_pid, "the process to notice the loss")

    # From the moment it noticed, through reconnecting, every read is fresh.
    reads = []
    while listener.backend_pid is None or not cache.enabled:
        reads.append(await read(other.settings, account, key))
    reads.append(await read(other.settings, account, key))
    assert set(reads) == {3}
    assert listener.backend_pid not in (None, lost_pid)

    # Back and rebuilt: it caches again, and hears about writes again.
    hits = cache.hits
    assert await read(other.settings, account, key) == 3
    assert cache.hits == hits + 1
    await put(settings_stub, account, key, 4)
    await eventually(other.settings, account, key, 4)


async def test_a_retailer_registered_after_a_not_found_read_becomes_readable(
    settings_stub, start_server, new_account, next_id, unique_key
):
    other = await start_server()
    account = await new_account()
    retailer = ScopeRef(Level.RETAILER, next_id())
    key = unique_key("LATE")
    await put(settings_stub, ScopeRef(Level.ACCOUNT, account), key, 7)
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await read(other.settings, retailer, key)
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND

    await other.accounts.CreateRetailer(
        accounts_pb2.CreateRetailerRequest(
            retailer_id=retailer.id, account_id=account, display_name="Late"
        )
    )
    assert await read(other.settings, retailer, key) == 7


async def test_the_cache_keeps_at_most_its_configured_entries_dropping_the_oldest(
    start_server, new_account, unique_key
):
    other = await start_server(cache_max_entries=2)
    scopes = [ScopeRef(Level.ACCOUNT, await new_account()) for _ in range(3)]
    key = unique_key("BOUND")
    for scope in scopes:
        assert await read(other.settings, scope, key) is None
    assert len(other.app.cache) == 2
    assert ResolutionCache.key(scopes[0], [key]) not in other.app.cache
    assert ResolutionCache.key(scopes[2], [key]) in other.app.cache


async def test_a_cache_size_of_zero_turns_the_cache_off(
    settings_stub, start_server, new_account, unique_key
):
    other = await start_server(cache_max_entries=0)
    # The process's listener stays (revocations need it), but nothing follows settings.
    assert other.app.cache is None and CHANNEL not in other.app.listener.channels
    account = ScopeRef(Level.ACCOUNT, await new_account())
    key = unique_key("OFF")
    await put(settings_stub, account, key, 5)
    assert await read(other.settings, account, key) == 5


def test_a_read_that_raced_an_invalidation_is_not_stored():
    cache = ResolutionCache(10)
    cache.enable()
    key = ResolutionCache.key(ScopeRef(Level.ACCOUNT, 1), ["K"])
    started_at = cache.generation  # the read asks the database...
    cache.invalidate("a:1")  # ...a write's notification lands meanwhile...
    cache.put(key, Resolution(account_id=1, settings=[]), started_at)  # ...its answer arrives
    assert key not in cache
    cache.put(key, Resolution(account_id=1, settings=[]), cache.generation)
    assert key in cache


def _resolution_of(value_bytes: int) -> Resolution:
    setting = StoredSetting(
        id=1,
        key="BIG",
        type=SettingType.LOB,
        value="x" * value_bytes,
        level=Level.ACCOUNT,
        version=1,
        update_time=datetime.now(UTC),
    )
    return Resolution(account_id=1, settings=[setting])


def test_the_cache_is_bounded_by_memory_not_only_by_entries():
    cache = ResolutionCache(max_entries=1000, max_bytes=800_000)
    cache.enable()
    keys = [ResolutionCache.key(ScopeRef(Level.ACCOUNT, 1), [f"K{n}"]) for n in range(10)]
    for key in keys:  # ten entries of ~80 KB each against an 800 KB budget
        cache.put(key, _resolution_of(40_000), cache.generation)

    assert cache.bytes <= cache.max_bytes
    assert len(cache) == 800_000 // ResolutionCache.weight(_resolution_of(40_000)) < 10
    assert keys[-1] in cache and keys[0] not in cache  # the oldest went first


def test_an_entry_too_big_for_its_share_is_not_cached():
    cache = ResolutionCache(max_entries=1000, max_bytes=800_000)
    cache.enable()
    small = ResolutionCache.key(ScopeRef(Level.ACCOUNT, 1), ["SMALL"])
    big = ResolutionCache.key(ScopeRef(Level.ACCOUNT, 1), ["BIG"])
    cache.put(small, _resolution_of(10), cache.generation)

    cache.put(big, _resolution_of(60_000), cache.generation)  # ~120 KB > 800 KB / 8

    assert big not in cache and small in cache
    cache.clear()
    assert cache.bytes == 0


async def test_deletes_and_restores_reach_every_cache_through_the_notification(
    settings_stub, db, new_account, new_retailer, unique_key
):
    # Made by a Store of its own, as another process's would be: only the NOTIFY that the
    # settings triggers (0003) send on DELETE as on INSERT and UPDATE can tell this server.
    store = Store(db)
    account = await new_account()
    retailer = ScopeRef(Level.RETAILER, await new_retailer(account))
    key = unique_key("CACHE")
    await store.write(ScopeRef(Level.ACCOUNT, account), key, SettingType.INTEGER, "1")
    await store.write(retailer, key, SettingType.INTEGER, "2")
    mark = (await store.current_revision())[0]
    await eventually(settings_stub, retailer, key, 2)  # cached now

    await store.delete(retailer, key)
    await eventually(settings_stub, retailer, key, 1)  # inherited from the account
    await eventually(settings_stub, retailer, key, 1)  # and cached again
    await store.restore(retailer, [key], mark)
    await eventually(settings_stub, retailer, key, 2)


async def test_a_cached_answer_is_the_same_response_as_the_first(
    server, settings_stub, new_account, new_retailer, unique_key
):
    # A hit answers the bytes serialised on the miss; they must be the very response a
    # fresh resolution builds, revision and every field included, for one key and many.
    account = await new_account()
    retailer = await new_retailer(account)
    keys = [unique_key("CACHE.SAME") for _ in range(10)]
    for n, key in enumerate(keys):
        await put(settings_stub, ScopeRef(Level.ACCOUNT, account), key, n)
    for wanted in (keys[:1], keys):
        request = settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(retailer_id=retailer), keys=wanted
        )
        first = await settings_stub.GetSettings(request)
        assert server.cache is not None and len(server.cache) > 0
        hits = [await settings_stub.GetSettings(request) for _ in range(3)]
        assert all(hit == first for hit in hits)
        assert [s.key for s in first.settings] == wanted
        assert first.revision > 0
