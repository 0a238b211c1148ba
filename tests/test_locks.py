"""Locks (issue 14): a locked GLOBAL value cannot be overridden by any account or retailer,
a locked ACCOUNT value by none of its retailers; who may lock which level; a lock over
existing overrides; locks shown by reads, explanations and the change log; the refusal
over REST in the documented shape; and a lock racing an override never lets both win."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.helpers import error_info
from tests.watching import Response, watching
from tierset.core.authz import Role
from tierset.v1 import settings_pb2 as pb

LOCKED = grpc.StatusCode.FAILED_PRECONDITION


def _int(n: int) -> pb.SettingValue:
    return pb.SettingValue(integer_value=n)


async def _set_global(stub, key: str, n: int = 1, md=None):
    return await stub.SetGlobal(
        pb.SetGlobalRequest(key=key, type=pb.SETTING_TYPE_INTEGER, value=_int(n)), metadata=md
    )


async def _put(stub, scope: pb.Scope, key: str, n: int = 2, md=None):
    return await stub.PutSetting(
        pb.PutSettingRequest(scope=scope, key=key, type=pb.SETTING_TYPE_INTEGER, value=_int(n)),
        metadata=md,
    )


async def _refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.fixture
async def family(new_account, new_retailer):
    """An account and one of its retailers."""
    account = await new_account()
    return account, await new_retailer(account)


@pytest.mark.parametrize("override", ["account", "retailer"])
async def test_a_global_lock_stops_every_override(settings_stub, family, unique_key, override):
    account, retailer = family
    key = unique_key()
    await _set_global(settings_stub, key)
    locked = await settings_stub.LockSetting(
        pb.LockSettingRequest(key=key, reason="platform owns it")
    )
    scope = (
        pb.Scope(account_id=account) if override == "account" else pb.Scope(retailer_id=retailer)
    )

    error = await _refusal(_put(settings_stub, scope, key))

    assert error.code() is LOCKED
    info = error_info(error)
    assert info.reason == "KEY_LOCKED"
    assert info.metadata["locked_level"] == "GLOBAL"
    assert info.metadata["lock_revision"] == str(locked.revision)
    assert info.metadata["locked_by"] == locked.setting.lock.actor.username
    assert (
        "locked at GLOBAL by" in error.details() and info.metadata["lock_time"] in error.details()
    )
    read = await settings_stub.GetSettings(pb.GetSettingsRequest(scope=scope, keys=[key]))
    assert read.settings[0].level == pb.SETTING_LEVEL_GLOBAL  # nothing written


async def test_an_account_lock_stops_its_retailers_not_the_account(
    settings_stub, make_caller, family, unique_key
):
    account, retailer = family
    admin = await make_caller(Role.ADMIN, account_id=account)
    key = unique_key()
    await _put(settings_stub, pb.Scope(account_id=account), key, 5, admin.metadata)
    await settings_stub.LockSetting(
        pb.LockSettingRequest(scope=pb.Scope(account_id=account), key=key), metadata=admin.metadata
    )

    error = await _refusal(
        _put(settings_stub, pb.Scope(retailer_id=retailer), key, 9, admin.metadata)
    )
    rewritten = await _put(settings_stub, pb.Scope(account_id=account), key, 6, admin.metadata)

    info = error_info(error)
    assert (error.code(), info.reason) == (LOCKED, "KEY_LOCKED")
    assert info.metadata["locked_level"] == "ACCOUNT"
    assert info.metadata["locked_account_id"] == str(account)
    assert f"locked at ACCOUNT {account} by {admin.username}" in error.details()
    assert rewritten.version == 2  # the locked level itself may still change its value


async def test_unlocking_lets_overrides_in_again(settings_stub, family, unique_key):
    account, _ = family
    key = unique_key()
    await _set_global(settings_stub, key)
    await settings_stub.LockSetting(pb.LockSettingRequest(key=key))

    unlocked = await settings_stub.UnlockSetting(pb.UnlockSettingRequest(key=key))
    written = await _put(settings_stub, pb.Scope(account_id=account), key)

    assert unlocked.revision > 0 and not unlocked.setting.HasField("lock")
    assert written.created


async def test_locking_twice_or_unlocking_an_unlocked_value_changes_nothing(
    settings_stub, unique_key
):
    key = unique_key()
    await _set_global(settings_stub, key)
    first = await settings_stub.LockSetting(pb.LockSettingRequest(key=key))

    again = await settings_stub.LockSetting(pb.LockSettingRequest(key=key))
    await settings_stub.UnlockSetting(pb.UnlockSettingRequest(key=key))
    unlocked_again = await settings_stub.UnlockSetting(pb.UnlockSettingRequest(key=key))

    assert first.revision > 0
    assert again.revision == 0 and again.setting.lock.revision == first.revision
    assert unlocked_again.revision == 0


@pytest.mark.parametrize("remove", [False, True])
async def test_a_lock_over_overrides(
    settings_stub, db, new_account, new_retailer, unique_key, remove
):
    key = unique_key()
    await _set_global(settings_stub, key)
    account = await new_account()
    retailer = await new_retailer(account)
    await _put(settings_stub, pb.Scope(account_id=account), key)
    await _put(settings_stub, pb.Scope(retailer_id=retailer), key)
    request = pb.LockSettingRequest(key=key, remove_overrides=remove, reason="one value for all")

    if not remove:
        error = await _refusal(settings_stub.LockSetting(request))
        info = error_info(error)
        assert (error.code(), info.reason) == (LOCKED, "KEY_OVERRIDDEN")
        assert info.metadata["override_count"] == "2"
        assert set(info.metadata["overrides"].split(",")) == {
            f"account:{account}",
            f"retailer:{retailer}",
        }
        assert await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key) == 3
        assert await db.fetchval("SELECT count(*) FROM change_log WHERE key = $1", key) == 3
        return
    locked = await settings_stub.LockSetting(request)

    assert {s.WhichOneof("kind") for s in locked.removed_overrides} == {"account_id", "retailer_id"}
    assert await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key) == 1
    rows = await db.fetch(
        "SELECT operation::text, level::text FROM change_log WHERE revision = $1 ORDER BY seq",
        locked.revision,
    )
    assert [tuple(r) for r in rows] == [
        ("DELETE", "ACCOUNT"),
        ("DELETE", "RETAILER"),
        ("LOCK", "GLOBAL"),
    ]


@pytest.mark.parametrize(
    ("role", "level", "whose", "expected"),
    [
        (Role.PLATFORM, "global", "own", grpc.StatusCode.OK),
        (Role.ADMIN, "global", "own", grpc.StatusCode.PERMISSION_DENIED),
        (Role.VIEWER, "global", "own", grpc.StatusCode.PERMISSION_DENIED),
        (Role.ADMIN, "account", "own", grpc.StatusCode.OK),
        (Role.ADMIN, "account", "other", grpc.StatusCode.PERMISSION_DENIED),
        (Role.VIEWER, "account", "own", grpc.StatusCode.PERMISSION_DENIED),
        (Role.PLATFORM, "account", "other", grpc.StatusCode.OK),
        (Role.ADMIN, "retailer", "own", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
@pytest.mark.parametrize("rpc", ["LockSetting", "UnlockSetting"])
async def test_who_may_lock_which_level(
    settings_stub,
    make_caller,
    new_account,
    new_retailer,
    unique_key,
    role,
    level,
    whose,
    expected,
    rpc,
):
    own, other = await new_account(), await new_account()
    account = own if whose == "own" else other
    caller = await make_caller(role, account_id=own)
    key = unique_key()
    scope = None
    if level == "global":
        await _set_global(settings_stub, key)
    elif level == "account":
        scope = pb.Scope(account_id=account)
        await _put(settings_stub, scope, key)
    else:
        scope = pb.Scope(retailer_id=await new_retailer(account))
        await _put(settings_stub, scope, key)
    if rpc == "UnlockSetting" and expected is grpc.StatusCode.OK:
        lock = (
            pb.LockSettingRequest(key=key, scope=scope) if scope else pb.LockSettingRequest(key=key)
        )
        await settings_stub.LockSetting(lock)
    request_type = pb.LockSettingRequest if rpc == "LockSetting" else pb.UnlockSettingRequest
    request = request_type(key=key, scope=scope) if scope else request_type(key=key)

    try:
        response = await getattr(settings_stub, rpc)(request, metadata=caller.metadata)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        code = error.code()
        response = None

    assert code == expected
    if response is not None:
        assert response.revision > 0
        assert response.setting.HasField("lock") == (rpc == "LockSetting")


async def test_a_lock_of_a_missing_value_is_not_found(settings_stub, unique_key):
    error = await _refusal(settings_stub.LockSetting(pb.LockSettingRequest(key=unique_key())))

    assert (error.code(), error_info(error).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "SETTING_NOT_FOUND",
    )


async def test_a_locked_value_cannot_be_deleted_until_unlocked(settings_stub, db, unique_key):
    key = unique_key()
    await _set_global(settings_stub, key)
    await settings_stub.LockSetting(pb.LockSettingRequest(key=key))

    error = await _refusal(settings_stub.DeleteGlobal(pb.DeleteGlobalRequest(key=key)))
    await settings_stub.UnlockSetting(pb.UnlockSettingRequest(key=key))
    await settings_stub.DeleteGlobal(pb.DeleteGlobalRequest(key=key))

    assert (error.code(), error_info(error).reason) == (LOCKED, "KEY_LOCKED")
    assert "unlock it before deleting it" in error.details()
    assert await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key) == 0


async def test_a_restore_cannot_bring_back_an_override_under_a_lock(
    settings_stub, family, unique_key
):
    account, _ = family
    key = unique_key()
    await _set_global(settings_stub, key)
    written = await _put(settings_stub, pb.Scope(account_id=account), key)
    await settings_stub.LockSetting(pb.LockSettingRequest(key=key, remove_overrides=True))

    error = await _refusal(
        settings_stub.RestoreSettings(
            pb.RestoreSettingsRequest(
                level=pb.SETTING_LEVEL_ACCOUNT,
                scope=pb.Scope(account_id=account),
                keys=[key],
                revision=written.revision,
            )
        )
    )

    assert (error.code(), error_info(error).reason) == (LOCKED, "KEY_LOCKED")


async def test_locks_show_in_reads_explain_and_the_change_log(
    settings_stub, platform_caller, family, unique_key
):
    _, retailer = family
    key = unique_key()
    await _set_global(settings_stub, key)
    locked = await settings_stub.LockSetting(pb.LockSettingRequest(key=key, reason="fixed"))
    scope = pb.Scope(retailer_id=retailer)

    read = await settings_stub.GetSettings(pb.GetSettingsRequest(scope=scope, keys=[key]))
    listed = await settings_stub.ListSettings(pb.ListSettingsRequest(scope=scope, key_prefix=key))
    explained = await settings_stub.ExplainSettings(
        pb.ExplainSettingsRequest(scope=scope, keys=[key])
    )
    changes = await settings_stub.ListChanges(pb.ListChangesRequest(key=key))

    for setting in (read.settings[0], listed.settings[0], explained.keys[0].levels[0].setting):
        assert setting.lock.revision == locked.revision
        assert setting.lock.actor.username == platform_caller.username
        assert setting.lock.lock_time.seconds > 0
        assert setting.version == 1  # a lock changes no value
    assert [c.operation for c in changes.changes] == [
        pb.CHANGE_OPERATION_PUT,
        pb.CHANGE_OPERATION_LOCK,
    ]
    lock_row = changes.changes[1]
    assert (lock_row.revision, lock_row.reason) == (locked.revision, "fixed")
    assert lock_row.new_setting.lock.revision == locked.revision


async def test_rest_put_under_a_global_lock_is_refused_in_the_documented_shape(
    settings_stub, http, rest_auth_headers, family, unique_key
):
    account, _ = family
    key = unique_key()
    await _set_global(settings_stub, key)
    await settings_stub.LockSetting(pb.LockSettingRequest(key=key))

    response = await http.put(
        f"/api/v4.1/settings/account/{account}/{key}",
        headers=rest_auth_headers,
        json={"setting": {"value": 50, "type": "INTEGER"}},
    )

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Bad Request" and body["code"] == "400"
    assert body["error"][0]["code"] == "KEY_LOCKED"
    assert "locked at GLOBAL by" in body["error"][0]["message"]


async def test_a_lock_racing_an_override_never_lets_both_win(
    settings_stub, db, new_account, unique_key
):
    """Many rounds of LockSetting (without remove_overrides) against a first ACCOUNT put of
    the key, started together: exactly one of them wins every round."""
    account = await new_account()
    for _ in range(15):
        key = unique_key()
        await _set_global(settings_stub, key)
        lock, put = await asyncio.gather(
            settings_stub.LockSetting(pb.LockSettingRequest(key=key)),
            _put(settings_stub, pb.Scope(account_id=account), key),
            return_exceptions=True,
        )
        won = [not isinstance(r, BaseException) for r in (lock, put)]
        assert won.count(True) == 1, (lock, put)
        loser = put if won[0] else lock
        assert error_info(loser).reason == ("KEY_LOCKED" if won[0] else "KEY_OVERRIDDEN")
        locked = await db.fetchval(
            "SELECT lock_revision IS NOT NULL FROM settings WHERE key = $1 AND level = 'GLOBAL'",
            key,
        )
        overrides = await db.fetchval(
            "SELECT count(*) FROM settings WHERE key = $1 AND level <> 'GLOBAL'", key
        )
        assert (locked, overrides) in {(True, 0), (False, 1)}


async def test_an_unlock_then_a_delete_in_one_changeset_removes_a_locked_value(
    settings_stub, db, unique_key
):
    key = unique_key()
    await _set_global(settings_stub, key)
    await settings_stub.LockSetting(pb.LockSettingRequest(key=key))
    unlock = pb.SettingChange(operation=pb.CHANGE_OPERATION_UNLOCK, key=key)
    delete = pb.SettingChange(operation=pb.CHANGE_OPERATION_DELETE, key=key)

    refused = await _refusal(
        settings_stub.ApplyChanges(pb.ApplyChangesRequest(changes=[delete, unlock]))
    )
    applied = await settings_stub.ApplyChanges(pb.ApplyChangesRequest(changes=[unlock, delete]))

    assert error_info(refused).reason == "KEY_LOCKED"
    assert error_info(refused).metadata["index"] == "0"
    assert [r.outcome for r in applied.results] == [
        pb.CHANGE_OUTCOME_UNLOCKED,
        pb.CHANGE_OUTCOME_DELETED,
    ]
    assert await db.fetchval("SELECT count(*) FROM settings WHERE key = $1", key) == 0


async def test_watch_hears_the_overrides_a_lock_removes_with_the_lock_in_one_message(
    settings_stub, family, unique_key
):
    _, retailer = family
    overridden, plain = unique_key(), unique_key()
    for key in (overridden, plain):
        await _set_global(settings_stub, key, 1)
    await _put(settings_stub, pb.Scope(retailer_id=retailer), overridden, 5)
    scope = pb.Scope(retailer_id=retailer)
    async with watching(settings_stub, scope=scope, keys=[overridden, plain]) as stream:
        assert (await stream.next()).kind == Response.KIND_SNAPSHOT

        removing = await settings_stub.LockSetting(
            pb.LockSettingRequest(key=overridden, remove_overrides=True)
        )
        removal = await stream.next()
        locking = await settings_stub.LockSetting(pb.LockSettingRequest(key=plain))
        lock = await stream.next()

    assert removal.revision == removing.revision
    [event] = removal.events
    assert (event.key, event.previous.value.integer_value) == (overridden, 5)
    assert (event.setting.level, event.setting.value.integer_value) == (pb.SETTING_LEVEL_GLOBAL, 1)
    assert event.setting.lock.revision == removing.revision
    assert not event.previous.HasField("lock")
    # The lock of `plain` changed no value but what the retailer may do: heard at its revision.
    assert lock.revision == locking.revision
    [event] = lock.events
    assert event.setting.lock == locking.setting.lock
    assert event.setting.value.integer_value == event.previous.value.integer_value == 1
