"""Configuration: database timeouts and the health probe interval, typed, from the environment."""

from __future__ import annotations

import pytest

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
