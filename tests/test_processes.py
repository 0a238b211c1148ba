"""TIERSET_PROCESSES: several server processes share one port, each with its own cache."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import grpc

from tests.conftest import free_port, make_caller_in
from tierset import client
from tierset.core.authz import Role
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc

DEADLINE_SECONDS = 30.0


async def serve_two_processes(dsn: str, address: str) -> asyncio.subprocess.Process:
    """`tierset serve` with TIERSET_PROCESSES=2 on `address` (no metrics endpoint)."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "TIERSET_GRPC_ADDRESS": address,
        "TIERSET_PROCESSES": "2",
        "TIERSET_METRICS_ADDRESS": "",
        "TIERSET_SHUTDOWN_GRACE_SECONDS": "1",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        "serve",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_two_processes_serve_one_port_and_stop_on_sigterm(create_database):
    dsn = await create_database()
    address = f"127.0.0.1:{free_port()}"
    process = await serve_two_processes(dsn, address)
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            await client.wait_until_serving(address)
        platform = await make_caller_in(dsn, Role.PLATFORM)
        database = await asyncpg.connect(dsn)
        try:
            # Each worker holds its own listener: both bound the port and run.
            deadline = time.monotonic() + DEADLINE_SECONDS
            while (
                listeners := await database.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database()"
                    " AND application_name = 'tierset-listener'"
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


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_workers_stop_when_their_supervisor_is_killed(create_database):
    dsn = await create_database()
    address = f"127.0.0.1:{free_port()}"
    process = await serve_two_processes(dsn, address)
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            await client.wait_until_serving(address)
        workers = [pid for pid in _children(process.pid) if _is_worker(pid)]
        assert len(workers) == 2, workers

        process.kill()  # no chance to stop its workers itself
        await process.wait()

        deadline = time.monotonic() + DEADLINE_SECONDS
        while _any_alive(workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            await asyncio.sleep(0.1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _is_worker(pid: int) -> bool:
    # A spawned worker runs spawn_main; the spawn context's resource tracker does not.
    return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _any_alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid) for pid in pids)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
