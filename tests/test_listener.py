"""One PostgreSQL LISTEN connection per process (tierset.store.listener), against a real
PostgreSQL: its consumers (read cache, revocation) recover from a cut, its backoff resets
after a healthy period, and its probe notices a connection that died without a word.

Waits are deadlines on observed state, never timings: the listener records the delays it
chose and why each connection ended, and its clock is the test's to move.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest

from tierset.auth.authenticator import REVOCATION_CHANNEL
from tierset.auth.credentials import CredentialStore, Kind
from tierset.cache.reads import CHANNEL, ResolutionCache
from tierset.core.authz import Role
from tierset.core.values import Level
from tierset.services.watch import CHANNEL as WATCH_CHANNEL
from tierset.store.database import ScopeRef
from tierset.store.definitions import CHANNEL as DEFINITIONS_CHANNEL
from tierset.store.listener import (
    APPLICATION_NAME,
    LOST_ERROR,
    LOST_PROBE,
    Backoff,
    Listener,
)
from tierset.v1 import settings_pb2

DEADLINE_SECONDS = 10.0


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def cut(db, listener: Listener) -> None:
    """Terminates the listener's backend and waits until it is connected on a new one."""
    lost = listener.backend_pid
    assert lost is not None
    assert await db.fetchval("SELECT pg_terminate_backend($1)", lost)
    await until(
        lambda: listener.connected and listener.backend_pid not in (None, lost),
        "the listener to reconnect",
    )


def _get(account_id: int, key: str) -> settings_pb2.GetSettingsRequest:
    return settings_pb2.GetSettingsRequest(
        scope=settings_pb2.Scope(account_id=account_id), keys=[key]
    )


async def test_a_server_process_has_one_listen_connection_for_cache_and_revocations(
    create_database, start_app_with, server_config
):
    dsn = await create_database()
    app = await start_app_with(dataclasses.replace(server_config), dsn)
    assert await app.listener.wait_connected(DEADLINE_SECONDS)
    assert app.listener.channels == {
        CHANNEL,
        REVOCATION_CHANNEL,
        WATCH_CHANNEL,
        DEFINITIONS_CHANNEL,
    }

    # The database is the test's own: besides the pool ('tierset') and this query's
    # connection, whatever is connected is the server's LISTEN connections.
    observer = await asyncpg.connect(dsn)
    try:
        others = await observer.fetch(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name <> 'tierset'"
        )
    finally:
        await observer.close()
    assert [(r["pid"], r["application_name"]) for r in others] == [
        (app.listener.backend_pid, APPLICATION_NAME)
    ]


async def test_after_the_listener_is_cut_the_cache_and_revocation_both_recover(
    start_server, db, settings_stub, make_caller, unique_key
):
    other = await start_server()
    cache, listener = other.app.cache, other.app.listener
    caller = await make_caller(Role.VIEWER)
    key = unique_key("CUT")
    scope = ScopeRef(Level.ACCOUNT, caller.account_id)
    await other.settings.GetSettings(_get(caller.account_id, key), metadata=caller.metadata)
    assert ResolutionCache.key(scope, [key]) in cache  # and the caller's token is cached

    # Subscribed after the cache, so called after it: what the cache looked like when lost.
    at_loss: list[tuple[bool, int]] = []
    await listener.subscribe(
        "tierset_test_probe",
        lambda _payload: None,
        on_disconnected=lambda: at_loss.append((cache.enabled, len(cache))),
    )
    await cut(db, listener)
    assert at_loss == [(False, 0)], "the cache is off and empty while the listener is down"
    assert cache.enabled and ResolutionCache.key(scope, [key]) not in cache

    # Revocation is heard on the new connection: the auth cache lasts 60 s, so only the
    # notification can make the server refuse the token within the deadline.
    await other.settings.GetSettings(_get(caller.account_id, key), metadata=caller.metadata)
    await CredentialStore(db).revoke(caller.token_id, Kind.API_TOKEN)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            await other.settings.GetSettings(_get(caller.account_id, key), metadata=caller.metadata)
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
            break
        assert time.monotonic() < deadline, "a revoked token was still accepted"
        await asyncio.sleep(0.02)

    # And the cache hears writes again: another process's write reaches this one.
    before = cache.invalidations
    await settings_stub.SetGlobal(
        settings_pb2.SetGlobalRequest(
            key=key,
            type=settings_pb2.SETTING_TYPE_INTEGER,
            value=settings_pb2.SettingValue(integer_value=1),
        )
    )
    await until(lambda: cache.invalidations > before, "the write's notification")


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_backoff_resets_to_the_minimum_after_a_healthy_period(database_url, db):
    clock = FakeClock()
    listener = Listener(
        database_url, min_delay=0.01, max_delay=0.64, healthy_after=30.0, clock=clock
    )
    await listener.subscribe("tierset_test_backoff", lambda _payload: None)
    listener.start()
    try:
        assert await listener.wait_connected(DEADLINE_SECONDS)
        for _ in range(4):  # each connection lost at once (the clock does not move)
            await cut(db, listener)
        assert len(listener.delays) == 4
        assert listener.delays[-1] > 0.04, list(listener.delays)  # grew: 0.08 less jitter

        clock.now += 30.0  # this connection stays up for the healthy period
        await cut(db, listener)
        assert listener.delays[-1] <= 0.01, list(listener.delays)  # back to the minimum
    finally:
        await listener.stop()
    assert not listener.connected and listener.backend_pid is None


def test_backoff_doubles_up_to_its_cap_and_jitters_down_by_at_most_half():
    steady = Backoff(0.1, 5.0, jitter=lambda: 0.0)
    assert [round(steady.next(), 3) for _ in range(8)] == [
        0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0,
    ]  # fmt: skip
    steady.reset()
    assert steady.next() == pytest.approx(0.1)
    most = Backoff(0.1, 5.0, jitter=lambda: 1.0)
    assert [most.next() for _ in range(2)] == pytest.approx([0.05, 0.1])


class FreezingProxy:
    """A TCP proxy to PostgreSQL that can stop forwarding on its open connections while
    keeping them open: a half-open connection, as a network partition leaves one."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._frozen: set[object] = set()
        self._links: list[object] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        """From now on, bytes on the connections open so far go nowhere."""
        self._frozen.update(self._links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        link = object()
        self._links.append(link)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, link))
            self._tasks.add(task)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: object
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if link not in self._frozen:
                    sink.write(data)
                    await sink.drain()
            sink.close()

    async def close(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


def _through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


async def test_a_silently_dead_connection_is_noticed_by_the_probe(database_url):
    target = urlsplit(database_url)
    proxy = FreezingProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    events: list[str] = []
    listener = Listener(
        _through(database_url, proxy.port),
        probe_interval=0.05,
        probe_timeout=0.5,
        min_delay=0.01,
        max_delay=0.05,
    )
    await listener.subscribe(
        "tierset_test_silence",
        lambda _payload: None,
        on_connected=lambda: events.append("connected"),
        on_disconnected=lambda: events.append("disconnected"),
    )
    listener.start()
    try:
        assert await listener.wait_connected(DEADLINE_SECONDS)
        silent = listener.backend_pid
        proxy.freeze()  # no FIN, no RST: only talking shows the connection is gone
        await until(lambda: LOST_PROBE in listener.losses, "the probe to notice")
        await until(
            lambda: listener.connected and listener.backend_pid not in (None, silent),
            "a new connection",
        )
        assert list(listener.losses) == [LOST_PROBE]
        assert events == ["connected", "disconnected", "connected"]
    finally:
        await listener.stop()
        await proxy.close()


async def test_a_channel_subscribed_while_connected_is_in_force_at_once_until_unsubscribed(
    database_url, db
):
    listener = Listener(database_url)
    marks: list[str] = []
    await listener.subscribe("tierset_test_marks", marks.append)
    listener.start()
    try:
        assert await listener.wait_connected(DEADLINE_SECONDS)
        heard: list[str] = []
        events: list[str] = []
        # As Watch will: subscribe while connected; on_connected means LISTEN is in force.
        subscription = await listener.subscribe(
            "tierset_test_revisions",
            heard.append,
            on_connected=lambda: events.append("connected"),
        )
        assert events == ["connected"]
        await db.execute("SELECT pg_notify('tierset_test_revisions', '41')")
        await until(lambda: heard == ["41"], "the revision")

        await listener.unsubscribe(subscription)
        assert "tierset_test_revisions" not in listener.channels
        await db.execute("SELECT pg_notify('tierset_test_revisions', '42')")
        # Delivered in order on the one connection: once the marker is heard, so was 42.
        await db.execute("SELECT pg_notify('tierset_test_marks', 'after')")
        await until(lambda: marks == ["after"], "the marker")
        assert heard == ["41"]
    finally:
        await listener.stop()


async def test_a_subscriber_that_fails_does_not_end_the_listener(database_url, db, caplog):
    # The one loop keeps the cache coherent and revocations heard: a bug in one subscriber
    # is logged and the listener starts afresh, and its stop still ends cleanly.
    listener = Listener(database_url, min_delay=0.01, max_delay=0.05)
    connects: list[int] = []

    def on_connected() -> None:
        connects.append(1)
        if len(connects) == 1:
            raise RuntimeError("a subscriber's bug")

    heard: list[str] = []
    await listener.subscribe("tierset_test_fails", heard.append, on_connected=on_connected)
    listener.start()
    try:
        await until(lambda: len(connects) >= 2 and listener.connected, "a second connection")
        assert LOST_ERROR in listener.losses
        assert "listener failed; reconnecting" in caplog.text
        await db.execute("SELECT pg_notify('tierset_test_fails', 'still listening')")
        await until(lambda: heard == ["still listening"], "the notification")
    finally:
        await listener.stop()
