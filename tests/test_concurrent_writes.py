"""Many writers at once: no errors but the expected conflicts, versions without gaps or
repeats, and a final value that is one of the writes (the one with the last version)."""

from __future__ import annotations

import asyncio

import grpc

from tests.helpers import error_info
from tierset.v1 import settings_pb2


def _put(scope, key: str, text: str, **extra) -> settings_pb2.PutSettingRequest:
    return settings_pb2.PutSettingRequest(
        scope=scope,
        key=key,
        type=settings_pb2.SETTING_TYPE_STRING,
        value=settings_pb2.SettingValue(string_value=text),
        **extra,
    )


async def _attempt(stub, request):
    """The response, or the error status of a refused write."""
    try:
        return await stub.PutSetting(request)
    except grpc.aio.AioRpcError as error:
        return error


async def _read(stub, scope, keys: list[str]) -> dict[str, settings_pb2.Setting]:
    read = await stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=keys))
    return {s.key: s for s in read.settings}


async def test_unconditional_writers_to_many_keys_all_apply_in_some_order(
    settings_stub, new_account, unique_key
):
    scope = settings_pb2.Scope(account_id=await new_account())
    keys = [unique_key("RACE") for _ in range(8)]
    writes = [(key, f"{key}/{n}") for key in keys for n in range(12)]

    results = await asyncio.gather(
        *(settings_stub.PutSetting(_put(scope, k, v)) for k, v in writes)
    )

    final = await _read(settings_stub, scope, keys)
    for key in keys:
        mine = [
            (r.version, r.created, text)
            for (k, text), r in zip(writes, results, strict=True)
            if k == key
        ]
        assert sorted(version for version, _, _ in mine) == list(range(1, 13))
        assert sum(created for _, created, _ in mine) == 1
        last_text = max(mine)[2]
        assert (final[key].version, final[key].value.string_value) == (12, last_text)
        assert len({r.id for (k, _), r in zip(writes, results, strict=True) if k == key}) == 1


async def test_writers_with_the_same_expected_version_have_exactly_one_winner(
    settings_stub, new_account, unique_key
):
    scope = settings_pb2.Scope(account_id=await new_account())
    key = unique_key("RACE")
    await settings_stub.PutSetting(_put(scope, key, "base"))

    outcomes = await asyncio.gather(
        *(_attempt(settings_stub, _put(scope, key, f"w{n}", expected_version=1)) for n in range(20))
    )

    winners = [(n, o) for n, o in enumerate(outcomes) if not isinstance(o, grpc.aio.AioRpcError)]
    losers = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and winners[0][1].version == 2
    assert {(e.code(), error_info(e).reason) for e in losers} == {
        (grpc.StatusCode.ABORTED, "VERSION_MISMATCH")
    }
    setting = (await _read(settings_stub, scope, [key]))[key]
    assert (setting.version, setting.value.string_value) == (2, f"w{winners[0][0]}")


async def test_create_only_writers_race_to_exactly_one_creation(
    settings_stub, new_account, unique_key
):
    scope = settings_pb2.Scope(account_id=await new_account())
    key = unique_key("RACE")

    outcomes = await asyncio.gather(
        *(_attempt(settings_stub, _put(scope, key, f"c{n}", expected_version=0)) for n in range(16))
    )

    created = [(n, o) for n, o in enumerate(outcomes) if not isinstance(o, grpc.aio.AioRpcError)]
    assert len(created) == 1 and created[0][1].created and created[0][1].version == 1
    assert all(
        o.code() == grpc.StatusCode.ABORTED for o in outcomes if isinstance(o, grpc.aio.AioRpcError)
    )
    setting = (await _read(settings_stub, scope, [key]))[key]
    assert (setting.version, setting.value.string_value) == (1, f"c{created[0][0]}")


async def test_mixed_writers_keep_versions_dense_and_conflicts_explained(
    settings_stub, new_account, unique_key
):
    """Unconditional and conditional writers on one key, interleaved."""
    scope = settings_pb2.Scope(account_id=await new_account())
    key = unique_key("RACE")
    await settings_stub.PutSetting(_put(scope, key, "base"))
    requests = [
        _put(scope, key, f"m{n}", **({"expected_version": n % 5 + 1} if n % 2 else {}))
        for n in range(30)
    ]

    outcomes = await asyncio.gather(*(_attempt(settings_stub, r) for r in requests))

    applied = [
        (o.version, r.value.string_value)
        for r, o in zip(requests, outcomes, strict=True)
        if not isinstance(o, grpc.aio.AioRpcError)
    ]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert all(e.code() == grpc.StatusCode.ABORTED for e in refused)
    # Every unconditional write applied; the versions handed out are 2..N with no gap.
    assert len(applied) >= 15
    assert sorted(v for v, _ in applied) == list(range(2, 2 + len(applied)))
    setting = (await _read(settings_stub, scope, [key]))[key]
    assert (setting.version, setting.value.string_value) == max(applied)
