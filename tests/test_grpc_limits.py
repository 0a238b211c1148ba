"""What an anonymous gRPC caller can hold is bounded: request and metadata sizes, unknown
health names, open streams per process, idle connections.

The abuse tests run against a real `tierset serve` process on 127.0.0.1 (its memory is read
from /proc/<pid>/status), with a fixed number of calls and bounded waits; the per-method size
caps are checked on the session server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import free_port, make_caller_in, open_channel, start_serve
from tests.helpers import error_info, field_violations, json_value
from tierset import client
from tierset.core.authz import Role
from tierset.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    settings_pb2,
    settings_pb2_grpc,
)

START_SECONDS = 30.0
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
SERVING = health_pb2.HealthCheckResponse.SERVING

# The review's figures: 40 Watch calls naming a 4 MB service took the server from 66 to
# 825 MiB; small unknown names cost ~15 KiB each while held. The pod's limit is 512 MiB.
LARGE_NAME_WATCHES = 40
LARGE_NAME_BYTES = 4_000_000
SMALL_NAME_WATCHES = 1000
ABUSE_CHANNELS = 8
# The server may take this much more than it had before the abuse (peak, sampled).
RSS_GROWTH_BOUND_MIB = 160
# Generous on a shared 2-core box: a read must not wait behind the abuse.
READ_LATENCY_BOUND_SECONDS = 5.0


@dataclass
class ServeProcess:
    """A running `tierset serve`, its address, and everything it printed so far."""

    process: asyncio.subprocess.Process
    address: str
    database_url: str
    output: bytearray

    def rss_mib(self) -> float:
        """The process's resident set size, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc status")


@contextlib.asynccontextmanager
async def serving(create_database, **env: str) -> AsyncIterator[ServeProcess]:
    """A real `tierset serve` with `env`, SERVING, its output drained (a full pipe would
    stall it); killed afterwards."""
    database_url = await create_database()
    port = free_port()
    process = await start_serve(database_url, port, TIERSET_METRICS_ADDRESS="", **env)
    output = bytearray()

    async def drain() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            output.extend(chunk[: max(0, 1_000_000 - len(output))])

    draining = asyncio.create_task(drain())
    address = f"127.0.0.1:{port}"
    try:
        async with asyncio.timeout(START_SECONDS):
            await client.wait_until_serving(address)
        yield ServeProcess(process, address, database_url, output)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await draining


async def _outcome(call: grpc.aio.UnaryStreamCall) -> tuple[list[int], grpc.StatusCode]:
    """The statuses a health Watch sent and how it ended."""
    sent = []
    try:
        async for reply in call:
            sent.append(reply.status)
    except grpc.aio.AioRpcError as error:
        return sent, error.code()
    return sent, grpc.StatusCode.OK


def _raw_channel(address: str) -> grpc.aio.Channel:
    # Each abuse channel is its own connection, as separate attackers' would be.
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ],
    )


async def test_health_watch_abuse_keeps_the_server_small_and_answering(create_database):
    async with serving(create_database) as server:
        platform = await make_caller_in(server.database_url, Role.PLATFORM)
        async with open_channel(int(server.address.rsplit(":", 1)[1]), platform.token) as reader:
            settings = settings_pb2_grpc.SettingsServiceStub(reader)
            accounts = accounts_pb2_grpc.AccountServiceStub(reader)
            account = (
                await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(display_name="R"))
            ).account.id
            read = settings_pb2.GetSettingsRequest(
                scope=settings_pb2.Scope(account_id=account), keys=["ABUSE.KEY"]
            )
            await settings.GetSettings(read)
            baseline = server.rss_mib()

            channels = [_raw_channel(server.address) for _ in range(ABUSE_CHANNELS)]
            try:
                stubs = [health_pb2_grpc.HealthStub(c) for c in channels]
                large = health_pb2.HealthCheckRequest(service="x" * LARGE_NAME_BYTES)
                calls = [
                    stubs[n % ABUSE_CHANNELS].Watch(large) for n in range(LARGE_NAME_WATCHES)
                ] + [
                    stubs[n % ABUSE_CHANNELS].Watch(
                        health_pb2.HealthCheckRequest(service=f"unknown.Service{n}")
                    )
                    for n in range(SMALL_NAME_WATCHES)
                ]
                outcomes = asyncio.ensure_future(
                    asyncio.wait_for(asyncio.gather(*map(_outcome, calls)), 15)
                )
                peak = baseline
                slowest = 0.0
                while not outcomes.done():
                    started = time.monotonic()
                    await settings.GetSettings(read, timeout=READ_LATENCY_BOUND_SECONDS * 2)
                    slowest = max(slowest, time.monotonic() - started)
                    peak = max(peak, server.rss_mib())
                    await asyncio.sleep(0.1)
                peak = max(peak, server.rss_mib())
                try:
                    ended = outcomes.result()
                except TimeoutError:
                    ended = None
                for call in calls:
                    call.cancel()
            finally:
                for opened in channels:
                    await opened.close()

        assert peak - baseline < RSS_GROWTH_BOUND_MIB, (
            f"server RSS went from {baseline:.0f} to {peak:.0f} MiB"
        )
        assert slowest < READ_LATENCY_BOUND_SECONDS, f"a read took {slowest:.1f}s"
        assert ended is not None, "some health Watch calls were still held open after 15 s"
        # A stream opened before the client learned the per-connection stream limit may be
        # refused (REFUSED_STREAM, seen as UNAVAILABLE): refused, it is not held either.
        refused = ([], grpc.StatusCode.UNAVAILABLE)
        for outcome in ended[:LARGE_NAME_WATCHES]:
            assert outcome in (([], grpc.StatusCode.INVALID_ARGUMENT), refused)
        for outcome in ended[LARGE_NAME_WATCHES:]:
            assert outcome in (([SERVICE_UNKNOWN], grpc.StatusCode.NOT_FOUND), refused)
        print(f"server RSS {baseline:.0f} -> {peak:.0f} MiB; slowest read {slowest:.2f}s")


async def _admitted(stub: health_pb2_grpc.HealthStub) -> grpc.aio.UnaryStreamCall:
    """A Watch of the whole server that the server took (its first status arrived)."""
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await call.read()).status == SERVING
    return call


async def test_streams_past_the_process_cap_are_refused_until_one_ends(create_database):
    async with (
        serving(
            create_database,
            TIERSET_GRPC_MAX_STREAMING_CALLS="3",
            # Only the process cap may refuse here, not the per-connection one.
            TIERSET_GRPC_MAX_STREAMS_PER_CONNECTION="100",
        ) as server,
        _raw_channel(server.address) as first,
        _raw_channel(server.address) as second,
    ):
        # The cap is per process, whichever connections the streams come over.
        stubs = [health_pb2_grpc.HealthStub(c) for c in (first, second, first)]
        held = [await _admitted(stub) for stub in stubs]

        refused = health_pb2_grpc.HealthStub(second).Watch(health_pb2.HealthCheckRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await refused.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(caught.value).reason == "TOO_MANY_STREAMS"
        assert "3 streaming calls" in (caught.value.details() or "")
        # Unary calls are not streams: the cap leaves them alone.
        check = await health_pb2_grpc.HealthStub(second).Check(health_pb2.HealthCheckRequest())
        assert check.status == SERVING

        held.pop().cancel()
        # The slot comes back once the server has seen the cancellation.
        deadline = time.monotonic() + 10
        while True:
            try:
                held.append(await _admitted(health_pb2_grpc.HealthStub(second)))
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the ended stream's slot never came back"
                await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _admitted(health_pb2_grpc.HealthStub(first))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in held:
            call.cancel()


async def test_idle_connections_are_closed_by_the_server(create_database):
    async with (
        serving(create_database, TIERSET_GRPC_MAX_CONNECTION_IDLE_SECONDS="0.5") as server,
        _raw_channel(server.address) as idle,
    ):
        await health_pb2_grpc.HealthStub(idle).Check(health_pb2.HealthCheckRequest())
        assert idle.get_state() == grpc.ChannelConnectivity.READY
        # No call for longer than the idle limit: the server sends GOAWAY and the channel
        # leaves READY (its own idle timer is 30 minutes, so only the server can do this).
        await asyncio.wait_for(idle.wait_for_state_change(grpc.ChannelConnectivity.READY), 10)
        assert idle.get_state() != grpc.ChannelConnectivity.READY


async def test_metadata_past_the_limit_is_refused(create_database):
    async with (
        serving(create_database, TIERSET_GRPC_MAX_METADATA_BYTES="2048") as server,
        _raw_channel(server.address) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), metadata=(("x-small", "s" * 512),))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(), metadata=(("x-pad", "p" * 4096),))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _too_large(error: grpc.aio.AioRpcError) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "REQUEST_TOO_LARGE"
    assert "request" in field_violations(error)
    assert "bytes" in (error.details() or "")


async def test_anonymous_methods_refuse_requests_past_their_cap(
    anonymous_channel, channel, new_account, unique_key
):
    health = health_pb2_grpc.HealthStub(anonymous_channel)
    long_name = health_pb2.HealthCheckRequest(service="h" * 2048)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(long_name)
    _too_large(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(health.Watch(long_name).read(), 10)
    _too_large(caught.value)

    reflection = reflection_pb2_grpc.ServerReflectionStub(anonymous_channel)
    asked = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="s" * 2048)])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(asked.read(), 10)
    _too_large(caught.value)

    tokens = auth_pb2_grpc.AuthServiceStub(anonymous_channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tokens.CreateToken(
            auth_pb2.CreateTokenRequest(
                grant_type="password",
                client_id="c",
                client_secret="s",
                username="u",
                password="p" * 8192,
            )
        )
    _too_large(caught.value)

    # Authenticated methods keep the server-wide cap: a 100 KiB value is written.
    account = await new_account()
    await settings_pb2_grpc.SettingsServiceStub(channel).PutSetting(
        settings_pb2.PutSettingRequest(
            scope=settings_pb2.Scope(account_id=account),
            key=unique_key(),
            type=settings_pb2.SETTING_TYPE_JSON,
            value=json_value("v" * 100_000),
        )
    )


async def test_unknown_health_names_are_answered_at_once(anonymous_channel):
    health = health_pb2_grpc.HealthStub(anonymous_channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "HEALTH_SERVICE_UNKNOWN"

    watch = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert await asyncio.wait_for(_outcome(watch), 10) == (
        [SERVICE_UNKNOWN],
        grpc.StatusCode.NOT_FOUND,
    )
