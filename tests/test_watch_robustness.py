"""WatchSettings under trouble: a checker compares every stream with the change log and
finds no gap and no duplicate while the listener is killed, across two server processes,
and across a PostgreSQL restart; slow consumers overflow; limits; revocation, expiry and
shutdown end streams. Waits are deadlines on observed state, never timings."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import asyncpg
import grpc
from prometheus_client import REGISTRY

from tests.conftest import make_caller_in, open_channel
from tests.helpers import error_info
from tests.test_listener import cut
from tests.watching import Stream, put, watching
from tierset.api.server import start_app
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.ops.config import Config
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc


async def _logged(db, retailer: int, key: str) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT revision, new_value::text AS v FROM change_log"
        " WHERE level = 'RETAILER' AND scope_id = $1 AND key = $2 ORDER BY revision",
        retailer,
        key,
    )
    return [(r["revision"], json.loads(r["v"])) for r in rows]


async def _received(stream: Stream, count: int) -> list[tuple[int, str]]:
    """(revision, new value) of the next `count` events, with the stream's revisions
    checked to only grow (progress included)."""
    got: list[tuple[int, str]] = []
    last = 0
    while len(got) < count:
        message = await stream.next(skip_progress=False)
        assert message.revision >= last, "revisions went backwards"
        last = message.revision
        for event in message.events:
            got.append((message.revision, json.loads(event.setting.value.json_value)))
    return got


def check_against_log(got: list[tuple[int, str]], logged: list[tuple[int, str]]) -> None:
    """No gap, no duplicate, same order, same values."""
    revisions = [r for r, _ in got]
    assert len(revisions) == len(set(revisions)), "duplicate revisions"
    assert got == logged, "the stream differs from the log"


async def test_no_gap_no_duplicate_while_the_listener_is_killed_on_two_servers(
    platform_caller, settings_stub, db, server, start_server, new_account, new_retailer, unique_key
):
    other = await start_server()
    account = await new_account()
    retailers = [await new_retailer(account) for _ in range(2)]
    key = unique_key("C")
    stubs = [settings_stub, other.settings]
    streams = []
    try:
        for stub in stubs:
            for retailer in retailers:
                context = watching(
                    stub,
                    platform_caller.metadata,
                    scope=settings_pb2.Scope(retailer_id=retailer),
                    keys=[key],
                )
                stream = await context.__aenter__()
                await stream.next()  # the snapshot
                streams.append((context, stream, retailer))
        writes = 30
        for n in range(writes):
            await put(settings_stub, "RETAILER", key, f"v{n}", retailer=retailers[n % 2])
            if n in (5, 17):
                await cut(db, server.listener)
            if n == 11:
                await cut(db, other.app.listener)
        for _, stream, retailer in streams:
            logged = await _logged(db, retailer, key)
            assert len(logged) == writes // 2
            check_against_log(await _received(stream, len(logged)), logged)
    finally:
        for context, _, _ in streams:
            await context.__aexit__(None, None, None)


async def test_no_gap_no_duplicate_across_a_postgresql_restart(own_postgres, start_app_with):
    config = Config(
        grpc_address="127.0.0.1:0",
        pool_min_size=1,
        pool_max_size=4,
        shutdown_grace_seconds=1.0,
        watch_progress_seconds=0.2,
    )
    app = await start_app_with(config, own_postgres.dsn)
    caller = await make_caller_in(own_postgres.dsn, Role.PLATFORM)
    async with open_channel(app.port, caller.token) as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        await accounts.CreateRetailer(
            accounts_pb2.CreateRetailerRequest(
                retailer_id=77, account_id=caller.account_id, display_name="r"
            )
        )
        async with watching(
            stub, caller.metadata, scope=settings_pb2.Scope(retailer_id=77), keys=["K"]
        ) as stream:
            await stream.next()
            for n in range(3):
                await put(stub, "RETAILER", "K", f"a{n}", retailer=77)
            first = await _received(stream, 3)
            own_postgres.stop("fast")
            own_postgres.start()

            async def written() -> None:
                for n in range(3):
                    while True:
                        try:
                            await put(stub, "RETAILER", "K", f"b{n}", retailer=77)
                            break
                        except grpc.aio.AioRpcError as error:
                            assert error.code() is grpc.StatusCode.UNAVAILABLE
                            await asyncio.sleep(0.1)

            async with asyncio.timeout(30):
                await written()
            rest = await _received(stream, 3)
            db = await asyncpg.connect(own_postgres.dsn)
            try:
                check_against_log(first + rest, await _logged(db, 77, "K"))
            finally:
                await db.close()


async def test_a_slow_consumer_overflows_with_the_last_delivered_revision(
    platform_caller, start_server, new_account, new_retailer, unique_key
):
    other = await start_server(watch_buffer_messages=2)
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key("O")
    # The watcher has a connection of its own with a fixed 16 KiB window. On the writer's
    # channel gRPC's bandwidth probe (BDP) grows the window as the puts flow, and in a
    # full suite run 200 unread 4 KB events all fitted in it: nothing backed up.
    watcher = grpc.aio.insecure_channel(
        f"127.0.0.1:{other.app.port}",
        options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)],
    )
    call = settings_pb2_grpc.SettingsServiceStub(watcher).WatchSettings(
        settings_pb2.WatchSettingsRequest(
            scope=settings_pb2.Scope(retailer_id=retailer), keys=[key]
        ),
        metadata=platform_caller.metadata,
    )
    first = await call.read()  # then read nothing: the server's writes back up
    big = "x" * 4000
    # The hub ends the watcher when its queue overflows. The stream's handler, blocked in
    # a write the client does not read, sees that only once the write completes, so the
    # overflow is judged by the drop counter, not by the hub's count of open streams.
    overflows = _sample("tierset_watch_drops_total", why="overflow")
    for n in range(200):
        await put(other.settings, "RETAILER", key, f"{n}{big}", retailer=retailer)
        if _sample("tierset_watch_drops_total", why="overflow") > overflows:
            break
    else:
        raise AssertionError("the stream never overflowed")
    last = first.revision
    while True:
        try:
            message = await call.read()
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.ABORTED
            info = error_info(error)
            assert info.reason == "WATCH_OVERFLOW"
            assert int(info.metadata["revision"]) == last
            break
        assert message is not grpc.aio.EOF
        last = message.revision
    await watcher.close()


async def test_more_streams_than_the_limit_are_refused(platform_caller, start_server, new_account):
    other = await start_server(watch_max_streams=1)
    scope = settings_pb2.Scope(account_id=await new_account())
    async with watching(other.settings, platform_caller.metadata, scope=scope, keys=["A"]) as s:
        await s.next()
        async with watching(
            other.settings, platform_caller.metadata, scope=scope, keys=["A"]
        ) as refused:
            error = await refused.error()
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(error).reason == "TOO_MANY_STREAMS"


async def test_too_many_keys_are_refused(platform_caller, start_server, new_account):
    other = await start_server(watch_max_keys=2)
    scope = settings_pb2.Scope(account_id=await new_account())
    async with watching(
        other.settings, platform_caller.metadata, scope=scope, keys=["A", "B", "C"]
    ) as s:
        error = await s.error()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_revoked_credential_ends_the_stream(server, settings_stub, make_caller, db):
    caller = await make_caller(Role.VIEWER)
    async with watching(
        settings_stub,
        caller.metadata,
        scope=settings_pb2.Scope(account_id=caller.account_id),
        keys=["A"],
    ) as stream:
        await stream.next()
        await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN)
        error = await stream.error()
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_an_expired_access_token_ends_the_stream(settings_stub, make_caller, db):
    caller = await make_caller(Role.VIEWER)
    credentials = CredentialStore(db)
    token = await credentials.issue(caller.user_id, Kind.ACCESS_TOKEN, name="t", ttl_seconds=2)
    metadata = (("authorization", f"Bearer {token.secret}"),)
    async with watching(
        settings_stub, metadata, scope=settings_pb2.Scope(account_id=caller.account_id), keys=["A"]
    ) as stream:
        await stream.next()
        error = await stream.error()
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "CREDENTIALS_EXPIRED"


async def test_another_accounts_scope_is_refused_like_get_settings(
    settings_stub, make_caller, new_account
):
    caller = await make_caller(Role.VIEWER)
    scope = settings_pb2.Scope(account_id=await new_account())
    async with watching(settings_stub, caller.metadata, scope=scope, keys=["A"]) as s:
        error = await s.error()
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_shutdown_ends_streams_unavailable_after_health_is_not_serving(
    platform_caller, server_config, database_url, new_account
):
    app = await start_app(
        dataclasses.replace(server_config, shutdown_grace_seconds=30), database_url
    )
    scope = settings_pb2.Scope(account_id=await new_account())
    async with open_channel(app.port, platform_caller.token) as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        async with watching(stub, platform_caller.metadata, scope=scope, keys=["A"]) as stream:
            await stream.next()
            stopping = asyncio.get_running_loop().create_task(app.stop(30))
            error = await stream.error()
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            from grpc_health.v1 import health_pb2

            status = await app.health.Check(health_pb2.HealthCheckRequest(service=""), None)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            # The stream did not hold the 30 s grace open.
            async with asyncio.timeout(15):
                await stopping


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


async def test_an_idle_stream_gets_progress_with_the_current_revision_and_is_counted(
    platform_caller, start_server, new_account, new_retailer, unique_key
):
    # Nothing changes for the watched key, another key moves the store's revision on:
    # the idle watcher hears PROGRESS carrying that revision, so it can resume cheaply.
    other = await start_server(watch_progress_seconds=0.2)
    account = await new_account()
    retailer = await new_retailer(account)
    watched, elsewhere = unique_key("P"), unique_key("Q")
    progress_before = _sample("tierset_watch_messages_total", kind="PROGRESS")
    async with watching(
        other.settings,
        platform_caller.metadata,
        scope=settings_pb2.Scope(retailer_id=retailer),
        keys=[watched],
    ) as stream:
        first = await stream.next()
        assert _sample("tierset_watch_streams") >= 1  # this one, at least, is open
        await put(other.settings, "ACCOUNT", elsewhere, 1, account=account)
        current = (
            await other.settings.GetSettings(
                settings_pb2.GetSettingsRequest(
                    scope=settings_pb2.Scope(account_id=account), keys=[elsewhere]
                ),
                metadata=platform_caller.metadata,
            )
        ).revision
        while True:
            message = await stream.next(skip_progress=False)
            assert message.kind == settings_pb2.WatchSettingsResponse.KIND_PROGRESS
            assert not message.events and message.revision >= first.revision
            if message.revision >= current:
                break
    assert _sample("tierset_watch_messages_total", kind="PROGRESS") > progress_before
