"""POST /oauth/token over real HTTP: Fluent Commerce's password grant, refresh, RFC 6749 errors."""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import free_port, running_gateway
from tierset.core.authz import Role

PASSWORD = "correct horse battery staple"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


@pytest.fixture
async def admin(make_caller):
    """An ADMIN with a password (for the password grant)."""
    return await make_caller(Role.ADMIN, password=PASSWORD)


def _password_fields(client, username, password=PASSWORD) -> dict[str, str]:
    return {
        "username": username,
        "password": password,
        "client_id": client[0],
        "client_secret": client[1],
        "scope": "api",
        "grant_type": "password",
    }


def _changed(fields: dict[str, str], change: dict[str, str | None]) -> dict[str, str]:
    """`fields` with `change` applied; a None value leaves the field out."""
    merged = {**fields, **change}
    return {name: value for name, value in merged.items() if value is not None}


def _refresh_fields(client, refresh_token) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client[0],
        "client_secret": client[1],
    }


async def _read_settings(http, account_id, access_token) -> int:
    response = await http.get(
        f"/api/v4.1/settings/account/{account_id}/ANY.KEY",
        headers={"Authorization": f"Bearer {access_token}"},
    )
    return response.status_code


def _assert_token_response(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope", "refresh_token"]
    assert body["access_token"].startswith("tsat_")
    assert body["refresh_token"].startswith("tsrt_")
    assert body["token_type"] == "bearer"
    assert body["scope"] == "api"
    assert isinstance(body["expires_in"], int) and body["expires_in"] == 3600
    assert {k: response.headers.get(k) for k in NO_STORE} == NO_STORE
    return body


async def test_password_grant_form_encoded_gives_a_working_bearer(http, admin, oauth_client):
    response = await http.post(
        "/oauth/token",
        content=urlencode(_password_fields(oauth_client, admin.username)),
        headers=FORM,
    )

    body = _assert_token_response(response)
    assert await _read_settings(http, admin.account_id, body["access_token"]) == 200


async def test_password_grant_in_the_query_string_as_fluent_commerce_documents_it(
    http, admin, oauth_client
):
    # Fluent Commerce's docs: POST /oauth/token?username=...&password=...&... with no body.
    response = await http.post(
        "/oauth/token", params=_password_fields(oauth_client, admin.username)
    )

    body = _assert_token_response(response)
    assert await _read_settings(http, admin.account_id, body["access_token"]) == 200


@pytest.mark.parametrize("body_password", [PASSWORD, "wrong"], ids=["same", "different"])
async def test_a_field_in_both_the_query_and_the_body_is_refused(
    http, admin, oauth_client, body_password
):
    query = _password_fields(oauth_client, admin.username, PASSWORD)
    response = await http.post(
        "/oauth/token",
        params=query,
        content=urlencode({"password": body_password}),
        headers=FORM,
    )

    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "password is sent more than once (in the query string and the body).",
    }
    assert {k: response.headers.get(k) for k in NO_STORE} == NO_STORE


async def test_fields_may_be_split_between_the_query_and_the_body(http, admin, oauth_client):
    fields = _password_fields(oauth_client, admin.username)
    password = fields.pop("password")
    response = await http.post(
        "/oauth/token", params=fields, content=urlencode({"password": password}), headers=FORM
    )

    _assert_token_response(response)


async def test_a_refresh_token_exchanges_once_and_reuse_revokes_the_grant(
    http, admin, oauth_client
):
    first = _assert_token_response(
        await http.post("/oauth/token", data=_password_fields(oauth_client, admin.username))
    )
    second = _assert_token_response(
        await http.post("/oauth/token", data=_refresh_fields(oauth_client, first["refresh_token"]))
    )
    assert await _read_settings(http, admin.account_id, second["access_token"]) == 200

    reused = await http.post(
        "/oauth/token", data=_refresh_fields(oauth_client, first["refresh_token"])
    )

    assert reused.status_code == 400
    assert reused.json() == {"error": "invalid_grant", "error_description": "Bad credentials"}
    # Reuse means the refresh token leaked: every token of that grant stops working.
    for token in (first["access_token"], second["access_token"]):
        assert await _read_settings(http, admin.account_id, token) == 401
    again = await http.post(
        "/oauth/token", data=_refresh_fields(oauth_client, second["refresh_token"])
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


# change to the password grant → (HTTP status, OAuth error, exact description or None)
BAD_REQUESTS = {
    "wrong-password": ({"password": "wrong"}, 400, "invalid_grant", "Bad credentials"),
    "unknown-user": ({"username": "nobody-here"}, 400, "invalid_grant", "Bad credentials"),
    "wrong-client-secret": ({"client_secret": "tscs_wrong"}, 401, "invalid_client", None),
    "unknown-client": ({"client_id": "no-such-client"}, 401, "invalid_client", None),
    "unsupported-grant": (
        {"grant_type": "client_credentials"},
        400,
        "unsupported_grant_type",
        None,
    ),
    "other-scope": ({"scope": "admin"}, 400, "invalid_scope", None),
    "no-grant-type": ({"grant_type": None}, 400, "invalid_request", None),
    "no-client-id": ({"client_id": None}, 400, "invalid_request", None),
    "no-password": ({"password": None}, 400, "invalid_request", None),
    # PostgreSQL text cannot hold NUL: a client's mistake, never a 500.
    "nul-in-username": ({"username": "a\x00b"}, 400, "invalid_request", None),
    "nul-in-client-id": ({"client_id": "a\x00b"}, 400, "invalid_request", None),
}


@pytest.mark.parametrize(
    ("change", "status", "error", "description"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
async def test_refused_token_requests_in_rfc6749_shape(
    http, admin, oauth_client, change, status, error, description
):
    response = await http.post(
        "/oauth/token", data=_changed(_password_fields(oauth_client, admin.username), change)
    )

    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error", "error_description"]
    assert body["error"] == error
    assert body["error_description"]
    if description is not None:
        assert body["error_description"] == description
    assert {k: response.headers.get(k) for k in NO_STORE} == NO_STORE
    if status == 401:
        # HTTP Basic client authentication is not supported: no challenge offers it.
        assert "www-authenticate" not in response.headers
    else:
        assert "www-authenticate" not in response.headers


MALFORMED = {
    "json-body": ({"Content-Type": "application/json"}, b'{"grant_type": "password"}'),
    "no-content-type": ({}, b"grant_type=password"),
    "not-utf8": (FORM, b"grant_type=password&username=%ff%fe"),
    "raw-non-ascii": (FORM, "grant_type=password&username=caf\xe9".encode("latin-1")),
    "field-twice": (FORM, b"grant_type=password&grant_type=refresh_token"),
}


@pytest.mark.parametrize(("headers", "content"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_token_requests_are_invalid_request(http, headers, content):
    response = await http.post("/oauth/token", content=content, headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


async def test_a_body_over_the_size_limit_is_413_invalid_request(http):
    response = await http.post(
        "/oauth/token", content=b"username=" + b"x" * 3_000_000, headers=FORM
    )

    assert response.status_code == 413, response.text
    assert response.json()["error"] == "invalid_request"


async def test_other_methods_are_405_in_oauth_shape(http):
    response = await http.get("/oauth/token")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "Allowed methods: POST",
    }


async def test_an_unreachable_server_is_503_temporarily_unavailable(gateway_config, oauth_client):
    config = dataclasses.replace(gateway_config, grpc_target=f"127.0.0.1:{free_port()}")
    async with (
        running_gateway(config) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as client,
    ):
        response = await client.post("/oauth/token", data=_password_fields(oauth_client, "anyone"))

    assert response.status_code == 503
    assert response.json() == {
        "error": "temporarily_unavailable",
        "error_description": "Service Unavailable",
    }


async def test_no_secret_of_a_token_request_reaches_a_log_or_a_response(
    caplog, http, admin, oauth_client
):
    caplog.set_level(logging.DEBUG)
    issued = (
        await http.post("/oauth/token", params=_password_fields(oauth_client, admin.username))
    ).json()
    answers = [
        (
            await http.post(
                "/oauth/token", params=_password_fields(oauth_client, admin.username, "wrong")
            )
        ).text,
        (
            await http.post(
                "/oauth/token", data=_refresh_fields(oauth_client, issued["refresh_token"])
            )
        ).text,
        (
            await http.post(
                "/oauth/token", data=_refresh_fields(oauth_client, issued["refresh_token"])
            )
        ).text,
    ]

    # tierset's own lines (gateway and server): the test's HTTP client and the harness
    # log the URLs they send, which is not something the service does.
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
        if record.name.startswith("tierset")
    )
    assert "POST /oauth/token" in logged
    for secret in (PASSWORD, oauth_client[1], issued["access_token"], issued["refresh_token"]):
        assert secret not in logged
        assert all(secret not in answer for answer in answers)
