"""What every response is and is not, over real HTTP: no redirects (a trailing slash is the
family's 404, never a Location built from Host), the security headers, no echo of the path,
one Authorization header or a 401, and a client gone mid-body counted as 499, not 500."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from tests import rawhttp

ACCOUNT_PATH = "/api/v4.1/settings/account/{account}/K"
FLUENTCART_PATH = "/wp-json/fluent-cart/v2/integration/global-settings"
PUT_ROUTE = "/api/v4.1/settings/account/{accountId}/{key:keylist}"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v4.1/settings/retailer/2222/K/"),
        ("GET", "/api/v4.1/settings/account/1111/K/"),
        ("POST", "/oauth/token/"),
        ("GET", "/healthz/"),
        ("GET", "/readyz/"),
        ("GET", "/openapi.json/"),
        ("GET", FLUENTCART_PATH + "/"),
    ],
)
async def test_a_trailing_slash_is_the_familys_404_never_a_redirect(
    http, rest_auth_headers, method, path
):
    response = await http.request(
        method, path, headers={**rest_auth_headers, "Host": "evil.example"}
    )

    assert response.status_code == 404, response.headers
    assert "location" not in response.headers
    body = response.json()
    if path.startswith("/wp-json/"):
        assert body["code"] == "rest_no_route"
    elif path.startswith("/oauth/"):
        assert body["error"] == "invalid_request"
    else:
        assert (body["message"], body["code"]) == ("Not Found", "404")


async def test_a_404_does_not_echo_the_path(http):
    response = await http.get("/api/v4.1/<script>alert(1)</script>")

    assert response.status_code == 404
    assert "script" not in response.text and "alert" not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ACCOUNT_PATH),
        ("PUT", ACCOUNT_PATH),  # no body: 400
        ("DELETE", ACCOUNT_PATH),  # 405
        ("GET", FLUENTCART_PATH + "?settings_key=webhook"),
        ("GET", "/nowhere"),
        ("POST", "/oauth/token"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
    ],
)
async def test_every_response_is_no_store_and_nosniff(
    http, rest_auth_headers, new_account, method, path
):
    account = await new_account()

    response = await http.request(method, path.format(account=account), headers=rest_auth_headers)

    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_unauthenticated_401_is_no_store_and_nosniff(http, new_account):
    account = await new_account()

    response = await http.get(ACCOUNT_PATH.format(account=account))

    assert response.status_code == 401
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("order", ["valid first", "valid second", "both valid"])
async def test_two_authorization_headers_are_401_credentials_malformed(
    http, rest_auth_headers, new_account, order
):
    account = await new_account()
    valid = rest_auth_headers["Authorization"]
    pair = {
        "valid first": (valid, "Bearer nonsense"),
        "valid second": ("Bearer nonsense", valid),
        "both valid": (valid, valid),
    }[order]

    response = await http.get(
        ACCOUNT_PATH.format(account=account), headers=[("Authorization", v) for v in pair]
    )

    assert response.status_code == 401, response.text
    assert response.json() == {
        "error": [
            {"code": "CREDENTIALS_MALFORMED", "message": response.json()["error"][0]["message"]}
        ],
        "message": "Unauthorized",
        "code": "401",
    }
    assert "Authorization" in response.json()["error"][0]["message"]
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


async def test_two_authorization_headers_are_401_on_fluentcart_and_oauth(http, rest_auth_headers):
    valid = rest_auth_headers["Authorization"]
    twice = [("Authorization", valid), ("Authorization", valid)]

    fluentcart = await http.get(FLUENTCART_PATH + "?settings_key=webhook", headers=twice)
    token = await http.post("/oauth/token", params={"grant_type": "password"}, headers=twice)

    assert fluentcart.status_code == 401
    assert fluentcart.json() == {
        "code": "rest_forbidden",
        "message": "Sorry, you are not allowed to do that.",
        "data": {"status": 401},
    }
    assert token.status_code == 401
    assert token.json()["error"] == "invalid_client"


def _requests_counted(status: str) -> float:
    labels = {"method": "PUT", "route": PUT_ROUTE, "status": status}
    return REGISTRY.get_sample_value("http_server_requests_total", labels) or 0.0


async def test_a_client_gone_mid_body_is_logged_and_counted_as_499(
    gateway, rest_auth_headers, new_account, caplog
):
    account = await new_account()
    caplog.set_level(logging.INFO)
    before_499, before_500 = _requests_counted("499"), _requests_counted("500")
    _, writer = await rawhttp.connect(gateway)
    head = (
        f"PUT {ACCOUNT_PATH.format(account=account)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {rest_auth_headers['Authorization']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n"
        "X-Request-ID: gone-mid-body\r\n\r\n"
    )
    writer.write(head.encode() + b'{"setting": ')
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body
    writer.close()

    for _ in range(100):
        if _requests_counted("499") > before_499:
            break
        await asyncio.sleep(0.05)

    assert _requests_counted("499") == before_499 + 1
    assert _requests_counted("500") == before_500
    lines = [r for r in caplog.records if "gone-mid-body" in r.getMessage()]
    assert any("-> 499" in r.getMessage() for r in lines), [r.getMessage() for r in lines]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
