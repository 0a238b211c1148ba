"""Writes are atomic upserts: one id per (level, scope, key), a version that grows."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import error_info
from tierset.v1 import settings_pb2


def _put_request(scope, key, text, **extra) -> settings_pb2.PutSettingRequest:
    return settings_pb2.PutSettingRequest(
        scope=scope,
        key=key,
        type=settings_pb2.SETTING_TYPE_STRING,
        value=settings_pb2.SettingValue(string_value=text),
        **extra,
    )


async def test_create_then_update_keeps_id_and_bumps_version(
    settings_stub, new_account, unique_key
):
    scope = settings_pb2.Scope(account_id=await new_account())
    key = unique_key()

    first = await settings_stub.PutSetting(_put_request(scope, key, "one"))
    second = await settings_stub.PutSetting(_put_request(scope, key, "two"))

    assert (first.created, first.version) == (True, 1)
    assert (second.created, second.version, second.id) == (False, 2, first.id)
    read = await settings_stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=[key]))
    assert read.settings[0].value.string_value == "two"


async def test_each_level_and_scope_gets_its_own_id(
    settings_stub, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key()
    ids = {
        (
            await settings_stub.SetGlobal(
                settings_pb2.SetGlobalRequest(
                    key=key,
                    type=settings_pb2.SETTING_TYPE_STRING,
                    value=settings_pb2.SettingValue(string_value="g"),
                )
            )
        ).id,
        (
            await settings_stub.PutSetting(
                _put_request(settings_pb2.Scope(account_id=account), key, "a")
            )
        ).id,
        (
            await settings_stub.PutSetting(
                _put_request(settings_pb2.Scope(retailer_id=retailer), key, "r")
            )
        ).id,
    }
    assert len(ids) == 3


async def test_set_global_updates_in_place(settings_stub, unique_key):
    key = unique_key("GLOBAL")
    request = settings_pb2.SetGlobalRequest(
        key=key,
        type=settings_pb2.SETTING_TYPE_INTEGER,
        value=settings_pb2.SettingValue(integer_value=1),
    )
    first = await settings_stub.SetGlobal(request)
    request.value.integer_value = 2
    second = await settings_stub.SetGlobal(request)
    assert (second.id, second.version, second.created) == (first.id, 2, False)


async def test_a_write_may_change_the_type(settings_stub, new_account, unique_key):
    scope = settings_pb2.Scope(account_id=await new_account())
    key = unique_key()
    await settings_stub.PutSetting(_put_request(scope, key, "text"))
    await settings_stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=scope,
            key=key,
            type=settings_pb2.SETTING_TYPE_INTEGER,
            value=settings_pb2.SettingValue(integer_value=5),
        )
    )
    read = await settings_stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=[key]))
    assert (read.settings[0].type, read.settings[0].value.integer_value) == (
        settings_pb2.SETTING_TYPE_INTEGER,
        5,
    )


@pytest.mark.parametrize("scope_kind", ["account_id", "retailer_id"])
async def test_write_to_unknown_scope_is_not_found_and_writes_nothing(
    settings_stub, db, next_id, unique_key, scope_kind
):
    key = unique_key()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await settings_stub.PutSetting(
            _put_request(settings_pb2.Scope(**{scope_kind: next_id()}), key, "x")
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key) == 0


class TestExpectedVersion:
    """A conditional write applies only to the version the writer last saw."""

    async def test_matching_version_applies(self, settings_stub, new_account, unique_key):
        scope = settings_pb2.Scope(account_id=await new_account())
        key = unique_key()
        await settings_stub.PutSetting(_put_request(scope, key, "v1"))
        result = await settings_stub.PutSetting(_put_request(scope, key, "v2", expected_version=1))
        assert result.version == 2

    async def test_stale_version_is_aborted_and_value_kept(
        self, settings_stub, new_account, unique_key
    ):
        scope = settings_pb2.Scope(account_id=await new_account())
        key = unique_key()
        await settings_stub.PutSetting(_put_request(scope, key, "v1"))
        await settings_stub.PutSetting(_put_request(scope, key, "v2"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings_stub.PutSetting(_put_request(scope, key, "lost", expected_version=1))
        assert raised.value.code() == grpc.StatusCode.ABORTED
        assert error_info(raised.value).metadata["current_version"] == "2"
        read = await settings_stub.GetSettings(
            settings_pb2.GetSettingsRequest(scope=scope, keys=[key])
        )
        assert read.settings[0].value.string_value == "v2"

    async def test_zero_means_create_only(self, settings_stub, new_account, unique_key):
        scope = settings_pb2.Scope(account_id=await new_account())
        key = unique_key()
        created = await settings_stub.PutSetting(
            _put_request(scope, key, "first", expected_version=0)
        )
        assert created.created
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings_stub.PutSetting(_put_request(scope, key, "second", expected_version=0))
        assert raised.value.code() == grpc.StatusCode.ABORTED

    async def test_version_of_missing_setting_is_aborted(
        self, settings_stub, new_account, unique_key
    ):
        scope = settings_pb2.Scope(account_id=await new_account())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await settings_stub.PutSetting(
                _put_request(scope, unique_key(), "x", expected_version=3)
            )
        assert raised.value.code() == grpc.StatusCode.ABORTED
