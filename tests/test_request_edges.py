"""Requests at and past the edges: bytes that are no message, errors too big to send,
integration bodies built to hurt. Each is INVALID_ARGUMENT naming the field; nothing is written."""

from __future__ import annotations

import json
import math

import grpc
import pytest
from google.protobuf import struct_pb2

from tests.helpers import error_info, field_violations, rich_status
from tierset.core.errors import MAX_VIOLATIONS
from tierset.v1 import integrations_pb2, settings_pb2


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xff\xff\xff\x0f",  # a varint that never ends
        b"\x12\x05abc",  # a string field cut short
        b"\x12\x02\xff\xfe",  # a string field that is not UTF-8
        b"\x0a\x80\x80\x80\x80\x10",  # a length past the end
    ],
)
async def test_bytes_that_are_not_a_message_are_invalid_argument(channel, db, raw):
    put = channel.unary_unary("/tierset.v1.SettingsService/PutSetting")
    before = await db.fetchval("SELECT count(*) FROM settings")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await put(raw)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid request" in raised.value.details()
    assert field_violations(raised.value).keys() == {"request"}
    assert await db.fetchval("SELECT count(*) FROM settings") == before


async def test_a_hundred_bad_long_keys_still_get_a_readable_error(settings_stub, new_account):
    # Each description echoes its key; all of them would overflow the 16 KiB trailers.
    keys = [f"-{'K' * 250}{i:03}" for i in range(100)]
    scope = settings_pb2.Scope(account_id=await new_account())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=keys))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(raised.value)
    assert list(violations) == [f"keys[{i}]" for i in range(MAX_VIOLATIONS)]
    assert len(rich_status(raised.value).SerializeToString()) < 8192


def _stringified(text: str) -> integrations_pb2.SetGlobalSettingsRequest:
    return integrations_pb2.SetGlobalSettingsRequest(
        integration_name="slack",
        integration=struct_pb2.Value(string_value=text),
        data_type=integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY,
    )


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("[" * 60_000, "integration", "JSON object"),
        ("{" * 50 + "}" * 50, "integration", "JSON object"),
        (json.dumps({"webhook_url": "x" * 70_000}), "integration", "at most 65536 bytes"),
        ('{"enabled": true, "webhook_url": "\\ud800"}', "integration.webhook_url", "surrogate"),
        ('{"enabled": true, "webhook_url": "a\\u0000"}', "integration.webhook_url", "NUL"),
        (json.dumps({f"field{i}": i for i in range(3000)}), "integration.field0", "not a field"),
        (json.dumps({"\udcff" * 10: 1}), "integration.?", "not a field"),
        # Python's json reads these (NaN, and 1e400 as infinity); no catalogue field is a
        # number, so they are refused by the field's type before anything is stored.
        ('{"enabled": NaN}', "integration.enabled", "true or false"),
        ('{"enabled": true, "webhook_url": 1e400}', "integration.webhook_url", "must be a string"),
    ],
)
async def test_hostile_integration_bodies_are_refused_by_field(
    integrations_stub, db, text, field, says
):
    before = await db.fetchval("SELECT count(*) FROM integrations")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(_stringified(text))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(raised.value).reason == "INTEGRATION_VALIDATION_FAILED"
    violations = field_violations(raised.value)
    assert any(f.startswith(field) and says in d for f, d in violations.items()), violations
    assert await db.fetchval("SELECT count(*) FROM integrations") == before


async def test_an_unknown_data_type_number_is_invalid_argument(integrations_stub):
    request = _stringified('{"enabled": false}')
    request.data_type = 99  # proto3 enums are open: any number can arrive
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value).keys() == {"data_type"}


def _object(fields: dict[str, struct_pb2.Value]) -> integrations_pb2.SetGlobalSettingsRequest:
    """An OBJECT body built field by field, as a gRPC client (or the gateway) may send it:
    a double can be NaN or infinite on the wire, which no JSON parser would produce."""
    request = integrations_pb2.SetGlobalSettingsRequest(
        integration_name="webhook", data_type=integrations_pb2.INTEGRATION_DATA_TYPE_OBJECT
    )
    for name, value in fields.items():
        request.integration.struct_value.fields[name].CopyFrom(value)
    return request


def _number(number: float) -> struct_pb2.Value:
    return struct_pb2.Value(number_value=number)


def _deep(depth: int) -> struct_pb2.Value:
    value = struct_pb2.Value(string_value="bottom")
    for _ in range(depth):
        outer = struct_pb2.Value()
        outer.struct_value.fields["x"].CopyFrom(value)
        value = outer
    return value


def _list(*items: struct_pb2.Value) -> struct_pb2.Value:
    value = struct_pb2.Value()
    value.list_value.values.extend(items)
    return value


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"enabled": _number(math.inf)}, "integration.enabled", "not finite"),
        ({"enabled": _number(-math.inf)}, "integration.enabled", "not finite"),
        ({"enabled": _number(math.nan)}, "integration.enabled", "not finite"),
        (
            {"api_key": _list(_number(1), _list(_number(math.inf)))},
            "integration.api_key",
            "not finite",
        ),
        ({"colour": _number(math.nan)}, "integration.colour", "not finite"),
        # 30 deep is 90 nested messages, within protobuf's parse limit of 100.
        ({"webhook_url": _deep(30)}, "integration.webhook_url", "must be a string"),
        ({"enabled": _list(struct_pb2.Value(bool_value=True))}, "integration.enabled", "true or"),
        (
            {"api_key": struct_pb2.Value(string_value="k" * 3_000_000)},
            "integration.api_key",
            "2048",
        ),
        ({"colour": struct_pb2.Value(string_value="k" * 3_000_000)}, "integration.colour", "not a"),
        (
            {"enabled": struct_pb2.Value(bool_value=True), "api_key": struct_pb2.Value()},
            "integration.api_key",
            "is required",
        ),
    ],
)
async def test_hostile_object_integrations_are_refused_by_field(
    integrations_stub, db, fields, field, says
):
    before = await db.fetchval("SELECT count(*) FROM integrations")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await integrations_stub.SetGlobalSettings(_object(fields))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(raised.value).reason == "INTEGRATION_VALIDATION_FAILED"
    violations = field_violations(raised.value)
    assert field in violations and says in violations[field], violations
    assert await db.fetchval("SELECT count(*) FROM integrations") == before
