"""Integration settings belong to the caller's account: same name, separate rows."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import json_format

from tests.helpers import error_info
from tierset.core.authz import Role
from tierset.core.integrations import mask
from tierset.v1 import integrations_pb2, integrations_pb2_grpc


def _save(name: str, config: dict, integration_id: int = 0):
    return integrations_pb2.SetGlobalSettingsRequest(
        integration_name=name,
        integration={"string_value": json.dumps(config)},
        integration_id=integration_id,
        data_type=integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY,
    )


async def _read(stub, caller, name="webhook") -> tuple[int, dict]:
    response = await stub.GetGlobalSettings(
        integrations_pb2.GetGlobalSettingsRequest(settings_key=name), metadata=caller.metadata
    )
    return response.integration_id, json_format.MessageToDict(response.settings)


KEY_A = "alice-integration-key-AAAA"
KEY_B = "bob-integration-key-BBBB"


@pytest.fixture
def stub(channel) -> integrations_pb2_grpc.IntegrationServiceStub:
    return integrations_pb2_grpc.IntegrationServiceStub(channel)


async def test_each_account_has_its_own_integration_settings(stub, make_caller, db):
    alice, bob = await make_caller(Role.ADMIN), await make_caller(Role.ADMIN)

    saved_a = await stub.SetGlobalSettings(
        _save("webhook", {"enabled": True, "api_key": KEY_A}), metadata=alice.metadata
    )
    before_b = await _read(stub, bob)
    saved_b = await stub.SetGlobalSettings(
        _save("webhook", {"enabled": True, "api_key": KEY_B}), metadata=bob.metadata
    )

    assert saved_a.created and saved_b.created
    assert saved_a.integration_id != saved_b.integration_id
    assert before_b[0] == 0  # bob saw the catalogue defaults, not alice's key
    assert KEY_A[-4:] not in json.dumps(before_b[1])
    # Reads mask the key; its last four characters tell whose it is.
    assert (await _read(stub, alice))[1]["api_key"] == mask(KEY_A)
    assert (await _read(stub, bob))[1]["api_key"] == mask(KEY_B)
    rows = await db.fetch(
        "SELECT account_id FROM integrations WHERE id = ANY($1::bigint[])",
        [saved_a.integration_id, saved_b.integration_id],
    )
    assert sorted(r["account_id"] for r in rows) == sorted([alice.account_id, bob.account_id])


async def test_another_accounts_integration_id_is_not_found_and_unchanged(stub, make_caller):
    alice, bob = await make_caller(Role.ADMIN), await make_caller(Role.ADMIN)
    saved = await stub.SetGlobalSettings(
        _save("mailchimp", {"enabled": True, "api_key": KEY_A}), metadata=alice.metadata
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetGlobalSettings(
            _save("mailchimp", {"enabled": True, "api_key": KEY_B}, saved.integration_id),
            metadata=bob.metadata,
        )

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "INTEGRATION_NOT_FOUND"
    assert (await _read(stub, alice, "mailchimp"))[1]["api_key"] == mask(KEY_A)
