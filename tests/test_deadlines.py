"""Deadlines and timeouts: a blocked statement never holds a pool connection for long.

Each test starts its own server with a one-connection pool, so a connection that was not
given back would make the very next call wait: "the next call works" proves it was freed.
A row lock held by the test's own connection is the slow statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from tests.conftest import open_channel
from tests.helpers import error_info
from tierset.ops.config import Config
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc


def _put(account_id: int, key: str, text: str) -> settings_pb2.PutSettingRequest:
    return settings_pb2.PutSettingRequest(
        scope=settings_pb2.Scope(account_id=account_id),
        key=key,
        type=settings_pb2.SETTING_TYPE_STRING,
        value=settings_pb2.SettingValue(string_value=text),
    )


@contextlib.asynccontextmanager
async def row_locked(dsn: str, key: str) -> AsyncIterator[None]:
    """Holds a lock on every row of `key` until the block ends."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("SELECT 1 FROM settings WHERE key = $1 FOR UPDATE", key)
            yield
    finally:
        await connection.close()


async def _lock_waiters(dsn: str, key: str) -> int:
    """Backends of the server blocked on a lock while writing `key`."""
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tierset' "
                "AND wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
    finally:
        await connection.close()


async def _one_connection_server(start_app_with, database_url, token, *, statement_timeout_ms: int):
    config = Config(
        grpc_address="127.0.0.1:0",
        pool_min_size=1,
        pool_max_size=1,
        statement_timeout_ms=statement_timeout_ms,
        pool_acquire_timeout_seconds=2.0,
        shutdown_grace_seconds=1.0,
    )
    app = await start_app_with(config, database_url)
    channel = open_channel(app.port, token)
    return channel, settings_pb2_grpc.SettingsServiceStub(channel)


@pytest.fixture
async def account_and_key(accounts_stub, settings_stub, next_id, unique_key):
    account_id = next_id()
    await accounts_stub.CreateAccount(
        accounts_pb2.CreateAccountRequest(account_id=account_id, display_name="deadlines")
    )
    key = unique_key("SLOW")
    await settings_stub.PutSetting(_put(account_id, key, "before"))
    return account_id, key


async def test_client_deadline_cancels_the_blocked_statement_and_frees_the_connection(
    start_app_with, database_url, account_and_key, platform_caller
):
    account_id, key = account_and_key
    # A statement timeout far beyond the test: only the deadline can end the wait.
    channel, stub = await _one_connection_server(
        start_app_with, database_url, platform_caller.token, statement_timeout_ms=60_000
    )
    async with channel:
        async with row_locked(database_url, key):
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.PutSetting(_put(account_id, key, "too late"), timeout=0.5)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 3

            # The server gave up its statement too, while the lock is still held...
            for _ in range(50):
                if await _lock_waiters(database_url, key) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await _lock_waiters(database_url, key) == 0
            # ...and its only connection is back in the pool for the next call.
            other = await stub.PutSetting(_put(account_id, key + ".OTHER", "fine"), timeout=5)
            assert other.version == 1

        # The abandoned write was rolled back, not applied late.
        read = await stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(account_id=account_id), keys=[key]
            )
        )
        assert (read.settings[0].value.string_value, read.settings[0].version) == ("before", 1)


async def test_statement_timeout_ends_a_blocked_call_without_a_client_deadline(
    start_app_with, database_url, account_and_key, platform_caller
):
    account_id, key = account_and_key
    channel, stub = await _one_connection_server(
        start_app_with, database_url, platform_caller.token, statement_timeout_ms=300
    )
    async with channel, row_locked(database_url, key):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.PutSetting(_put(account_id, key, "blocked"))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(raised.value).reason == "BACKEND_UNAVAILABLE"
        assert time.monotonic() - started < 5
        other = await stub.PutSetting(_put(account_id, key + ".OTHER", "fine"), timeout=5)
        assert other.version == 1


async def test_a_starved_pool_answers_unavailable_after_the_acquire_timeout(
    start_app_with, database_url, account_and_key, platform_caller
):
    account_id, key = account_and_key
    channel, stub = await _one_connection_server(
        start_app_with, database_url, platform_caller.token, statement_timeout_ms=60_000
    )
    async with channel:
        async with row_locked(database_url, key):
            # The only connection waits on the lock; the next call cannot get one.
            blocked = asyncio.ensure_future(stub.PutSetting(_put(account_id, key, "holds it")))
            for _ in range(50):
                if await _lock_waiters(database_url, key):
                    break
                await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.PutSetting(_put(account_id, key + ".OTHER", "starved"))
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert 1.0 < time.monotonic() - started < 5
        # The lock is gone: the first call completes, and the pool serves again.
        assert (await blocked).version == 2
        await accounts_pb2_grpc.AccountServiceStub(channel).GetAccount(
            accounts_pb2.GetAccountRequest(account_id=account_id)
        )
