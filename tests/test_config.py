"""Configuration: every variable typed and checked in one place, from the environment and the
CLI's overrides alike; a bad value stops a command with one line naming it (exit 2)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tierset.ops.config import Config, ConfigError

TIMEOUTS = {
    "TIERSET_DB_CONNECT_TIMEOUT_SECONDS": ("db_connect_timeout_seconds", 1.5),
    "TIERSET_DB_COMMAND_TIMEOUT_SECONDS": ("db_command_timeout_seconds", 7.0),
    "TIERSET_POOL_ACQUIRE_TIMEOUT_SECONDS": ("pool_acquire_timeout_seconds", 0.25),
    "TIERSET_HEALTH_PROBE_INTERVAL_SECONDS": ("health_probe_interval_seconds", 3.0),
}


def test_timeouts_are_read_from_the_environment():
    config = Config.from_env({name: str(value) for name, (_, value) in TIMEOUTS.items()})
    assert {attr: getattr(config, attr) for attr, _ in TIMEOUTS.values()} == dict(TIMEOUTS.values())


def test_timeouts_have_defaults():
    config = Config.from_env({})
    assert all(getattr(config, attr) > 0 for attr, _ in TIMEOUTS.values())


@pytest.mark.parametrize("name", list(TIMEOUTS))
def test_a_timeout_that_is_not_a_number_names_its_variable(name):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: "soon"})


@pytest.mark.parametrize(("raw", "expected"), [(None, False), ("false", False), ("true", True)])
def test_the_access_log_is_off_unless_switched_on(raw, expected):
    env = {} if raw is None else {"TIERSET_ACCESS_LOG": raw}
    assert Config.from_env(env).access_log is expected


def test_an_access_log_setting_that_is_not_a_boolean_names_its_variable():
    with pytest.raises(ConfigError, match="TIERSET_ACCESS_LOG"):
        Config.from_env({"TIERSET_ACCESS_LOG": "sometimes"})


GRPC_LIMITS = {
    "TIERSET_GRPC_MAX_REQUEST_BYTES": ("grpc_max_request_bytes", 1_000_000),
    "TIERSET_GRPC_ANONYMOUS_MAX_REQUEST_BYTES": ("grpc_anonymous_max_request_bytes", 512),
    "TIERSET_GRPC_CREATE_TOKEN_MAX_REQUEST_BYTES": ("grpc_create_token_max_request_bytes", 2048),
    "TIERSET_GRPC_MAX_METADATA_BYTES": ("grpc_max_metadata_bytes", 4096),
    "TIERSET_GRPC_MAX_STREAMS_PER_CONNECTION": ("grpc_max_streams_per_connection", 50),
    "TIERSET_GRPC_MAX_STREAMING_CALLS": ("grpc_max_streaming_calls", 10),
    "TIERSET_GRPC_MAX_CONNECTION_IDLE_SECONDS": ("grpc_max_connection_idle_seconds", 0.5),
    "TIERSET_GRPC_MAX_CONNECTION_AGE_SECONDS": ("grpc_max_connection_age_seconds", 60.0),
    "TIERSET_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS": ("grpc_max_connection_age_grace_seconds", 5.0),
    "TIERSET_GRPC_KEEPALIVE_SECONDS": ("grpc_keepalive_seconds", 10.0),
    "TIERSET_GRPC_KEEPALIVE_TIMEOUT_SECONDS": ("grpc_keepalive_timeout_seconds", 2.0),
    "TIERSET_GRPC_MIN_CLIENT_PING_INTERVAL_SECONDS": ("grpc_min_client_ping_interval_seconds", 9.0),
}


def test_grpc_limits_are_read_from_the_environment():
    config = Config.from_env({name: str(value) for name, (_, value) in GRPC_LIMITS.items()})
    assert {attr: getattr(config, attr) for attr, _ in GRPC_LIMITS.values()} == dict(
        GRPC_LIMITS.values()
    )


@pytest.mark.parametrize("name", list(GRPC_LIMITS))
def test_a_grpc_limit_of_zero_names_its_variable(name):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: "0"})


@pytest.mark.parametrize("name", ["TIERSET_METRICS_ADDRESS", "TIERSET_GATEWAY_METRICS_ADDRESS"])
@pytest.mark.parametrize("raw", ["localhost", "9090", "127.0.0.1:", "host:port", "[::1]:99999"])
def test_a_metrics_address_that_is_not_host_port_names_its_variable(name, raw):
    with pytest.raises(ConfigError, match=f"{name} must be host:port"):
        Config.from_env({name: raw})


@pytest.mark.parametrize("raw", ["", "127.0.0.1:9090", "0.0.0.0:0", ":9090", "[::]:9090"])
def test_usable_metrics_addresses_are_kept(raw):
    assert Config.from_env({"TIERSET_METRICS_ADDRESS": raw}).metrics_address == raw


# --- Every value validated in one place (issue 11) -------------------------------------
#
# Each row: an environment and the variable its refusal must name. Rows marked "accepted
# before" were taken as they were, and failed later (a traceback, a silent single process,
# a bind error) or never.
BAD_ENVIRONMENTS = [
    ({"TIERSET_POOL_MIN_SIZE": "20", "TIERSET_POOL_MAX_SIZE": "10"}, "TIERSET_POOL_MIN_SIZE"),
    ({"TIERSET_POOL_MIN_SIZE": "-1"}, "TIERSET_POOL_MIN_SIZE"),
    ({"TIERSET_POOL_MAX_SIZE": "0", "TIERSET_POOL_MIN_SIZE": "0"}, "TIERSET_POOL_MAX_SIZE"),
    ({"TIERSET_POOL_MAX_SIZE": "many"}, "TIERSET_POOL_MAX_SIZE"),
    ({"TIERSET_STATEMENT_TIMEOUT_MS": "0"}, "TIERSET_STATEMENT_TIMEOUT_MS"),
    ({"TIERSET_STATEMENT_TIMEOUT_MS": "3000000000"}, "TIERSET_STATEMENT_TIMEOUT_MS"),
    ({"TIERSET_DB_CONNECT_TIMEOUT_SECONDS": "0"}, "TIERSET_DB_CONNECT_TIMEOUT_SECONDS"),
    ({"TIERSET_DB_CONNECT_TIMEOUT_SECONDS": "nan"}, "TIERSET_DB_CONNECT_TIMEOUT_SECONDS"),
    ({"TIERSET_DB_COMMAND_TIMEOUT_SECONDS": "-1"}, "TIERSET_DB_COMMAND_TIMEOUT_SECONDS"),
    ({"TIERSET_DB_COMMAND_TIMEOUT_SECONDS": "inf"}, "TIERSET_DB_COMMAND_TIMEOUT_SECONDS"),
    ({"TIERSET_POOL_ACQUIRE_TIMEOUT_SECONDS": "0"}, "TIERSET_POOL_ACQUIRE_TIMEOUT_SECONDS"),
    ({"TIERSET_HEALTH_PROBE_INTERVAL_SECONDS": "0"}, "TIERSET_HEALTH_PROBE_INTERVAL_SECONDS"),
    ({"TIERSET_SHUTDOWN_GRACE_SECONDS": "-1"}, "TIERSET_SHUTDOWN_GRACE_SECONDS"),
    ({"TIERSET_LOG_LEVEL": "LOUD"}, "TIERSET_LOG_LEVEL"),
    ({"TIERSET_LOG_LEVEL": ""}, "TIERSET_LOG_LEVEL"),
    ({"TIERSET_PROCESSES": "0"}, "TIERSET_PROCESSES"),
    ({"TIERSET_PROCESSES": "-2"}, "TIERSET_PROCESSES"),
    ({"TIERSET_GATEWAY_PROCESSES": "0"}, "TIERSET_GATEWAY_PROCESSES"),
    ({"TIERSET_EMBEDDED_PG_PORT": "0"}, "TIERSET_EMBEDDED_PG_PORT"),
    ({"TIERSET_EMBEDDED_PG_PORT": "70000"}, "TIERSET_EMBEDDED_PG_PORT"),
    ({"TIERSET_GRPC_ADDRESS": "nowhere"}, "TIERSET_GRPC_ADDRESS"),
    ({"TIERSET_GRPC_ADDRESS": ""}, "TIERSET_GRPC_ADDRESS"),
    ({"TIERSET_GRPC_ADDRESS": "127.0.0.1:99999"}, "TIERSET_GRPC_ADDRESS"),
    ({"TIERSET_GRPC_ADDRESS": "127.0.0.1:grpc"}, "TIERSET_GRPC_ADDRESS"),
    ({"TIERSET_GRPC_ADDRESS": "::1:50051"}, "TIERSET_GRPC_ADDRESS"),
    ({"TIERSET_GRPC_ADDRESS": "[not-v6]:50051"}, "TIERSET_GRPC_ADDRESS"),
    ({"TIERSET_METRICS_ADDRESS": "localhost:metrics"}, "TIERSET_METRICS_ADDRESS"),
    ({"TIERSET_METRICS_ADDRESS": "127.0.0.1:65536"}, "TIERSET_METRICS_ADDRESS"),
    ({"TIERSET_GATEWAY_METRICS_ADDRESS": "9091"}, "TIERSET_GATEWAY_METRICS_ADDRESS"),
    ({"TIERSET_HTTP_ADDRESS": ""}, "TIERSET_HTTP_ADDRESS"),
    ({"TIERSET_HTTP_ADDRESS": "[::1]"}, "TIERSET_HTTP_ADDRESS"),
    ({"TIERSET_HTTP_ADDRESS": "a host:8080"}, "TIERSET_HTTP_ADDRESS"),
    ({"TIERSET_GRPC_TARGET": ""}, "TIERSET_GRPC_TARGET"),
    ({"TIERSET_GRPC_TARGET": "localhost"}, "TIERSET_GRPC_TARGET"),
    ({"TIERSET_GRPC_TARGET": "localhost:0"}, "TIERSET_GRPC_TARGET"),
    ({"TIERSET_GRPC_TARGET": "dns:///"}, "TIERSET_GRPC_TARGET"),
    ({"TIERSET_AUTH_CACHE_SECONDS": "-1"}, "TIERSET_AUTH_CACHE_SECONDS"),
    ({"TIERSET_AUTH_CACHE_SIZE": "-1"}, "TIERSET_AUTH_CACHE_SIZE"),
    ({"TIERSET_CACHE_MAX_ENTRIES": "-1"}, "TIERSET_CACHE_MAX_ENTRIES"),
    ({"TIERSET_ACCESS_TOKEN_SECONDS": "0"}, "TIERSET_ACCESS_TOKEN_SECONDS"),
    ({"TIERSET_GRPC_MAX_REQUEST_BYTES": "3000000000"}, "TIERSET_GRPC_MAX_REQUEST_BYTES"),
    ({"TIERSET_GRPC_KEEPALIVE_SECONDS": "1e12"}, "TIERSET_GRPC_KEEPALIVE_SECONDS"),
    ({"TIERSET_HTTP_KEEPALIVE_TIMEOUT_SECONDS": "1.5"}, "TIERSET_HTTP_KEEPALIVE_TIMEOUT_SECONDS"),
    ({"TIERSET_TRUSTED_GATEWAYS": "10.0.0.0/33"}, "TIERSET_TRUSTED_GATEWAYS"),
    # Several processes share one port: it must be fixed (":0" would give each its own).
    ({"TIERSET_PROCESSES": "2", "TIERSET_GRPC_ADDRESS": "127.0.0.1:0"}, "TIERSET_GRPC_ADDRESS"),
    (
        {"TIERSET_GATEWAY_PROCESSES": "2", "TIERSET_HTTP_ADDRESS": "127.0.0.1:0"},
        "TIERSET_HTTP_ADDRESS",
    ),
]


@pytest.mark.parametrize(
    ("env", "variable"), BAD_ENVIRONMENTS, ids=[str(env) for env, _ in BAD_ENVIRONMENTS]
)
def test_each_bad_value_is_one_error_naming_its_variable(env, variable):
    with pytest.raises(ConfigError) as raised:
        Config.from_env(env)
    message = str(raised.value)
    assert message.startswith(variable), message
    assert "\n" not in message
    assert "(got " in message, message  # says what it got, next to what it expects


def test_pool_bounds_name_both_variables():
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"TIERSET_POOL_MIN_SIZE": "20", "TIERSET_POOL_MAX_SIZE": "10"})
    assert str(raised.value) == (
        "TIERSET_POOL_MIN_SIZE must be <= TIERSET_POOL_MAX_SIZE (got 20 > 10)"
    )


GOOD_ENVIRONMENTS = [
    {"TIERSET_METRICS_ADDRESS": "", "TIERSET_GATEWAY_METRICS_ADDRESS": ""},  # switched off
    {"TIERSET_METRICS_ADDRESS": ":9090"},  # all interfaces
    {"TIERSET_GRPC_ADDRESS": "[::]:50051", "TIERSET_HTTP_ADDRESS": "0.0.0.0:0"},
    {"TIERSET_GRPC_ADDRESS": "localhost:0", "TIERSET_HTTP_ADDRESS": "[::1]:8080"},
    {"TIERSET_GRPC_TARGET": "dns:///tierset-server-headless:50051"},
    {"TIERSET_GRPC_TARGET": "ipv4:127.0.0.1:50051,127.0.0.2:50051"},
    {"TIERSET_GRPC_TARGET": "unix:/run/tierset.sock"},
    {"TIERSET_GRPC_TARGET": "[::1]:50051"},
    {"TIERSET_POOL_MIN_SIZE": "0", "TIERSET_POOL_MAX_SIZE": "1"},
    {"TIERSET_POOL_MIN_SIZE": "10", "TIERSET_POOL_MAX_SIZE": "10"},
    {"TIERSET_LOG_LEVEL": "debug"},
    {"TIERSET_PROCESSES": "4", "TIERSET_GATEWAY_PROCESSES": "2"},
    {"TIERSET_SHUTDOWN_GRACE_SECONDS": "0", "TIERSET_AUTH_CACHE_SECONDS": "0"},
    {"TIERSET_CACHE_MAX_ENTRIES": "0", "TIERSET_READ_BUDGET_WAIT_SECONDS": "0"},
]


@pytest.mark.parametrize("env", GOOD_ENVIRONMENTS, ids=str)
def test_documented_values_are_accepted(env):
    Config.from_env(env)


def test_the_defaults_are_valid_and_log_levels_are_case_blind():
    assert Config() == Config.from_env({})
    assert Config.from_env({"TIERSET_LOG_LEVEL": "warning"}).log_level == "WARNING"


def _numeric_fields() -> list[tuple[str, type]]:
    kinds = {"int": int, "float": float}
    return [(f.name, kinds[f.type]) for f in dataclasses.fields(Config) if f.type in kinds]  # type: ignore[index]


@pytest.mark.parametrize(("field", "kind"), _numeric_fields())
def test_every_number_has_a_range(field, kind):
    """No numeric variable takes a negative value, nor (for seconds) an endless one."""
    variable = f"TIERSET_{field.upper()}"
    for raw in ["-1", *(["nan", "inf"] if kind is float else [])]:
        with pytest.raises(ConfigError, match=f"^{variable}"):
            Config.from_env({variable: raw})


def test_overrides_go_through_the_same_validation():
    """The CLI's overrides (``--processes``) are a replace, which is checked like the
    environment; so is a Config built in code."""
    config = Config.from_env({})
    with pytest.raises(ConfigError, match=r"^TIERSET_PROCESSES"):
        dataclasses.replace(config, processes=0)
    with pytest.raises(ConfigError, match=r"^TIERSET_GATEWAY_PROCESSES"):
        dataclasses.replace(config, gateway_processes=-1)
    with pytest.raises(ConfigError, match=r"^TIERSET_POOL_MIN_SIZE"):
        Config(pool_min_size=5, pool_max_size=1)
    assert dataclasses.replace(config, processes=3).processes == 3


def test_every_variable_and_its_range_is_documented():
    """docs/configuration.md has a row per variable, and the row says what it allows."""
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip(): line
        for line in docs.splitlines()
        if line.startswith("| `TIERSET_")
    }
    for field in dataclasses.fields(Config):
        if field.name.startswith("database"):
            continue  # DATABASE_URL, PGHOST: the DSN is asyncpg's to read
        variable = f"`TIERSET_{field.name.upper()}`"
        (row,) = [line for name, line in rows.items() if variable in name]
        assert "Allowed:" in row or field.type in ("bool", "Path | None"), row


# --- The processes stop at once, with one line --------------------------------------------


async def _tierset(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Runs `tierset ARGS` with `env` over the test's own; returns (exit code, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli.main",
        *args,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # Only a guard against the process serving forever on a value it should refuse.
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"tierset {' '.join(args)} kept running with {env}")
    return process.returncode or 0, err.decode()


def _assert_refused(code: int, stderr: str, variable: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert variable in lines[0]
    assert code == 2, stderr


# Each process gets ports of its own, so a value that is wrongly accepted cannot collide.
def _quiet_env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
        "TIERSET_GRPC_TARGET": f"127.0.0.1:{free_port()}",
        "TIERSET_METRICS_ADDRESS": "",
        "TIERSET_GATEWAY_METRICS_ADDRESS": "",
        "TIERSET_LOG_LEVEL": "WARNING",
    }


PROCESS_CASES = [
    # (command, environment, arguments, the variable named)
    (
        "serve",
        {"TIERSET_POOL_MIN_SIZE": "20", "TIERSET_POOL_MAX_SIZE": "10"},
        [],
        "TIERSET_POOL_MIN_SIZE",
    ),
    ("serve", {"TIERSET_LOG_LEVEL": "LOUD"}, [], "TIERSET_LOG_LEVEL"),
    ("serve", {"TIERSET_METRICS_ADDRESS": "localhost:metrics"}, [], "TIERSET_METRICS_ADDRESS"),
    ("serve", {"TIERSET_GRPC_MAX_REQUEST_BYTES": "0"}, [], "TIERSET_GRPC_MAX_REQUEST_BYTES"),
    ("serve", {}, ["--processes", "0"], "TIERSET_PROCESSES"),
    ("serve", {"TIERSET_PROCESSES": "0"}, [], "TIERSET_PROCESSES"),
    ("gateway", {"TIERSET_HTTP_ADDRESS": "127.0.0.1:99999"}, [], "TIERSET_HTTP_ADDRESS"),
    ("gateway", {"TIERSET_GRPC_TARGET": "localhost"}, [], "TIERSET_GRPC_TARGET"),
    ("gateway", {}, ["--processes", "0"], "TIERSET_GATEWAY_PROCESSES"),
    ("dev", {}, ["--processes", "-1"], "TIERSET_PROCESSES"),
    (
        "account",
        {"TIERSET_GATEWAY_METRICS_ADDRESS": "9091"},
        ["create", "--name", "never made"],
        "TIERSET_GATEWAY_METRICS_ADDRESS",
    ),
]


@pytest.mark.parametrize(
    ("command", "env", "args", "variable"),
    PROCESS_CASES,
    ids=[f"{c}-{'-'.join([*e, *a])}" for c, e, a, _ in PROCESS_CASES],
)
async def test_a_bad_value_stops_the_command_with_one_line(
    database_url, tmp_path, command, env, args, variable
):
    environment = {**_quiet_env(database_url), "TIERSET_DATA_DIR": str(tmp_path), **env}
    code, stderr = await _tierset(environment, command, *args)
    _assert_refused(code, stderr, variable)
