"""Observability: metrics over real HTTP, JSON log lines with request ids, no secrets in logs.

The end-to-end half runs the real ``tierset serve`` and ``tierset gateway`` processes (the
same code paths as in a container) against the session database, calls them over a real
channel and real HTTP, scrapes both metrics ports and reads both processes' log output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Caller, free_port, open_channel
from tests.helpers import error_info
from tierset.api.server import App, create_pool
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.ops import logs, metrics
from tierset.ops.config import Config
from tierset.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    settings_pb2,
    settings_pb2_grpc,
)

PASSWORD = "pw-Zq81-never-logged"
TOKEN = "tok-5f0c-never-logged"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    """Every sample on a metrics endpoint, over real HTTP, keyed by (name, labels)."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    text = await asyncio.to_thread(fetch)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------- the real `tierset serve`


@dataclass
class LoggedProcess:
    """A real tierset process whose stderr (JSON log lines) goes to `log_file`."""

    process: asyncio.subprocess.Process
    log_file: Path

    def log_text(self) -> str:
        return self.log_file.read_text()

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]


@dataclass
class ServeProcess(LoggedProcess):
    grpc_port: int
    metrics_port: int
    dsn: str


def with_password(dsn: str) -> str:
    """The DSN with our known password in it (the test PostgreSQL trusts local users)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{PASSWORD}@{host}"))


@pytest.fixture(scope="module")
async def serve_process(
    database_url: str, server: App, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServeProcess]:
    """`tierset serve` on free ports, DEBUG logs to a file; SIGTERMed at the end."""
    dsn = with_password(database_url)
    grpc_port, metrics_port = free_port(), free_port()
    log_file = tmp_path_factory.mktemp("serve") / "stderr.log"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
        "TIERSET_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "TIERSET_MIGRATE_ON_START": "false",  # the session server migrated this database
        "TIERSET_LOG_LEVEL": "DEBUG",
        "TIERSET_ACCESS_LOG": "true",  # these tests read the access lines of successful calls
        "TIERSET_SHUTDOWN_GRACE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log_file.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tierset.cli", "serve", env=env, stderr=stderr
        )
    handle = ServeProcess(
        process=process, log_file=log_file, grpc_port=grpc_port, metrics_port=metrics_port, dsn=dsn
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                assert process.returncode is None, handle.log_text()
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"tierset serve did not become healthy:\n{handle.log_text()}")
        yield handle
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=15)


@dataclass
class Calls:
    """What the module's calls to the real process sent and got back."""

    failed_request_id: str
    created_request_id: str
    token: str


@pytest.fixture(scope="module")
async def calls(serve_process: ServeProcess, platform_caller: Caller) -> Calls:
    """Two CreateAccount calls (OK) and one GetSettings for an unknown account (NOT_FOUND)."""
    failed_id, created_id = "req-notfound-0001", "req-created-0001"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{serve_process.grpc_port}") as channel:
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        settings = settings_pb2_grpc.SettingsServiceStub(channel)
        for n, request_id in enumerate((created_id, None)):
            metadata = (("x-request-id", request_id),) if request_id else ()
            await accounts.CreateAccount(
                accounts_pb2.CreateAccountRequest(account_id=0, display_name=f"obs {n}"),
                metadata=(*metadata, *platform_caller.metadata),
            )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings.GetSettings(
                settings_pb2.GetSettingsRequest(
                    scope=settings_pb2.Scope(account_id=987_654_321_987), keys=["A.B"]
                ),
                metadata=(("x-request-id", failed_id), *platform_caller.metadata),
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    return Calls(failed_id, created_id, platform_caller.token)


async def test_metrics_count_calls_by_method_and_code(serve_process, calls):
    samples = await scrape(serve_process.metrics_port)
    handled = "grpc_server_handled_total"
    seconds = "grpc_server_handling_seconds_count"
    account, settings = "tierset.v1.AccountService", "tierset.v1.SettingsService"
    assert sample(
        samples, handled, grpc_service=account, grpc_method="CreateAccount", grpc_code="OK"
    ) == (2)
    assert sample(
        samples, handled, grpc_service=settings, grpc_method="GetSettings", grpc_code="NOT_FOUND"
    ) == (1)
    assert sample(samples, seconds, grpc_service=account, grpc_method="CreateAccount") == 2
    assert sample(samples, seconds, grpc_service=settings, grpc_method="GetSettings") == 1
    # A fresh process: exactly the calls made, nothing else under these names.
    assert sample(
        samples, handled, grpc_service=settings, grpc_method="GetSettings", grpc_code="OK"
    ) == (0)


async def test_metrics_show_pool_cache_and_auth_series(serve_process, calls):
    samples = await scrape(serve_process.metrics_port)
    names = {name for name, _ in samples}
    assert sample(samples, "tierset_db_pool_max_connections") == 10  # the default pool size
    in_use = sample(samples, "tierset_db_pool_connections", state="in_use")
    idle = sample(samples, "tierset_db_pool_connections", state="idle")
    assert in_use >= 0 and idle >= 1 and in_use + idle <= 10
    assert ("tierset_db_pool_waiting", frozenset()) in samples
    for counter in ("tierset_cache_hits", "tierset_cache_misses", "tierset_cache_invalidations"):
        assert f"{counter}_total" in names
    # Labelled by reason: the family is declared before the auth layer first counts one.
    text = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(
                f"http://127.0.0.1:{serve_process.metrics_port}/metrics", timeout=5
            )
            .read()
            .decode()
        )
    )
    for family in ("tierset_auth_failures_total", "http_server_requests_total"):
        assert f"# TYPE {family} counter" in text


async def test_cache_counters_move_with_cached_reads_and_writes(serve_process, calls):
    before = await scrape(serve_process.metrics_port)
    async with open_channel(serve_process.grpc_port, calls.token) as channel:
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        settings = settings_pb2_grpc.SettingsServiceStub(channel)
        account = await accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(account_id=0, display_name="cache counters")
        )
        read = settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(account_id=account.account.id), keys=["CACHE.COUNTED"]
        )
        for _ in range(3):  # one miss, then two hits
            await settings.GetSettings(read)
        await settings.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=read.scope,
                key="CACHE.COUNTED",
                type=settings_pb2.SETTING_TYPE_INTEGER,
                value=settings_pb2.SettingValue(integer_value=1),
            )
        )
    after = await scrape(serve_process.metrics_port)

    def moved(name: str) -> float:
        return sample(after, name) - sample(before, name)

    assert moved("tierset_cache_misses_total") == 1
    assert moved("tierset_cache_hits_total") == 2
    # The write drops the entry here at once, and its NOTIFY arrives too (>= 1).
    assert moved("tierset_cache_invalidations_total") >= 1


async def test_log_lines_are_json_and_carry_the_request_id(serve_process, calls):
    lines = serve_process.log_lines()  # json.loads of every line: each one parses
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= line.keys()
    by_id = {line["request_id"]: line for line in lines if line.get("grpc_method")}
    failed = by_id[calls.failed_request_id]
    assert failed["grpc_method"] == "/tierset.v1.SettingsService/GetSettings"
    assert failed["grpc_code"] == "NOT_FOUND"
    assert by_id[calls.created_request_id]["grpc_code"] == "OK"
    # The call sent without an id got a fresh one of its own.
    generated = [
        line["request_id"]
        for line in lines
        if line.get("grpc_method") == "/tierset.v1.AccountService/CreateAccount"
        and line["request_id"] != calls.created_request_id
    ]
    assert generated and all(re.fullmatch(r"[0-9a-f]{32}", str(i)) for i in generated)


# ---------------------------------------------------------------- auth failures, counted


async def _refused_call(
    channel: grpc.aio.Channel, reason: str, caller: Caller, expired_token: str, viewer: Caller
) -> grpc.aio.AioRpcError:
    """One real call the server refuses for `reason`; returns its error."""
    settings = settings_pb2_grpc.SettingsServiceStub(channel)
    read = settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(account_id=caller.account_id), keys=["A.B"]
    )
    sent: dict[str, tuple[tuple[str, str], ...]] = {
        "CREDENTIALS_MISSING": (),
        "CREDENTIALS_MALFORMED": (("authorization", "Digest username=someone"),),
        "CREDENTIALS_INVALID": (("authorization", "Bearer tsk_never_issued_0123456789"),),
        "CREDENTIALS_EXPIRED": (("authorization", f"Bearer {expired_token}"),),
    }
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if reason in sent:
            await settings.GetSettings(read, metadata=sent[reason])
        elif reason == "PERMISSION_DENIED":  # a VIEWER writing
            await settings.PutSetting(
                settings_pb2.PutSettingRequest(
                    scope=settings_pb2.Scope(account_id=viewer.account_id),
                    key="A.B",
                    type=settings_pb2.SETTING_TYPE_INTEGER,
                    value=settings_pb2.SettingValue(integer_value=1),
                ),
                metadata=viewer.metadata,
            )
        else:  # INVALID_CLIENT: the token endpoint, with a client that does not exist
            await auth_pb2_grpc.AuthServiceStub(channel).CreateToken(
                auth_pb2.CreateTokenRequest(
                    grant_type="password",
                    client_id="no-such-client",
                    client_secret="wrong",
                    username="nobody",
                    password="wrong",
                )
            )
    return raised.value


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("CREDENTIALS_MISSING", grpc.StatusCode.UNAUTHENTICATED),
        ("CREDENTIALS_MALFORMED", grpc.StatusCode.UNAUTHENTICATED),
        ("CREDENTIALS_INVALID", grpc.StatusCode.UNAUTHENTICATED),
        ("CREDENTIALS_EXPIRED", grpc.StatusCode.UNAUTHENTICATED),
        ("PERMISSION_DENIED", grpc.StatusCode.PERMISSION_DENIED),
        ("INVALID_CLIENT", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_refused_calls_are_counted_by_reason(
    serve_process, platform_caller, make_caller, server, reason, code
):
    viewer = await make_caller(Role.VIEWER)
    expired = await CredentialStore(server.pool).issue(
        viewer.user_id, Kind.ACCESS_TOKEN, ttl_seconds=-60
    )
    before = await scrape(serve_process.metrics_port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{serve_process.grpc_port}") as channel:
        error = await _refused_call(channel, reason, platform_caller, expired.secret, viewer)
    after = await scrape(serve_process.metrics_port)

    assert (error.code(), error_info(error).reason) == (code, reason)
    failures = "tierset_auth_failures_total"
    assert sample(after, failures, reason=reason) == sample(before, failures, reason=reason) + 1
    others = {labels for name, labels in after if name == failures} - {
        frozenset({("reason", reason)})
    }
    for labels in others:  # nothing else was counted for this one call
        assert after[(failures, labels)] == before.get((failures, labels), 0.0)


# ---------------------------------------------------------------- the real `tierset gateway`


@dataclass
class GatewayProcess(LoggedProcess):
    base_url: str
    metrics_port: int


@pytest.fixture(scope="module")
async def gateway_process(
    serve_process: ServeProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayProcess]:
    """`tierset gateway` calling the `tierset serve` above, DEBUG logs to a file."""
    http_port, metrics_port = free_port(), free_port()
    log_file = tmp_path_factory.mktemp("gateway") / "stderr.log"
    env = {
        **os.environ,
        "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        "TIERSET_GRPC_TARGET": f"127.0.0.1:{serve_process.grpc_port}",
        "TIERSET_GATEWAY_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "TIERSET_LOG_LEVEL": "DEBUG",
        "TIERSET_SHUTDOWN_GRACE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log_file.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tierset.cli", "gateway", env=env, stderr=stderr
        )
    handle = GatewayProcess(
        process=process,
        log_file=log_file,
        base_url=f"http://127.0.0.1:{http_port}",
        metrics_port=metrics_port,
    )
    try:
        async with httpx.AsyncClient(base_url=handle.base_url, trust_env=False) as client:
            for _ in range(100):
                assert process.returncode is None, handle.log_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz", timeout=1)).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"tierset gateway did not become ready:\n{handle.log_text()}")
        yield handle
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=15)


ACCOUNT_ROUTE = "/api/v4.1/settings/account/{accountId}/{key:keylist}"
FLUENTCART_ROUTE = "/wp-json/fluent-cart/v2/integration/global-settings"


@dataclass
class RestCalls:
    """What the module's REST calls sent: the secrets they carried, by name."""

    secrets: dict[str, str]


@pytest.fixture(scope="module")
async def rest_calls(
    gateway_process: GatewayProcess, platform_caller: Caller, server: App
) -> RestCalls:
    """A PUT (Bearer, X-Request-ID abc), a FluentCart GET (Basic application password),
    a GET without credentials (401), an unknown path (404) and a PATCH (405)."""
    app_password = await CredentialStore(server.pool).issue(
        platform_caller.user_id, Kind.APP_PASSWORD, name="observability"
    )
    basic = base64.b64encode(f"{platform_caller.username}:{app_password.secret}".encode()).decode()
    bearer = {"Authorization": f"Bearer {platform_caller.token}"}
    path = f"/api/v4.1/settings/account/{platform_caller.account_id}/OBS.KEY"
    async with httpx.AsyncClient(base_url=gateway_process.base_url, trust_env=False) as client:
        put = await client.put(
            path,
            json={"setting": {"key": "OBS.KEY", "value": 7, "type": "INTEGER"}},
            headers={**bearer, "X-Request-ID": "abc"},
        )
        assert put.status_code == 200, put.text
        assert put.headers["X-Request-ID"] == "abc"
        cart = await client.get(
            FLUENTCART_ROUTE,
            params={"settings_key": "webhook"},
            headers={"Authorization": f"Basic {basic}", "X-Request-ID": "req-cart-0001"},
        )
        assert cart.status_code == 200, cart.text
        anonymous = await client.get(path, headers={"X-Request-ID": "req-anon-0001"})
        assert anonymous.status_code == 401
        assert (await client.get("/no/such/path", headers=bearer)).status_code == 404
        assert (await client.patch(path, headers=bearer)).status_code == 405
    return RestCalls(
        {
            "bearer token": platform_caller.token,
            "application password": app_password.secret,
            "Basic header value": basic,
        }
    )


async def test_gateway_metrics_count_requests_by_method_route_and_status(
    gateway_process, rest_calls
):
    samples = await scrape(gateway_process.metrics_port)
    requests = "http_server_requests_total"
    assert sample(samples, requests, method="PUT", route=ACCOUNT_ROUTE, status="200") == 1
    assert sample(samples, requests, method="GET", route=FLUENTCART_ROUTE, status="200") == 1
    assert sample(samples, requests, method="GET", route=ACCOUNT_ROUTE, status="401") == 1
    assert sample(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert sample(samples, requests, method="PATCH", route=ACCOUNT_ROUTE, status="405") == 1
    # Labels are templates: no series carries a raw path with an id in it.
    routes = {dict(labels).get("route") for name, labels in samples if name == requests}
    assert all(r == "unmatched" or str(r).startswith("/") for r in routes)
    assert not [r for r in routes if re.search(r"/\d+/", str(r))]


async def test_gateway_metrics_time_requests_in_a_histogram(gateway_process, rest_calls):
    samples = await scrape(gateway_process.metrics_port)
    seconds = "http_server_request_duration_seconds"
    put = {"method": "PUT", "route": ACCOUNT_ROUTE}
    assert sample(samples, f"{seconds}_count", **put) == 1
    assert sample(samples, f"{seconds}_bucket", **put, le="+Inf") == 1
    assert sample(samples, f"{seconds}_bucket", **put, le="10.0") == 1
    assert sample(samples, f"{seconds}_sum", **put) > 0
    buckets = [labels for name, labels in samples if name == f"{seconds}_bucket"]
    assert {dict(b)["le"] for b in buckets} >= {"0.001", "0.1", "1.0", "+Inf"}


async def test_gateway_metrics_are_the_gateways_own(gateway_process, rest_calls):
    names = {name for name, _ in await scrape(gateway_process.metrics_port)}
    assert "process_cpu_seconds_total" in names
    # The server's families never move in a gateway: its endpoint leaves them out.
    assert not [n for n in names if n.startswith(("grpc_server_", "tierset_"))]


async def test_the_request_id_reaches_every_line_of_both_processes(
    gateway_process, serve_process, rest_calls
):
    gateway_lines = gateway_process.log_lines()  # every line parses as JSON
    access = [line for line in gateway_lines if "http_status" in line]
    by_id = {line["request_id"]: line for line in access}
    assert by_id["abc"]["http_method"] == "PUT" and by_id["abc"]["http_status"] == 200
    assert by_id["req-cart-0001"]["http_status"] == 200
    assert by_id["req-anon-0001"]["http_status"] == 401
    # Every line written while serving a request carries its id, not only the access line.
    refusals = [line for line in gateway_lines if "UNAUTHENTICATED" in str(line["message"])]
    assert refusals and all(line["request_id"] == "req-anon-0001" for line in refusals)
    # The gateway passed each id to the server, whose lines for that call carry it too.
    server_lines = {
        (line["request_id"], line.get("grpc_method"), line.get("grpc_code"))
        for line in serve_process.log_lines()
    }
    assert ("abc", "/tierset.v1.SettingsService/PutSetting", "OK") in server_lines
    assert (
        "req-cart-0001",
        "/tierset.v1.IntegrationService/GetGlobalSettings",
        "OK",
    ) in server_lines
    assert (
        "req-anon-0001",
        "/tierset.v1.SettingsService/GetSettings",
        "UNAUTHENTICATED",
    ) in server_lines


async def test_no_secret_reaches_either_log(serve_process, gateway_process, calls, rest_calls):
    # SIGTERM first (the gateway, then the server), so the shutdown lines are in too.
    for process in (gateway_process.process, serve_process.process):
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    server_text, gateway_text = serve_process.log_text(), gateway_process.log_text()
    assert "shutting down" in server_text and "gateway stopped" in gateway_text
    secrets = {
        "database password": PASSWORD,
        "DATABASE_URL": serve_process.dsn,
        "gRPC bearer token": calls.token,
        **rest_calls.secrets,
    }
    for name, secret in secrets.items():
        assert secret not in server_text, f"the server logged the {name}"
        assert secret not in gateway_text, f"the gateway logged the {name}"
    # The DEBUG metadata lines did carry the authorization header, masked.
    metadata_lines = [line for line in serve_process.log_lines() if "metadata" in line]
    ids = {calls.failed_request_id, calls.created_request_id, "abc", "req-cart-0001"}
    checked = [line for line in metadata_lines if line["request_id"] in ids]
    assert len(checked) == len(ids)
    assert all(["authorization", logs.MASK] in line["metadata"] for line in checked)  # type: ignore[operator]


# ---------------------------------------------------------------- the redaction safeguard


@pytest.fixture
def captured_log() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """The real JSON handler on the root logger, writing to a buffer (the DSN registered)."""

    buffer = io.StringIO()
    handler = logs.json_handler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    logs.REDACTOR.add(f"postgresql://app:{PASSWORD}@db:5432/tierset")
    logs.REDACTOR.add(PASSWORD)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@pytest.mark.parametrize(
    ("message", "args", "extra"),
    [
        ("connecting to %s", (f"postgresql://app:{PASSWORD}@db:5432/tierset",), {}),
        ("retrying with %s", (f"postgres://other:{TOKEN}@elsewhere/db",), {}),
        ("headers %s", ({"authorization": f"Bearer {TOKEN}"},), {}),
        ("got authorization: Bearer %s", (TOKEN,), {}),
        ("x-api-key=%s", (TOKEN,), {}),
        ("call", (), {"metadata": [("authorization", f"Basic {TOKEN}")]}),
        ("call", (), {"api_key": TOKEN}),
        ("password is %s", (PASSWORD,), {}),
        # Names in any case, and spelt with a letter outside ASCII that matches
        # case-insensitively (the long s): the shortcut for ASCII text must not skip them.
        ("X-Api-Key: %s", (TOKEN,), {}),
        ("PA\u017fSWORD=%s", (TOKEN,), {}),
    ],
)
async def test_redaction_masks_secrets(captured_log, message, args, extra):
    logging.getLogger("tierset.test").warning(message, *args, extra=extra)
    (line,) = captured_log()
    text = json.dumps(line)
    assert PASSWORD not in text and TOKEN not in text
    assert logs.MASK in text


async def test_redaction_masks_secrets_in_tracebacks(captured_log):
    try:
        raise ConnectionError(f"cannot reach postgresql://app:{PASSWORD}@db:5432/tierset")
    except ConnectionError:
        logging.getLogger("tierset.test").exception("database down")
    (line,) = captured_log()
    assert "ConnectionError" in str(line["exception"])
    assert PASSWORD not in json.dumps(line)


# ---------------------------------------------------------------- pool and HTTP series


async def test_pool_waiting_counts_callers_queued_for_a_connection(database_url):
    pool = await create_pool(Config(pool_min_size=1, pool_max_size=1), database_url)
    registry = CollectorRegistry()
    endpoint = metrics.start_metrics_server("127.0.0.1:0", pool, registry)
    try:
        async with pool.acquire():
            waiter = asyncio.ensure_future(pool.fetchval("SELECT 1"))
            for _ in range(50):
                if metrics.pool_waiting(pool):
                    break
                await asyncio.sleep(0.01)
            busy = await scrape(endpoint.port)
        assert await waiter == 1
        calm = await scrape(endpoint.port)
    finally:
        endpoint.stop()
        await pool.close()
    assert sample(busy, "tierset_db_pool_waiting") == 1
    assert sample(busy, "tierset_db_pool_connections", state="in_use") == 1
    assert sample(calm, "tierset_db_pool_waiting") == 0
    assert sample(calm, "tierset_db_pool_connections", state="idle") == 1


async def _asgi_call(app: metrics.ASGIApp, method: str, path: str) -> int:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    try:
        await app(scope, receive, send)  # type: ignore[arg-type]
    except RuntimeError:
        return 500
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))  # type: ignore[call-overload]


async def _tiny_app(scope, receive, send) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("app failed before responding")
    status = 200 if scope["path"].startswith("/v1/settings/") else 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_http_middleware_counts_by_method_route_and_status():
    def route_of(scope):
        return "/v1/settings/{key}" if scope["path"].startswith("/v1/settings/") else "unmatched"

    app = metrics.HttpMetricsMiddleware(_tiny_app, route_of=route_of)

    def count(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        return REGISTRY.get_sample_value("http_server_requests_total", labels) or 0.0

    before = {
        "ok": count("GET", "/v1/settings/{key}", "200"),
        "missing": count("GET", "unmatched", "404"),
        "boom": count("POST", "unmatched", "500"),
    }
    for key in ("A.B", "C.D"):
        assert await _asgi_call(app, "GET", f"/v1/settings/{key}") == 200
    assert await _asgi_call(app, "GET", "/nope") == 404
    assert await _asgi_call(app, "POST", "/boom") == 500
    assert count("GET", "/v1/settings/{key}", "200") == before["ok"] + 2
    assert count("GET", "unmatched", "404") == before["missing"] + 1
    assert count("POST", "unmatched", "500") == before["boom"] + 1


def _exposed(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample `registry` exposes but the ``_created`` stamps (times of creation)."""
    return {
        (each.name, frozenset(each.labels.items())): each.value
        for family in registry.collect()
        for each in family.samples
        if not each.name.endswith("_created")
    }


def test_call_series_expose_what_prometheus_counters_and_histograms_would():
    # The pipeline counts calls with plain numbers (metrics.CallSeries, LoopCounter); a
    # scrape must see what prometheus_client's Counter and Histogram, fed the same
    # calls, would show: the same names, labels, cumulative buckets, count and sum.
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    calls = metrics.CallSeries(ours)
    hits = metrics.LoopCounter("tierset_test_hits", "Hits.", ours)
    handled = Counter(
        "grpc_server_handled",
        metrics.CallSeries.HANDLED_HELP,
        ["grpc_service", "grpc_method", "grpc_code"],
        registry=theirs,
    )
    seconds = Histogram(
        "grpc_server_handling_seconds",
        metrics.CallSeries.SECONDS_HELP,
        ["grpc_service", "grpc_method"],
        buckets=metrics.LATENCY_BUCKETS,
        registry=theirs,
    )
    their_hits = Counter("tierset_test_hits", "Hits.", registry=theirs)
    observed = [
        ("/tierset.v1.SettingsService/GetSettings", "OK", 0.0004),
        ("/tierset.v1.SettingsService/GetSettings", "OK", 0.001),  # on a bucket's bound
        ("/tierset.v1.SettingsService/GetSettings", "NOT_FOUND", 0.3),
        ("/tierset.v1.SettingsService/GetSettings", "OK", 12.0),  # past the last bound
        ("/tierset.v1.AccountService/CreateAccount", "OK", 0.02),
    ]
    calls.method("/tierset.v1.AccountService/GetAccount")  # registered, never called
    handled.labels("tierset.v1.AccountService", "GetAccount", "OK")
    seconds.labels("tierset.v1.AccountService", "GetAccount")
    for method, code, spent in observed:
        calls.method(method).record(code, spent)
        service, name = metrics.split_method(method)
        handled.labels(service, name, code).inc()
        seconds.labels(service, name).observe(spent)
    for _ in range(3):
        hits.value += 1
        their_hits.inc()

    assert _exposed(ours) == _exposed(theirs)
    created = {s.name for family in ours.collect() for s in family.samples}
    assert {"grpc_server_handled_created", "grpc_server_handling_seconds_created"} <= created


# ---------------------------------------------------------------- the access log switch


@pytest.mark.parametrize("access_log", [True, False])
async def test_access_log_switch_drops_lines_of_successful_calls_only(
    start_server, platform_caller, captured_log, access_log
):
    replica = await start_server(access_log=access_log)
    access = logging.getLogger("tierset.access")
    previous = access.level
    access.setLevel(logging.INFO)
    try:
        await replica.settings.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(account_id=platform_caller.account_id), keys=["A.B"]
            )
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await replica.settings.GetSettings(
                settings_pb2.GetSettingsRequest(
                    scope=settings_pb2.Scope(account_id=987_654_321_987), keys=["A.B"]
                )
            )
        # A failed call's status reaches the client from inside the handler (the error
        # interceptor aborts), before the server's interceptor writes that call's line on
        # its way out; so wait for the line rather than race it (bounded, not timed).
        for _ in range(500):
            if any(line.get("grpc_code") == "NOT_FOUND" for line in captured_log()):
                break
            await asyncio.sleep(0.01)
    finally:
        access.setLevel(previous)
    codes = [line["grpc_code"] for line in captured_log() if line.get("grpc_method")]
    assert codes == (["OK", "NOT_FOUND"] if access_log else ["NOT_FOUND"])
