"""Integration settings: FluentCart's "Set Global Settings" over gRPC."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from tests.helpers import error_info, field_violations
from tierset.core.integrations import MASK
from tierset.v1 import integrations_pb2

STRINGIFY = integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY
OBJECT = integrations_pb2.INTEGRATION_DATA_TYPE_OBJECT


def _value(config, data_type) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if data_type == STRINGIFY:
        value.string_value = config if isinstance(config, str) else json.dumps(config)
    else:
        json_format.ParseDict(config, value)
    return value


def _request(name, config, data_type=STRINGIFY, integration_id=0):
    return integrations_pb2.SetGlobalSettingsRequest(
        integration_name=name,
        integration=_value(config, data_type),
        integration_id=integration_id,
        data_type=data_type,
    )


async def test_documented_sample_creates(integrations_stub, clean_integrations):
    response = await integrations_stub.SetGlobalSettings(
        _request("webhook", '{"api_key":"your-api-key","enabled":true}')
    )

    assert response.message == "Integration has been successfully saved"
    assert response.integration_id > 0
    assert (response.integration_name, response.created) == ("webhook", True)
    assert response.feed_data.meta_key == "webhook"
    assert response.feed_data.object_type == "order_integration"
    assert json_format.MessageToDict(response.feed_data.meta_value) == {
        "api_key": "your-api-key",
        "enabled": True,
    }


@pytest.mark.parametrize("data_type", [STRINGIFY, OBJECT])
async def test_save_again_updates_the_same_integration(
    integrations_stub, db, clean_integrations, data_type
):
    first = await integrations_stub.SetGlobalSettings(
        _request("webhook", {"api_key": "k1", "enabled": True}, data_type)
    )
    by_id = await integrations_stub.SetGlobalSettings(
        _request("webhook", {"api_key": "k2", "enabled": True}, data_type, first.integration_id)
    )
    by_name = await integrations_stub.SetGlobalSettings(
        _request("webhook", {"api_key": "k3", "enabled": False}, data_type)
    )

    assert (by_id.integration_id, by_id.created) == (first.integration_id, False)
    assert (by_name.integration_id, by_name.created) == (first.integration_id, False)
    read = await integrations_stub.GetGlobalSettings(
        integrations_pb2.GetGlobalSettingsRequest(settings_key="webhook")
    )
    assert read.integration_id == first.integration_id
    # A read masks the key; what is stored is the last key sent.
    assert json_format.MessageToDict(read.settings) == {"api_key": MASK, "enabled": False}
    assert (
        await db.fetchval(
            "SELECT config->>'api_key' FROM integrations WHERE id = $1", first.integration_id
        )
        == "k3"
    )


async def test_unsaved_integration_reads_as_defaults(integrations_stub, clean_integrations):
    read = await integrations_stub.GetGlobalSettings(
        integrations_pb2.GetGlobalSettingsRequest(settings_key="slack")
    )
    assert read.integration_id == 0
    assert json_format.MessageToDict(read.settings) == {"enabled": False}


@pytest.mark.parametrize(
    ("name", "config", "violations"),
    [
        ("webhook", {"enabled": True}, {"integration.api_key": "API Key is required."}),
        (
            "webhook",
            {"enabled": True, "api_key": ""},
            {"integration.api_key": "API Key is required."},
        ),
        ("slack", {"enabled": True}, {"integration.webhook_url": "Webhook URL is required."}),
        (
            "webhook",
            {"enabled": "yes", "api_key": "k"},
            {"integration.enabled": "Enabled must be true or false."},
        ),
        (
            "webhook",
            {"enabled": True, "api_key": 5, "colour": "red"},
            {
                "integration.api_key": "API Key must be a string.",
                "integration.colour": "colour is not a field of the webhook integration.",
            },
        ),
        ("webhook", "{not json", {"integration": "Integration must be a JSON object."}),
        ("webhook", "[1, 2]", {"integration": "Integration must be a JSON object."}),
    ],
)
async def test_bad_configuration_names_each_field(
    integrations_stub, db, clean_integrations, name, config, violations
):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(_request(name, config))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "Validation Failed, Please fill up the required fields."
    assert field_violations(raised.value) == violations
    assert await db.fetchval("SELECT count(*) FROM integrations") == 0


async def test_disabled_integration_needs_no_key(integrations_stub, clean_integrations):
    response = await integrations_stub.SetGlobalSettings(_request("webhook", {"enabled": False}))
    assert response.created


async def test_data_type_must_match_what_arrived(integrations_stub, clean_integrations):
    request = _request("webhook", {"enabled": False}, OBJECT)
    request.data_type = STRINGIFY
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "integration" in field_violations(raised.value)


async def test_unknown_integration_name_is_not_found(integrations_stub):
    for call in (
        integrations_stub.SetGlobalSettings(_request("telegraph", {"enabled": False})),
        integrations_stub.GetGlobalSettings(
            integrations_pb2.GetGlobalSettingsRequest(settings_key="telegraph")
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert raised.value.details() == "Integration not found"
        assert error_info(raised.value).reason == "INTEGRATION_NOT_FOUND"


async def test_unknown_integration_id_is_not_found_and_writes_nothing(
    integrations_stub, db, clean_integrations
):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(
            _request("webhook", {"enabled": False}, integration_id=987654)
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert await db.fetchval("SELECT count(*) FROM integrations") == 0


async def test_id_of_another_integration_is_not_found(integrations_stub, clean_integrations):
    slack = await integrations_stub.SetGlobalSettings(_request("slack", {"enabled": False}))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(
            _request("webhook", {"enabled": False}, integration_id=slack.integration_id)
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


LONG_KEY = "sk_live_0123456789abcdefWXYZ"


async def _read_settings(stub) -> dict:
    read = await stub.GetGlobalSettings(
        integrations_pb2.GetGlobalSettingsRequest(settings_key="webhook")
    )
    return json_format.MessageToDict(read.settings)


async def _stored_key(db, integration_id: int) -> str:
    return await db.fetchval(
        "SELECT config->>'api_key' FROM integrations WHERE id = $1", integration_id
    )


async def test_reads_mask_secrets_but_the_saving_call_sees_what_it_sent(
    integrations_stub, db, clean_integrations
):
    config = {"api_key": LONG_KEY, "enabled": True, "webhook_url": "https://example.test/h"}
    saved = await integrations_stub.SetGlobalSettings(_request("webhook", config))

    assert json_format.MessageToDict(saved.feed_data.meta_value) == config
    # The last four characters, to recognise the key; never enough to use it.
    assert await _read_settings(integrations_stub) == {**config, "api_key": MASK + "WXYZ"}
    assert LONG_KEY not in json.dumps(await _read_settings(integrations_stub))


async def test_sending_the_masked_key_back_keeps_the_stored_one(
    integrations_stub, db, clean_integrations
):
    saved = await integrations_stub.SetGlobalSettings(
        _request("webhook", {"api_key": LONG_KEY, "enabled": True})
    )
    form = await _read_settings(integrations_stub)  # what an admin page would show and resend

    again = await integrations_stub.SetGlobalSettings(
        _request("webhook", {**form, "enabled": False})
    )

    assert await _stored_key(db, saved.integration_id) == LONG_KEY
    assert json_format.MessageToDict(again.feed_data.meta_value)["api_key"] == form["api_key"]
    assert (await _read_settings(integrations_stub))["enabled"] is False


@pytest.mark.parametrize("new_key", ["replacement-key-9876", MASK + "nope"])
async def test_any_other_value_replaces_the_stored_key(
    integrations_stub, db, clean_integrations, new_key
):
    saved = await integrations_stub.SetGlobalSettings(
        _request("webhook", {"api_key": LONG_KEY, "enabled": True})
    )
    await integrations_stub.SetGlobalSettings(
        _request("webhook", {"api_key": new_key, "enabled": True})
    )
    assert await _stored_key(db, saved.integration_id) == new_key
