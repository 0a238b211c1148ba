"""Shared fixtures: one real PostgreSQL and one real gRPC server for the session.

Set TEST_DATABASE_URL to use an existing (disposable) database instead of
starting one. Tests share the server, so each one makes its own accounts,
retailers and keys (see ``new_account``, ``new_retailer`` and ``unique_key``).

Every call needs credentials. The session ``channel`` (and the stubs over it)
sends a PLATFORM user's API token unless a call passes its own
``authorization`` metadata; ``make_caller`` makes a user of any role in a
fresh (or given) account and returns its ``metadata`` to pass per call;
``anonymous_channel`` sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import uvicorn
from hypothesis import settings as hypothesis_settings
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tierset import client
from tierset.api.server import App, start_app
from tierset.auth.credentials import CredentialStore, Kind
from tierset.cli.soak.cluster import Cluster
from tierset.core.authz import Role
from tierset.gateway.serve import gateway_server
from tierset.ops.config import Config, Secret
from tierset.ops.embedded import EmbeddedPostgres
from tierset.store.database import Store
from tierset.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    integrations_pb2_grpc,
    settings_pb2_grpc,
)

# Examples run against a real server: no per-example deadline (a shared CI box is
# slow sometimes), and no example database written into the checkout.
hypothesis_settings.register_profile("tierset", deadline=None, database=None)
hypothesis_settings.load_profile("tierset")


def open_channel(port: int, token: str | None = None) -> grpc.aio.Channel:
    """A channel to a tierset server on 127.0.0.1; every test channel is made here.

    With `token`, calls that bring no `authorization` of their own send it as a Bearer.
    """
    return client.insecure_channel(f"127.0.0.1:{port}", token)


async def start_serve(database_url: str, port: int, **env: str) -> asyncio.subprocess.Process:
    """A real `tierset serve` on 127.0.0.1:`port`, stdout and stderr piped together; `env`
    adds or overrides variables (e.g. TIERSET_SHUTDOWN_GRACE_SECONDS="3")."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        "serve",
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{port}",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def bench_path() -> Iterator[None]:
    """bench/ on the import path, as it is for `python bench/run.py`."""
    folder = str(Path(__file__).resolve().parent.parent / "bench")
    sys.path.insert(0, folder)
    yield
    sys.path.remove(folder)


@pytest.fixture(scope="module")
def bench(bench_path: None) -> Iterator[Any]:
    """bench/run.py, loaded as a module (it is a script, not a package's)."""
    spec = importlib.util.spec_from_file_location(
        "bench_run", Path(__file__).resolve().parent.parent / "bench" / "run.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def targets(bench_path: None) -> Any:
    """bench/targets.py: the targets `make bench` judges."""
    return importlib.import_module("targets")


@pytest.fixture(scope="module")
def report(bench_path: None) -> Any:
    """bench/report.py: the tables `make bench` prints."""
    return importlib.import_module("report")


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


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of the test's own (non-durable, quick), for tests that stop and start it:
    stopping the session's would break other tests."""
    data_dir = Path(tempfile.mkdtemp(prefix="tierset-outage-pg-"))
    data_dir.chmod(0o755)  # the postgres user must get in when tests run as root
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
    # A long auth cache, so that a revocation refused at once proves the NOTIFY path.
    # Password-guess throttling off: every test calls from 127.0.0.1, and many fail to sign
    # in on purpose; tests/test_auth_throttling.py starts servers with it on.
    return Config(
        grpc_address="127.0.0.1:0",
        pool_min_size=1,
        pool_max_size=8,
        shutdown_grace_seconds=2.0,
        auth_cache_seconds=60.0,
        auth_throttle_user_source_failures=0,
        auth_throttle_source_failures=0,
        auth_throttle_user_failures=0,
    )


@pytest.fixture(scope="session")
async def server(server_config: Config, database_url: str) -> AsyncIterator[App]:
    """The real gRPC server, migrated and serving."""
    app = await start_app(server_config, database_url)
    yield app
    await app.stop(server_config.shutdown_grace_seconds)


@dataclass(frozen=True)
class Caller:
    """A user made for a test, and the metadata that authenticates as it."""

    account_id: int
    user_id: int
    username: str
    token: str
    token_id: int

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Pass as ``metadata=`` on a call to make it as this user."""
        return (("authorization", f"Bearer {self.token}"),)


_caller_ids = itertools.count(9_000_000)


async def _make_caller(
    pool: asyncpg.Pool, roles: frozenset[Role], account_id: int | None, password: str | None
) -> Caller:
    if account_id is None:
        account_id = (await Store(pool).create_account(next(_caller_ids), "Caller account")).id
    credentials = CredentialStore(pool)
    user = await credentials.create_user(
        account_id, f"user-{uuid.uuid4().hex[:12]}", password, roles
    )
    token = await credentials.issue(user.id, Kind.API_TOKEN, name="test")
    return Caller(account_id, user.id, user.username, token.secret, token.id)


@pytest.fixture(scope="session")
async def platform_caller(server: App) -> Caller:
    """The PLATFORM user the session channel authenticates as."""
    return await _make_caller(server.pool, frozenset({Role.PLATFORM}), None, None)


async def make_caller_in(dsn: str, *roles: Role) -> Caller:
    """A user and its token in another (already migrated) database, e.g. a subprocess's."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await _make_caller(pool, frozenset(roles), None, None)
    finally:
        await pool.close()


MakeCaller = Callable[..., Awaitable[Caller]]


@pytest.fixture
def make_caller(server: App) -> MakeCaller:
    """``await make_caller(Role.ADMIN, account_id=None, password=None)``: a user and its token.

    Without `account_id` the user gets a fresh account of its own; `password`
    (slow to hash, so only when a test needs the password grant) is optional.
    """

    async def make(
        *roles: Role, account_id: int | None = None, password: str | None = None
    ) -> Caller:
        return await _make_caller(server.pool, frozenset(roles), account_id, password)

    return make


@pytest.fixture(scope="session")
async def channel(server: App, platform_caller: Caller) -> AsyncIterator[grpc.aio.Channel]:
    """A real channel to the session server, authenticated as a PLATFORM user by default."""
    async with open_channel(server.port, platform_caller.token) as opened:
        yield opened


@pytest.fixture(scope="session")
async def anonymous_channel(server: App) -> AsyncIterator[grpc.aio.Channel]:
    """A real channel that sends no credentials (calls may add their own metadata)."""
    async with open_channel(server.port) as opened:
        yield opened


@pytest.fixture
async def start_app_with() -> AsyncIterator[Callable[[Config, str], Awaitable[App]]]:
    """Starts extra servers with a config and database of the test's own (for tests that
    stop, starve or break them); stops them after."""
    started: list[tuple[App, Config]] = []

    async def start(config: Config, dsn: str) -> App:
        app = await start_app(config, dsn)
        started.append((app, config))
        return app

    yield start
    for app, config in started:
        await app.stop(config.shutdown_grace_seconds)


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


@dataclasses.dataclass
class RunningServer:
    """Another server process's worth of state (own pool, cache, listener) and stubs to it."""

    app: App
    settings: settings_pb2_grpc.SettingsServiceStub
    accounts: accounts_pb2_grpc.AccountServiceStub


@pytest.fixture
async def start_server(
    server_config: Config, database_url: str, platform_caller: Caller
) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """Starts more servers on the session database, as other replicas would be; stops them after.

    Keyword arguments override fields of the session server's Config.
    """
    started: list[tuple[App, grpc.aio.Channel]] = []

    async def start(**overrides: Any) -> RunningServer:
        app = await start_app(dataclasses.replace(server_config, **overrides), database_url)
        opened = open_channel(app.port, platform_caller.token)
        started.append((app, opened))
        return RunningServer(
            app,
            settings_pb2_grpc.SettingsServiceStub(opened),
            accounts_pb2_grpc.AccountServiceStub(opened),
        )

    yield start
    for app, opened in started:
        await opened.close()
        await app.stop(0.5)


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
        # Bounds the SSE watches schemathesis opens (tests/test_gateway_openapi.py).
        gateway_watch_seconds=2.0,
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
def rest_auth_headers(platform_caller: Caller) -> dict[str, str]:
    """The credentials REST calls in the tests carry by default: the PLATFORM caller's token."""
    return {"Authorization": f"Bearer {platform_caller.token}"}


@pytest.fixture
async def oauth_client(db: asyncpg.Pool) -> tuple[str, str]:
    """A registered OAuth client: (client_id, client_secret)."""
    return await CredentialStore(db).create_oauth_client(None, "Test client")


@pytest.fixture(scope="session")
async def soak_cluster() -> AsyncIterator[Cluster]:
    """The soak's own system (a durable PostgreSQL, two servers on one port, a gateway);
    every fault leaves it recovered and every run makes fresh scopes, so runs share it."""
    cluster = Cluster()
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
def shop(
    make_caller: MakeCaller, new_retailer: Callable[[int], Awaitable[int]]
) -> Callable[[], Awaitable[tuple[Caller, int, int]]]:
    """``await shop()``: an ADMIN of a fresh account with one retailer, as
    (the admin, the account id, the retailer id)."""

    async def make() -> tuple[Caller, int, int]:
        admin = await make_caller(Role.ADMIN)
        return admin, admin.account_id, await new_retailer(admin.account_id)

    return make


@dataclass(frozen=True)
class CliResult:
    """What a `tierset` command did: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Cli:
    """The `tierset` API commands against the session server, as one caller.

    ``await cli(...)`` runs ``tierset.cli.main.main`` in a thread of this process (its own
    event loop, so the session server keeps serving), with stdin, stdout and stderr
    swapped for strings; ``await cli.process(...)`` runs the real command as a
    subprocess (exit codes, signals, what a terminal would see). Neither sees the
    TIERSET_* variables of the shell that runs the tests, only `env`.
    """

    env: dict[str, str]

    def as_caller(self, caller: Caller, **env: str) -> Cli:
        return Cli({**self.env, "TIERSET_TOKEN": caller.token, **env})

    def with_env(self, **env: str) -> Cli:
        return Cli({**self.env, **env})

    async def __call__(self, *args: str, stdin: str = "") -> CliResult:
        from tierset.cli.main import main

        def run() -> CliResult:
            out, err = io.StringIO(), io.StringIO()
            saved = sys.stdin
            sys.stdin = io.StringIO(stdin)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        main(list(args), self.env)
                        code = 0
                    except SystemExit as exit_:
                        code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                sys.stdin = saved
            return CliResult(code, out.getvalue(), err.getvalue())

        return await asyncio.to_thread(run)

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        """The command started, stdin/stdout/stderr piped: for a watch."""
        outside = {k: v for k, v in os.environ.items() if not k.startswith("TIERSET_")}
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tierset.cli",
            *args,
            env={**outside, **self.env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def process(self, *args: str, stdin: str = "") -> CliResult:
        process = await self.spawn(*args)
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
        return CliResult(process.returncode or 0, out.decode(), err.decode())


@pytest.fixture(scope="session")
def cli(server: App, platform_caller: Caller) -> Cli:
    """The `tierset` API commands, calling the session server as the PLATFORM caller
    (``cli.as_caller(other)`` for another)."""
    return Cli(
        {"TIERSET_ADDRESS": f"127.0.0.1:{server.port}", "TIERSET_TOKEN": platform_caller.token}
    )


# --- The web console, in a real browser -------------------------------------------------


@dataclass(frozen=True)
class ConsoleUser:
    """A user who signs in to the console with a password, and its API caller."""

    caller: Caller
    password: str

    @property
    def username(self) -> str:
        return self.caller.username


@pytest.fixture(scope="session")
async def console(server: App) -> AsyncIterator[str]:
    """A gateway serving the console (its own OAuth client); its base URL.

    It believes X-Forwarded-Proto from 127.0.0.1, as it would from a TLS-ending proxy, so
    a test can see the cookie it sets for HTTPS.
    """
    client_id, client_secret = await CredentialStore(server.pool).create_oauth_client(
        None, "Console"
    )
    config = Config(
        http_address="127.0.0.1:0",
        grpc_target=f"127.0.0.1:{server.port}",
        shutdown_grace_seconds=1.0,
        gateway_watch_seconds=60.0,
        # A sign-in is an argon2id check: seconds on a loaded 2-core box, past the default
        # 5 s deadline (a 504); these tests judge the pages, not that deadline.
        gateway_deadline_seconds=30.0,
        gateway_trusted_proxies=("127.0.0.1/32",),
        console_client_id=client_id,
        console_client_secret=Secret(client_secret),
    )
    async with running_gateway(config) as base_url:
        yield base_url


def chromium_path() -> str:
    """Debian's chromium (apt-get install chromium; .ci/run installs it)."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("the console's browser tests need chromium: apt-get install chromium")
    return found


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless chromium for the session, driven by Playwright (never downloaded)."""
    # Auto-waiting assertions wait this long at most: generous for a shared 2-core box.
    expect.set_options(timeout=15_000)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path())
        yield launched
        await launched.close()


@pytest.fixture
async def new_context(
    browser: Browser, console: str
) -> AsyncIterator[Callable[[], Awaitable[BrowserContext]]]:
    """``await new_context()``: a fresh browser profile (its own cookies) on the console."""
    opened: list[BrowserContext] = []

    async def make() -> BrowserContext:
        context = await browser.new_context(base_url=console)
        context.set_default_timeout(15_000)
        opened.append(context)
        return context

    yield make
    for context in opened:
        await context.close()


MakeConsoleUser = Callable[..., Awaitable[ConsoleUser]]


@pytest.fixture
def console_user(server: App) -> MakeConsoleUser:
    """``await console_user(Role.ADMIN, account_id=None)``: a user with a password."""

    async def make(*roles: Role, account_id: int | None = None) -> ConsoleUser:
        password = f"pw-{uuid.uuid4().hex}"
        caller = await _make_caller(server.pool, frozenset(roles), account_id, password)
        return ConsoleUser(caller, password)

    return make


@pytest.fixture
def signed_in(
    new_context: Callable[[], Awaitable[BrowserContext]],
) -> Callable[[ConsoleUser], Awaitable[Page]]:
    """``await signed_in(user)``: a page of a new browser profile, signed in as `user`."""

    async def sign_in(user: ConsoleUser) -> Page:
        return await sign_in_page(await new_context(), user.username, user.password)

    return sign_in


async def sign_in_page(context: BrowserContext, username: str, password: str) -> Page:
    """A new page of `context`, signed in to the console through its form."""
    page = await context.new_page()
    await page.goto("/console/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("who")).to_contain_text(username)
    return page


async def sign_in_over_http(http: httpx.AsyncClient, username: str, password: str) -> str:
    """Signs `http` in through the console's form; the CSRF token of the session's pages."""
    form = await http.get("/console/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    signed = await http.post(
        "/console/sign-in",
        data={"csrf": token.group(1), "username": username, "password": password},
    )
    assert signed.status_code == 303
    page = await http.get("/console/", follow_redirects=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


@dataclass(frozen=True)
class ConsoleSession:
    """A console session signed in over plain HTTP (no browser) as an ADMIN of a fresh
    account with one retailer: the sealed cookie and the CSRF token its forms carry."""

    account: int
    retailer: int
    username: str
    password: str
    cookie: str
    csrf: str


@pytest.fixture(scope="module")
async def console_session(console: str, server: App) -> ConsoleSession:
    """A ConsoleSession for the test module (one password hash to sign in)."""
    store = Store(server.pool)
    account = (await store.create_account(None, "Console fuzz account")).id
    retailer = (await store.create_retailer(None, account, "Console fuzz retailer")).id
    password = f"pw-{uuid.uuid4().hex}"
    user = await CredentialStore(server.pool).create_user(
        account, f"admin-{uuid.uuid4().hex[:8]}", password, frozenset({Role.ADMIN})
    )
    async with httpx.AsyncClient(base_url=console, trust_env=False) as http:
        csrf = await sign_in_over_http(http, user.username, password)
        cookie = http.cookies["tierset_console"]
    return ConsoleSession(account, retailer, user.username, password, cookie, csrf)


@dataclass(frozen=True)
class ConsoleScope:
    """An account with one retailer, and console pages signed in as its ADMIN and VIEWER."""

    account: int
    retailer: int
    admin: Page
    viewer: Page
    admin_username: str


@pytest.fixture(scope="module")
async def console_scope(browser: Browser, console: str, server: App) -> AsyncIterator[ConsoleScope]:
    """A ConsoleScope for the test module: its tests write keys of their own, so they can
    share it (each sign-in costs a password hash)."""
    store = Store(server.pool)
    account = (await store.create_account(None, "Console account")).id
    retailer = (await store.create_retailer(None, account, "Console retailer")).id
    pages: list[Page] = []
    usernames: list[str] = []
    contexts: list[BrowserContext] = []
    for role in (Role.ADMIN, Role.VIEWER):
        password = f"pw-{uuid.uuid4().hex}"
        user = await CredentialStore(server.pool).create_user(
            account, f"{role.lower()}-{uuid.uuid4().hex[:8]}", password, frozenset({role})
        )
        context = await browser.new_context(base_url=console)
        context.set_default_timeout(15_000)
        contexts.append(context)
        pages.append(await sign_in_page(context, user.username, password))
        usernames.append(user.username)
    yield ConsoleScope(account, retailer, *pages, admin_username=usernames[0])
    for context in contexts:
        await context.close()
