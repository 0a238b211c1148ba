"""What every request gets: an id, a deadline, the caller's Authorization passed on, one log
line, the family's shape for unknown paths and methods, and never a stack trace; plus the
probes."""

from __future__ import annotations

import dataclasses
import logging
import re
import time

import grpc
import httpx
import pytest
import uvicorn
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from tests.conftest import running_gateway, running_http_server
from tierset.api.pipeline import Pipeline
from tierset.api.settings import SettingsService
from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore
from tierset.gateway.envelope import RequestEnvelope
from tierset.gateway.serve import GatewayServer
from tierset.store.database import Store
from tierset.v1 import settings_pb2_grpc

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
DEADLINE_SECONDS = 3.0
# gRPC sends a deadline as the time left, in the grpc-timeout header, rounded *up* so that
# it never expires early: gRPC core keeps three significant figures (10 ms steps between 1 s
# and 10 s) after turning the deadline into whole milliseconds on each side. So 3 s set by
# the gateway arrives as 3.010 s on a connected channel (measured: 3.005-3.0097 s in 300
# calls). 20 ms covers the 10 ms step and the two millisecond roundings with room to spare,
# and is still 100 times smaller than the gap to the 5 s default of a deadline not passed on.
WIRE_ROUNDING_SECONDS = 0.020


class RecordingInterceptor(grpc.aio.ServerInterceptor):
    """Notes what each call arrived with: its metadata and the time left before its deadline."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], float | None]] = []

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def recorded(request, context):
            metadata = {m.key: m.value for m in context.invocation_metadata()}
            self.calls.append((metadata, context.time_remaining()))
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            recorded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@pytest.fixture(scope="module")
async def recorded_server(db):
    """The real SettingsService over the session database, recording what each call carries,
    with its own health service to switch."""
    recorder = RecordingInterceptor()
    authenticator = Authenticator(CredentialStore(db), cache_seconds=0, cache_size=10)
    server = grpc.aio.server(interceptors=[recorder])
    pipeline = Pipeline(authenticator, access_log=False)
    pipeline.register(
        server, settings_pb2_grpc.add_SettingsServiceServicer_to_server, SettingsService(Store(db))
    )
    health = health_aio.HealthServicer()
    pipeline.register(server, health_pb2_grpc.add_HealthServicer_to_server, health)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    yield recorder, health, port
    await server.stop(None)


@pytest.fixture(scope="module")
async def recorded_client(recorded_server, gateway_config):
    _, _, port = recorded_server
    config = dataclasses.replace(
        gateway_config,
        grpc_target=f"127.0.0.1:{port}",
        gateway_deadline_seconds=DEADLINE_SECONDS,
    )
    async with (
        running_gateway(config) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as client,
    ):
        yield client


async def test_authorization_request_id_and_deadline_reach_the_server(
    recorded_server, recorded_client, new_account, platform_caller
):
    recorder, _, _ = recorded_server
    account = await new_account()
    path = f"/api/v4.1/settings/account/{account}/K"
    # One call first, so the asserted one goes over a connected channel: that is the case
    # where the wire's rounding shows (on a fresh channel, connecting eats into the deadline
    # before it is encoded, and the old bound held by luck; hence a flaky fresh-clone run).
    await recorded_client.get(path, headers={"Authorization": f"Bearer {platform_caller.token}"})
    recorder.calls.clear()

    started = time.monotonic()
    response = await recorded_client.get(
        path,
        headers={"Authorization": f"Bearer {platform_caller.token}", "X-Request-ID": "trace-42"},
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.text
    ((metadata, remaining),) = recorder.calls
    assert metadata["authorization"] == f"Bearer {platform_caller.token}"
    assert metadata["x-request-id"] == "trace-42"
    # The server sees the gateway's deadline as it arrived on the wire: no more than
    # DEADLINE_SECONDS plus the grpc-timeout encoding's round-up (WIRE_ROUNDING_SECONDS), and
    # no less than DEADLINE_SECONDS minus the whole request's time (the gateway set it after
    # `started`; the server read it before the response). The window grows with load rather
    # than shrinking, so a busy box cannot make it fail; a missing deadline (None), the
    # configuration's 5 s default or a deadline in the wrong unit still do.
    assert remaining is not None
    assert DEADLINE_SECONDS - elapsed - WIRE_ROUNDING_SECONDS <= remaining
    assert remaining <= DEADLINE_SECONDS + WIRE_ROUNDING_SECONDS


async def test_no_authorization_header_sends_none(recorded_server, recorded_client, new_account):
    recorder, _, _ = recorded_server
    account = await new_account()
    recorder.calls.clear()

    await recorded_client.get(f"/api/v4.1/settings/account/{account}/K")

    ((metadata, _),) = recorder.calls
    assert "authorization" not in metadata
    assert GENERATED_ID.fullmatch(metadata["x-request-id"])


async def test_readyz_follows_the_servers_health(recorded_server, recorded_client):
    _, health, _ = recorded_server

    assert (await recorded_client.get("/readyz")).status_code == 200
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        not_ready = await recorded_client.get("/readyz")
    finally:
        await health.set("", health_pb2.HealthCheckResponse.SERVING)

    assert (not_ready.status_code, not_ready.json()) == (503, {"status": "not ready"})
    assert (await recorded_client.get("/readyz")).json() == {"status": "ready"}


async def test_probes_on_the_session_gateway(http):
    alive = await http.get("/healthz")
    ready = await http.get("/readyz")

    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v4.1/settings/account/1/K"),
        ("GET", "/nowhere"),
        ("PATCH", "/api/v4.1/settings/account/1/K"),
        ("GET", "/wp-json/fluent-cart/v2/integration/global-settings?settings_key=webhook"),
        ("DELETE", "/wp-json/fluent-cart/v2/integration/global-settings"),
    ],
)
async def test_a_sane_request_id_is_kept_and_returned(http, rest_auth_headers, method, path):
    response = await http.request(
        method, path, headers={**rest_auth_headers, "X-Request-ID": "client-id.7:a_b"}
    )

    assert response.headers["x-request-id"] == "client-id.7:a_b"


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 129, "semi;colon", "ünï"])
async def test_otherwise_a_fresh_request_id_is_made(http, sent):
    headers = {} if sent is None else {"X-Request-ID": sent.encode()}

    first = await http.get("/healthz", headers=headers)
    second = await http.get("/healthz", headers=headers)

    assert GENERATED_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_each_request_is_logged_with_its_id_and_never_its_credentials(
    http, caplog, new_account
):
    account = await new_account()
    caplog.set_level(logging.INFO, logger="tierset.gateway")

    await http.get(
        f"/api/v4.1/settings/account/{account}/K",
        headers={"X-Request-ID": "logged-id-1", "Authorization": "Bearer s3cret-t0ken"},
    )

    lines = [r.getMessage() for r in caplog.records if "logged-id-1" in r.getMessage()]
    assert any(f"GET /api/v4.1/settings/account/{account}/K -> " in line for line in lines)
    assert "s3cret-t0ken" not in caplog.text


async def test_unknown_paths_are_404_in_the_familys_shape(http):
    fluent_commerce = await http.get("/api/v4.1/settings/nowhere")
    fluentcart = await http.get("/wp-json/fluent-cart/v2/nowhere")

    assert fluent_commerce.status_code == 404
    assert fluent_commerce.json()["message"] == "Not Found"
    assert fluent_commerce.json()["code"] == "404"
    assert fluentcart.status_code == 404
    assert fluentcart.json() == {
        "code": "rest_no_route",
        "message": "No route was found matching the URL and request method.",
        "data": {"status": 404},
    }


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v4.1/settings/account/1/K", {"DELETE", "GET", "HEAD", "PUT"}),
        ("/api/v4.1/settings/retailer/1/K", {"DELETE", "GET", "HEAD", "PUT"}),
        ("/wp-json/fluent-cart/v2/integration/global-settings", {"GET", "HEAD", "POST"}),
        ("/healthz", {"GET", "HEAD"}),
    ],
)
async def test_other_methods_are_405_with_allow(http, path, allowed):
    response = await http.request("PATCH", path)

    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == allowed
    body = response.json()
    if path.startswith("/wp-json/"):
        assert body["code"] == "rest_no_route" and body["data"] == {"status": 405}
    else:
        assert (body["message"], body["code"]) == ("Method Not Allowed", "405")


async def test_an_unexpected_error_is_the_familys_500_without_a_trace(caplog):
    async def broken(request):
        raise RuntimeError("secret internals")

    app = Starlette(
        routes=[Route("/api/broken", broken), Route("/wp-json/broken", broken)],
        middleware=[Middleware(RequestEnvelope)],
    )
    server = GatewayServer(uvicorn.Config(app, port=0, log_config=None, lifespan="off", ws="none"))
    async with (
        running_http_server(server) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as client,
    ):
        fluent_commerce = await client.get("/api/broken")
        fluentcart = await client.get("/wp-json/broken")

    assert fluent_commerce.status_code == 500
    assert fluent_commerce.json() == {
        "error": [{"code": "INTERNAL", "message": "internal error"}],
        "message": "Status 500 Error",
        "code": "500",
    }
    assert fluentcart.status_code == 500
    assert fluentcart.json() == {
        "code": "tierset_internal",
        "message": "internal error",
        "data": {"status": 500},
    }
    for response in (fluent_commerce, fluentcart):
        assert "secret internals" not in response.text and "Traceback" not in response.text
        assert GENERATED_ID.fullmatch(response.headers["x-request-id"])
    assert "secret internals" in caplog.text  # the log keeps what the client does not see
