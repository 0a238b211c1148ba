"""The gateway's error table, cell by cell, and failures as they arrive over real HTTP."""

from __future__ import annotations

import dataclasses

import grpc
import httpx
import pytest

from tests.conftest import free_port, running_gateway
from tierset.gateway import errors
from tierset.gateway.errors import Failure, Family
from tierset.v1 import settings_pb2, settings_pb2_grpc

# What each gRPC code must answer over HTTP: the status and Fluent Commerce's "message".
# The reference fixes 400/401/403/404/500; the others are our documented choices.
EXPECTED = {
    grpc.StatusCode.OK: (500, "Status 500 Error"),
    grpc.StatusCode.CANCELLED: (499, "Client Closed Request"),
    grpc.StatusCode.UNKNOWN: (500, "Status 500 Error"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "Bad Request"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "Gateway Timeout"),
    grpc.StatusCode.NOT_FOUND: (404, "Not Found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "Conflict"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Forbidden"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "Too Many Requests"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "Bad Request"),
    grpc.StatusCode.ABORTED: (409, "Conflict"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "Bad Request"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "Not Implemented"),
    grpc.StatusCode.INTERNAL: (500, "Status 500 Error"),
    grpc.StatusCode.UNAVAILABLE: (503, "Service Unavailable"),
    grpc.StatusCode.DATA_LOSS: (500, "Status 500 Error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "Unauthorized"),
}


def _fluentcart_expected(code: grpc.StatusCode, status: int) -> dict:
    if status == 400:
        return {
            "message": "Validation Failed, Please fill up the required fields.",
            "errors": {"reason_x": "what went wrong"},
        }
    if status == 404:
        return {"message": "Integration not found"}
    if status in (401, 403):
        return {
            "code": "rest_forbidden",
            "message": "Sorry, you are not allowed to do that.",
            "data": {"status": status},
        }
    return {
        "code": f"tierset_{code.name.lower()}",
        "message": "what went wrong",
        "data": {"status": status},
    }


def test_the_table_covers_every_grpc_code():
    assert set(errors.STATUS_TABLE) == set(grpc.StatusCode) == set(EXPECTED)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_fluent_commerce_cell(code):
    status, title = EXPECTED[code]

    rendered = errors.render(Failure(code, "what went wrong", "REASON_X"), Family.FLUENT_COMMERCE)

    assert rendered == (
        status,
        {
            "error": [{"code": "REASON_X", "message": "what went wrong"}],
            "message": title,
            "code": str(status),
        },
    )


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_fluentcart_cell(code):
    status, _ = EXPECTED[code]

    rendered = errors.render(Failure(code, "what went wrong", "REASON_X"), Family.FLUENTCART)

    assert rendered == (status, _fluentcart_expected(code, status))


def test_each_field_violation_is_its_own_entry():
    failure = Failure(
        grpc.StatusCode.INVALID_ARGUMENT,
        "Validation Failed",
        "INTEGRATION_VALIDATION_FAILED",
        (("integration.api_key", "API Key is required."), ("data_type", "bad data_type")),
    )

    assert errors.render(failure, Family.FLUENT_COMMERCE)[1]["error"] == [
        {"code": "integration.api_key", "message": "API Key is required."},
        {"code": "data_type", "message": "bad data_type"},
    ]
    assert errors.render(failure, Family.FLUENTCART)[1]["errors"] == {
        "api_key": "API Key is required.",
        "data_type": "bad data_type",
    }


@pytest.mark.parametrize("family", list(Family))
def test_transport_messages_never_reach_the_client(family):
    failure = Failure(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: 10.1.2.3:50051",
        trusted=False,
    )

    _, body = errors.render(failure, family)

    assert "10.1.2.3" not in str(body)
    assert "Service Unavailable" in str(body)


def test_the_family_follows_the_path():
    assert errors.family_of("/wp-json/fluent-cart/v2/anything") is Family.FLUENTCART
    assert errors.family_of("/api/v4.1/settings/account/1/K") is Family.FLUENT_COMMERCE
    assert errors.family_of("/elsewhere") is Family.FLUENT_COMMERCE


async def test_a_real_server_error_keeps_its_reason_and_fields(settings_stub, new_account):
    account = await new_account()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(account_id=account), keys=["ok", "bad key"]
            )
        )

    failure = errors.from_rpc_error(raised.value)

    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "INVALID_ARGUMENT" and failure.trusted
    assert [field for field, _ in failure.violations] == ["keys[1]"]


async def test_a_transport_error_is_untrusted():
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings_pb2_grpc.SettingsServiceStub(channel).GetSettings(
                settings_pb2.GetSettingsRequest(), timeout=5
            )

    failure = errors.from_rpc_error(raised.value)

    assert failure.code is grpc.StatusCode.UNAVAILABLE
    assert not failure.trusted and failure.reason == ""


@pytest.fixture(scope="module")
async def gateway_without_server(gateway_config):
    """A gateway whose gRPC server is not there."""
    config = dataclasses.replace(gateway_config, grpc_target=f"127.0.0.1:{free_port()}")
    async with running_gateway(config) as base_url:
        yield base_url


async def test_an_unreachable_server_is_503_in_each_shape(
    gateway_without_server, rest_auth_headers
):
    async with httpx.AsyncClient(base_url=gateway_without_server, trust_env=False) as client:
        fluent_commerce = await client.get(
            "/api/v4.1/settings/account/1/K", headers=rest_auth_headers
        )
        fluentcart = await client.get(
            "/wp-json/fluent-cart/v2/integration/global-settings?settings_key=webhook",
            headers=rest_auth_headers,
        )
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")

    assert fluent_commerce.status_code == 503
    assert fluent_commerce.json() == {
        "error": [{"code": "UNAVAILABLE", "message": "Service Unavailable"}],
        "message": "Service Unavailable",
        "code": "503",
    }
    assert fluentcart.status_code == 503
    assert fluentcart.json() == {
        "code": "tierset_unavailable",
        "message": "Service Unavailable",
        "data": {"status": 503},
    }
    assert (ready.status_code, ready.json()) == (503, {"status": "not ready"})
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})


async def test_a_call_past_its_deadline_is_504(gateway_config, rest_auth_headers, new_account):
    account = await new_account()
    # A deadline no call can meet: the gateway must give up and say so, not hang or 500.
    config = dataclasses.replace(gateway_config, gateway_deadline_seconds=1e-6)
    async with (
        running_gateway(config) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as client,
    ):
        response = await client.get(
            f"/api/v4.1/settings/account/{account}/K", headers=rest_auth_headers
        )

    assert response.status_code == 504
    assert response.json()["message"] == "Gateway Timeout"
    assert response.json()["code"] == "504"


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503, "temporarily_unavailable"),
        (grpc.StatusCode.INTERNAL, 500, "server_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "server_error"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "invalid_client"),
    ],
)
def test_the_token_endpoint_without_a_known_reason_follows_the_table(code, status, error):
    rendered = errors.render(Failure(code, "what went wrong", "SOMETHING_ELSE"), Family.OAUTH)

    assert rendered == (status, {"error": error, "error_description": "what went wrong"})


@pytest.mark.parametrize("family", list(Family))
@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_only_a_401_carries_www_authenticate(family, code):
    response = errors.response(Failure(code, "no", "CREDENTIALS_MISSING"), family)

    challenges = response.headers.getlist("www-authenticate")
    if response.status_code == 401:
        # The token endpoint offers no scheme: HTTP Basic client auth is not supported.
        expected_schemes = [] if family is Family.OAUTH else ["Bearer", "Basic"]
        assert [c.split(" ")[0] for c in challenges] == expected_schemes
        assert all('realm="tierset"' in c for c in challenges)
    else:
        assert challenges == []
