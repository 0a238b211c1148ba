"""FluentCart's integration global settings over the REST gateway, over real HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests

from tests.helpers import basic_authorization
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role

PATH = "/wp-json/fluent-cart/v2/integration/global-settings"

# The reference's curl sample: its headers and its --data, byte for byte.
CURL_DATA = """{
  "integration_name": "webhook",
  "integration": "{\\"api_key\\":\\"your-api-key\\",\\"enabled\\":true}",
  "integration_id": 0,
  "data_type": "stringify"
}"""
SAMPLE_PAYLOAD = {
    "integration_name": "webhook",
    "integration": '{"api_key":"your-api-key","enabled":true}',
    "integration_id": 0,
    "data_type": "stringify",
}
SAVED_CONFIG = {"api_key": "your-api-key", "enabled": True}
VALIDATION_FAILED = "Validation Failed, Please fill up the required fields."


@pytest.fixture
async def sample_headers(make_caller, db):
    """The sample's headers, its placeholder ``Authorization: Authorization`` replaced by what a
    FluentCart client sends: Basic with a store admin's username and application password."""
    admin = await make_caller(Role.ADMIN)
    app_password = await CredentialStore(db).issue(admin.user_id, Kind.APP_PASSWORD, name="shop")
    return {
        "Authorization": basic_authorization(admin.username, app_password.secret),
        "Content-Type": "application/json",
    }


@pytest.fixture
def post(http, rest_auth_headers):
    async def send(body, **kwargs):
        content = body if isinstance(body, str | bytes) else json.dumps(body)
        headers = {**rest_auth_headers, "Content-Type": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        return await http.post(PATH, content=content, headers=headers, **kwargs)

    return send


def _documented_200(integration_id, created, config=SAVED_CONFIG, name="webhook") -> dict:
    return {
        "message": "Integration has been successfully saved",
        "integration_id": integration_id,
        "integration_name": name,
        "created": created,
        "feedData": {"meta_key": name, "meta_value": config, "object_type": "order_integration"},
    }


async def test_the_curl_sample_runs_verbatim(http, sample_headers, clean_integrations):
    response = await http.post(PATH, content=CURL_DATA.encode(), headers=sample_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["integration_id"], int) and body["integration_id"] > 0
    assert body == _documented_200(body["integration_id"], created=True)


async def test_the_python_requests_sample_runs_verbatim(
    gateway, sample_headers, clean_integrations
):
    url = gateway + PATH

    def sample() -> requests.Response:
        session = requests.Session()
        session.trust_env = False  # only ever 127.0.0.1, never a proxy from the environment
        return session.post(url, json=SAMPLE_PAYLOAD, headers=sample_headers, timeout=10)

    response = await asyncio.to_thread(sample)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body == _documented_200(body["integration_id"], created=True)


async def test_saving_again_updates_and_says_not_created(post, clean_integrations):
    first = (await post(SAMPLE_PAYLOAD)).json()
    changed = {"api_key": "another-key", "enabled": True, "webhook_url": "https://example.test/h"}

    second = await post(
        {
            "integration_name": "webhook",
            "integration": json.dumps(changed),
            "integration_id": first["integration_id"],
            "data_type": "stringify",
        }
    )

    assert second.status_code == 200, second.text
    assert second.json() == _documented_200(first["integration_id"], created=False, config=changed)


async def test_an_object_integration_with_data_type_object(post, clean_integrations):
    response = await post(
        {
            "integration_name": "slack",
            "integration": {"enabled": True, "webhook_url": "https://hooks.example.test/x"},
            "integration_id": 0,
            "data_type": "object",
        }
    )

    assert response.status_code == 200, response.text
    assert response.json() == _documented_200(
        response.json()["integration_id"],
        created=True,
        config={"enabled": True, "webhook_url": "https://hooks.example.test/x"},
        name="slack",
    )


@pytest.mark.parametrize(
    "integration",
    ['{"api_key":"k","enabled":true}', {"api_key": "k", "enabled": True}],
)
async def test_without_data_type_the_server_infers_it(post, clean_integrations, integration):
    response = await post({"integration_name": "mailchimp", "integration": integration})

    assert response.status_code == 200, response.text
    assert response.json()["feedData"]["meta_value"] == {"api_key": "k", "enabled": True}


async def test_an_integration_id_as_a_digit_string_is_the_same_id(post, clean_integrations):
    first = (await post(SAMPLE_PAYLOAD)).json()

    again = await post({**SAMPLE_PAYLOAD, "integration_id": str(first["integration_id"])})

    assert again.status_code == 200, again.text
    assert again.json()["integration_id"] == first["integration_id"]
    assert again.json()["created"] is False


async def test_get_returns_the_saved_settings(http, post, rest_auth_headers, clean_integrations):
    saved = (await post(SAMPLE_PAYLOAD)).json()

    response = await http.get(PATH, params={"settings_key": "webhook"}, headers=rest_auth_headers)

    assert response.status_code == 200
    assert response.json() == {
        "integration_id": saved["integration_id"],
        "integration_name": "webhook",
        "settings": {**SAVED_CONFIG, "api_key": "********"},  # secrets are masked on read
    }


async def test_get_of_a_never_saved_integration_returns_its_defaults(
    http, rest_auth_headers, clean_integrations
):
    response = await http.get(PATH, params={"settings_key": "slack"}, headers=rest_auth_headers)

    assert response.json() == {
        "integration_id": 0,
        "integration_name": "slack",
        "settings": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {**SAMPLE_PAYLOAD, "integration": '{"enabled":true}'},
            {"api_key": "API Key is required."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration": '{"enabled":"yes","api_key":5}'},
            {"enabled": "Enabled must be true or false.", "api_key": "API Key must be a string."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration": "not json at all"},
            {"integration": "Integration must be a JSON object."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration": {"enabled": True}},
            {"integration": "Integration must be a JSON string when data_type is stringify."},
        ),
        (
            {**SAMPLE_PAYLOAD, "data_type": "xml"},
            {"data_type": "data_type must be stringify or object."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration_name": 5},
            {"integration_name": "integration_name must be a string."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration_id": "one"},
            {"integration_id": "integration_id must be a whole number."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration_id": True},
            {"integration_id": "integration_id must be a whole number."},
        ),
        (
            {**SAMPLE_PAYLOAD, "integration_id": 2**63},
            {"integration_id": "integration_id must be a whole number."},
        ),
    ],
)
async def test_validation_failures_are_400_in_fluentcarts_shape(
    http, post, rest_auth_headers, clean_integrations, body, errors
):
    response = await post(body)

    assert response.status_code == 400, response.text
    assert response.json() == {"message": VALIDATION_FAILED, "errors": errors}
    saved = await http.get(PATH, params={"settings_key": "webhook"}, headers=rest_auth_headers)
    assert saved.json()["integration_id"] == 0, "nothing may be written"


@pytest.mark.parametrize(
    "body",
    [
        {**SAMPLE_PAYLOAD, "integration_name": "no-such-integration"},
        {**SAMPLE_PAYLOAD, "integration_id": 987654321},
        {**SAMPLE_PAYLOAD, "integration_name": ""},
    ],
)
async def test_unknown_integration_name_or_id_is_404(post, clean_integrations, body):
    response = await post(body)

    assert response.status_code == 404
    assert response.json() == {"message": "Integration not found"}


@pytest.mark.parametrize("params", [{"settings_key": "no-such-integration"}, {}])
async def test_get_of_an_unknown_integration_is_404(http, rest_auth_headers, params):
    response = await http.get(PATH, params=params, headers=rest_auth_headers)

    assert response.status_code == 404
    assert response.json() == {"message": "Integration not found"}


@pytest.mark.parametrize(
    ("content", "headers", "field"),
    [
        ("{", {}, "body"),
        ("", {}, "body"),
        ("[1, 2]", {}, "body"),
        ('"just a string"', {}, "body"),
        (b"\xff\xfe", {}, "body"),
        ('{"integration_name": "webhook", "integration": NaN}', {}, "body"),
        (CURL_DATA, {"Content-Type": "text/plain"}, "Content-Type"),
        (CURL_DATA, {"Content-Type": "multipart/form-data"}, "Content-Type"),
        ('{"integration_name": "webhook", "integration": {"a": "\\ud800"}}', {}, "integration"),
        ('{"integration_name": "\\ud800", "integration": "{}"}', {}, "body"),
        ('{"integration_name": "webhook", "integration": {"n": 1e400}}', {}, "body"),
        (
            '{"integration_name": "webhook", "integration": ' + "[" * 5000 + "]" * 5000 + "}",
            {},
            None,
        ),
    ],
)
async def test_malformed_requests_are_400_in_fluentcarts_shape(
    post, clean_integrations, content, headers, field
):
    response = await post(content, headers=headers)

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == VALIDATION_FAILED
    if field is not None:
        assert list(body["errors"]) == [field]
    else:
        assert len(body["errors"]) == 1


async def test_a_body_over_the_size_limit_is_413(post, gateway_config):
    big = {**SAMPLE_PAYLOAD, "integration": "x" * gateway_config.http_max_body_bytes}

    response = await post(big)

    assert response.status_code == 413
    assert response.json()["data"] == {"status": 413}


async def test_a_query_that_is_not_utf8_is_400(http, rest_auth_headers):
    response = await http.get(PATH + "?settings_key=%FF", headers=rest_auth_headers)

    assert response.status_code == 400
    assert response.json() == {
        "message": VALIDATION_FAILED,
        "errors": {"path": "The path or query is not valid UTF-8."},
    }
