"""What the gateway refuses before a request reaches a handler, over real sockets: heads over
the byte or header cap (431), heads that arrive too slowly, connections over the cap (503),
and credentials or bodies too large for the gRPC call they would become (431, 413) — never
the 429 a client would retry."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json

import httpx
import pytest

from tests import rawhttp
from tests.conftest import running_gateway
from tierset.ops.config import Config, ConfigError

FLUENT_COMMERCE_PATH = "/api/v4.1/settings/account/1/K"
FLUENTCART_PATH = "/wp-json/fluent-cart/v2/integration/global-settings?settings_key=webhook"
MIB = 1 << 20


def _head(path: str, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _padded_to(size: int, path: str = "/healthz") -> bytes:
    """A finished request head of exactly `size` bytes, padded with one header."""
    bare = len(_head(path, "X-Pad: "))
    return _head(path, "X-Pad: " + "a" * (size - bare))


def _assert_431_shape(path: str, response: rawhttp.RawResponse) -> None:
    body = response.json()
    if path.startswith("/wp-json/"):
        assert body["data"] == {"status": 431} and body["code"].startswith("tierset_")
    elif path.startswith("/oauth/"):
        assert body["error"] == "invalid_request"
    else:
        assert (body["message"], body["code"]) == ("Request Header Fields Too Large", "431")
        assert body["error"][0]["code"] == "HEADERS_TOO_LARGE"


async def test_a_head_at_the_byte_cap_is_served(gateway, gateway_config):
    response = await rawhttp.exchange(gateway, _padded_to(gateway_config.http_max_header_bytes))

    assert response.status == 200


@pytest.mark.parametrize("path", [FLUENT_COMMERCE_PATH, FLUENTCART_PATH, "/oauth/token"])
async def test_a_head_one_byte_over_the_cap_is_431_in_the_familys_shape(
    gateway, gateway_config, path
):
    request = _padded_to(gateway_config.http_max_header_bytes + 1, path)

    response = await rawhttp.exchange(gateway, request)

    assert response.status == 431
    _assert_431_shape(path, response)
    assert response.header("connection") == "close"
    assert response.header("x-content-type-options") == "nosniff"


async def test_a_32_mib_finished_header_is_431_not_200(gateway):
    response = await rawhttp.exchange(gateway, _padded_to(32 * MIB))

    assert response.status == 431


async def test_a_request_line_over_the_cap_is_431(gateway, gateway_config):
    path = "/healthz?" + "q" * gateway_config.http_max_header_bytes

    response = await rawhttp.exchange(gateway, _head(path))

    assert response.status == 431


async def test_headers_up_to_the_count_cap_are_served_and_one_more_is_431(gateway, gateway_config):
    cap = gateway_config.http_max_headers
    # Host is one of them.
    at_cap = _head("/healthz", *(f"X-H{i}: v" for i in range(cap - 1)))
    over_cap = _head("/healthz", *(f"X-H{i}: v" for i in range(cap)))

    assert (await rawhttp.exchange(gateway, at_cap)).status == 200
    refused = await rawhttp.exchange(gateway, over_cap)
    assert refused.status == 431
    assert refused.json()["error"][0]["code"] == "TOO_MANY_HEADERS"


async def test_100000_headers_are_431(gateway):
    request = _head("/healthz", *(f"X-H{i}: v" for i in range(100_000)))

    assert (await rawhttp.exchange(gateway, request)).status == 431


@pytest.fixture
async def impatient_gateway(gateway_config):
    """A gateway whose heads must arrive within a second, and that holds 3 connections."""
    config = dataclasses.replace(
        gateway_config, http_header_timeout_seconds=1.0, http_max_connections=3
    )
    async with running_gateway(config) as base_url:
        yield base_url


async def test_a_head_that_never_finishes_is_408_and_dropped(impatient_gateway):
    reader, writer = await rawhttp.connect(impatient_gateway)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    await writer.drain()

    response = await rawhttp.read_response(reader, within=10)

    assert response.status == 408
    assert await rawhttp.closed_by_peer(reader, within=10)
    writer.close()


async def test_a_connection_that_sends_nothing_is_dropped(impatient_gateway):
    reader, writer = await rawhttp.connect(impatient_gateway)

    assert await rawhttp.closed_by_peer(reader, within=10)
    writer.close()


async def test_a_connection_over_the_cap_is_503_and_the_others_still_served(
    impatient_gateway,
):
    held = []
    for _ in range(3):  # each answered once, so the gateway counts it open
        reader, writer = await rawhttp.connect(impatient_gateway)
        writer.write(_head("/healthz"))
        assert (await rawhttp.read_response(reader)).status == 200
        held.append((reader, writer))

    refused = await rawhttp.exchange(impatient_gateway, _head("/healthz"))
    reader, writer = held[0]
    writer.write(_head("/healthz"))
    still_served = await rawhttp.read_response(reader)
    for _, writer in held:
        writer.close()

    assert refused.status == 503
    assert refused.header("retry-after") is not None
    assert still_served.status == 200


async def test_a_60kb_bearer_token_is_431(http, new_account):
    account = await new_account()

    response = await http.get(
        f"/api/v4.1/settings/account/{account}/K",
        headers={"Authorization": "Bearer " + "t" * 60_000},
    )

    assert response.status_code == 431, response.text
    assert response.json()["code"] == "431"


@pytest.mark.parametrize("path", [FLUENT_COMMERCE_PATH, FLUENTCART_PATH])
async def test_a_basic_username_of_10000_characters_is_431_naming_authorization(http, path):
    credentials = base64.b64encode(("u" * 10_000 + ":password").encode()).decode()

    response = await http.get(path, headers={"Authorization": f"Basic {credentials}"})

    assert response.status_code == 431, response.text
    body = response.json()
    if path.startswith("/wp-json/"):
        assert body["data"] == {"status": 431}
    else:
        assert body["error"][0]["code"] == "Authorization"


@pytest.fixture
async def roomy_gateway(gateway_config):
    """A gateway that reads bodies larger than the gRPC server's 4 MiB message limit."""
    config = dataclasses.replace(gateway_config, http_max_body_bytes=8 * MIB)
    async with running_gateway(config) as base_url:
        yield base_url


async def test_a_body_larger_than_a_grpc_message_is_413(
    roomy_gateway, rest_auth_headers, new_account
):
    account = await new_account()
    setting = json.dumps({"setting": {"value": "x" * (5 * MIB), "type": "LOB"}})
    integration = json.dumps({"integration_name": "webhook", "integration": "x" * (5 * MIB)})
    headers = {**rest_auth_headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=roomy_gateway, trust_env=False, timeout=30) as client:
        put = await client.put(
            f"/api/v4.1/settings/account/{account}/K", content=setting, headers=headers
        )
        post = await client.post(
            "/wp-json/fluent-cart/v2/integration/global-settings",
            content=integration,
            headers=headers,
        )

    assert put.status_code == 413, put.text[:300]
    assert (put.json()["message"], put.json()["code"]) == ("Content Too Large", "413")
    assert post.status_code == 413, post.text[:300]
    assert post.json()["data"] == {"status": 413}


async def test_the_gateway_refuses_at_the_servers_configured_limits_not_its_defaults(
    start_server, gateway_config, rest_auth_headers, new_account
):
    # An operator lowered both gRPC limits; the gateway reads the same variables.
    lowered = {"grpc_max_request_bytes": 64 * 1024, "grpc_max_metadata_bytes": 4096}
    running = await start_server(**lowered)
    config = dataclasses.replace(
        gateway_config, grpc_target=f"127.0.0.1:{running.app.port}", **lowered
    )
    account = await new_account()
    path = f"/api/v4.1/settings/account/{account}/K"
    # 100 KB: under the gateway's 2 MiB body limit, over the server's 64 KiB message limit.
    setting = json.dumps({"setting": {"value": "x" * 100_000, "type": "LOB"}})
    async with (
        running_gateway(config) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client,
    ):
        put = await client.put(
            path, content=setting, headers={**rest_auth_headers, "Content-Type": "application/json"}
        )
        # 3000 bytes: under the default 4096 bound, over half of the lowered 4096.
        long_token = await client.get(path, headers={"Authorization": "Bearer " + "t" * 3000})
        served = await client.get(path, headers=rest_auth_headers)

    assert put.status_code == 413, put.text[:300]
    assert "65536 bytes" in put.json()["error"][0]["message"]
    assert long_token.status_code == 431, long_token.text[:300]
    assert served.status_code in (200, 404), served.text[:300]


@pytest.fixture
async def body_timeout_gateway(gateway_config):
    """A gateway whose bodies must arrive within a second of their heads."""
    config = dataclasses.replace(gateway_config, http_body_timeout_seconds=1.0)
    async with running_gateway(config) as base_url:
        yield base_url


async def _trickled(base_url: str, method: str, path: str, within: float) -> rawhttp.RawResponse:
    """Announces a 100 KB body and sends a byte of it every 0.1 s until answered."""
    reader, writer = await rawhttp.connect(base_url)
    head = _head(path, "Content-Type: application/json", "Content-Length: 100000", method=method)
    writer.write(head + b'{"setting": {"value": "')
    await writer.drain()

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.1)
            writer.write(b"x")
            await writer.drain()

    trickling = asyncio.create_task(trickle())
    try:
        # Generous: the timeout is 1 s; a loaded machine may take a few more to answer.
        response = await rawhttp.read_response(reader, within=within)
        assert await rawhttp.closed_by_peer(reader, within=10)
        return response
    finally:
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await trickling
        writer.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", FLUENT_COMMERCE_PATH),
        ("POST", "/wp-json/fluent-cart/v2/integration/global-settings"),
        ("POST", "/oauth/token"),
    ],
)
async def test_a_trickled_body_is_cut_with_408_in_the_familys_shape(
    body_timeout_gateway, method, path
):
    response = await _trickled(body_timeout_gateway, method, path, within=15)

    assert response.status == 408
    body = response.json()
    if path.startswith("/wp-json/"):
        assert body["data"] == {"status": 408}
    elif path.startswith("/oauth/"):
        assert "error" in body and "1 s" in body["error_description"]
    else:
        assert (body["message"], body["code"]) == ("Request Timeout", "408")
        assert body["error"][0]["code"] == "BODY_TIMEOUT"


async def test_a_body_sent_at_once_is_still_served_under_the_body_timeout(
    body_timeout_gateway, rest_auth_headers, new_account
):
    account = await new_account()
    setting = json.dumps({"setting": {"value": "on", "type": "STRING"}})
    async with httpx.AsyncClient(
        base_url=body_timeout_gateway, trust_env=False, timeout=30
    ) as client:
        put = await client.put(
            f"/api/v4.1/settings/account/{account}/K",
            content=setting,
            headers={**rest_auth_headers, "Content-Type": "application/json"},
        )
        # The same connection, kept alive past the timeout, serves its next request.
        await asyncio.sleep(1.5)
        read = await client.get(
            f"/api/v4.1/settings/account/{account}/K", headers=rest_auth_headers
        )

    assert put.status_code == 200, put.text[:300]
    assert read.status_code == 200, read.text[:300]


def test_the_body_timeout_is_read_from_the_environment_and_checked():
    config = Config.from_env({"TIERSET_HTTP_BODY_TIMEOUT_SECONDS": "2.5"})
    assert config.http_body_timeout_seconds == 2.5
    with pytest.raises(ConfigError, match="TIERSET_HTTP_BODY_TIMEOUT_SECONDS"):
        Config.from_env({"TIERSET_HTTP_BODY_TIMEOUT_SECONDS": "0"})


def test_the_connection_limits_are_configured_from_the_environment():
    config = Config.from_env(
        {
            "TIERSET_HTTP_MAX_HEADER_BYTES": "8192",
            "TIERSET_HTTP_MAX_HEADERS": "50",
            "TIERSET_HTTP_HEADER_TIMEOUT_SECONDS": "2.5",
            "TIERSET_HTTP_KEEPALIVE_TIMEOUT_SECONDS": "3",
            "TIERSET_HTTP_MAX_CONNECTIONS": "64",
        }
    )
    defaults = Config.from_env({})

    assert (config.http_max_header_bytes, config.http_max_headers) == (8192, 50)
    assert config.http_header_timeout_seconds == 2.5
    assert config.http_keepalive_timeout_seconds == 3.0
    assert config.http_max_connections == 64
    assert (defaults.http_max_header_bytes, defaults.http_max_headers) == (16384, 100)
    assert defaults.http_header_timeout_seconds == 10.0
    assert defaults.http_keepalive_timeout_seconds == 5.0
    assert defaults.http_max_connections == 256


@pytest.mark.parametrize(
    "name",
    [
        "TIERSET_HTTP_MAX_HEADER_BYTES",
        "TIERSET_HTTP_MAX_HEADERS",
        "TIERSET_HTTP_HEADER_TIMEOUT_SECONDS",
        "TIERSET_HTTP_KEEPALIVE_TIMEOUT_SECONDS",
        "TIERSET_HTTP_MAX_CONNECTIONS",
    ],
)
def test_a_connection_limit_of_zero_is_refused_by_name(name):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: "0"})


async def test_the_gateway_still_serves_after_refusals(gateway, gateway_config):
    for _ in range(3):
        await rawhttp.exchange(gateway, _padded_to(gateway_config.http_max_header_bytes + 1))

    assert (await rawhttp.exchange(gateway, _head("/healthz"))).status == 200
