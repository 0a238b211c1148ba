"""A read's key list is checked in one pass when it is good and key by key when it is not:
the fast path must refuse everything the key-by-key rules refuse."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import field_violations
from tierset.v1 import settings_pb2


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        (["GOOD.KEY", "BAD\nKEY"], "keys[1]"),  # the separator of the joined check
        (["BAD\n", "GOOD"], "keys[0]"),
        (["GOOD", ""], "keys[1]"),
        (["GOOD", "GOOD"], "keys[1]"),
        (["GOOD", "A" * 256], "keys[1]"),
        (["GOOD", ".DOT"], "keys[1]"),
    ],
)
async def test_a_bad_key_among_good_ones_is_named(settings_stub, new_account, keys, field):
    account = await new_account()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(scope=settings_pb2.Scope(account_id=account), keys=keys)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(raised.value)


async def test_good_keys_of_every_allowed_character_are_read(settings_stub, new_account):
    account = await new_account()
    reply = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(account_id=account),
            keys=["a", "Z9", "A.b_c-D", "0" + "x" * 254],
        )
    )
    assert list(reply.settings) == []
