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


@dataclass(frozen=True)
class Config:
    """Everything the processes need to know, typed."""

    grpc_address: str = "127.0.0.1:50051"
    database_url: Secret | None = None
    # True when PG* variables name a database, so no embedded one is needed.
    database_from_pg_env: bool = False
    data_dir: Path = Path(".data")
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
    # Resolved reads each server process keeps; 0 turns the read cache off.
    cache_max_entries: int = 10_000
    # ...and the memory they may take (about; values are counted twice, text and response).
    cache_max_bytes: int = 64 * 1024 * 1024
    # Server processes sharing the gRPC port (SO_REUSEPORT), each with its own pool and cache.
    processes: int = 1
    # The REST gateway: where it listens, the gRPC server it calls, and its limits.
    http_address: str = "127.0.0.1:8080"
    grpc_target: str = "127.0.0.1:50051"
    gateway_deadline_seconds: float = 5.0
    http_max_body_bytes: int = 2 * 1024 * 1024
    # Gateway processes sharing the HTTP port (SO_REUSEPORT).
    gateway_processes: int = 1

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
            data_dir=Path(env.get("TIERSET_DATA_DIR", str(cls.data_dir))),
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
            cache_max_entries=_int(env, "TIERSET_CACHE_MAX_ENTRIES", cls.cache_max_entries),
            cache_max_bytes=_positive(
                _int(env, "TIERSET_CACHE_MAX_BYTES", cls.cache_max_bytes), "TIERSET_CACHE_MAX_BYTES"
            ),
            processes=_int(env, "TIERSET_PROCESSES", cls.processes),
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
            gateway_processes=_positive(
                _int(env, "TIERSET_GATEWAY_PROCESSES", cls.gateway_processes),
                "TIERSET_GATEWAY_PROCESSES",
            ),
        )
