"""One PostgreSQL LISTEN connection per process, shared by everything that follows NOTIFYs.

A server process follows several channels (``tierset_settings`` for the read cache,
``tierset_credentials_revoked`` for revocation, and next a revision channel for Watch).
A :class:`Listener` holds one dedicated asyncpg connection for all of them, one reconnect
loop and one liveness probe, so they all see the same connection state and a database has
one extra connection per process, not one per feature.

The contract a subscriber gets (:meth:`Listener.subscribe`):

* ``on_notify(payload)`` for every NOTIFY on its channel while connected, in the order
  PostgreSQL delivers them (commit order); callbacks run on the event loop and must not
  block.
* ``on_connected()`` once LISTEN on its channel is in force: from then on no NOTIFY on it
  is missed until the next ``on_disconnected()``. It is called after every (re)connection
  and, for a subscription made while connected, as soon as its LISTEN is in force.
* ``on_disconnected()`` when the connection is lost or the listener stops: notifications
  sent from now on may never arrive. Each ``on_connected()`` is followed by at most one.

Whatever was sent between a loss and the next ``on_connected()`` is lost, so each
subscriber re-establishes its state there: the read cache disables itself on the loss and
starts again empty; revocation trusts nothing cached (its TTL bounds a missed revocation).

Designed for Watch (the next issue): a channel whose payload is a revision number (small,
unlike the 8000-byte NOTIFY limit on data). A watcher keeps the last revision it
delivered; ``on_connected()`` is its cue to read from the store everything after that
revision (the catch-up covers whatever the outage lost, and notifications for revisions
already read are dropped because revisions only grow); ``on_disconnected()`` means "keep
the stream open, stop trusting silence". Subscriptions can be added and removed while
connected (one LISTEN per channel however many subscribe; UNLISTEN when the last leaves),
so a per-stream or per-hub subscription both work.

Invariants:

* One connection; it runs one command at a time (a lock orders the probe and
  (UN)LISTENs), and a subscriber failing on a notification has missed it, so the
  connection is recycled and every subscriber starts afresh.
* Reconnects wait a jittered, exponentially growing delay from ``min_delay`` up to
  ``max_delay``; a connection that stayed up for ``healthy_after`` seconds resets it to
  ``min_delay``, so a brief outage after a long healthy period is retried quickly.
* A connection can die without a word (a half-open TCP connection): it is probed every
  ``probe_interval`` and must answer within ``probe_timeout``, which bounds how long a
  silent loss goes unnoticed to about their sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

log = logging.getLogger(__name__)

# How the listener's connection appears in pg_stat_activity (one per server process).
APPLICATION_NAME = "tierset-listener"

# Why a connection ended, as recorded in Listener.losses.
LOST_CONNECT = "connect"  # could not connect or LISTEN
LOST_TERMINATED = "terminated"  # the server closed it (pg_terminate_backend, restart)
LOST_PROBE = "probe"  # the liveness probe failed or did not answer in time
LOST_SUBSCRIBER = "subscriber"  # a subscriber failed on a notification
LOST_ERROR = "error"  # anything else: a bug, logged with its stack trace

# Connection trouble the loop retries; anything else is a bug and ends the loop loudly.
_RETRIED = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(eq=False)
class Subscription:
    """A channel's callbacks (see the module docstring for when each is called)."""

    channel: str
    on_notify: Callable[[str], None]
    on_connected: Callable[[], None] | None = None
    on_disconnected: Callable[[], None] | None = None
    # Whether on_connected was called and on_disconnected not yet.
    live: bool = field(default=False, init=False)


class Backoff:
    """Delays between reconnects: from `minimum`, doubling up to `maximum`, each jittered
    down by up to half so that many processes cut off together do not return together."""

    def __init__(
        self, minimum: float, maximum: float, jitter: Callable[[], float] = random.random
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._jitter = jitter
        self._base = minimum

    def next(self) -> float:
        """The delay before the next attempt; the one after will be twice as long."""
        base = self._base
        self._base = min(base * 2, self.maximum)
        return base * (1 - self._jitter() / 2)

    def reset(self) -> None:
        """Back to `minimum` (after a healthy period)."""
        self._base = self.minimum


class _Lost(Exception):
    """The connection ended; `reason` is one of the LOST_* values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Listener:
    """The process's one LISTEN connection, reconnecting in the background once started.

    `delays` (the last reconnect delays, newest last) and `losses` (why connections
    ended, LOST_*) record what the loop did, for logs and tests. `clock` measures how
    long a connection stayed healthy.
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        application_name: str = APPLICATION_NAME,
        connect_timeout: float = 10.0,
        probe_interval: float = 1.0,
        probe_timeout: float = 1.0,
        min_delay: float = 0.1,
        max_delay: float = 5.0,
        healthy_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._application_name = application_name
        self._connect_timeout = connect_timeout
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._healthy_after = healthy_after
        self._clock = clock
        self.backoff = Backoff(min_delay, max_delay)
        self.delays: deque[float] = deque(maxlen=64)
        self.losses: deque[str] = deque(maxlen=64)
        self.backend_pid: int | None = None
        self._subscriptions: list[Subscription] = []
        self._connection: asyncpg.Connection | None = None
        self._lost: asyncio.Future[str] | None = None
        self._connected_at: float | None = None
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether LISTEN is in force on every subscribed channel right now."""
        return self._connected.is_set()

    @property
    def channels(self) -> frozenset[str]:
        """The channels subscribed to."""
        return frozenset(s.channel for s in self._subscriptions)

    async def subscribe(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        *,
        on_connected: Callable[[], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
    ) -> Subscription:
        """Follows `channel` from now on, before or after :meth:`start`.

        Never fails on connection trouble: a LISTEN that cannot be sent recycles the
        connection, and the subscription is in force (``on_connected``) after it.
        """
        subscription = Subscription(channel, on_notify, on_connected, on_disconnected)
        async with self._lock:
            self._subscriptions.append(subscription)
            connection = self._connection
            if connection is None or not self.connected:
                return subscription  # the next connection LISTENs for it
            try:
                if sum(s.channel == channel for s in self._subscriptions) == 1:
                    await self._listen(connection, channel)
            except _RETRIED:
                self._lose(LOST_CONNECT)
                return subscription
            self._connect(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stops calling `subscription` (no ``on_disconnected``); UNLISTENs an unused channel."""
        async with self._lock:
            if subscription not in self._subscriptions:
                return
            self._subscriptions.remove(subscription)
            subscription.live = False
            connection, channel = self._connection, subscription.channel
            if connection is None or channel in self.channels:
                return
            try:
                async with asyncio.timeout(self._probe_timeout):
                    await connection.remove_listener(channel, self._dispatch)
            except _RETRIED:
                self._lose(LOST_CONNECT)

    def start(self) -> None:
        """Starts connecting and listening in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tierset-listener")

    async def wait_connected(self, seconds: float) -> bool:
        """Waits up to `seconds` for the listener to connect; returns whether it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._connected.wait()
        return self.connected

    async def stop(self) -> None:
        """Stops listening (subscribers hear ``on_disconnected``) and closes the connection.

        Never raises: a shutdown goes on to close the pool whatever happened here."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("listener ended with an error")
            self._task = None

    async def _run(self) -> None:
        while True:
            self._connected_at = None
            try:
                await self._session()
            except _Lost as lost:
                reason = lost.reason
            except _RETRIED as error:
                reason = LOST_CONNECT
                log.debug("listener connection failed: %r", error)
            except Exception:
                # A bug (a subscriber's callback raising, say) must not end the one loop that
                # keeps the cache coherent and revocations heard: log it, start afresh.
                reason = LOST_ERROR
                log.exception("listener failed; reconnecting")
            self.losses.append(reason)
            # Healthy for long enough: this is a new outage, not the same one going on.
            connected_at = self._connected_at
            if connected_at is not None and self._clock() - connected_at >= self._healthy_after:
                self.backoff.reset()
            delay = self.backoff.next()
            self.delays.append(delay)
            # Subscribers heard on_disconnected: the read cache is off, revocation on its TTL.
            log.warning("listener lost (%s); reconnecting in %.2fs", reason, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One connection's life: connect, LISTEN, probe until it ends (raises _Lost)."""
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": self._application_name},
        )
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._lost = lost
        connection.add_termination_listener(lambda _c: self._lose(LOST_TERMINATED, lost))
        try:
            async with self._lock:
                self._connection = connection
                for channel in dict.fromkeys(s.channel for s in self._subscriptions):
                    await self._listen(connection, channel)
                # LISTEN is in force everywhere: from here on nothing sent is missed.
                self._connected_at = self._clock()
                self.backend_pid = connection.get_server_pid()
                self._connected.set()
                for subscription in self._subscriptions:
                    self._connect(subscription)
            log.info("listener connected (%s)", ", ".join(sorted(self.channels)) or "no channels")
            while True:
                try:
                    # Shielded: the timeout must not cancel the future itself.
                    reason = await asyncio.wait_for(asyncio.shield(lost), self._probe_interval)
                except TimeoutError:
                    pass
                else:
                    raise _Lost(reason)
                # A silent network loss shows only when we talk.
                try:
                    async with self._lock:
                        await connection.execute("SELECT 1", timeout=self._probe_timeout)
                except _RETRIED:
                    raise _Lost(lost.result() if lost.done() else LOST_PROBE) from None
        finally:
            self._disconnect()
            connection.terminate()

    async def _listen(self, connection: asyncpg.Connection, channel: str) -> None:
        async with asyncio.timeout(self._probe_timeout + self._connect_timeout):
            await connection.add_listener(channel, self._dispatch)

    def _connect(self, subscription: Subscription) -> None:
        subscription.live = True
        if subscription.on_connected is not None:
            subscription.on_connected()

    def _disconnect(self) -> None:
        self._connected.clear()
        self._connection = None
        self._lost = None
        self.backend_pid = None
        for subscription in self._subscriptions:
            if subscription.live:
                subscription.live = False
                if subscription.on_disconnected is not None:
                    subscription.on_disconnected()

    def _lose(self, reason: str, lost: asyncio.Future[str] | None = None) -> None:
        """Ends the current connection (or `lost`'s, if given) for `reason`."""
        lost = lost if lost is not None else self._lost
        if lost is not None and not lost.done():
            lost.set_result(reason)

    def _dispatch(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        for subscription in [s for s in self._subscriptions if s.channel == channel]:
            if not subscription.live:
                continue
            try:
                subscription.on_notify(str(payload))
            except Exception:
                # It missed this notification: start everyone afresh rather than let it
                # serve what the notification should have changed.
                log.exception("a %s subscriber failed; reconnecting", channel)
                self._lose(LOST_SUBSCRIBER)
