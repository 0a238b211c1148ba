"""What one gRPC caller can hold on this server: request and metadata sizes, streams,
connections.

Anyone who reaches the port may call the anonymous methods (health, reflection,
``AuthService/CreateToken``), so everything here holds before authentication:

* **Requests.** gRPC's receive limit is server-wide: ``grpc_max_request_bytes``, what the
  authenticated methods need. Each anonymous method also has a cap of its own
  (:func:`request_cap`), checked on the raw bytes before they are parsed: a request past it
  is never parsed nor handed to the method; the call ends at once with INVALID_ARGUMENT,
  reason ``REQUEST_TOO_LARGE``, and the bytes are dropped.
* **Metadata.** gRPC refuses more than ``grpc_max_metadata_bytes`` of request metadata
  with RESOURCE_EXHAUSTED before any handler runs (the soft and the hard limit are set
  alike, so the refusal does not depend on chance).
* **Streams.** At most ``grpc_max_streams_per_connection`` calls at once on one HTTP/2
  connection (more wait at the client), and at most ``grpc_max_streaming_calls``
  server-streaming calls open in this process, of every method, anonymous or not: past it
  a new one is refused at once with RESOURCE_EXHAUSTED, reason ``TOO_MANY_STREAMS``. A slot
  is taken before anything else runs for the call and given back when the call ends,
  however it ends (completed, failed, cancelled, connection lost).
* **Connections.** A connection without calls is closed after
  ``grpc_max_connection_idle_seconds``, and any connection after
  ``grpc_max_connection_age_seconds`` (plus a grace for calls in flight; gRPC adds ±10 %
  jitter). One with calls but no traffic is pinged every ``grpc_keepalive_seconds`` and
  dropped when a ping goes unanswered for ``grpc_keepalive_timeout_seconds`` (a vanished
  peer). Clients may ping at most every ``grpc_min_client_ping_interval_seconds``, and
  never on a connection without calls: pings do not keep an idle connection open.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from tierset.api.interceptors import abort_with
from tierset.api.status import to_rpc_status
from tierset.auth.authenticator import CREATE_TOKEN_METHOD, is_anonymous
from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.ops.config import Config

# A client that pings too often (or on an idle connection) this many times gets a GOAWAY.
_PING_STRIKES = 2


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(config: Config) -> list[tuple[str, int]]:
    """The gRPC server options that put the configured size, stream and connection limits
    in force (the per-method request caps and the process stream cap are the interceptor's)."""
    return [
        ("grpc.max_receive_message_length", config.grpc_max_request_bytes),
        ("grpc.max_metadata_size", config.grpc_max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", config.grpc_max_metadata_bytes),
        ("grpc.max_concurrent_streams", config.grpc_max_streams_per_connection),
        ("grpc.max_connection_idle_ms", _ms(config.grpc_max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", _ms(config.grpc_max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", _ms(config.grpc_max_connection_age_grace_seconds)),
        ("grpc.keepalive_time_ms", _ms(config.grpc_keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(config.grpc_keepalive_timeout_seconds)),
        ("grpc.keepalive_permit_without_calls", 0),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(config.grpc_min_client_ping_interval_seconds),
        ),
        ("grpc.http2.max_ping_strikes", _PING_STRIKES),
    ]


def request_cap(method: str, config: Config) -> int | None:
    """The largest request `method` takes in bytes, when it is below the server-wide cap."""
    if method == CREATE_TOKEN_METHOD:
        return config.grpc_create_token_max_request_bytes
    if is_anonymous(method):
        return config.grpc_anonymous_max_request_bytes
    return None


@dataclass(frozen=True)
class _TooLarge:
    """Stands in for a request past its method's cap; its bytes are not kept."""

    size: int
    cap: int


def _capped(deserialize: Callable[[bytes], Any] | None, cap: int) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        if len(raw) > cap:
            return _TooLarge(len(raw), cap)
        return raw if deserialize is None else deserialize(raw)

    return parse


async def _refuse_too_large(context: grpc.aio.ServicerContext, request: _TooLarge) -> None:
    message = f"the request has {request.size} bytes; this method takes at most {request.cap}"
    error = errors.bad_field("request", message, reason=Reason.REQUEST_TOO_LARGE)
    await abort_with(context, to_rpc_status(error))


async def _checked(requests: AsyncIterable[Any], context: grpc.aio.ServicerContext) -> Any:
    """A request stream that ends the call at the first request past the cap."""
    async for request in requests:
        if isinstance(request, _TooLarge):
            await _refuse_too_large(context, request)
        yield request


class StreamSlots:
    """This process's open server-streaming calls, counted against the cap.

    The event loop runs one call's code at a time, so a plain counter is exact.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    async def take(self, context: grpc.aio.ServicerContext) -> None:
        """Takes a slot, or ends the call with RESOURCE_EXHAUSTED when none is free."""
        if self.open >= self.limit:
            error = errors.resource_exhausted(
                f"this server already holds {self.limit} streaming calls, its limit; "
                "retry once some have ended",
                Reason.TOO_MANY_STREAMS,
            )
            await abort_with(context, to_rpc_status(error))
        self.open += 1

    def give_back(self) -> None:
        """Frees the slot of a call that has ended."""
        self.open -= 1


Handler = Callable[..., Any]


def _unary_response(inner: Handler, request_streaming: bool) -> Handler:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request_streaming:
            request = _checked(request, context)
        elif isinstance(request, _TooLarge):
            await _refuse_too_large(context, request)
        return await inner(request, context)

    return behaviour


def _stream_response(inner: Handler, request_streaming: bool, slots: StreamSlots) -> Handler:
    """Wraps a server-streaming handler of either style gRPC knows: a coroutine that writes
    with ``context.write``, or a generator of responses."""

    async def admit(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request_streaming:
            request = _checked(request, context)
        elif isinstance(request, _TooLarge):
            await _refuse_too_large(context, request)
        await slots.take(context)
        return request

    if inspect.iscoroutinefunction(inner):

        async def writing(request: Any, context: grpc.aio.ServicerContext) -> None:
            request = await admit(request, context)
            try:
                await inner(request, context)
            finally:
                slots.give_back()

        return writing

    async def yielding(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        request = await admit(request, context)
        try:
            responses = inner(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response
        finally:
            slots.give_back()

    return yielding


class LimitsInterceptor(grpc.aio.ServerInterceptor):
    """Caps the requests of anonymous methods and the process's open streaming calls.

    It sits inside ObservabilityInterceptor (whose metrics and log then count its
    refusals) and outside the others, so a refused call costs nothing more.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self.streams = StreamSlots(config.grpc_max_streaming_calls)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        cap = request_cap(handler_call_details.method, self._config)
        if cap is None and not handler.response_streaming:
            return handler
        deserializer = handler.request_deserializer
        if cap is not None:
            deserializer = _capped(deserializer, cap)
        serializer = handler.response_serializer
        streaming = handler.request_streaming
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary_response(handler.unary_unary, streaming), deserializer, serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary_response(handler.stream_unary, streaming), deserializer, serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream_response(handler.unary_stream, streaming, self.streams),
                deserializer,
                serializer,
            )
        assert handler.stream_stream is not None  # the one kind left
        return grpc.stream_stream_rpc_method_handler(
            _stream_response(handler.stream_stream, streaming, self.streams),
            deserializer,
            serializer,
        )
