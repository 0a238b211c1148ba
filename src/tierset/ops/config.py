"""Configuration, read once from the environment and passed in.

Variables use the ``TIERSET_`` prefix; the database comes from
``DATABASE_URL`` or the standard ``PG*`` variables, as asyncpg reads them.
No other module reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tierset.ops.client_address import Network, parse_networks

_Number = TypeVar("_Number", int, float)


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(ValueError):
    """A variable that is set but cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _listen_address(env: Mapping[str, str], name: str, default: str) -> str:
    """``host:port`` (host may be empty for every interface, or ``[v6]``), or empty: off."""
    raw = env.get(name, default)
    if raw == "":
        return raw
    host, colon, port = raw.rpartition(":")
    # An IPv6 host needs its brackets, or where the port starts is a guess.
    unbracketed_v6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not colon or not port.isdigit() or int(port) > 65535 or unbracketed_v6:
        raise ConfigError(
            f"{name} must be host:port (e.g. 127.0.0.1:9090), or empty to switch it off;"
            f" not {raw!r}"
        )
    return raw


def _positive(value: _Number, name: str) -> _Number:
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, not {value}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    try:
        return parse_networks(env.get(name, ""))
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


def _non_negative(value: _Number, name: str) -> _Number:
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, not {value}")
    return value


@dataclass(frozen=True)
class Config:
    """Everything the processes need to know, typed."""

    grpc_address: str = "127.0.0.1:50051"
    database_url: Secret | None = None
    # True when PG* variables name a database, so no embedded one is needed.
    database_from_pg_env: bool = False
    # Unset: found from the working folder (tierset.ops.datadir), so that every command finds
    # the embedded database of `make run` from any folder of the checkout.
    data_dir: Path | None = None
    embedded_pg_port: int = 54329
    pool_min_size: int = 2
    pool_max_size: int = 10
    statement_timeout_ms: int = 5000
    # A database that stopped answering must cost a call seconds, not forever.
    db_connect_timeout_seconds: float = 5.0
    db_command_timeout_seconds: float = 10.0
    pool_acquire_timeout_seconds: float = 5.0
    health_probe_interval_seconds: float = 2.0
    migrate_on_start: bool = True
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    # One INFO line per successful gRPC call; failed calls are logged either way. Off by
    # default: formatting it costs about a third of a cached read's throughput (make bench).
    access_log: bool = False
    # Prometheus metrics, on a port of their own so scrapes never queue behind API calls.
    # An empty address switches the endpoint off.
    metrics_address: str = "127.0.0.1:9090"
    gateway_metrics_address: str = "127.0.0.1:9091"
    # Authentication: how long issued OAuth tokens live, and how long a verified
    # credential is trusted without asking the database again (the longest a
    # revocation can take to reach a process that missed its NOTIFY).
    access_token_seconds: int = 3600
    refresh_token_seconds: int = 30 * 24 * 3600
    auth_cache_seconds: float = 5.0
    auth_cache_size: int = 10_000
    # argon2id password checks hold 64 MiB each: how much memory they may take at once
    # (budget // 64 MiB checks run together, at least one), and how long a check waits
    # for room before it is refused (UNAVAILABLE, PASSWORD_HASHING_BUSY).
    password_hash_memory_budget_bytes: int = 128 * 1024 * 1024
    password_hash_wait_seconds: float = 1.0
    # Password-guess throttling (throttle.py): failures allowed per window, per
    # (username, source), per source and per username (0: that limit is off), and how many
    # keys each of its in-process tables keeps.
    auth_throttle_window_seconds: float = 3600.0
    auth_throttle_user_source_failures: int = 10
    auth_throttle_source_failures: int = 100
    auth_throttle_user_failures: int = 50
    auth_throttle_max_entries: int = 50_000
    # Peers whose `tierset-client-address` metadata the server believes (the gateways).
    trusted_gateways: tuple[Network, ...] = ()
    # Resolved reads each server process keeps; 0 turns the read cache off.
    cache_max_entries: int = 10_000
    # ...and the memory they may take (about; values are counted twice, text and response).
    cache_max_bytes: int = 64 * 1024 * 1024
    # Bytes of large reads (over 64 KiB of values) each server process holds at once, and
    # how long a large read waits for room before it is refused UNAVAILABLE (large_reads.py).
    read_budget_bytes: int = 64 * 1024 * 1024
    read_budget_wait_seconds: float = 2.0
    # Server processes sharing the gRPC port (SO_REUSEPORT), each with its own pool and cache.
    processes: int = 1
    # What one gRPC caller can hold (see tierset.limits and docs/configuration.md).
    # Request sizes: the server-wide cap (authenticated methods), and the smaller caps of
    # the anonymous methods, which anyone who can reach the port may call.
    grpc_max_request_bytes: int = 4 * 1024 * 1024
    grpc_anonymous_max_request_bytes: int = 1024
    grpc_create_token_max_request_bytes: int = 4096
    grpc_max_metadata_bytes: int = 8192
    # Streams: open calls of any kind on one connection (HTTP/2 MAX_CONCURRENT_STREAMS), and
    # server-streaming calls held open in this process, over all connections.
    grpc_max_streams_per_connection: int = 100
    grpc_max_streaming_calls: int = 1000
    # Connections: closed after this long without a call, or this old (then the grace lets
    # calls in flight finish); the server pings a connection with calls but no traffic every
    # keepalive interval and drops it when the ping is not answered within the timeout; a
    # client may ping no more often than the minimum interval.
    grpc_max_connection_idle_seconds: float = 300.0
    grpc_max_connection_age_seconds: float = 1800.0
    grpc_max_connection_age_grace_seconds: float = 30.0
    grpc_keepalive_seconds: float = 60.0
    grpc_keepalive_timeout_seconds: float = 20.0
    grpc_min_client_ping_interval_seconds: float = 30.0
    # The REST gateway: where it listens, the gRPC server it calls, and its limits.
    http_address: str = "127.0.0.1:8080"
    grpc_target: str = "127.0.0.1:50051"
    gateway_deadline_seconds: float = 5.0
    http_max_body_bytes: int = 2 * 1024 * 1024
    # What one connection may make the gateway hold before a handler runs (docs/rest.md has
    # the figures): the request line and headers, in bytes and in headers; how long they may
    # take to arrive; how long an idle keep-alive connection stays open; how many
    # connections each gateway process holds at once.
    http_max_header_bytes: int = 16 * 1024
    http_max_headers: int = 100
    http_header_timeout_seconds: float = 10.0
    http_keepalive_timeout_seconds: int = 5  # whole seconds, as uvicorn takes it
    http_max_connections: int = 256
    # Gateway processes sharing the HTTP port (SO_REUSEPORT).
    gateway_processes: int = 1
    # Proxies in front of the gateway whose X-Forwarded-For it believes (none by default).
    gateway_trusted_proxies: tuple[str, ...] = ()

    @property
    def has_database(self) -> bool:
        """Whether a database was named, so the embedded one is not wanted."""
        return self.database_url is not None or self.database_from_pg_env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Reads the configuration from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL") or None
        return cls(
            grpc_address=env.get("TIERSET_GRPC_ADDRESS", cls.grpc_address),
            database_url=Secret(url) if url else None,
            database_from_pg_env=bool(env.get("PGHOST")),
            data_dir=Path(env["TIERSET_DATA_DIR"]) if env.get("TIERSET_DATA_DIR") else None,
            embedded_pg_port=_int(env, "TIERSET_EMBEDDED_PG_PORT", cls.embedded_pg_port),
            pool_min_size=_int(env, "TIERSET_POOL_MIN_SIZE", cls.pool_min_size),
            pool_max_size=_int(env, "TIERSET_POOL_MAX_SIZE", cls.pool_max_size),
            statement_timeout_ms=_int(
                env, "TIERSET_STATEMENT_TIMEOUT_MS", cls.statement_timeout_ms
            ),
            db_connect_timeout_seconds=_float(
                env, "TIERSET_DB_CONNECT_TIMEOUT_SECONDS", cls.db_connect_timeout_seconds
            ),
            db_command_timeout_seconds=_float(
                env, "TIERSET_DB_COMMAND_TIMEOUT_SECONDS", cls.db_command_timeout_seconds
            ),
            pool_acquire_timeout_seconds=_float(
                env, "TIERSET_POOL_ACQUIRE_TIMEOUT_SECONDS", cls.pool_acquire_timeout_seconds
            ),
            health_probe_interval_seconds=_float(
                env, "TIERSET_HEALTH_PROBE_INTERVAL_SECONDS", cls.health_probe_interval_seconds
            ),
            migrate_on_start=_bool(env, "TIERSET_MIGRATE_ON_START", cls.migrate_on_start),
            shutdown_grace_seconds=_float(
                env, "TIERSET_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
            log_level=env.get("TIERSET_LOG_LEVEL", cls.log_level).upper(),
            access_log=_bool(env, "TIERSET_ACCESS_LOG", cls.access_log),
            metrics_address=_listen_address(env, "TIERSET_METRICS_ADDRESS", cls.metrics_address),
            gateway_metrics_address=_listen_address(
                env, "TIERSET_GATEWAY_METRICS_ADDRESS", cls.gateway_metrics_address
            ),
            access_token_seconds=_positive(
                _int(env, "TIERSET_ACCESS_TOKEN_SECONDS", cls.access_token_seconds),
                "TIERSET_ACCESS_TOKEN_SECONDS",
            ),
            refresh_token_seconds=_positive(
                _int(env, "TIERSET_REFRESH_TOKEN_SECONDS", cls.refresh_token_seconds),
                "TIERSET_REFRESH_TOKEN_SECONDS",
            ),
            auth_cache_seconds=_float(env, "TIERSET_AUTH_CACHE_SECONDS", cls.auth_cache_seconds),
            auth_cache_size=_int(env, "TIERSET_AUTH_CACHE_SIZE", cls.auth_cache_size),
            password_hash_memory_budget_bytes=_positive(
                _int(
                    env,
                    "TIERSET_PASSWORD_HASH_MEMORY_BUDGET_BYTES",
                    cls.password_hash_memory_budget_bytes,
                ),
                "TIERSET_PASSWORD_HASH_MEMORY_BUDGET_BYTES",
            ),
            password_hash_wait_seconds=_non_negative(
                _float(env, "TIERSET_PASSWORD_HASH_WAIT_SECONDS", cls.password_hash_wait_seconds),
                "TIERSET_PASSWORD_HASH_WAIT_SECONDS",
            ),
            auth_throttle_window_seconds=_positive(
                _float(
                    env, "TIERSET_AUTH_THROTTLE_WINDOW_SECONDS", cls.auth_throttle_window_seconds
                ),
                "TIERSET_AUTH_THROTTLE_WINDOW_SECONDS",
            ),
            auth_throttle_user_source_failures=_non_negative(
                _int(
                    env,
                    "TIERSET_AUTH_THROTTLE_USER_SOURCE_FAILURES",
                    cls.auth_throttle_user_source_failures,
                ),
                "TIERSET_AUTH_THROTTLE_USER_SOURCE_FAILURES",
            ),
            auth_throttle_source_failures=_non_negative(
                _int(
                    env, "TIERSET_AUTH_THROTTLE_SOURCE_FAILURES", cls.auth_throttle_source_failures
                ),
                "TIERSET_AUTH_THROTTLE_SOURCE_FAILURES",
            ),
            auth_throttle_user_failures=_non_negative(
                _int(env, "TIERSET_AUTH_THROTTLE_USER_FAILURES", cls.auth_throttle_user_failures),
                "TIERSET_AUTH_THROTTLE_USER_FAILURES",
            ),
            auth_throttle_max_entries=_positive(
                _int(env, "TIERSET_AUTH_THROTTLE_MAX_ENTRIES", cls.auth_throttle_max_entries),
                "TIERSET_AUTH_THROTTLE_MAX_ENTRIES",
            ),
            trusted_gateways=_networks(env, "TIERSET_TRUSTED_GATEWAYS"),
            cache_max_entries=_int(env, "TIERSET_CACHE_MAX_ENTRIES", cls.cache_max_entries),
            cache_max_bytes=_positive(
                _int(env, "TIERSET_CACHE_MAX_BYTES", cls.cache_max_bytes), "TIERSET_CACHE_MAX_BYTES"
            ),
            read_budget_bytes=_positive(
                _int(env, "TIERSET_READ_BUDGET_BYTES", cls.read_budget_bytes),
                "TIERSET_READ_BUDGET_BYTES",
            ),
            read_budget_wait_seconds=_non_negative(
                _float(env, "TIERSET_READ_BUDGET_WAIT_SECONDS", cls.read_budget_wait_seconds),
                "TIERSET_READ_BUDGET_WAIT_SECONDS",
            ),
            processes=_int(env, "TIERSET_PROCESSES", cls.processes),
            # Every gRPC limit is positive: 0 would mean "no limit" to gRPC for some.
            grpc_max_request_bytes=_positive(
                _int(env, "TIERSET_GRPC_MAX_REQUEST_BYTES", cls.grpc_max_request_bytes),
                "TIERSET_GRPC_MAX_REQUEST_BYTES",
            ),
            grpc_anonymous_max_request_bytes=_positive(
                _int(
                    env,
                    "TIERSET_GRPC_ANONYMOUS_MAX_REQUEST_BYTES",
                    cls.grpc_anonymous_max_request_bytes,
                ),
                "TIERSET_GRPC_ANONYMOUS_MAX_REQUEST_BYTES",
            ),
            grpc_create_token_max_request_bytes=_positive(
                _int(
                    env,
                    "TIERSET_GRPC_CREATE_TOKEN_MAX_REQUEST_BYTES",
                    cls.grpc_create_token_max_request_bytes,
                ),
                "TIERSET_GRPC_CREATE_TOKEN_MAX_REQUEST_BYTES",
            ),
            grpc_max_metadata_bytes=_positive(
                _int(env, "TIERSET_GRPC_MAX_METADATA_BYTES", cls.grpc_max_metadata_bytes),
                "TIERSET_GRPC_MAX_METADATA_BYTES",
            ),
            grpc_max_streams_per_connection=_positive(
                _int(
                    env,
                    "TIERSET_GRPC_MAX_STREAMS_PER_CONNECTION",
                    cls.grpc_max_streams_per_connection,
                ),
                "TIERSET_GRPC_MAX_STREAMS_PER_CONNECTION",
            ),
            grpc_max_streaming_calls=_positive(
                _int(env, "TIERSET_GRPC_MAX_STREAMING_CALLS", cls.grpc_max_streaming_calls),
                "TIERSET_GRPC_MAX_STREAMING_CALLS",
            ),
            grpc_max_connection_idle_seconds=_positive(
                _float(
                    env,
                    "TIERSET_GRPC_MAX_CONNECTION_IDLE_SECONDS",
                    cls.grpc_max_connection_idle_seconds,
                ),
                "TIERSET_GRPC_MAX_CONNECTION_IDLE_SECONDS",
            ),
            grpc_max_connection_age_seconds=_positive(
                _float(
                    env,
                    "TIERSET_GRPC_MAX_CONNECTION_AGE_SECONDS",
                    cls.grpc_max_connection_age_seconds,
                ),
                "TIERSET_GRPC_MAX_CONNECTION_AGE_SECONDS",
            ),
            grpc_max_connection_age_grace_seconds=_positive(
                _float(
                    env,
                    "TIERSET_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS",
                    cls.grpc_max_connection_age_grace_seconds,
                ),
                "TIERSET_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS",
            ),
            grpc_keepalive_seconds=_positive(
                _float(env, "TIERSET_GRPC_KEEPALIVE_SECONDS", cls.grpc_keepalive_seconds),
                "TIERSET_GRPC_KEEPALIVE_SECONDS",
            ),
            grpc_keepalive_timeout_seconds=_positive(
                _float(
                    env,
                    "TIERSET_GRPC_KEEPALIVE_TIMEOUT_SECONDS",
                    cls.grpc_keepalive_timeout_seconds,
                ),
                "TIERSET_GRPC_KEEPALIVE_TIMEOUT_SECONDS",
            ),
            grpc_min_client_ping_interval_seconds=_positive(
                _float(
                    env,
                    "TIERSET_GRPC_MIN_CLIENT_PING_INTERVAL_SECONDS",
                    cls.grpc_min_client_ping_interval_seconds,
                ),
                "TIERSET_GRPC_MIN_CLIENT_PING_INTERVAL_SECONDS",
            ),
            http_address=env.get("TIERSET_HTTP_ADDRESS", cls.http_address),
            grpc_target=env.get("TIERSET_GRPC_TARGET", cls.grpc_target),
            gateway_deadline_seconds=_positive(
                _float(env, "TIERSET_GATEWAY_DEADLINE_SECONDS", cls.gateway_deadline_seconds),
                "TIERSET_GATEWAY_DEADLINE_SECONDS",
            ),
            http_max_body_bytes=_positive(
                _int(env, "TIERSET_HTTP_MAX_BODY_BYTES", cls.http_max_body_bytes),
                "TIERSET_HTTP_MAX_BODY_BYTES",
            ),
            http_max_header_bytes=_positive(
                _int(env, "TIERSET_HTTP_MAX_HEADER_BYTES", cls.http_max_header_bytes),
                "TIERSET_HTTP_MAX_HEADER_BYTES",
            ),
            http_max_headers=_positive(
                _int(env, "TIERSET_HTTP_MAX_HEADERS", cls.http_max_headers),
                "TIERSET_HTTP_MAX_HEADERS",
            ),
            http_header_timeout_seconds=_positive(
                _float(env, "TIERSET_HTTP_HEADER_TIMEOUT_SECONDS", cls.http_header_timeout_seconds),
                "TIERSET_HTTP_HEADER_TIMEOUT_SECONDS",
            ),
            http_keepalive_timeout_seconds=_positive(
                _int(
                    env,
                    "TIERSET_HTTP_KEEPALIVE_TIMEOUT_SECONDS",
                    cls.http_keepalive_timeout_seconds,
                ),
                "TIERSET_HTTP_KEEPALIVE_TIMEOUT_SECONDS",
            ),
            http_max_connections=_positive(
                _int(env, "TIERSET_HTTP_MAX_CONNECTIONS", cls.http_max_connections),
                "TIERSET_HTTP_MAX_CONNECTIONS",
            ),
            gateway_processes=_positive(
                _int(env, "TIERSET_GATEWAY_PROCESSES", cls.gateway_processes),
                "TIERSET_GATEWAY_PROCESSES",
            ),
            gateway_trusted_proxies=tuple(
                str(network) for network in _networks(env, "TIERSET_GATEWAY_TRUSTED_PROXIES")
            ),
        )
