"""Shared fixtures: one real PostgreSQL and one real gRPC server for the session.

Set TEST_DATABASE_URL to use an existing (disposable) database instead of
starting one. Tests share the server, so each one makes its own accounts,
retailers and keys (see ``new_account``, ``new_retailer`` and ``unique_key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
import uvicorn

from tierset.config import Config
from tierset.embedded import EmbeddedPostgres
from tierset.gateway.serve import gateway_server
from tierset.server import App, start_app
from tierset.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    integrations_pb2_grpc,
    settings_pb2_grpc,
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres | None]:
    """The test session's own PostgreSQL (None when TEST_DATABASE_URL is set)."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    # Not a pytest tmp dir: those are 0700, and the server may run as `postgres`.
    data_dir = Path(tempfile.mkdtemp(prefix="tierset-test-pg-"))
    data_dir.chmod(0o755)
    cluster = EmbeddedPostgres(data_dir, free_port(), durable=False)
    cluster.start()
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_dsn(postgres: EmbeddedPostgres | None) -> str:
    """A DSN with rights to create databases."""
    return os.environ.get("TEST_DATABASE_URL") or postgres.dsn  # type: ignore[union-attr]


@pytest.fixture(scope="session")
async def create_database(admin_dsn: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes empty databases on the test server and drops them at the end; returns DSNs."""
    made: list[str] = []
    admin = await asyncpg.connect(admin_dsn)

    async def make() -> str:
        name = f"tierset_test_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return admin_dsn.rsplit("/", 1)[0] + f"/{name}"

    yield make
    for name in made:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def database_url(create_database: Callable[[], Awaitable[str]]) -> str:
    """The database the session's server uses."""
    return await create_database()


@pytest.fixture(scope="session")
def server_config() -> Config:
    """The session server's configuration: an ephemeral port, a small pool."""
    return Config(
        grpc_address="127.0.0.1:0", pool_min_size=1, pool_max_size=8, shutdown_grace_seconds=2.0
    )


@pytest.fixture(scope="session")
async def server(server_config: Config, database_url: str) -> AsyncIterator[App]:
    """The real gRPC server, migrated and serving."""
    app = await start_app(server_config, database_url)
    yield app
    await app.stop(server_config.shutdown_grace_seconds)


@pytest.fixture(scope="session")
async def channel(server: App) -> AsyncIterator[grpc.aio.Channel]:
    """A real channel to the session server."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture(scope="session")
def settings_stub(channel: grpc.aio.Channel) -> settings_pb2_grpc.SettingsServiceStub:
    return settings_pb2_grpc.SettingsServiceStub(channel)


@pytest.fixture(scope="session")
def accounts_stub(channel: grpc.aio.Channel) -> accounts_pb2_grpc.AccountServiceStub:
    return accounts_pb2_grpc.AccountServiceStub(channel)


@pytest.fixture(scope="session")
def integrations_stub(channel: grpc.aio.Channel) -> integrations_pb2_grpc.IntegrationServiceStub:
    return integrations_pb2_grpc.IntegrationServiceStub(channel)


@pytest.fixture(scope="session")
async def db(server: App) -> asyncpg.Pool:
    """The server's own pool, for tests that look behind the API."""
    return server.pool


@pytest.fixture
async def clean_integrations(db: asyncpg.Pool) -> None:
    """No saved integration: the catalogue holds one configuration per name, shared by tests."""
    await db.execute("DELETE FROM integrations")


_ids = itertools.count(5_000_000)


@pytest.fixture
def next_id() -> Callable[[], int]:
    """Ids no other test uses (within the session)."""
    return lambda: next(_ids)


@pytest.fixture
def unique_key() -> Callable[[str], str]:
    """A setting key no other test uses, so GLOBAL writes do not collide."""
    return lambda stem="KEY": f"{stem}.{uuid.uuid4().hex[:10].upper()}"


@pytest.fixture
def new_account(
    accounts_stub: accounts_pb2_grpc.AccountServiceStub, next_id: Callable[[], int]
) -> Callable[[], Awaitable[int]]:
    """Creates an account through the API; returns its id."""

    async def make() -> int:
        response = await accounts_stub.CreateAccount(
            accounts_pb2.CreateAccountRequest(account_id=next_id(), display_name="Test account")
        )
        return int(response.account.id)

    return make


@pytest.fixture
def new_retailer(
    accounts_stub: accounts_pb2_grpc.AccountServiceStub, next_id: Callable[[], int]
) -> Callable[[int], Awaitable[int]]:
    """Registers a retailer under an account through the API; returns its id."""

    async def make(account_id: int) -> int:
        response = await accounts_stub.CreateRetailer(
            accounts_pb2.CreateRetailerRequest(
                retailer_id=next_id(), account_id=account_id, display_name="Test retailer"
            )
        )
        return int(response.retailer.id)

    return make


@contextlib.asynccontextmanager
async def running_http_server(server: uvicorn.Server) -> AsyncIterator[str]:
    """Serves `server` (uvicorn on a free port) in this event loop; yields its base URL."""
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise AssertionError("the HTTP server stopped before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def running_gateway(config: Config) -> contextlib.AbstractAsyncContextManager[str]:
    """A real REST gateway configured by `config`, serving in this event loop."""
    return running_http_server(gateway_server(config))


@pytest.fixture(scope="session")
def gateway_config(server: App) -> Config:
    """The session gateway's configuration: a free port, calling the session server."""
    return Config(
        http_address="127.0.0.1:0",
        grpc_target=f"127.0.0.1:{server.port}",
        shutdown_grace_seconds=1.0,
    )


@pytest.fixture(scope="session")
async def gateway(gateway_config: Config) -> AsyncIterator[str]:
    """The session's REST gateway; its base URL."""
    async with running_gateway(gateway_config) as base_url:
        yield base_url


@pytest.fixture(scope="session")
async def http(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the session gateway (no proxies from the environment)."""
    async with httpx.AsyncClient(base_url=gateway, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture(scope="session")
def rest_auth_headers() -> dict[str, str]:
    """The credentials every REST call in the tests carries; none until auth (issue 4) lands."""
    return {}
