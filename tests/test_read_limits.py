"""A read's size is judged by the database, in bytes as fetched, before any value is sent.

effective_settings adds up the stored size of what it resolved (settings.value_bytes,
the octet_length of the value as PostgreSQL writes it out) and returns no value text at
all when that is over the limit it is given; the store then refuses the read, after the
caller's permission on the scope is checked.
"""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import error_info, field_violations
from tierset.core.authz import Role
from tierset.core.values import MAX_LOB_BYTES, MAX_READ_BYTES
from tierset.store.database import query
from tierset.v1 import settings_pb2

T = settings_pb2
V = settings_pb2.SettingValue


async def _put_lobs(settings_stub, scope, keys, text):
    for key in keys:
        await settings_stub.PutSetting(
            settings_pb2.PutSettingRequest(
                scope=scope, key=key, type=T.SETTING_TYPE_LOB, value=V(string_value=text)
            )
        )


async def test_the_statement_returns_no_value_text_when_the_read_is_over_its_limit(
    settings_stub, db, new_account, unique_key
):
    account = await new_account()
    keys = [unique_key("SIZED") for _ in range(3)]
    await _put_lobs(settings_stub, settings_pb2.Scope(account_id=account), keys, "é" * 1000)
    each = len(('"' + "é" * 1000 + '"').encode())  # as stored: a JSON string, 2,002 bytes

    over = await db.fetch(query("effective_settings"), "ACCOUNT", account, keys, None, 3 * each - 1)
    within = await db.fetch(query("effective_settings"), "ACCOUNT", account, keys, None, 3 * each)

    # Over the limit: every setting is named with its size, but no value was rendered or sent.
    assert [row["key"] for row in over] == keys
    assert [row["value"] for row in over] == [None, None, None]
    assert {row["read_bytes"] for row in over} == {3 * each}
    assert [len(row["value"].encode()) for row in within] == [each] * 3


async def test_the_read_limit_counts_bytes_not_characters(settings_stub, new_account, unique_key):
    # 17 LOBs of 2-byte characters: 8.5 Mi characters, but 17 MiB as fetched.
    scope = settings_pb2.Scope(account_id=await new_account())
    keys = [unique_key("WIDE") for _ in range(MAX_READ_BYTES // MAX_LOB_BYTES + 1)]
    await _put_lobs(settings_stub, scope, keys, "é" * (MAX_LOB_BYTES // 2))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=keys))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(raised.value).reason == "READ_TOO_LARGE"
    assert "read fewer keys" in field_violations(raised.value)["keys"]


async def _store_directly(db, account, key, value_json):
    # As a value written before the limits counted numbers as stored could be.
    await db.execute(
        "INSERT INTO settings (level, account_id, key, type, value)"
        " VALUES ('ACCOUNT', $1, $2, 'JSON', $3::jsonb)",
        account,
        key,
        value_json,
    )


async def test_a_value_larger_as_stored_than_a_read_may_be_is_refused_by_its_size(
    settings_stub, db, new_account, unique_key
):
    # 140 KB of text that PostgreSQL writes out as 20 MB.
    account = await new_account()
    key = unique_key("AMPLIFIED")
    await _store_directly(db, account, key, "[" + ",".join(["1e-999"] * 20_000) + "]")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(account_id=account), keys=[key]
            )
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(raised.value)
    assert info.reason == "READ_TOO_LARGE"
    assert int(info.metadata["read_bytes"]) > 20_000_000


async def test_another_account_learns_nothing_of_a_read_too_large(
    settings_stub, db, new_account, new_retailer, unique_key, make_caller
):
    # Through a retailer, whose owner only the read itself tells.
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key("AMPLIFIED")
    await _store_directly(db, account, key, "[" + ",".join(["1e-999"] * 20_000) + "]")
    stranger = await make_caller(Role.ADMIN)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(retailer_id=retailer), keys=[key]
            ),
            metadata=stranger.metadata,
        )

    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
