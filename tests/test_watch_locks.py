"""WatchSettings reports locks (issue 14): a lock or unlock of the value a watched scope
resolves is an EVENTS message at the lock's revision, `setting` carrying the lock (or not)
and `previous` as it was; the first message's settings carry theirs; a resume replays
them from the log exactly as a live stream heard them. Absence is shown by the next
message being a later revision, never by waiting."""

from __future__ import annotations

import grpc
import pytest

from tests.watching import Response, watching
from tierset.v1 import settings_pb2 as pb

# A missed event would otherwise show as a stream of PROGRESS messages read for ever.
pytestmark = pytest.mark.timeout(90)


def _int(n: int) -> pb.SettingValue:
    return pb.SettingValue(integer_value=n)


async def _set_global(stub, key: str, n: int = 1):
    return await stub.SetGlobal(
        pb.SetGlobalRequest(key=key, type=pb.SETTING_TYPE_INTEGER, value=_int(n))
    )


async def _put(stub, scope: pb.Scope, key: str, n: int):
    return await stub.PutSetting(
        pb.PutSettingRequest(scope=scope, key=key, type=pb.SETTING_TYPE_INTEGER, value=_int(n))
    )


def _lock(stub, key: str, scope: pb.Scope | None = None, **fields):
    return stub.LockSetting(pb.LockSettingRequest(key=key, scope=scope, **fields))


def _unlock(stub, key: str, scope: pb.Scope | None = None):
    return stub.UnlockSetting(pb.UnlockSettingRequest(key=key, scope=scope))


def _seen(message: Response) -> list[tuple]:
    """(key, (level, value, lock revision or None) of setting, the same of previous)."""

    def side(setting: pb.Setting, present: bool):
        if not present:
            return None
        lock = setting.lock.revision if setting.HasField("lock") else None
        return (setting.level, setting.value.integer_value, lock)

    return [
        (e.key, side(e.setting, e.HasField("setting")), side(e.previous, e.HasField("previous")))
        for e in message.events
    ]


@pytest.fixture
async def family(new_account, new_retailer):
    """An account and one of its retailers."""
    account = await new_account()
    return account, await new_retailer(account)


@pytest.mark.parametrize("watcher", ["account", "retailer"])
async def test_a_global_lock_and_unlock_of_the_inherited_value_are_heard(
    settings_stub, family, unique_key, watcher
):
    account, retailer = family
    key = unique_key()
    await _set_global(settings_stub, key, 7)
    scope = pb.Scope(account_id=account) if watcher == "account" else pb.Scope(retailer_id=retailer)
    async with watching(settings_stub, scope=scope, keys=[key]) as stream:
        assert (await stream.next()).kind == Response.KIND_SNAPSHOT
        locked = await _lock(settings_stub, key, reason="platform owns it")
        on = await stream.next()
        unlocked = await _unlock(settings_stub, key)
        off = await stream.next()

    g = pb.SETTING_LEVEL_GLOBAL
    assert (on.kind, on.revision) == (Response.KIND_EVENTS, locked.revision)
    assert _seen(on) == [(key, (g, 7, locked.revision), (g, 7, None))]
    [event] = on.events
    assert event.setting.lock == locked.setting.lock  # who and when, as LockSetting said
    assert event.setting.lock.actor.username
    # A lock changes no value: the value's own version and revisions stay.
    assert event.setting.version == event.previous.version
    assert event.setting.mod_revision == event.previous.mod_revision
    assert off.revision == unlocked.revision
    assert _seen(off) == [(key, (g, 7, None), (g, 7, locked.revision))]


async def test_an_account_lock_is_heard_by_its_retailer_not_another_accounts(
    settings_stub, family, new_account, new_retailer, unique_key
):
    account, retailer = family
    stranger = await new_retailer(await new_account())
    key, marker = unique_key(), unique_key()
    await _put(settings_stub, pb.Scope(account_id=account), key, 3)
    await _set_global(settings_stub, key, 1)
    async with (
        watching(settings_stub, scope=pb.Scope(retailer_id=retailer), keys=[key]) as ours,
        watching(settings_stub, scope=pb.Scope(retailer_id=stranger), keys=[key, marker]) as theirs,
    ):
        for stream in (ours, theirs):
            assert (await stream.next()).kind == Response.KIND_SNAPSHOT
        locked = await _lock(settings_stub, key, pb.Scope(account_id=account))
        heard = await ours.next()
        later = await _set_global(settings_stub, marker, 1)
        other = await theirs.next()

    a = pb.SETTING_LEVEL_ACCOUNT
    assert heard.revision == locked.revision
    assert _seen(heard) == [(key, (a, 3, locked.revision), (a, 3, None))]
    assert other.revision == later.revision  # another account's lock: nothing


async def test_an_account_lock_over_a_retailers_override(settings_stub, family, unique_key):
    """A lock over an override is refused (nothing to hear) unless remove_overrides deletes
    it in the lock's revision: then the retailer hears one event, the override replaced by
    the locked ACCOUNT value. A lock is therefore never of a value shadowed for a scope
    below it, and every lock a scope is reached by is heard."""
    account, retailer = family
    key, marker = unique_key(), unique_key()
    await _put(settings_stub, pb.Scope(account_id=account), key, 3)
    await _put(settings_stub, pb.Scope(retailer_id=retailer), key, 9)
    async with watching(
        settings_stub, scope=pb.Scope(retailer_id=retailer), keys=[key, marker]
    ) as stream:
        assert (await stream.next()).kind == Response.KIND_SNAPSHOT
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _lock(settings_stub, key, pb.Scope(account_id=account))
        later = await _set_global(settings_stub, marker, 1)
        assert (await stream.next()).revision == later.revision  # the refusal: nothing
        locked = await _lock(
            settings_stub, key, pb.Scope(account_id=account), remove_overrides=True
        )
        heard = await stream.next()

    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert heard.revision == locked.revision
    assert _seen(heard) == [
        (key, (pb.SETTING_LEVEL_ACCOUNT, 3, locked.revision), (pb.SETTING_LEVEL_RETAILER, 9, None))
    ]


@pytest.mark.parametrize("by", ["keys", "prefix"])
async def test_the_first_message_carries_the_locks(settings_stub, family, unique_key, by):
    _, retailer = family
    stem = unique_key()
    locked_key, open_key = f"{stem}.A", f"{stem}.B"
    await _set_global(settings_stub, locked_key, 1)
    await _set_global(settings_stub, open_key, 2)
    locked = await _lock(settings_stub, locked_key)
    what = {"keys": [locked_key, open_key]} if by == "keys" else {"key_prefix": f"{stem}."}
    async with watching(settings_stub, scope=pb.Scope(retailer_id=retailer), **what) as stream:
        first = await stream.next()

    by_key = {s.key: s for s in first.settings}
    assert by_key[locked_key].lock == locked.setting.lock
    assert not by_key[open_key].HasField("lock")


async def test_a_resume_from_before_a_lock_replays_it_exactly_once(
    settings_stub, family, unique_key
):
    _, retailer = family
    key = unique_key()
    scope = pb.Scope(retailer_id=retailer)
    await _set_global(settings_stub, key, 1)
    async with watching(settings_stub, scope=scope, keys=[key]) as unbroken:
        start = (await unbroken.next()).revision
        locked = await _lock(settings_stub, key)
        await _set_global(settings_stub, key, 2)  # a put of a locked value keeps its lock
        unlocked = await _unlock(settings_stub, key)
        await _set_global(settings_stub, key, 3)
        seen = [await unbroken.next() for _ in range(4)]
    async with watching(settings_stub, scope=scope, keys=[key], start_revision=start) as resumed:
        replayed = [await resumed.next() for _ in range(4)]
        marker = await _set_global(settings_stub, key, 4)
        live = await resumed.next()

    g = pb.SETTING_LEVEL_GLOBAL
    assert [(m.revision, _seen(m)) for m in seen] == [
        (locked.revision, [(key, (g, 1, locked.revision), (g, 1, None))]),
        (locked.revision + 1, [(key, (g, 2, locked.revision), (g, 1, locked.revision))]),
        (unlocked.revision, [(key, (g, 2, None), (g, 2, locked.revision))]),
        (unlocked.revision + 1, [(key, (g, 3, None), (g, 2, None))]),
    ]
    # The same messages, byte for byte (the lock's time and actor rebuilt from the log).
    assert [m.SerializeToString() for m in replayed] == [m.SerializeToString() for m in seen]
    assert (live.revision, _seen(live)) == (marker.revision, [(key, (g, 4, None), (g, 3, None))])


async def test_a_changeset_that_puts_and_locks_is_one_message(settings_stub, family, unique_key):
    account, retailer = family
    key = unique_key()
    put = pb.SettingChange(
        operation=pb.CHANGE_OPERATION_PUT, key=key, type=pb.SETTING_TYPE_INTEGER, value=_int(5)
    )
    put.scope.CopyFrom(pb.Scope(account_id=account))
    lock = pb.SettingChange(operation=pb.CHANGE_OPERATION_LOCK, key=key)
    lock.scope.CopyFrom(pb.Scope(account_id=account))
    async with watching(settings_stub, scope=pb.Scope(retailer_id=retailer), keys=[key]) as stream:
        assert (await stream.next()).kind == Response.KIND_SNAPSHOT
        applied = await settings_stub.ApplyChanges(pb.ApplyChangesRequest(changes=[put, lock]))
        message = await stream.next()

    assert message.revision == applied.revision
    assert _seen(message) == [(key, (pb.SETTING_LEVEL_ACCOUNT, 5, applied.revision), None)]
