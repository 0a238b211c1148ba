"""Configuration, read once from the environment, checked in one place, and passed in.

Variables are named after the fields, with the ``TIERSET_`` prefix: ``pool_min_size`` is
``TIERSET_POOL_MIN_SIZE``. The database comes from ``DATABASE_URL`` or the standard ``PG*``
variables, as asyncpg reads them (the DSN is not checked beyond being there). No other
module reads the environment.

Invariants:

* **A Config that exists is valid.** ``__post_init__`` runs :func:`_validate`, so the
  environment (:meth:`Config.from_env`), the CLI's overrides (``dataclasses.replace``, as
  ``--processes N`` is applied) and a Config built in code pass the same checks; no use
  site checks a value again.
* **Reading converts, checking decides.** The readers only turn text into a whole number,
  a number or a boolean; the ranges, the address forms and the relations between fields
  (pool min <= max, a fixed port for several processes) are :data:`_RULES` and
  :data:`_RELATIONS`. Every field has a rule or is named in :data:`_UNCHECKED` (checked
  when this module is imported).
* **One violation, one line.** A bad value raises one :class:`ConfigError` whose message
  starts with the variable's name, says what it expects and what it got
  (``TIERSET_POOL_MIN_SIZE must be <= TIERSET_POOL_MAX_SIZE (got 20 > 10)``); the first one
  found is raised. The ``tierset`` command prints it alone and exits 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierset.ops.client_address import Network, parse_networks

# gRPC's channel arguments and PostgreSQL's statement_timeout are C ints.
_INT32_MAX = 2**31 - 1
# The gRPC durations are passed in milliseconds, as C ints.
_GRPC_SECONDS_MAX = _INT32_MAX // 1000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    """A variable that is set but cannot be used: one line, starting with its name."""


def variable(field: str) -> str:
    """The environment variable of a Config field."""
    return f"TIERSET_{field.upper()}"


# --- Reading: text to a type, nothing more ------------------------------------------------


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None


def _bool(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false (got {raw!r})")


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    try:
        return parse_networks(raw)
    except ValueError as error:
        raise ConfigError(
            f"{name} must be comma-separated IP addresses or CIDR networks (got {raw!r}: {error})"
        ) from None


# By the field's annotation; an empty number or boolean means its default.
_READERS: dict[str, Callable[[str, str], Any]] = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "str": lambda _, raw: raw,
}


# --- Checking: each rule says what it expects, or None ------------------------------------

Rule = Callable[[Any], "str | None"]


def _whole(low: int, high: int | None = _INT32_MAX) -> Rule:
    expects = (
        f"must be a whole number, at least {low}"
        if high is None
        else f"must be a whole number from {low} to {high}"
    )

    def rule(value: Any) -> str | None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        ok = is_int and value >= low and (high is None or value <= high)
        return None if ok else expects

    return rule


def _seconds(*, zero: bool, high: float | None = None) -> Rule:
    """A finite duration: above 0 (or 0 too, when `zero` says what 0 means)."""
    low = "0 or more" if zero else "more than 0"
    expects = f"must be a number of seconds, {low}" + (f", at most {high}" if high else "")

    def rule(value: Any) -> str | None:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = (
            is_number
            and math.isfinite(value)
            and (value >= 0 if zero else value > 0)
            and (high is None or value <= high)
        )
        return None if ok else expects

    return rule


_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")


def port_of(address: str, *, lowest: int = 0, host_required: bool = True) -> int | None:
    """The port of ``host:port`` or ``[v6]:port``; None unless the address is well formed."""
    host, colon, port = address.rpartition(":")
    if not (colon and port.isascii() and port.isdigit() and lowest <= int(port) <= 65535):
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    elif (host or host_required) and _HOSTNAME.fullmatch(host) is None:
        return None
    return int(port)


def _listen(*, off: bool = False) -> Rule:
    """Where a process listens: host:port, port 0 for any free one; `off`: or empty."""
    expects = "must be host:port (or [v6]:port) with a port from 0 to 65535" + (
        ", or empty to switch it off" if off else ""
    )

    def rule(value: Any) -> str | None:
        if isinstance(value, str) and (
            (off and value == "") or port_of(value, host_required=False) is not None
        ):
            return None
        return expects

    return rule


def _target(value: Any) -> str | None:
    """A gRPC target: host:port, or dns:[//authority/]host:port, ipv4:/ipv6: lists, unix:."""
    expects = (
        "must be host:port with a port from 1 to 65535, or a gRPC target such as"
        " dns:///host:port, ipv4:host:port,... or unix:path"
    )
    if not isinstance(value, str):
        return expects
    scheme, _, rest = value.partition(":")
    if scheme in ("unix", "unix-abstract"):
        return None if rest.strip("/") else expects
    if scheme in ("ipv4", "ipv6"):
        addresses = rest.split(",")
    elif scheme == "dns":
        if rest.startswith("//"):
            rest = rest[2:].partition("/")[2]
        addresses = [rest]
    else:
        addresses = [value]
    return None if all(port_of(a, lowest=1) is not None for a in addresses) else expects


def _log_level(value: Any) -> str | None:
    return None if value in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


# Fields whose reader is the whole check (booleans, networks) or that are not checked.
_UNCHECKED = frozenset(
    {
        "database_url",  # the DSN: asyncpg's to read, checked only for being there
        "database_from_pg_env",
        "data_dir",
        "migrate_on_start",
        "access_log",
        "trusted_gateways",
        "gateway_trusted_proxies",
        "console_client_secret",  # a Secret; its pairing with the id is a relation
    }
)

_POSITIVE = _whole(1)
_COUNT_OR_OFF = _whole(0)  # documented: 0 switches it off
_BYTES = _whole(1, None)  # memory budgets, Python's to keep: no C int to fit
_GRPC_SECONDS = _seconds(zero=False, high=_GRPC_SECONDS_MAX)

_RULES: dict[str, Rule] = {
    "grpc_address": _listen(),
    "embedded_pg_port": _whole(1, 65535),
    "pool_min_size": _whole(0),
    "pool_max_size": _POSITIVE,
    "statement_timeout_ms": _POSITIVE,
    "db_connect_timeout_seconds": _seconds(zero=False),
    "db_command_timeout_seconds": _seconds(zero=False),
    "pool_acquire_timeout_seconds": _seconds(zero=False),
    "health_probe_interval_seconds": _seconds(zero=False),
    "shutdown_grace_seconds": _seconds(zero=True),  # 0: no grace, stop at once
    "log_level": _log_level,
    "metrics_address": _listen(off=True),
    "gateway_metrics_address": _listen(off=True),
    "access_token_seconds": _POSITIVE,
    "refresh_token_seconds": _POSITIVE,
    "auth_cache_seconds": _seconds(zero=True),  # 0: never cached
    "auth_cache_size": _COUNT_OR_OFF,
    "password_hash_memory_budget_bytes": _BYTES,
    "password_hash_wait_seconds": _seconds(zero=True),  # 0: refuse at once
    "auth_throttle_window_seconds": _seconds(zero=False),
    "auth_throttle_user_source_failures": _COUNT_OR_OFF,
    "auth_throttle_source_failures": _COUNT_OR_OFF,
    "auth_throttle_user_failures": _COUNT_OR_OFF,
    "auth_throttle_max_entries": _POSITIVE,
    "cache_max_entries": _COUNT_OR_OFF,
    "cache_max_bytes": _BYTES,
    "read_budget_bytes": _BYTES,
    "read_budget_wait_seconds": _seconds(zero=True),  # 0: refuse at once
    "processes": _POSITIVE,
    # Every gRPC limit is positive: 0 would mean "no limit" to gRPC for some.
    "grpc_max_request_bytes": _POSITIVE,
    "grpc_anonymous_max_request_bytes": _POSITIVE,
    "grpc_create_token_max_request_bytes": _POSITIVE,
    "grpc_max_metadata_bytes": _POSITIVE,
    "grpc_max_streams_per_connection": _POSITIVE,
    "grpc_max_streaming_calls": _POSITIVE,
    "grpc_max_connection_idle_seconds": _GRPC_SECONDS,
    "grpc_max_connection_age_seconds": _GRPC_SECONDS,
    "grpc_max_connection_age_grace_seconds": _GRPC_SECONDS,
    "grpc_keepalive_seconds": _GRPC_SECONDS,
    "grpc_keepalive_timeout_seconds": _GRPC_SECONDS,
    "grpc_min_client_ping_interval_seconds": _GRPC_SECONDS,
    "http_address": _listen(),
    "grpc_target": _target,
    "gateway_deadline_seconds": _seconds(zero=False),
    "gateway_watch_seconds": _seconds(zero=False),
    "http_max_body_bytes": _POSITIVE,
    "http_max_header_bytes": _POSITIVE,
    "http_max_headers": _POSITIVE,
    "http_header_timeout_seconds": _seconds(zero=False),
    "http_body_timeout_seconds": _seconds(zero=False),
    "http_keepalive_timeout_seconds": _POSITIVE,  # whole seconds, as uvicorn takes it
    "http_max_connections": _POSITIVE,
    "gateway_processes": _POSITIVE,
    "watch_progress_seconds": _seconds(zero=False),
    "watch_max_streams": _POSITIVE,
    "watch_max_keys": _POSITIVE,
    "watch_buffer_messages": _POSITIVE,
    # Days of change log kept; 0 keeps it all (no compaction). A whole number of days, so
    # "keep 90 days" cannot be mistyped as seconds.
    "history_retention_days": _whole(0, 36_500),
    "history_compact_interval_seconds": _seconds(zero=False),
    "console_client_id": lambda value: (
        "must be at most 200 characters" if len(value) > 200 else None
    ),
}

# The command-line options that set a field too, named next to its variable.
_OPTIONS = {"processes": "--processes", "gateway_processes": "tierset gateway --processes"}


def _label(field: str) -> str:
    option = _OPTIONS.get(field)
    return f"{variable(field)} ({option})" if option else variable(field)


def _got(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _pool_bounds(config: Config) -> str | None:
    if config.pool_min_size <= config.pool_max_size:
        return None
    return (
        f"TIERSET_POOL_MIN_SIZE must be <= TIERSET_POOL_MAX_SIZE"
        f" (got {config.pool_min_size} > {config.pool_max_size})"
    )


def _fixed_port(address_field: str, count_field: str) -> Callable[[Config], str | None]:
    """Several processes share one port (SO_REUSEPORT): ":0" would give each its own."""

    def relation(config: Config) -> str | None:
        address = getattr(config, address_field)
        if getattr(config, count_field) <= 1 or port_of(address, host_required=False) != 0:
            return None
        return (
            f"{variable(address_field)} must have a fixed port when {_label(count_field)}"
            f" is more than 1 (got {address!r})"
        )

    return relation


def _console_client(config: Config) -> str | None:
    if bool(config.console_client_id) == (config.console_client_secret is not None):
        return None
    return (
        "TIERSET_CONSOLE_CLIENT_ID and TIERSET_CONSOLE_CLIENT_SECRET must be set together"
        " (the console signs in as that OAuth client)"
    )


# Checked after every field's own rule, so each sees values of the right type and range.
_RELATIONS: tuple[Callable[[Config], str | None], ...] = (
    _pool_bounds,
    _console_client,
    _fixed_port("grpc_address", "processes"),
    _fixed_port("http_address", "gateway_processes"),
)


def _validate(config: Config) -> None:
    """Raises ConfigError for the first value `config` cannot run with."""
    for field in dataclasses.fields(config):
        rule = _RULES.get(field.name)
        value = getattr(config, field.name)
        expects = rule(value) if rule is not None else None
        if expects is not None:
            raise ConfigError(f"{_label(field.name)} {expects} (got {_got(value)})")
    for relation in _RELATIONS:
        message = relation(config)
        if message is not None:
            raise ConfigError(message)


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
    # What one gRPC caller can hold (see tierset.api.limits and docs/configuration.md).
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
    # The longest one Server-Sent Events watch lasts before the gateway ends it (the client
    # reconnects with Last-Event-ID and misses nothing); keeps proxies' idle limits and
    # rolling restarts from holding a connection forever.
    gateway_watch_seconds: float = 300.0
    http_max_body_bytes: int = 2 * 1024 * 1024
    # What one connection may make the gateway hold before a handler runs (docs/rest.md has
    # the figures): the request line and headers, in bytes and in headers; how long they may
    # take to arrive; how long an idle keep-alive connection stays open; how many
    # connections each gateway process holds at once.
    http_max_header_bytes: int = 16 * 1024
    http_max_headers: int = 100
    http_header_timeout_seconds: float = 10.0
    # How long a request body may take to arrive after its head (then 408): 2 MiB at
    # about 70 KB/s, far slower than any real client's connection.
    http_body_timeout_seconds: float = 30.0
    http_keepalive_timeout_seconds: int = 5  # whole seconds, as uvicorn takes it
    http_max_connections: int = 256
    # Gateway processes sharing the HTTP port (SO_REUSEPORT).
    gateway_processes: int = 1
    # Proxies in front of the gateway whose X-Forwarded-For it believes (none by default).
    gateway_trusted_proxies: tuple[str, ...] = ()
    # WatchSettings (services/watch.py): how often an idle stream gets a PROGRESS message,
    # how many watch streams one server process holds, the most keys (or keys under a
    # prefix) one watch follows, and the messages a stream may fall behind by before it is
    # ended (ABORTED, WATCH_OVERFLOW) rather than buffered without bound.
    watch_progress_seconds: float = 10.0
    watch_max_streams: int = 1000
    watch_max_keys: int = 100
    watch_buffer_messages: int = 256
    # The change log (issue 12): how many days of it are kept, and how often a server
    # process tries to compact what is older (one process at a time, by an advisory lock).
    history_retention_days: int = 90
    history_compact_interval_seconds: float = 3600.0
    # The web console (gateway/console): the OAuth client its password sign-ins are made
    # as. Unset, the console answers that it is not configured. The secret also keys the
    # session cookie's encryption, so every gateway process (and pod) with the same client
    # reads the same cookies.
    console_client_id: str = ""
    console_client_secret: Secret | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def has_database(self) -> bool:
        """Whether a database was named, so the embedded one is not wanted."""
        return self.database_url is not None or self.database_from_pg_env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Reads the configuration from `env` (default: the process environment).

        Raises ConfigError for the first variable that cannot be read or used.
        """
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL") or None
        console_secret = env.get("TIERSET_CONSOLE_CLIENT_SECRET") or None
        values: dict[str, Any] = {
            "database_url": Secret(url) if url else None,
            "console_client_secret": Secret(console_secret) if console_secret else None,
            "database_from_pg_env": bool(env.get("PGHOST")),
            "data_dir": Path(env["TIERSET_DATA_DIR"]) if env.get("TIERSET_DATA_DIR") else None,
            "trusted_gateways": _networks(
                "TIERSET_TRUSTED_GATEWAYS", env.get("TIERSET_TRUSTED_GATEWAYS", "")
            ),
            "gateway_trusted_proxies": tuple(
                str(network)
                for network in _networks(
                    "TIERSET_GATEWAY_TRUSTED_PROXIES",
                    env.get("TIERSET_GATEWAY_TRUSTED_PROXIES", ""),
                )
            ),
        }
        for field in dataclasses.fields(cls):
            name = variable(field.name)
            raw = env.get(name)
            if field.name in values or raw is None:
                continue
            if raw == "" and field.type != "str":
                continue  # an empty number or boolean: its default
            values[field.name] = _READERS[str(field.type)](name, raw)
        if "log_level" in values:
            values["log_level"] = values["log_level"].upper()
        return cls(**values)


_missing = {f.name for f in dataclasses.fields(Config)} - _UNCHECKED - set(_RULES)
if _missing:  # pragma: no cover - a field added without a rule stops the import
    raise RuntimeError(f"Config fields without a rule: {sorted(_missing)}")
