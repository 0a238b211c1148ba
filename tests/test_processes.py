"""TIERSET_PROCESSES: several server processes share one port, each with its own cache."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port, make_caller_in
from tierset.authz import Role
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc

DEADLINE_SECONDS = 30.0


async def wait_serving(address: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.aio.AioRpcError:
            pass
        assert time.monotonic() < deadline, "the servers did not start"
        await asyncio.sleep(0.2)


async def test_two_processes_serve_one_port_and_stop_on_sigterm(create_database):
    dsn = await create_database()
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "TIERSET_GRPC_ADDRESS": address,
        "TIERSET_PROCESSES": "2",
        "TIERSET_SHUTDOWN_GRACE_SECONDS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        "serve",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_serving(address)
        platform = await make_caller_in(dsn, Role.PLATFORM)
        database = await asyncpg.connect(dsn)
        try:
            # Each worker holds its own cache listener: both bound the port and run.
            deadline = time.monotonic() + DEADLINE_SECONDS
            while (
                listeners := await database.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database()"
                    " AND application_name = 'tierset-cache-listener'"
                )
            ) != 2:
                assert time.monotonic() < deadline, f"{listeners} listeners, not 2"
                await asyncio.sleep(0.2)
        finally:
            await database.close()

        # Many connections (one per channel) spread over the workers; each answers.
        for n in range(6):
            async with grpc.aio.insecure_channel(
                address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                account = 7_000_000 + n
                await accounts_pb2_grpc.AccountServiceStub(channel).CreateAccount(
                    accounts_pb2.CreateAccountRequest(account_id=account, display_name="P"),
                    metadata=platform.metadata,
                )
                reply = await settings_pb2_grpc.SettingsServiceStub(channel).GetSettings(
                    settings_pb2.GetSettingsRequest(
                        scope=settings_pb2.Scope(account_id=account), keys=["NONE"]
                    ),
                    metadata=platform.metadata,
                )
                assert list(reply.settings) == []

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), DEADLINE_SECONDS) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
