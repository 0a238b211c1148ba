"""Secret keys: a VIEWER reads them masked on every read path, ADMIN (of the owning
account) and PLATFORM read them in full.

Paths: GetSettings (account, retailer, at a revision), ListSettings, ExplainSettings,
ListChanges (old and new side), WatchSettings (snapshot and events), REST GET and the
REST watch (SSE). A masked setting keeps its key, type, level and version, has no value
and says `value_masked`; the secret's text appears nowhere in the answer's bytes. The
read cache never hands a VIEWER an answer cached for an ADMIN, and an answer holding no
secret key is passed on as cached, untouched.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

import pytest

from tests.conftest import Caller
from tests.helpers import define_key, put_setting
from tests.watching import watching
from tierset.core.authz import Role
from tierset.core.values import Level, SettingType
from tierset.services.keydefs import Masking
from tierset.store.database import Resolution, StoredSetting
from tierset.v1 import settings_pb2

STRING = settings_pb2.SETTING_TYPE_STRING


@dataclass
class Secrets:
    """An account and retailer holding a secret key (an ACCOUNT value written twice, a
    RETAILER override) and a plain one; callers of each role; the secret's marker text."""

    account: int
    retailer: int
    secret_key: str
    plain_key: str
    mark: str
    first_revision: int
    callers: dict[Role, Caller]

    def metadata(self, role: Role):
        return self.callers[role].metadata


@pytest.fixture
async def secrets(settings_stub, new_account, new_retailer, make_caller, platform_caller):
    account = await new_account()
    retailer = await new_retailer(account)
    stem = uuid.uuid4().hex[:10].upper()
    secret_key, plain_key, mark = f"PAY.{stem}.API_KEY", f"PAY.{stem}.NAME", f"s3cr3t-{stem}"
    await define_key(settings_stub, secret_key, STRING, secret=True)
    account_scope = settings_pb2.Scope(account_id=account)
    first = await put_setting(settings_stub, account_scope, secret_key, STRING, f"{mark}-old")
    await put_setting(settings_stub, account_scope, secret_key, STRING, f"{mark}-account")
    await put_setting(
        settings_stub,
        settings_pb2.Scope(retailer_id=retailer),
        secret_key,
        STRING,
        f"{mark}-retailer",
    )
    await put_setting(settings_stub, account_scope, plain_key, STRING, "Acme Pay")
    callers = {
        Role.VIEWER: await make_caller(Role.VIEWER, account_id=account),
        Role.ADMIN: await make_caller(Role.ADMIN, account_id=account),
        Role.PLATFORM: platform_caller,
    }
    return Secrets(account, retailer, secret_key, plain_key, mark, first.revision, callers)


def _retailer(s: Secrets) -> settings_pb2.Scope:
    return settings_pb2.Scope(retailer_id=s.retailer)


def _account(s: Secrets) -> settings_pb2.Scope:
    return settings_pb2.Scope(account_id=s.account)


# Each read path: (stub, secrets, role) → (the secret key's Settings it answered, the bytes).
async def _get_retailer(stub, s, role):
    reply = await stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=_retailer(s), keys=[s.secret_key, s.plain_key]),
        metadata=s.metadata(role),
    )
    return list(reply.settings), reply.SerializeToString()


async def _get_account(stub, s, role):
    reply = await stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=_account(s), keys=[s.secret_key, s.plain_key]),
        metadata=s.metadata(role),
    )
    return list(reply.settings), reply.SerializeToString()


async def _get_at_revision(stub, s, role):
    reply = await stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=_account(s), keys=[s.secret_key], at_revision=s.first_revision
        ),
        metadata=s.metadata(role),
    )
    return list(reply.settings), reply.SerializeToString()


async def _list(stub, s, role):
    reply = await stub.ListSettings(
        settings_pb2.ListSettingsRequest(
            scope=_retailer(s), key_prefix=s.secret_key.rsplit(".", 1)[0] + "."
        ),
        metadata=s.metadata(role),
    )
    return list(reply.settings), reply.SerializeToString()


async def _explain(stub, s, role):
    reply = await stub.ExplainSettings(
        settings_pb2.ExplainSettingsRequest(scope=_retailer(s), keys=[s.secret_key]),
        metadata=s.metadata(role),
    )
    return [level.setting for key in reply.keys for level in key.levels], reply.SerializeToString()


async def _changes(stub, s, role):
    reply = await stub.ListChanges(
        settings_pb2.ListChangesRequest(scope=_account(s), key=s.secret_key),
        metadata=s.metadata(role),
    )
    sides = [c.new_setting for c in reply.changes] + [
        c.old_setting for c in reply.changes if c.HasField("old_setting")
    ]
    assert len(sides) >= 4  # three puts (or more), one of them over an old value
    return sides, reply.SerializeToString()


async def _watch_snapshot(stub, s, role):
    async with watching(
        stub, s.metadata(role), scope=_retailer(s), keys=[s.secret_key, s.plain_key]
    ) as stream:
        snapshot = await stream.next()
    return [x for x in snapshot.settings if x.key == s.secret_key], snapshot.SerializeToString()


async def _watch_events(stub, s, role):
    async with watching(stub, s.metadata(role), scope=_account(s), keys=[s.secret_key]) as stream:
        await stream.next()
        await put_setting(stub, _account(s), s.secret_key, STRING, f"{s.mark}-rotated")
        message = await stream.next()
    (event,) = message.events
    return [event.setting, event.previous], message.SerializeToString()


async def _watch_lock(stub, s, role):
    async with watching(stub, s.metadata(role), scope=_account(s), keys=[s.secret_key]) as stream:
        await stream.next()
        await stub.LockSetting(
            settings_pb2.LockSettingRequest(
                scope=_account(s), key=s.secret_key, remove_overrides=True
            )
        )
        message = await stream.next()
    # Unlocked again, so that the next read of this path locks (and is heard) too.
    await stub.UnlockSetting(settings_pb2.UnlockSettingRequest(scope=_account(s), key=s.secret_key))
    (event,) = message.events
    assert event.setting.HasField("lock") and not event.previous.HasField("lock")
    return [event.setting, event.previous], message.SerializeToString()


PATHS = {
    "GetSettings(retailer)": _get_retailer,
    "GetSettings(account)": _get_account,
    "GetSettings(at_revision)": _get_at_revision,
    "ListSettings": _list,
    "ExplainSettings": _explain,
    "ListChanges": _changes,
    "WatchSettings(snapshot)": _watch_snapshot,
    "WatchSettings(events)": _watch_events,
    "WatchSettings(lock)": _watch_lock,
}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN, Role.PLATFORM], ids=str)
@pytest.mark.parametrize("path", PATHS, ids=str)
async def test_secret_values_are_masked_for_viewers_on_every_grpc_read(
    settings_stub, secrets, path, role
):
    settings, raw = await PATHS[path](settings_stub, secrets, role)
    secret = [x for x in settings if x.key == secrets.secret_key]
    assert secret
    if role is Role.VIEWER:
        assert secrets.mark.encode() not in raw
        for setting in secret:
            assert setting.value_masked and not setting.HasField("value")
            assert setting.type == STRING and setting.version > 0
    else:
        assert secrets.mark.encode() in raw
        for setting in secret:
            assert not setting.value_masked
            assert setting.value.string_value.startswith(secrets.mark)
    if path.startswith("GetSettings(") and "revision" not in path:
        assert b"Acme Pay" in raw  # a plain key of the same answer is never masked


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN], ids=str)
async def test_rest_reads_mask_secrets_for_viewers(http, secrets, role):
    headers = {"Authorization": f"Bearer {secrets.callers[role].token}"}
    base = f"/api/v4.1/settings/retailer/{secrets.retailer}"
    got = await http.get(f"{base}/{secrets.secret_key},{secrets.plain_key}", headers=headers)
    assert got.status_code == 200
    entries = {e["key"]: e for e in got.json()["settings"]}
    async with http.stream("GET", f"{base}/{secrets.secret_key}/watch", headers=headers) as sse:
        async for line in sse.aiter_lines():
            if line.startswith("data: "):
                snapshot = json.loads(line.removeprefix("data: "))
                break
    (watched,) = snapshot["settings"]
    assert entries[secrets.plain_key]["value"] == "Acme Pay"
    for entry in (entries[secrets.secret_key], watched):
        if role is Role.VIEWER:
            assert entry["value"] is None and entry["masked"] is True
            assert entry["type"] == "STRING" and entry["level"] == "RETAILER"
        else:
            assert entry["value"] == f"{secrets.mark}-retailer" and "masked" not in entry
    assert (secrets.mark in got.text) is (role is not Role.VIEWER)


async def test_the_read_cache_never_serves_a_viewer_what_it_cached_for_an_admin(
    settings_stub, server, secrets
):
    cache = server.cache
    assert cache is not None
    hits = cache.hits
    for role in (Role.ADMIN, Role.VIEWER, Role.ADMIN, Role.VIEWER, Role.PLATFORM):
        settings, raw = await _get_retailer(settings_stub, secrets, role)
        (secret,) = (x for x in settings if x.key == secrets.secret_key)
        assert secret.value_masked is (role is Role.VIEWER)
        assert (secrets.mark.encode() in raw) is (role is not Role.VIEWER)
    assert cache.hits >= hits + 4  # one database read, then the cache, whoever asks


async def test_a_key_made_secret_later_is_masked_at_once_and_unmasked_when_undefined(
    settings_stub, secrets
):
    key = secrets.plain_key
    await define_key(settings_stub, key, STRING, secret=True)
    settings, raw = await _get_account(settings_stub, secrets, Role.VIEWER)
    assert b"Acme Pay" not in raw
    assert all(x.value_masked for x in settings)
    await settings_stub.DeleteKeyDefinition(settings_pb2.DeleteKeyDefinitionRequest(key=key))
    await settings_stub.DeleteKeyDefinition(
        settings_pb2.DeleteKeyDefinitionRequest(key=secrets.secret_key)
    )
    settings, raw = await _get_account(settings_stub, secrets, Role.VIEWER)
    assert not any(x.value_masked for x in settings) and secrets.mark.encode() in raw


async def test_secret_values_never_reach_the_logs(settings_stub, secrets, caplog):
    caplog.set_level(logging.DEBUG)
    await put_setting(settings_stub, _account(secrets), secrets.secret_key, STRING, secrets.mark)
    for role in Role:
        for read in PATHS.values():
            await read(settings_stub, secrets, role)
    assert caplog.records  # the server did log these calls
    assert secrets.mark not in caplog.text


def _setting(key: str) -> StoredSetting:
    from datetime import UTC, datetime

    return StoredSetting(1, key, SettingType.STRING, '"v"', Level.ACCOUNT, 1, datetime.now(UTC))


def test_an_answer_without_secret_keys_is_passed_on_as_it_is():
    """The cached path of non-secret keys: the same Resolution (and so the same rendered
    bytes) whoever reads; a masked copy is made once per cached answer."""
    masking = Masking(frozenset({"S.KEY"}), version=3)
    plain = Resolution(1, [_setting("A.KEY"), _setting("B.KEY")])
    assert masking.resolution(plain) is plain
    holding = Resolution(1, [_setting("A.KEY"), _setting("S.KEY")])
    masked = masking.resolution(holding)
    assert masked is not holding and masking.resolution(holding) is masked
    assert [s.masked for s in masked.settings] == [False, True]
    assert [s.masked for s in holding.settings] == [False, False]
