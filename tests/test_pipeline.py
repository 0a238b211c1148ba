"""The one call pipeline on server-streaming methods: authenticated, counted, errors mapped,
the request id on every log line; built once per method; unknown streaming kinds refused.

A servicer of the test's own (two server-streaming methods, one an async generator, one
writing with ``context.write``, plus a bidirectional one) is registered through the real
:class:`~tierset.api.pipeline.Pipeline` on a real grpc.aio server, with the session database
behind its Authenticator, and called over a real channel. Health's ``Watch`` is checked
on the session server itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from tests.conftest import Caller, open_channel
from tests.helpers import error_info
from tierset.api.pipeline import Pipeline
from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore
from tierset.core import authz, errors
from tierset.core.reasons import Reason
from tierset.ops import logs

SERVICE = "tierset.test.Streams"
Int = wrappers_pb2.Int64Value
streams_log = logging.getLogger("tierset.test.streams")


class Streams:
    """Counts up to the request's value; fails on request in the middle of a stream."""

    def __init__(self) -> None:
        self.callers: list[str] = []
        # (request id, caller, the call's count then) as each Forever clean-up saw them.
        self.cleanups: list[tuple[str | None, str | None, float]] = []

    async def _check(self, n: int, sent: int) -> None:
        if n == 13 and sent == 2:
            raise errors.not_found("thirteen is unlucky", Reason.NOT_FOUND, number="13")
        if n == 99 and sent == 2:
            raise RuntimeError("a bug with a secret-ish detail: tsk_do_not_leak")

    async def generate(self, request: Int, _context: Any) -> AsyncIterator[Int]:
        self.callers.append(authz.current_principal().username)
        streams_log.info("counting to %d", request.value)
        for sent in range(request.value if request.value < 10 else 5):
            await self._check(request.value, sent)
            yield Int(value=sent)

    async def write(self, request: Int, context: Any) -> None:
        self.callers.append(authz.current_principal().username)
        streams_log.info("counting to %d", request.value)
        for sent in range(request.value if request.value < 10 else 5):
            await self._check(request.value, sent)
            await context.write(Int(value=sent))

    async def forever(self, request: Int, _context: Any) -> AsyncIterator[Int]:
        try:
            while True:
                yield Int(value=request.value)
                await asyncio.sleep(0.01)
        finally:
            try:
                caller: str | None = authz.current_principal().username
            except LookupError:
                caller = None
            counted_then = handled("Forever", "CANCELLED")
            self.cleanups.append((logs.REQUEST_ID.get(None), caller, counted_then))

    async def chat(self, requests: AsyncIterator[Int], _context: Any) -> AsyncIterator[Int]:
        async for request in requests:
            yield request


def add_streams(servicer: Streams, server: Any) -> None:
    def stream(behaviour: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_stream_rpc_method_handler(
            behaviour,
            request_deserializer=Int.FromString,
            response_serializer=Int.SerializeToString,
        )

    handlers = {
        "Generate": stream(servicer.generate),
        "Write": stream(servicer.write),
        "Forever": stream(servicer.forever),
        "Chat": grpc.stream_stream_rpc_method_handler(
            servicer.chat,
            request_deserializer=Int.FromString,
            response_serializer=Int.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


@pytest.fixture(scope="module")
async def streams_server(db) -> AsyncIterator[tuple[int, Streams, Pipeline]]:
    servicer = Streams()
    authenticator = Authenticator(CredentialStore(db), cache_seconds=60, cache_size=10)
    pipeline = Pipeline(authenticator, access_log=True)
    server = grpc.aio.server()
    pipeline.register(server, add_streams, servicer)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port, servicer, pipeline
    await server.stop(None)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the servicer and the access log write, as the product's JSON lines."""
    stream = io.StringIO()
    handler = logs.json_handler(stream)
    loggers = [streams_log, logging.getLogger("tierset.access")]
    previous = [(each, each.level) for each in loggers]
    for each in loggers:
        each.addHandler(handler)
        each.setLevel(logging.INFO)
    yield stream
    for each, level in previous:
        each.removeHandler(handler)
        each.setLevel(level)


def handled(method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


async def counted(method: str, code: str, expected: float) -> float:
    """The call's count once the server has recorded it: a stream's status reaches the
    client before the server's ``finally`` counts the call, so the count may lag a little."""
    async with asyncio.timeout(5):
        while True:
            count = handled(method, code)
            if count >= expected:
                return count
            await asyncio.sleep(0.01)


def stream_of(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_stream(
        f"/{SERVICE}/{method}",
        request_serializer=Int.SerializeToString,
        response_deserializer=Int.FromString,
    )


async def collect(
    port: int, caller: Caller | None, method: str, value: int, **kw: str
) -> list[int]:
    """Every reply of one streaming call; `kw` adds metadata (the channel's default
    authorization applies to unary calls only, so the caller's is sent here)."""
    metadata = (*(caller.metadata if caller else ()), *kw.items())
    async with open_channel(port) as channel:
        call = stream_of(channel, method)(Int(value=value), timeout=10, metadata=metadata)
        return [reply.value async for reply in call]


METHODS = ["Generate", "Write"]


@pytest.mark.parametrize("method", METHODS)
async def test_a_stream_needs_credentials(streams_server, method):
    port, servicer, _ = streams_server
    calls_before = len(servicer.callers)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(port, None, method, 3)

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(raised.value).reason == "CREDENTIALS_MISSING"
    assert len(servicer.callers) == calls_before  # the servicer never ran


@pytest.mark.parametrize("method", METHODS)
async def test_an_authenticated_stream_runs_as_its_caller_and_is_counted(
    streams_server, platform_caller, method
):
    port, servicer, _ = streams_server
    before = handled(method, "OK")

    replies = await collect(port, platform_caller, method, 3)

    assert replies == [0, 1, 2]
    assert servicer.callers[-1] == platform_caller.username
    assert await counted(method, "OK", before + 1) == before + 1
    seconds = REGISTRY.get_sample_value(
        "grpc_server_handling_seconds_count", {"grpc_service": SERVICE, "grpc_method": method}
    )
    assert seconds is not None and seconds >= 1


@pytest.mark.parametrize("method", METHODS)
async def test_an_error_mid_stream_is_its_rich_status_and_counted(
    streams_server, platform_caller, method
):
    port, _, _ = streams_server
    before = handled(method, "NOT_FOUND")
    received: list[int] = []

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with open_channel(port) as channel:
            call = stream_of(channel, method)
            async for reply in call(Int(value=13), timeout=10, metadata=platform_caller.metadata):
                received.append(reply.value)

    assert received == [0, 1]  # what was sent before the failure arrived
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(raised.value)
    assert (info.reason, dict(info.metadata)) == ("NOT_FOUND", {"number": "13"})
    assert await counted(method, "NOT_FOUND", before + 1) == before + 1


@pytest.mark.parametrize("method", METHODS)
async def test_a_bug_mid_stream_is_internal_without_its_detail(
    streams_server, platform_caller, method, caplog
):
    port, _, _ = streams_server
    before = handled(method, "INTERNAL")

    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(port, platform_caller, method, 99)

    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"
    assert "tsk_do_not_leak" not in str(raised.value.trailing_metadata())
    assert "RuntimeError" in caplog.text and "Traceback" in caplog.text  # logged, with its stack
    assert await counted(method, "INTERNAL", before + 1) == before + 1


@pytest.mark.parametrize("method", METHODS)
async def test_every_line_of_a_stream_carries_its_request_id(
    streams_server, platform_caller, json_lines, method
):
    port, _, _ = streams_server

    await collect(port, platform_caller, method, 2, **{"x-request-id": "watch-7"})

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    servicer_lines = [line for line in lines if line["logger"] == "tierset.test.streams"]
    access_lines = [line for line in lines if line["logger"] == "tierset.access"]
    assert [line["message"] for line in servicer_lines] == ["counting to 2"]
    assert [line["grpc_code"] for line in access_lines] == ["OK"]
    assert {line["request_id"] for line in servicer_lines + access_lines} == {"watch-7"}


async def test_a_bidirectional_method_that_is_not_anonymous_is_refused(
    streams_server, platform_caller
):
    port, _, _ = streams_server

    async with open_channel(port) as channel:
        call = channel.stream_stream(
            f"/{SERVICE}/Chat",
            request_serializer=Int.SerializeToString,
            response_deserializer=Int.FromString,
        )(timeout=10, metadata=platform_caller.metadata)
        await call.write(Int(value=1))
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [reply async for reply in call]

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_each_method_is_wrapped_once_at_registration(streams_server):
    _, _, pipeline = streams_server
    method = f"/{SERVICE}/Generate"
    original = grpc.unary_stream_rpc_method_handler(Streams().generate)

    # The registration already built it; asking again returns that very handler.
    assert pipeline.wrap(method, original) is pipeline.wrap(method, original)
    assert pipeline.wrap(method, original).unary_stream is not original.unary_stream


def watches_handled() -> float:
    """Health Watch calls the server has finished, whatever their code."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "grpc_server_handled"
        for sample in family.samples
        if sample.name == "grpc_server_handled_total"
        and sample.labels["grpc_service"] == "grpc.health.v1.Health"
        and sample.labels["grpc_method"] == "Watch"
    )


async def test_health_watch_stays_anonymous_and_is_counted(anonymous_channel):
    before = watches_handled()
    health = health_pb2_grpc.HealthStub(anonymous_channel)

    call = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    first = await call.read()
    call.cancel()
    for _ in range(250):  # the server sees the cancellation a moment later
        if watches_handled() > before:
            break
        await asyncio.sleep(0.02)

    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert watches_handled() == before + 1


async def test_a_cancelled_stream_cleans_up_in_its_own_call(streams_server, platform_caller):
    # The generator is closed by the pipeline when the client goes away, in the call's own
    # task and before the call is counted as ended: its clean-up (a Watch's unsubscribe)
    # sees the call's request id and caller, and is done before the call's slot is free.
    port, servicer, _ = streams_server
    before = len(servicer.cleanups)
    counted_before = handled("Forever", "CANCELLED")
    metadata = (*platform_caller.metadata, ("x-request-id", "cleanup-check-1"))
    async with open_channel(port) as channel:
        call = stream_of(channel, "Forever")(Int(value=7), timeout=10, metadata=metadata)
        assert (await call.read()).value == 7
        assert (await call.read()).value == 7
        call.cancel()
    await counted("Forever", "CANCELLED", counted_before + 1)
    assert servicer.cleanups[before:] == [
        ("cleanup-check-1", platform_caller.username, counted_before)
    ]
