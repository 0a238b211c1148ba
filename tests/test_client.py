"""The Python client (tierset.client) against the session's real server: typed reads and
writes, each credential kind, read retries and write non-retries, the sync facade."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from tests.conftest import Caller, MakeCaller, free_port
from tierset import client as tc
from tierset.api.server import App
from tierset.auth.credentials import CredentialStore, Kind
from tierset.core.authz import Role
from tierset.ops.config import Config


class RecordingBackoff(tc.Backoff):
    """A real backoff that counts its delays (each one is a retry about to happen)."""

    delays = 0
    retrying: asyncio.Event | None = None

    def next_delay(self) -> float:
        RecordingBackoff.delays += 1
        if RecordingBackoff.retrying is not None and RecordingBackoff.delays >= 2:
            RecordingBackoff.retrying.set()
        return 0.05


def target(app: App) -> str:
    return f"127.0.0.1:{app.port}"


async def test_typed_put_and_get(
    server: App,
    platform_caller: Caller,
    new_account: Callable[[], Awaitable[int]],
    unique_key: Callable[[str], str],
) -> None:
    account = tc.Scope.account(await new_account())
    keys = {
        unique_key("C"): 42,
        unique_key("C"): True,
        unique_key("C"): "blue",
        unique_key("C"): {"a": [1, 2.5, None]},
    }
    async with tc.Client(target(server), tc.ApiToken(platform_caller.token)) as client:
        for key, value in keys.items():
            written = await client.put(account, key, value)
            assert written.created and written.version == 1
        read = await client.get(account, list(keys))
    assert {key: read.value(key) for key in keys} == keys
    types = [read[key].type for key in keys]
    assert types == ["INTEGER", "BOOLEAN", "STRING", "JSON"]
    assert read.revision > 0


async def test_a_refusal_is_a_tierset_error_with_its_reason(
    server: App,
    platform_caller: Caller,
    new_account: Callable[[], Awaitable[int]],
    unique_key: Callable[[str], str],
) -> None:
    account = tc.Scope.account(await new_account())
    key = unique_key("C")
    async with tc.Client(target(server), tc.ApiToken(platform_caller.token)) as client:
        await client.put(account, key, 1)
        with pytest.raises(tc.TiersetError) as refused:
            await client.put(account, key, 2, expected_version=7)
    assert refused.value.code == grpc.StatusCode.ABORTED
    assert refused.value.reason == "VERSION_MISMATCH"


async def test_app_password_and_oauth_credentials(
    server: App,
    make_caller: MakeCaller,
    new_account: Callable[[], Awaitable[int]],
    unique_key: Callable[[str], str],
) -> None:
    caller = await make_caller(Role.ADMIN, password="a long enough password 1")
    store = CredentialStore(server.pool)
    app_password = await store.issue(caller.user_id, Kind.APP_PASSWORD, name="test")
    client_id, client_secret = await store.create_oauth_client(None, "client test")
    account = tc.Scope.account(caller.account_id)
    key = unique_key("C")
    credentials = [
        tc.AppPassword(caller.username, app_password.secret),
        tc.OAuthPassword(client_id, client_secret, caller.username, "a long enough password 1"),
    ]
    for number, credential in enumerate(credentials):
        assert "password" not in repr(credential) and app_password.secret not in repr(credential)
        async with tc.Client(target(server), credential) as client:
            await client.put(account, key, number)
            assert (await client.get(account, [key])).value(key) == number


async def test_a_bad_credential_is_unauthenticated(server: App) -> None:
    async with tc.Client(target(server), tc.ApiToken("tsk_nonsense")) as client:
        with pytest.raises(tc.TiersetError) as refused:
            await client.get(tc.Scope.account(1), ["A"])
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_reads_retry_unavailable_until_the_server_is_up(
    server_config: Config,
    create_database: Callable[[], Awaitable[str]],
    start_app_with: Callable[[Config, str], Awaitable[App]],
) -> None:
    port = free_port()
    dsn = await create_database()
    config = dataclasses.replace(server_config, grpc_address=f"127.0.0.1:{port}")
    RecordingBackoff.delays = 0
    RecordingBackoff.retrying = asyncio.Event()
    client = tc.Client(
        f"127.0.0.1:{port}", tc.ApiToken("tsk_unused"), read_attempts=1000, backoff=RecordingBackoff
    )
    async with client:
        # Nothing listens yet: the read keeps retrying UNAVAILABLE...
        reading = asyncio.create_task(client.get(tc.Scope.account(1), ["A"]))
        async with asyncio.timeout(30):
            await RecordingBackoff.retrying.wait()
        assert not reading.done()
        # ...until the server is up, which answers (this token is unknown there).
        await start_app_with(config, dsn)
        with pytest.raises(tc.TiersetError) as answered:
            await reading
        assert answered.value.code == grpc.StatusCode.UNAUTHENTICATED
    RecordingBackoff.retrying = None


async def test_writes_are_retried_only_with_expected_version() -> None:
    port = free_port()  # nobody listens
    for expected_version, retried in ((None, False), (3, True)):
        RecordingBackoff.delays = 0
        client = tc.Client(
            f"127.0.0.1:{port}", tc.ApiToken("t"), read_attempts=3, backoff=RecordingBackoff
        )
        async with client:
            with pytest.raises(tc.TiersetError) as failed:
                await client.put(tc.Scope.account(1), "A", 1, expected_version=expected_version)
        assert failed.value.code == grpc.StatusCode.UNAVAILABLE
        assert RecordingBackoff.delays == (2 if retried else 0)


async def test_sync_facade(
    server: App,
    platform_caller: Caller,
    new_account: Callable[[], Awaitable[int]],
    unique_key: Callable[[str], str],
) -> None:
    account = tc.Scope.account(await new_account())
    key = unique_key("S")

    def use_it() -> tuple[int | None, int | None, bool]:
        with tc.SyncClient(target(server), tc.ApiToken(platform_caller.token)) as client:
            client.put(account, key, 5)
            got = client.get(account, [key]).value(key)
            view = client.view(account, keys=[key])
            seen = view.get_int(key)
            client.put(account, key, 6)
            while view.get_int(key) != 6:  # the facade's thread applies the event
                time.sleep(0.01)
            return got, view.get_int(key), view.connected and seen == 5

    got, updated, ok = await asyncio.to_thread(use_it)
    assert (got, updated, ok) == (5, 6, True)


async def test_delete_list_and_history(
    server: App,
    platform_caller: Caller,
    new_account: Callable[[], Awaitable[int]],
    new_retailer: Callable[[int], Awaitable[int]],
    unique_key: Callable[[str], str],
) -> None:
    account_id = await new_account()
    account, retailer = (
        tc.Scope.account(account_id),
        tc.Scope.retailer(await new_retailer(account_id)),
    )
    prefix = unique_key("L") + "."
    async with tc.Client(target(server), tc.ApiToken(platform_caller.token)) as client:
        await client.put(account, prefix + "A", "account", reason="first")
        await client.put(retailer, prefix + "A", "retailer")
        await client.put(retailer, prefix + "B", 2)
        listed = await client.list(retailer, prefix=prefix, page_size=1)  # two pages
        assert [(s.key, s.value, s.level) for s in listed] == [
            (prefix + "A", "retailer", "RETAILER"),
            (prefix + "B", 2, "RETAILER"),
        ]
        deleted = await client.delete(retailer, prefix + "A")
        assert deleted.effective is not None and deleted.effective.value == "account"
        assert deleted.effective.level == "ACCOUNT"
        changes = await client.history(account, prefix=prefix)
    assert [(c.operation, c.level, c.key) for c in changes] == [
        ("PUT", "ACCOUNT", prefix + "A"),
        ("PUT", "RETAILER", prefix + "A"),
        ("PUT", "RETAILER", prefix + "B"),
        ("DELETE", "RETAILER", prefix + "A"),
    ]
    assert changes[0].reason == "first" and changes[-1].revision == deleted.revision
