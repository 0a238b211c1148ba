"""The system under soak, all of its own on 127.0.0.1: a durable PostgreSQL in a temporary
folder, two tierset server processes sharing one gRPC port (SO_REUSEPORT, as
TIERSET_PROCESSES=2 runs them, but without the supervisor, which would stop both when one
dies: here one is killed and the other must carry on), and a REST gateway calling that port.

Every child runs as a real process (``python -m tierset.cli.soak.server``) with its output
in a log file in the scratch folder, and asks the kernel to stop it if the soak dies.
Every wait is bounded.
:meth:`Cluster.emergency_stop` is what the watchdog calls from its thread when the loop is
stuck: SIGKILL to every child, PostgreSQL stopped, nothing awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.ops.embedded import EmbeddedPostgres
from tierset.store.database import Store
from tierset.store.migrate import migrate

HOST = "127.0.0.1"  # the soak only ever talks to what it started itself
READY_WITHIN_SECONDS = 60.0  # generous: a loaded 2-core machine starts Python slowly
SERVERS = 2

# The servers' settings for a soak: short timeouts, a quick health probe, frequent
# PROGRESS (so a watcher reaches the final revision soon after the last write), a short
# grace (a restart is quick).
SERVER_ENV = {
    "TIERSET_POOL_MIN_SIZE": "2",
    "TIERSET_POOL_MAX_SIZE": "10",
    "TIERSET_DB_CONNECT_TIMEOUT_SECONDS": "2",
    "TIERSET_POOL_ACQUIRE_TIMEOUT_SECONDS": "2",
    "TIERSET_DB_COMMAND_TIMEOUT_SECONDS": "5",
    "TIERSET_HEALTH_PROBE_INTERVAL_SECONDS": "0.25",
    "TIERSET_WATCH_PROGRESS_SECONDS": "0.5",
    "TIERSET_SHUTDOWN_GRACE_SECONDS": "1",
    "TIERSET_MIGRATE_ON_START": "false",
    "TIERSET_LOG_LEVEL": "ERROR",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ChildFailed(RuntimeError):
    """A process the soak started did not come up."""


async def until(
    check: Callable[[], Awaitable[bool]],
    within: float,
    what: str,
    *,
    fatal: type[Exception] | None = None,
) -> None:
    """Awaits `check()` until it is true, each try bounded; raises TimeoutError naming `what`
    after `within`. A check that fails is tried again, unless it raised `fatal`."""
    deadline = time.monotonic() + within
    while True:
        try:
            if await asyncio.wait_for(check(), 5):
                return
        except Exception as error:
            if fatal is not None and isinstance(error, fatal):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {within:g} s")
        await asyncio.sleep(0.05)


class Cluster:
    """PostgreSQL, two servers on one port, one gateway; see the module docstring."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="tierset-soak-"))
        self.scratch.chmod(0o755)  # PostgreSQL may run as the postgres user, who must get in
        self.postgres = EmbeddedPostgres(self.scratch / "pg", free_port(), durable=True)
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_ports = [free_port() for _ in range(SERVERS)]
        self.servers: list[asyncio.subprocess.Process | None] = [None] * SERVERS
        self.gateway: asyncio.subprocess.Process | None = None
        self.dsn = ""
        self.token = ""
        self.admin: asyncpg.Pool | None = None
        self._victims = itertools.cycle(range(SERVERS))

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    # -- start and stop --------------------------------------------------------------------

    async def start(self) -> None:
        """Starts everything and makes a PLATFORM user's token for the load."""
        self.dsn = await asyncio.to_thread(self.postgres.start)
        connection = await asyncpg.connect(self.dsn)
        try:
            await migrate(connection)
        finally:
            await connection.close()
        self.admin = await asyncpg.create_pool(self.dsn, min_size=0, max_size=2)
        self.token = await platform_token(self.admin)
        for index in range(SERVERS):
            await self.start_server(index)
        await self.start_gateway()

    async def stop(self) -> None:
        """Stops the children (SIGTERM, then SIGKILL), PostgreSQL, and removes the folder."""
        await asyncio.gather(*(_terminate(p) for p in [*self.servers, self.gateway]))
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.admin.close(), 5)
        await asyncio.to_thread(self.postgres.stop, "immediate")
        shutil.rmtree(self.scratch, ignore_errors=True)

    def emergency_stop(self) -> None:
        """From any thread, awaiting nothing: kill the children, stop PostgreSQL, remove the
        folder."""
        for process in [*self.servers, self.gateway]:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.postgres.stop("immediate")
        shutil.rmtree(self.scratch, ignore_errors=True)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """`query`'s rows from the soak's own connection, retried (bounded) when a fault
        left that connection dead."""
        assert self.admin is not None
        for attempt in range(5):
            try:
                return await asyncio.wait_for(self.admin.fetch(query, *args), 10)
            except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError):
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def _spawn(
        self, name: str, *args: str, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        log = (self.scratch / f"{name}.log").open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *args,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()

    # -- the servers -----------------------------------------------------------------------

    async def start_server(self, index: int) -> None:
        """Starts server `index` on the shared port; returns once it serves."""
        env = {
            **SERVER_ENV,
            "DATABASE_URL": self.dsn,
            "TIERSET_GRPC_ADDRESS": self.grpc_target,
            "TIERSET_METRICS_ADDRESS": f"{HOST}:{self.metrics_ports[index]}",
        }
        self.servers[index] = await self._spawn(
            f"server-{index}", "tierset.cli.soak.server", "grpc", env=env
        )
        url = f"http://{HOST}:{self.metrics_ports[index]}/metrics"
        # Its metrics endpoint starts after the gRPC server does: up means serving.
        await self._ready(self.servers[index], f"server-{index}", lambda: _http_ok(url))

    def next_victim(self) -> int:
        """The server to kill next: each in turn, across runs."""
        return next(self._victims)

    async def kill_server(self, index: int) -> None:
        """SIGKILL to server `index`, and waits until it is gone."""
        process = self.servers[index]
        assert process is not None
        process.kill()
        await asyncio.wait_for(process.wait(), READY_WITHIN_SECONDS)

    async def serving(self) -> None:
        """Returns once fresh connections (landing on either server) all hear SERVING."""

        async def all_serving() -> bool:
            for _ in range(2 * SERVERS):
                async with grpc.aio.insecure_channel(self.grpc_target) as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    return False
            return True

        await until(all_serving, READY_WITHIN_SECONDS, "the servers SERVING")

    # -- the gateway -----------------------------------------------------------------------

    async def start_gateway(self) -> None:
        """Starts the REST gateway; returns once /readyz answers 200."""
        env = {
            "TIERSET_HTTP_ADDRESS": f"{HOST}:{self.http_port}",
            "TIERSET_GRPC_TARGET": self.grpc_target,
            "TIERSET_GATEWAY_METRICS_ADDRESS": "",
            # As the soak's own calls: a bound that catches a hang. The servers' own
            # timeouts (connect and pool acquire 2 s) decide how fast an outage fails; on a
            # loaded machine a call failing over them can take more than the default 5 s.
            "TIERSET_GATEWAY_DEADLINE_SECONDS": "10",
            "TIERSET_SHUTDOWN_GRACE_SECONDS": "1",
            "TIERSET_LOG_LEVEL": "ERROR",
        }
        self.gateway = await self._spawn("gateway", "tierset.cli.soak.server", "gateway", env=env)
        url = f"{self.http_base}/readyz"
        await self._ready(self.gateway, "gateway", lambda: _http_ok(url))

    async def kill_gateway(self) -> None:
        """SIGKILL to the gateway, and waits until it is gone."""
        assert self.gateway is not None
        self.gateway.kill()
        await asyncio.wait_for(self.gateway.wait(), READY_WITHIN_SECONDS)

    async def _ready(
        self,
        process: asyncio.subprocess.Process | None,
        name: str,
        check: Callable[[], Awaitable[bool]],
    ) -> None:
        """Waits until `check()`; a child that exits first, or never gets there, is an
        error carrying the end of its log."""
        assert process is not None

        async def up() -> bool:
            if process.returncode is not None:
                raise ChildFailed(f"{name} exited ({process.returncode})")
            return await check()

        try:
            await until(up, READY_WITHIN_SECONDS, name, fatal=ChildFailed)
        except (TimeoutError, ChildFailed) as error:
            tail = (self.scratch / f"{name}.log").read_text(errors="replace")[-3000:]
            raise ChildFailed(f"{error}; its log ends:\n{tail}") from None

    def log_tail(self, lines: int = 20) -> str:
        """The end of every child's log, for a report that failed."""
        out = []
        for path in sorted(self.scratch.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


async def platform_token(pool: asyncpg.Pool) -> str:
    """An API token of a PLATFORM user made for the soak (in an account of its own)."""
    account = await Store(pool).create_account(None, "soak operator")
    credentials = CredentialStore(pool)
    user = await credentials.create_user(
        account.id, f"soak-{secrets.token_hex(6)}", None, frozenset({Role.PLATFORM})
    )
    return (await credentials.issue(user.id, Kind.API_TOKEN, name="soak")).secret


async def _http_ok(url: str) -> bool:
    async with httpx.AsyncClient(timeout=1, trust_env=False) as http:
        return (await http.get(url)).status_code == 200


async def _terminate(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await asyncio.wait_for(process.wait(), 10)
