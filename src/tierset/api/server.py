"""Builds and runs the gRPC server: config → pool → server with its call pipeline and health.

SIGTERM or SIGINT flips health to NOT_SERVING, lets in-flight calls finish
within the grace period, then closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from tierset.api.accounts import AccountService
from tierset.api.auth import AuthService
from tierset.api.health import DatabaseHealth, HealthService
from tierset.api.integrations import IntegrationService
from tierset.api.limits import Limits, server_options
from tierset.api.pipeline import Pipeline
from tierset.api.watch import WatchingSettingsService
from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore
from tierset.auth.hashing import PasswordHashing
from tierset.auth.throttle import Limit, LoginThrottle
from tierset.cache.reads import CachedStore, ResolutionCache, follow_changes
from tierset.core import authz
from tierset.ops.config import Config
from tierset.ops.large_reads import ReadBudget
from tierset.ops.metrics import start_metrics_server
from tierset.services.history import HistoryService
from tierset.services.keydefs import Definitions
from tierset.services.watch import WatchHub, WatchService
from tierset.store.database import Store
from tierset.store.definitions import DefinitionStore
from tierset.store.listener import Listener
from tierset.store.migrate import migrate
from tierset.store.watch import WatchStore
from tierset.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    integrations_pb2,
    integrations_pb2_grpc,
    settings_pb2,
    settings_pb2_grpc,
)

log = logging.getLogger(__name__)

# Reads are right without the cache and revocation has its TTL, so start-up waits only
# briefly for the listener.
_LISTENER_START_TIMEOUT = 5.0

SERVICE_NAMES = (
    settings_pb2.DESCRIPTOR.services_by_name["SettingsService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    integrations_pb2.DESCRIPTOR.services_by_name["IntegrationService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
)


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Resets nothing more when a connection goes back to the pool.

    asyncpg still ends an open transaction and drops listeners; its default
    also runs `RESET ALL; UNLISTEN *; ...`, a round trip after every query
    (the profile of an uncached read showed it). tierset never changes session
    state (only SET LOCAL and transaction-level locks), so that trip is skipped.
    """


async def create_pool(config: Config, dsn: str | None) -> asyncpg.Pool:
    """A pool whose connections give up on a silent database (connect, command, statement)."""
    return await asyncpg.create_pool(
        dsn,
        min_size=config.pool_min_size,
        max_size=config.pool_max_size,
        reset=_keep_session,
        timeout=config.db_connect_timeout_seconds,
        command_timeout=config.db_command_timeout_seconds,
        server_settings={
            "application_name": "tierset",
            "statement_timeout": str(config.statement_timeout_ms),
        },
    )


@dataclass
class App:
    """A running server and what it owns."""

    server: grpc.aio.Server
    health: HealthService
    pool: asyncpg.Pool
    port: int
    authenticator: Authenticator
    hashing: PasswordHashing
    # The process's one LISTEN connection (read cache, revocations).
    listener: Listener
    # The read cache; None when TIERSET_CACHE_MAX_ENTRIES is 0.
    cache: ResolutionCache | None = None
    database_health: DatabaseHealth | None = None
    # The process's watch fan-out (services/watch.py).
    watch_hub: WatchHub | None = None
    # The periodic change-log compaction; None when TIERSET_HISTORY_RETENTION_DAYS is 0.
    compaction: asyncio.Task[None] | None = None

    async def stop(self, grace: float) -> None:
        """Stops taking calls, finishes in-flight ones within `grace`, closes the pool.

        Health goes NOT_SERVING first; then watch streams, which would otherwise hold the
        grace period open to its end, are ended UNAVAILABLE so their clients resume on
        another server; then the server stops.
        """
        if self.compaction is not None:
            self.compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.compaction
        if self.database_health is not None:
            await self.database_health.stop()
        await self.health.enter_graceful_shutdown()
        if self.watch_hub is not None:
            await self.watch_hub.close()
        await self.server.stop(grace)
        self.hashing.close()
        await self.listener.stop()
        try:
            await asyncio.wait_for(self.pool.close(), timeout=grace)
        except TimeoutError:
            log.warning("pool did not close within %.1fs; terminating connections", grace)
            self.pool.terminate()
        else:
            log.info("database pool closed")


async def compact_periodically(history: HistoryService, config: Config) -> None:
    """Compacts the change log now and every TIERSET_HISTORY_COMPACT_INTERVAL_SECONDS.

    Every server process runs this; the store's advisory lock lets one compact at a time
    and the others skip the round (None). A failure (the database away) is logged and
    tried again next round: history kept a little longer harms nothing.
    """
    while True:
        try:
            compacted = await history.compact(authz.operator(), config.history_retention_days)
        except Exception:
            log.exception("change log compaction failed; trying again next round")
        else:
            if compacted is None:
                log.debug("change log compaction skipped: another process is compacting")
            else:
                log.info("change log compacted up to revision %d", compacted)
        await asyncio.sleep(config.history_compact_interval_seconds)


def login_throttle(config: Config) -> LoginThrottle:
    """The password-guess throttle `config` describes (one per process)."""
    window = config.auth_throttle_window_seconds
    return LoginThrottle(
        per_user_source=Limit(config.auth_throttle_user_source_failures, window),
        per_source=Limit(config.auth_throttle_source_failures, window),
        per_user=Limit(config.auth_throttle_user_failures, window),
        max_entries=config.auth_throttle_max_entries,
    )


async def start_app(config: Config, dsn: str | None) -> App:
    """Connects, migrates (unless told not to), and starts serving on `config.grpc_address`."""
    pool = await create_pool(config, dsn)
    cache: ResolutionCache | None = None
    listener = Listener(dsn, connect_timeout=config.db_connect_timeout_seconds)
    authenticator: Authenticator | None = None
    server: grpc.aio.Server | None = None
    database_health: DatabaseHealth | None = None
    watch_hub: WatchHub | None = None
    compaction: asyncio.Task[None] | None = None
    hashing = PasswordHashing(
        config.password_hash_memory_budget_bytes, config.password_hash_wait_seconds
    )
    try:
        if config.migrate_on_start:
            async with pool.acquire() as connection:
                applied = await migrate(connection)
            if applied:
                log.info("applied migrations %s", applied)
        store = Store(pool, acquire_timeout=config.pool_acquire_timeout_seconds)
        # Only settings are read in bulk; one budget per process bounds them all.
        read_budget = ReadBudget(config.read_budget_bytes, config.read_budget_wait_seconds)
        settings_store = Store(pool, config.pool_acquire_timeout_seconds, read_budget)
        if config.cache_max_entries > 0:
            cache = ResolutionCache(config.cache_max_entries, config.cache_max_bytes)
            await follow_changes(listener, cache)
            settings_store = CachedStore(
                pool, cache, config.pool_acquire_timeout_seconds, read_budget
            )
        credentials = CredentialStore(pool, config.pool_acquire_timeout_seconds)
        throttle = login_throttle(config)
        authenticator = Authenticator(
            credentials, config.auth_cache_seconds, config.auth_cache_size, throttle
        )
        await authenticator.follow_revocations(listener)
        # The key definitions, one copy per process, re-read on every change (NOTIFY).
        definitions = Definitions(DefinitionStore(pool, config.pool_acquire_timeout_seconds))
        await definitions.follow(listener)
        watch_store = WatchStore(pool, config.pool_acquire_timeout_seconds)
        watch_hub = WatchHub(
            watch_store,
            max_streams=config.watch_max_streams,
            buffer_messages=config.watch_buffer_messages,
        )
        await watch_hub.start(listener)
        watch = WatchService(
            watch_store,
            watch_hub,
            max_keys=config.watch_max_keys,
            progress_seconds=config.watch_progress_seconds,
            definitions=definitions,
        )
        listener.start()
        server = grpc.aio.server(
            # grpc turns SO_REUSEPORT on by default, which lets a second server started by
            # mistake share the port silently; only the worker processes may share it.
            options=[
                ("grpc.so_reuseport", int(config.processes > 1)),
                *server_options(config),
            ],
        )
        # Every service, health and reflection included, is registered through the one call
        # pipeline (request id, metrics, error mapping, deadline, authentication), which
        # wraps each method once, here; see tierset.api.pipeline.
        pipeline = Pipeline(
            authenticator,
            Limits(config),
            access_log=config.access_log,
            trusted_gateways=config.trusted_gateways,
        )
        pipeline.register(
            server,
            auth_pb2_grpc.add_AuthServiceServicer_to_server,
            AuthService(
                credentials,
                authenticator,
                hashing,
                throttle,
                config.trusted_gateways,
                config.access_token_seconds,
                config.refresh_token_seconds,
            ),
        )
        pipeline.register(
            server,
            settings_pb2_grpc.add_SettingsServiceServicer_to_server,
            WatchingSettingsService(settings_store, watch, authenticator, definitions),
        )
        pipeline.register(
            server, accounts_pb2_grpc.add_AccountServiceServicer_to_server, AccountService(store)
        )
        pipeline.register(
            server,
            integrations_pb2_grpc.add_IntegrationServiceServicer_to_server,
            IntegrationService(store),
        )
        health_servicer = HealthService(SERVICE_NAMES)
        pipeline.register(server, health_pb2_grpc.add_HealthServicer_to_server, health_servicer)
        # enable_server_reflection would add the servicer to the server itself; this is the
        # same (aio) servicer, added through the pipeline like every other.
        pipeline.register(
            server,
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
            reflection.aio.ReflectionServicer(  # type: ignore[attr-defined]  # (stubs lag)
                (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
            ),
        )
        try:
            port = server.add_insecure_port(config.grpc_address)
        except RuntimeError as error:
            raise OSError(f"cannot listen on {config.grpc_address}: {error}") from None
        await server.start()
        if not await listener.wait_connected(_LISTENER_START_TIMEOUT):
            log.warning("listener not connected yet; serving uncached until it is")
        database_health = DatabaseHealth(
            health_servicer,
            store,
            ("", *SERVICE_NAMES),
            interval=config.health_probe_interval_seconds,
            timeout=config.db_connect_timeout_seconds,
        )
        await database_health.report(serving=True)
        database_health.start()
        if config.history_retention_days > 0:
            compaction = asyncio.create_task(
                compact_periodically(HistoryService(store), config), name="tierset-compaction"
            )
    except BaseException:
        # Undo whatever had started, newest first, so a failed start leaves nothing running.
        if database_health is not None:
            await database_health.stop()
        if watch_hub is not None:
            await watch_hub.close()
        if server is not None:
            await server.stop(None)
        await listener.stop()
        hashing.close()
        await pool.close()
        raise
    log.info("serving gRPC on %s", config.grpc_address.rsplit(":", 1)[0] + f":{port}")
    return App(
        server,
        health_servicer,
        pool,
        port,
        authenticator,
        hashing,
        listener,
        cache,
        database_health,
        watch_hub,
        compaction,
    )


async def wait_for_stop_signal() -> None:
    """Returns on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def serve(config: Config, dsn: str | None) -> None:
    """Serves until SIGTERM/SIGINT (metrics too, unless switched off), then shuts down.

    Everything after start_app, the metrics endpoint included, runs inside the block
    whose exit stops the app: whatever fails there, the server still stops cleanly.
    """
    app = await start_app(config, dsn)
    metrics_server = None
    try:
        if config.metrics_address:
            # Metrics are not worth an outage: a taken port is logged and Prometheus shows
            # the target as down, while the API keeps serving. (The address itself was
            # checked when the configuration was read.)
            try:
                metrics_server = start_metrics_server(config.metrics_address, app.pool)
            except OSError as error:
                log.error("cannot serve metrics on %s: %s", config.metrics_address, error)
            else:
                log.info("serving metrics on %s", config.metrics_address)
        await wait_for_stop_signal()
        log.info("shutting down (grace %.1fs)", config.shutdown_grace_seconds)
    finally:
        await app.stop(config.shutdown_grace_seconds)
        if metrics_server is not None:
            metrics_server.stop()
