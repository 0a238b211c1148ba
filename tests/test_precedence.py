"""A read returns, per key, the most specific level that has it, in one statement."""

from __future__ import annotations

import itertools

import grpc
import pytest

from tests.helpers import error_info, json_value
from tierset.v1 import settings_pb2

LEVEL_NAMES = {
    settings_pb2.SETTING_LEVEL_GLOBAL: "GLOBAL",
    settings_pb2.SETTING_LEVEL_ACCOUNT: "ACCOUNT",
    settings_pb2.SETTING_LEVEL_RETAILER: "RETAILER",
}


async def _put(stub, level: str, key: str, value, *, account: int, retailer: int) -> None:
    request_value = json_value(value)
    if level == "GLOBAL":
        await stub.SetGlobal(
            settings_pb2.SetGlobalRequest(
                key=key, type=settings_pb2.SETTING_TYPE_JSON, value=request_value
            )
        )
        return
    scope = (
        settings_pb2.Scope(account_id=account)
        if level == "ACCOUNT"
        else settings_pb2.Scope(retailer_id=retailer)
    )
    await stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=scope, key=key, type=settings_pb2.SETTING_TYPE_JSON, value=request_value
        )
    )


async def _get(stub, scope: settings_pb2.Scope, *keys: str) -> list[settings_pb2.Setting]:
    response = await stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=keys))
    return list(response.settings)


# Every combination of levels present (True) or absent, for one key.
COMBINATIONS = list(itertools.product([False, True], repeat=3))


async def _put_levels(stub, key: str, present: dict[str, bool], *, account: int, retailer: int):
    """Writes `key` at each level marked present, with the value "from <LEVEL>"."""
    for level, is_present in present.items():
        if is_present:
            await _put(stub, level, key, f"from {level}", account=account, retailer=retailer)


@pytest.mark.parametrize(("has_global", "has_account", "has_retailer"), COMBINATIONS)
async def test_retailer_read_takes_most_specific_level(
    settings_stub, new_account, new_retailer, unique_key, has_global, has_account, has_retailer
):
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key("PRECEDENCE")
    present = {"GLOBAL": has_global, "ACCOUNT": has_account, "RETAILER": has_retailer}
    await _put_levels(settings_stub, key, present, account=account, retailer=retailer)

    found = await _get(settings_stub, settings_pb2.Scope(retailer_id=retailer), key)

    expected_level = next((lvl for lvl in ("RETAILER", "ACCOUNT", "GLOBAL") if present[lvl]), None)
    if expected_level is None:
        assert found == []
    else:
        assert [LEVEL_NAMES[s.level] for s in found] == [expected_level]
        assert found[0].value.json_value == f'"from {expected_level}"'


@pytest.mark.parametrize(("has_global", "has_account", "has_retailer"), COMBINATIONS)
async def test_account_read_ignores_retailer_level(
    settings_stub, new_account, new_retailer, unique_key, has_global, has_account, has_retailer
):
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key("PRECEDENCE")
    present = {"GLOBAL": has_global, "ACCOUNT": has_account, "RETAILER": has_retailer}
    await _put_levels(settings_stub, key, present, account=account, retailer=retailer)

    found = await _get(settings_stub, settings_pb2.Scope(account_id=account), key)

    expected_level = next((lvl for lvl in ("ACCOUNT", "GLOBAL") if present[lvl]), None)
    assert [LEVEL_NAMES[s.level] for s in found] == ([expected_level] if expected_level else [])


async def test_many_keys_resolve_independently_in_request_order(
    settings_stub, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    only_global, to_account, to_retailer, missing = (unique_key("MULTI") for _ in range(4))
    for key in (only_global, to_account, to_retailer):
        await _put(settings_stub, "GLOBAL", key, "g", account=account, retailer=retailer)
    await _put(settings_stub, "ACCOUNT", to_account, "a", account=account, retailer=retailer)
    await _put(settings_stub, "ACCOUNT", to_retailer, "a", account=account, retailer=retailer)
    await _put(settings_stub, "RETAILER", to_retailer, "r", account=account, retailer=retailer)

    found = await _get(
        settings_stub,
        settings_pb2.Scope(retailer_id=retailer),
        to_retailer,
        missing,
        only_global,
        to_account,
    )

    assert [(s.key, LEVEL_NAMES[s.level], s.value.json_value) for s in found] == [
        (to_retailer, "RETAILER", '"r"'),
        (only_global, "GLOBAL", '"g"'),
        (to_account, "ACCOUNT", '"a"'),
    ]


async def test_other_accounts_and_retailers_are_not_mixed_in(
    settings_stub, new_account, new_retailer, unique_key
):
    mine, theirs = await new_account(), await new_account()
    my_retailer = await new_retailer(mine)
    their_retailer = await new_retailer(theirs)
    sibling = await new_retailer(mine)
    key = unique_key("ISOLATION")
    await _put(settings_stub, "ACCOUNT", key, "theirs", account=theirs, retailer=their_retailer)
    await _put(settings_stub, "RETAILER", key, "theirs", account=theirs, retailer=their_retailer)
    await _put(settings_stub, "RETAILER", key, "sibling", account=mine, retailer=sibling)

    assert await _get(settings_stub, settings_pb2.Scope(retailer_id=my_retailer), key) == []
    assert await _get(settings_stub, settings_pb2.Scope(account_id=mine), key) == []


@pytest.mark.parametrize("scope_kind", ["account_id", "retailer_id"])
async def test_unknown_scope_is_not_found(settings_stub, next_id, scope_kind):
    scope = settings_pb2.Scope(**{scope_kind: next_id()})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get(settings_stub, scope, "ANY.KEY")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    expected_reason = "ACCOUNT_NOT_FOUND" if scope_kind == "account_id" else "RETAILER_NOT_FOUND"
    assert error_info(raised.value).reason == expected_reason


async def test_read_reports_id_version_and_type(settings_stub, new_account, unique_key):
    account = await new_account()
    key = unique_key("META")
    put = await settings_stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=settings_pb2.Scope(account_id=account),
            key=key,
            type=settings_pb2.SETTING_TYPE_INTEGER,
            value=settings_pb2.SettingValue(integer_value=7),
        )
    )

    [found] = await _get(settings_stub, settings_pb2.Scope(account_id=account), key)

    assert (found.id, found.key, found.type, found.version) == (
        put.id,
        key,
        settings_pb2.SETTING_TYPE_INTEGER,
        1,
    )
    assert found.value.integer_value == 7
    assert found.update_time.seconds > 0
