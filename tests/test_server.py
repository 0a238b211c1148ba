"""The server process: health, reflection, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import free_port, start_serve
from tierset import client
from tierset.api.server import start_app
from tierset.ops import embedded
from tierset.ops.embedded import EmbeddedPostgres, EmbeddedPostgresError


async def test_health_reports_serving_for_each_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in (
        "",
        "tierset.v1.SettingsService",
        "tierset.v1.IntegrationService",
        "tierset.v1.AccountService",
    ):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {
        "tierset.v1.SettingsService",
        "tierset.v1.IntegrationService",
        "tierset.v1.AccountService",
        "grpc.health.v1.Health",
    } <= names


async def test_sigterm_stops_the_server_cleanly(database_url):
    port = free_port()
    process = await start_serve(database_url, port, TIERSET_SHUTDOWN_GRACE_SECONDS="3")
    async with asyncio.timeout(30):
        await client.wait_until_serving(f"127.0.0.1:{port}")

    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=15)

    assert process.returncode == 0, output.decode()
    assert b"shutting down" in output
    assert b"Traceback" not in output


def test_missing_binaries_say_how_to_get_postgres(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded, "find_binaries", lambda: None)
    with pytest.raises(EmbeddedPostgresError) as raised:
        EmbeddedPostgres(tmp_path, free_port())
    assert "apt-get install postgresql" in str(raised.value)
    assert "DATABASE_URL" in str(raised.value)


async def test_a_second_server_cannot_take_a_port_in_use(server, server_config, database_url):
    taken = dataclasses.replace(server_config, grpc_address=f"127.0.0.1:{server.port}")
    with pytest.raises(OSError, match="cannot listen"):
        await start_app(taken, database_url)


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:metrics", "127.0.0.1:70000"])
async def test_a_malformed_metrics_address_is_refused_before_serving(database_url, address):
    port = free_port()
    process = await start_serve(database_url, port, TIERSET_METRICS_ADDRESS=address)

    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    text = output.decode()
    assert process.returncode not in (0, None), text
    errors = [line for line in text.splitlines() if "TIERSET_METRICS_ADDRESS" in line]
    assert len(errors) == 1 and "host:port" in errors[0], text  # one line, naming it
    assert "Traceback" not in text
    assert "serving gRPC" not in text  # refused before anything started


async def test_a_taken_metrics_port_is_logged_and_the_server_still_stops_cleanly(database_url):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_address = f"127.0.0.1:{taken.getsockname()[1]}"
        process = await start_serve(
            database_url,
            port,
            TIERSET_METRICS_ADDRESS=metrics_address,
            TIERSET_SHUTDOWN_GRACE_SECONDS="3",
        )
        async with asyncio.timeout(30):
            await client.wait_until_serving(f"127.0.0.1:{port}")
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    text = output.decode()
    assert process.returncode == 0, text
    assert f"cannot serve metrics on {metrics_address}" in text
    assert "database pool closed" in text  # the clean stop ran to its end
    assert "Traceback" not in text


async def test_health_watchers_hear_not_serving_and_their_stream_ends_on_shutdown(
    start_app_with, server_config, create_database
):
    # A watcher (a load balancer, a client) must not hold the server for its whole grace
    # period: it hears NOT_SERVING, then its stream ends, and it moves elsewhere.
    grace = 20.0
    config = dataclasses.replace(server_config, shutdown_grace_seconds=grace)
    app = await start_app_with(config, await create_database())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(app.stop(grace))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Ends well within the grace period (bounded at a quarter of it, for a loaded box).
        async with asyncio.timeout(grace / 4):
            assert await watch.read() is grpc.aio.EOF
        assert await watch.code() == grpc.StatusCode.OK
        await stopping
