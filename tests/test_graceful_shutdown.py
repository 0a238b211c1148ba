"""SIGTERM with a call in flight: health says NOT_SERVING, new calls are refused, the
in-flight call still completes OK within the grace period, and the pool closes cleanly.

The server is the real `tierset serve` process on a database of its own; the in-flight
call is a write held up by a row lock the test takes and then lets go."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port, make_caller_in, open_channel, start_serve
from tierset.core.authz import Role
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc

GRACE_SECONDS = 5


async def _until(condition, *, seconds: float = 10) -> None:
    """Polls `condition` until it holds, for `seconds` of wall time (however long each
    poll takes on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


def _put(account_id: int, text: str) -> settings_pb2.PutSettingRequest:
    return settings_pb2.PutSettingRequest(
        scope=settings_pb2.Scope(account_id=account_id),
        key="SHUTDOWN.KEY",
        type=settings_pb2.SETTING_TYPE_STRING,
        value=settings_pb2.SettingValue(string_value=text),
    )


async def test_sigterm_drains_the_in_flight_call_and_refuses_new_ones(create_database):
    database_url = await create_database()
    port = free_port()
    process = await start_serve(
        database_url,
        port,
        TIERSET_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        TIERSET_LOG_LEVEL="INFO",
    )
    channel = open_channel(port)
    health = health_pb2_grpc.HealthStub(channel)
    settings = settings_pb2_grpc.SettingsServiceStub(channel)
    accounts = accounts_pb2_grpc.AccountServiceStub(channel)
    locker = None
    authenticated = None
    try:

        async def serving() -> bool:
            try:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                return False
            return True

        await _until(serving)
        # The server migrated its database on start; now a PLATFORM caller can exist there.
        platform = await make_caller_in(database_url, Role.PLATFORM)
        authenticated = open_channel(port, platform.token)
        settings = settings_pb2_grpc.SettingsServiceStub(authenticated)
        accounts = accounts_pb2_grpc.AccountServiceStub(authenticated)
        account = await accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(display_name="shutdown")
        )
        account_id = account.account.id
        await settings.PutSetting(_put(account_id, "before"))

        # Hold the row so the next write is in flight when SIGTERM arrives.
        locker = await asyncpg.connect(database_url)
        lock = locker.transaction()
        await lock.start()
        await locker.execute("SELECT 1 FROM settings WHERE key = 'SHUTDOWN.KEY' FOR UPDATE")
        in_flight = asyncio.ensure_future(settings.PutSetting(_put(account_id, "in flight")))

        async def write_waits_on_the_lock() -> bool:
            return bool(
                await locker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND application_name = 'tierset'"
                )
            )

        await _until(write_waits_on_the_lock)
        watch = health.Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        process.send_signal(signal.SIGTERM)

        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()

        async def new_calls_refused() -> bool:
            try:
                await accounts.GetAccount(
                    accounts_pb2.GetAccountRequest(account_id=account_id), timeout=1
                )
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                    # A call that reached the server just as it began to stop can be
                    # cancelled by gRPC's own shutdown instead, or outlive its 1 s on a
                    # loaded machine; a later one must be refused, well inside the grace.
                    return False
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                return True
            return False

        await _until(new_calls_refused, seconds=3)
        assert not in_flight.done()

        await lock.commit()  # the in-flight write may proceed now, inside the grace period
        done = await asyncio.wait_for(in_flight, timeout=GRACE_SECONDS)
        assert done.version == 2

        output, _ = await asyncio.wait_for(process.communicate(), timeout=GRACE_SECONDS + 10)
        log = output.decode()
        assert process.returncode == 0, log
        assert "shutting down" in log
        assert "database pool closed" in log
        assert "Traceback" not in log
        stored = await locker.fetchrow(
            "SELECT value #>> '{}' AS value, version FROM settings WHERE key = 'SHUTDOWN.KEY'"
        )
        assert (stored["value"], stored["version"]) == ("in flight", 2)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if locker is not None:
            await locker.close()
        await channel.close()
        if authenticated is not None:
            await authenticated.close()
