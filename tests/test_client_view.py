"""The client's live view (tierset.client.View) against real servers: correct under
concurrent writes, resumes after a server restart without missing or repeating a
revision, re-lists after compaction, and starts from its last-known-good file while the
server is down."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from tests.conftest import Caller, free_port, make_caller_in
from tierset import client as tc
from tierset.api.server import App, start_app
from tierset.core.authz import Role
from tierset.ops.config import Config
from tierset.store.database import Store
from tierset.v1 import settings_pb2 as pb

DEADLINE = 30.0


async def until(predicate: Callable[[], bool]) -> None:
    """Waits (bounded) for the view's own task to make `predicate` true."""
    async with asyncio.timeout(DEADLINE):
        while not predicate():  # noqa: ASYNC110 (polls memory another task fills)
            await asyncio.sleep(0.02)


class Revisions:
    """An on_change callback that records each revision it is called with."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.events: list[tc.Event] = []

    def __call__(self, events: list[tc.Event], revision: int) -> None:
        self.seen.append(revision)
        self.events.extend(events)


async def test_view_follows_concurrent_writes_at_every_level(
    server: App,
    platform_caller: Caller,
    new_account: Callable[[], Awaitable[int]],
    new_retailer: Callable[[int], Awaitable[int]],
    unique_key: Callable[[str], str],
) -> None:
    account_id = await new_account()
    account = tc.Scope.account(account_id)
    retailer = tc.Scope.retailer(await new_retailer(account_id))
    prefix = unique_key("V") + "."
    keys = [f"{prefix}K{n}" for n in range(5)]
    target = f"127.0.0.1:{server.port}"
    async with tc.Client(target, tc.ApiToken(platform_caller.token)) as client:
        view = await client.view(retailer, prefix=prefix)
        recorded = Revisions()
        view.on_change(recorded)
        assert view.connected and view.items() == {}

        async def writer(scope: tc.Scope, number: int) -> None:
            for round_ in range(15):
                key = keys[(number + round_) % len(keys)]
                if round_ % 4 == 3 and not scope.is_global:
                    with contextlib.suppress(tc.TiersetError):  # not set there: NOT_FOUND
                        await client.delete(scope, key)
                else:
                    await client.put(scope, key, number * 100 + round_)

        await asyncio.gather(
            writer(tc.GLOBAL, 1), writer(account, 2), writer(retailer, 3), writer(account, 4)
        )
        truth = await client.get(retailer, keys)
        await until(lambda: view.revision >= truth.revision)
        assert view.items() == {key: s.value for key, s in truth.settings.items()}
        assert {key: view.setting(key).level for key in truth.settings} == {  # type: ignore[union-attr]
            key: s.level for key, s in truth.settings.items()
        }
        # One callback per revision that changed the view, in revision order, none twice.
        assert recorded.seen == sorted(set(recorded.seen))
        await view.close()


@contextlib.asynccontextmanager
async def own_server(config: Config, dsn: str) -> AsyncIterator[App]:
    app = await start_app(config, dsn)
    try:
        yield app
    finally:
        await app.stop(0.5)


@pytest.fixture
async def scene(
    server_config: Config, create_database: Callable[[], Awaitable[str]]
) -> tuple[Config, Config, str, Caller, tc.Scope]:
    """A database of the test's own with a retailer, and configs for two servers on it
    (the view's, on a port that survives restarts, and another to write through)."""
    dsn = await create_database()
    # No compaction of their own (retention 0): the compaction test compacts when it
    # means to, and a server's start-up round would hold the lock it needs.
    server_config = dataclasses.replace(server_config, history_retention_days=0)
    first = dataclasses.replace(server_config, grpc_address=f"127.0.0.1:{free_port()}")
    second = dataclasses.replace(server_config, grpc_address=f"127.0.0.1:{free_port()}")
    async with own_server(first, dsn) as app:
        store = Store(app.pool)
        account = await store.create_account(None, "View account")
        caller = await make_caller_in(dsn, Role.PLATFORM)
        async with tc.Client(first.grpc_address, tc.ApiToken(caller.token)) as client:
            await client.put(tc.Scope.account(account.id), "SEED", 0)
    return first, second, dsn, caller, tc.Scope.account(account.id)


async def test_view_resumes_from_its_revision_after_a_server_restart(
    scene: tuple[Config, Config, str, Caller, tc.Scope],
) -> None:
    first, second, dsn, caller, scope = scene
    token = tc.ApiToken(caller.token)
    recorded = Revisions()
    async with tc.Client(first.grpc_address, token) as client:
        async with own_server(first, dsn):
            view = await client.view(scope, keys=["A", "B"])
            view.on_change(recorded)
            one = await client.put(scope, "A", 1)
            await until(lambda: view.get_int("A") == 1)
        await until(lambda: not view.connected)
        # While the view's server is down, two more revisions land through another one.
        async with own_server(second, dsn), tc.Client(second.grpc_address, token) as other:
            two = await other.put(scope, "A", 2)
            three = await other.put(scope, "B", 3)
        async with own_server(first, dsn):
            await until(lambda: view.get_int("B") == 3)
            assert view.get_int("A") == 2 and view.connected
            # Resumed, not re-listed: each revision applied on its own, once.
            assert recorded.seen == [one.revision, two.revision, three.revision]
            assert view.revision == three.revision and view.reconnects >= 1
            await view.close()


async def test_view_relists_after_its_revision_is_compacted(
    scene: tuple[Config, Config, str, Caller, tc.Scope],
) -> None:
    first, second, dsn, caller, scope = scene
    token = tc.ApiToken(caller.token)
    recorded = Revisions()
    async with tc.Client(first.grpc_address, token) as client:
        async with own_server(first, dsn):
            view = await client.view(scope, keys=["A", "B"])
            view.on_change(recorded)
            one = await client.put(scope, "A", 1)
            await until(lambda: view.get_int("A") == 1)
        async with own_server(second, dsn) as app, tc.Client(second.grpc_address, token) as other:
            await other.put(scope, "A", 2)
            three = await other.put(scope, "B", 3)
            compacted = await Store(app.pool).compact(datetime.now(UTC) + timedelta(hours=1))
            assert compacted is not None and compacted > one.revision
        async with own_server(first, dsn):
            await until(lambda: view.get_int("B") == 3)
            assert view.get_int("A") == 2
            # The fresh snapshot's difference arrives as one change at its revision.
            assert recorded.seen == [one.revision, three.revision]
            assert view.last_error is not None
            assert view.last_error.reason == "REVISION_COMPACTED"
            await view.close()


async def test_view_starts_from_its_last_known_good_file_while_the_server_is_down(
    scene: tuple[Config, Config, str, Caller, tc.Scope], tmp_path: Path
) -> None:
    first, _, dsn, caller, scope = scene
    token = tc.ApiToken(caller.token)
    saved = tmp_path / "settings.json"
    async with tc.Client(first.grpc_address, token) as client:
        async with own_server(first, dsn):
            view = await client.view(scope, keys=["A", "J"], last_known_good=saved)
            await client.put(scope, "A", 7)
            await client.put(scope, "J", {"x": [1]})

            def saved_values() -> dict[str, object]:
                if not saved.exists():
                    return {}
                document = json.loads(saved.read_text())
                return {s["key"]: s["value"] for s in document["settings"]}

            await until(lambda: saved_values() == {"A": 7, "J": {"x": [1]}})
            await view.close()
        leftovers = await asyncio.to_thread(lambda: list(tmp_path.glob(".*.tmp")))
        assert not leftovers, "a temporary file was left behind"

    # The server is down: a new process's view serves the file, and says so.
    async with tc.Client(first.grpc_address, token) as client:
        view = await client.view(scope, keys=["A", "J"], last_known_good=saved)
        assert view.from_file and not view.connected
        assert view.get_int("A") == 7 and view.get_json("J") == {"x": [1]}
        assert view.age_seconds < 3600
        # A file written for another selection is not served.
        with pytest.raises(tc.TiersetError) as refused:
            await client.view(scope, keys=["A"], last_known_good=saved, wait_seconds=1)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        # Once the server is back, the view is the server's again.
        async with own_server(first, dsn):
            await until(lambda: view.connected)
            await client.put(scope, "A", 8)
            await until(lambda: view.get_int("A") == 8)
            assert not view.from_file and view.connected
            await view.close()


async def test_typed_getters_defaults_and_type_errors(
    server: App, platform_caller: Caller, new_account: Callable[[], Awaitable[int]]
) -> None:
    scope = tc.Scope.account(await new_account())
    async with tc.Client(f"127.0.0.1:{server.port}", tc.ApiToken(platform_caller.token)) as c:
        for key, value in {"I": 3, "B": False, "S": "x"}.items():
            await c.put(scope, key, value)
        view = await c.view(scope, keys=["I", "B", "S", "MISSING"])
        assert (view.get_int("I"), view.get_bool("B"), view.get_str("S")) == (3, False, "x")
        assert view.get_int("MISSING", 9) == 9 and view.get_json("MISSING") is None
        with pytest.raises(TypeError, match="I is a INTEGER setting"):
            view.get_str("I")
        assert view.age_seconds < 3600
        await view.close()


async def test_a_view_exposes_locks_and_keeps_them_in_its_file(
    server: App,
    platform_caller: Caller,
    settings_stub,
    new_account: Callable[[], Awaitable[int]],
    new_retailer: Callable[[int], Awaitable[int]],
    unique_key: Callable[[str], str],
    tmp_path: Path,
) -> None:
    account_id = await new_account()
    retailer = tc.Scope.retailer(await new_retailer(account_id))
    key = unique_key("VL")
    saved = tmp_path / "settings.json"
    async with tc.Client(f"127.0.0.1:{server.port}", tc.ApiToken(platform_caller.token)) as c:
        await c.put(tc.Scope.account(account_id), key, 5)
        view = await c.view(retailer, keys=[key], last_known_good=saved)
        recorded = Revisions()
        view.on_change(recorded)
        assert view.setting(key).lock is None
        account = pb.Scope(account_id=account_id)
        locked = await settings_stub.LockSetting(pb.LockSettingRequest(scope=account, key=key))
        await until(lambda: view.revision == locked.revision)
        lock = view.setting(key).lock
        assert lock == tc.Lock(
            locked.revision,
            locked.setting.lock.lock_time.ToJsonString(),
            locked.setting.lock.actor.username,
        )
        assert view.get_int(key) == 5  # the value is unchanged
        assert [(e.setting.lock, e.previous.lock) for e in recorded.events] == [(lock, None)]

        def saved_lock() -> object:
            if not saved.exists():
                return None
            return json.loads(saved.read_text())["settings"][0].get("lock")

        await until(lambda: saved_lock() is not None)
        assert tc.Setting.from_json(json.loads(saved.read_text())["settings"][0]) == view.setting(
            key
        )
        unlocked = await settings_stub.UnlockSetting(
            pb.UnlockSettingRequest(scope=account, key=key)
        )
        await until(lambda: view.revision == unlocked.revision)
        assert view.setting(key).lock is None
        assert recorded.seen == [locked.revision, unlocked.revision]
        await view.close()
