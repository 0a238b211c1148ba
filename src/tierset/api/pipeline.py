"""The one call pipeline: what every gRPC call passes through, in one wrapper per method.

Every servicer is registered through :meth:`Pipeline.register`, which wraps each of its
method handlers ONCE, when the service is added to the server; a call then runs exactly
one extra coroutine around its handler and builds nothing per call beyond what it must
(its request id, its deadline). The concerns, outermost first, and why in that order:

1. **Request id** (:data:`tierset.ops.logs.REQUEST_ID`): the caller's ``x-request-id`` if it is
   acceptable, else a fresh one; set first so that every line the call logs carries it.
   The metadata is read once for it and for the credentials.
2. **Metrics and the access line**: timed from here, recorded in ``finally`` with the
   status the call ends with — after the error mapping below settled it — so a failure is
   counted under the code the client saw. Each method's series are found once, at
   registration, and a call is counted with plain numbers
   (:class:`tierset.ops.metrics.CallSeries`).
3. **Error mapping**: a request whose bytes are not a message is INVALID_ARGUMENT (the
   request deserializer is made tolerant at registration, so bad bytes reach us instead of
   failing as UNKNOWN); :class:`~tierset.core.errors.TiersetError` becomes its rich status; a
   lost, silent or overloaded database is UNAVAILABLE (a write may still have committed if
   the connection was lost during COMMIT: clients re-read or retry with expected_version); the
   caller's deadline passing is DEADLINE_EXCEEDED; a value PostgreSQL refuses is
   INVALID_ARGUMENT; anything else is a bug, logged here with its stack trace, and the
   client sees only "internal error".
4. **Deadline**: the handler (authentication included, which may query the database) gets
   at most the call's remaining time, so a database call is cancelled, and its connection
   freed, when the client stops waiting. A unary call first runs as far as it can without
   waiting; only if it waits is the deadline's timer armed (to the same absolute deadline),
   so a call that never waits (a cached read) costs no timer.
5. **Authentication** (:class:`~tierset.auth.authenticator.Authenticator`): the ``authorization``
   metadata becomes the caller (:func:`tierset.core.authz.current_principal`), set in the task
   that runs the handler. Inside the error mapping, so refusals are rich statuses.

Unary-unary and unary-stream (server-streaming) methods get all five; a stream's metrics
and access line are recorded when it ends. Which methods skip authentication is decided
at registration by :func:`tierset.auth.authenticator.is_anonymous`, which names them
exactly (health, reflection, CreateToken), so a new method is never anonymous by
accident. Fail closed: a client-streaming or bidirectional method that is not anonymous
is refused (UNAUTHENTICATED) — none exists yet; reflection's, which is anonymous, is not
counted but is held to its request cap and to a stream slot.

The process's limits (:mod:`tierset.api.limits`) are applied here too, so they cost no
interceptor: an anonymous method's request past its cap is refused unparsed
(REQUEST_TOO_LARGE), and a server-streaming call holds one of the process's stream slots
from its start to its end (TOO_MANY_STREAMS past the cap).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpc_status import rpc_status

from tierset.api.limits import Limits, TooLarge, too_large
from tierset.api.status import internal_status, to_rpc_status
from tierset.auth.authenticator import Authenticator, is_anonymous
from tierset.core import authz, errors
from tierset.ops import logs, metrics
from tierset.ops.client_address import Network, client_address

log = logging.getLogger(__name__)
access = logging.getLogger("tierset.access")

# Kubernetes probes call Check every few seconds: their access lines go at DEBUG.
_QUIET_METHODS = frozenset({"/grpc.health.v1.Health/Check"})

# Refusals counted in tierset_auth_failures_total by reason: bad or missing credentials
# (authentication, the OAuth grants) and permissions the caller lacks (authz).
_AUTH_REFUSALS = frozenset({errors.Code.UNAUTHENTICATED, errors.Code.PERMISSION_DENIED})

# asyncpg's and the OS's ways of saying "the database is not there right now", by class:
# refused or lost connections (OSError, class 08 including ConnectionDoesNotExistError, which
# the store also raises for a connection found gone when a call used it), a server shutting
# down or starting (57P01-57P03), out of connections (53300), a statement timeout (57014),
# TimeoutError from the connect, pool-acquire and command timeouts, and InternalClientError,
# which asyncpg raises when PostgreSQL ends a session mid-call (MagicStack/asyncpg#1069; the
# store discards that connection). Not InterfaceError: asyncpg raises it for misuse of its
# API too, which is a bug (INTERNAL), never a retryable outage.
_DATABASE_DOWN = (
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    ConnectionError,
    OSError,
    TimeoutError,
)

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_AUTHORIZATION = "authorization"
_REQUEST_ID = logs.REQUEST_ID_HEADER

AddToServer = Callable[[Any, Any], None]


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes are not a valid message of its type."""

    reason: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wraps a request deserializer so bad bytes reach the pipeline instead of failing as
    UNKNOWN."""
    if deserialize is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except DecodeError as error:
            return _Undecodable(str(error))

    return parse


async def abort_with(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    """Ends the call with a rich status (details travel in the trailing metadata)."""
    rich = rpc_status.to_status(status)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


def _code_name(code: object) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return _CODE_NAMES.get(code, str(code))
    return "OK" if code is None else str(code)


def status_of(method: str, error: Exception, deadline: asyncio.Timeout | None) -> status_pb2.Status:
    """The status a handler's exception becomes; logs what an operator must see.

    `deadline` is the call's, None when the call failed before it waited for anything
    (then its deadline cannot have been what stopped it)."""
    if isinstance(error, errors.TiersetError):
        if error.code in _AUTH_REFUSALS:
            metrics.AUTH_FAILURES.labels(error.reason).inc()
        return to_rpc_status(error)
    if isinstance(error, _DATABASE_DOWN):
        if isinstance(error, TimeoutError) and deadline is not None and deadline.expired():
            # The client's deadline, not the database: it has stopped waiting.
            return to_rpc_status(errors.deadline_exceeded())
        log.warning("%s: database unavailable: %s", method, type(error).__name__)
        return to_rpc_status(errors.unavailable("the settings database is unavailable"))
    if isinstance(error, asyncpg.DataError):
        # SQLSTATE class 22: a value PostgreSQL cannot take (a NUL byte, a number out of
        # range). Values come from the request, so it is the caller's to fix; the rules
        # should have caught it first, hence the warning.
        log.warning("%s: data the database refused: %s", method, type(error).__name__)
        return to_rpc_status(errors.bad_field("request", "a value in the request cannot be stored"))
    if isinstance(error, asyncpg.PostgresError):
        # A statement the store should have prevented; the SQLSTATE helps, the text may echo
        # data, so only the class is logged.
        log.error(
            "%s: database error %s (%s)",
            method,
            type(error).__name__,
            getattr(error, "sqlstate", "?"),
        )
        return internal_status()
    log.error("%s: unhandled error", method, exc_info=error)
    return internal_status()


class Pipeline:
    """Builds each method's wrapper once; see the module docstring for what it does."""

    def __init__(
        self,
        authenticator: Authenticator,
        limits: Limits | None = None,
        *,
        access_log: bool,
        trusted_gateways: tuple[Network, ...] = (),
    ) -> None:
        self._authenticator = authenticator
        # None only for test stand-ins: a served pipeline always has the process's limits.
        self._limits = limits
        self._access_log = access_log
        self._trusted_gateways = trusted_gateways
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def register(self, server: grpc.aio.Server, add_to_server: AddToServer, servicer: Any) -> None:
        """Adds `servicer` to `server` with every method behind the pipeline.

        `add_to_server` is the generated ``add_XServicer_to_server`` (or anything that calls
        ``add_generic_rpc_handlers`` / ``add_registered_method_handlers`` on its second
        argument); it is given a registrar that wraps each handler before the server
        sees it.
        """
        add_to_server(servicer, _Registrar(server, self))

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` behind the pipeline; built once per method and kept."""
        wrapped = self._wrapped.get(full_method)
        if wrapped is None:
            wrapped = self._build(full_method, handler)
            self._wrapped[full_method] = wrapped
        return wrapped

    def _build(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        anonymous = is_anonymous(method)
        deserializer = _tolerant(handler.request_deserializer)
        if self._limits is not None:
            deserializer = self._limits.capped(method, deserializer)
        serializer = _passing_bytes(handler.response_serializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary, authenticate=not anonymous),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._server_stream(method, handler.unary_stream, authenticate=not anonymous),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if anonymous and handler.stream_stream is not None:
            # Reflection's bidirectional stream: not counted, but capped and held to a slot.
            return grpc.stream_stream_rpc_method_handler(
                _capped_stream(handler.stream_stream, self._limits), deserializer, serializer
            )
        return _refused(handler)

    def _unary(self, method: str, inner: Callable[..., Any], *, authenticate: bool) -> Any:
        call = _Call(method, self, authenticate)

        async def handled(request: Any, state: _State, context: grpc.aio.ServicerContext) -> Any:
            await call.admit(request, state, context)
            return await inner(request, context)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            state = call.begin(context)
            try:
                deadline: asyncio.Timeout | None = None
                try:
                    # Run at once, as far as it goes without waiting: a call that never
                    # waits (a cached read) ends before any timer could fire, so it needs
                    # none. One that waits gets the call's deadline from that moment on —
                    # the same absolute deadline, so what it may wait for is unchanged.
                    running = handled(request, state, context)
                    try:
                        waiting_on = running.send(None)
                    except StopIteration as done:
                        response = done.value
                    else:
                        deadline = asyncio.timeout(context.time_remaining())
                        async with deadline:
                            response = await _resumed(running, waiting_on)
                except grpc.aio.AbortError:
                    state.code = _code_name(context.code())
                    raise
                except asyncio.CancelledError:
                    state.code = "CANCELLED"
                    raise
                except Exception as error:
                    status = status_of(method, error, deadline)
                    state.code = _CODE_NAMES[status.code]
                    await abort_with(context, status)
                code = context.code()
                state.code = "OK" if code is None else _code_name(code)
                return response
            finally:
                call.end(state)

        return unary

    def _server_stream(self, method: str, inner: Callable[..., Any], *, authenticate: bool) -> Any:
        call = _Call(method, self, authenticate)
        # Decided once: a coroutine writes with context.write; a generator yields responses.
        writes_itself = inspect.iscoroutinefunction(inner)
        streams = self._limits.streams if self._limits is not None else None

        async def server_stream(request: Any, context: grpc.aio.ServicerContext) -> None:
            state = call.begin(context)
            try:
                deadline = asyncio.timeout(context.time_remaining())
                try:
                    async with deadline:
                        await call.admit(request, state, context)
                        if streams is not None:
                            streams.take()
                            state.holds_stream = True
                        if writes_itself:
                            await inner(request, context)
                        else:
                            # Closed here, in this call's task, when the stream ends however
                            # it ends: a generator left suspended would run its clean-up
                            # later, elsewhere, without the call's request id or caller.
                            async with contextlib.aclosing(inner(request, context)) as responses:
                                async for response in responses:
                                    await context.write(response)
                except grpc.aio.AbortError:
                    state.code = _code_name(context.code())
                    raise
                except asyncio.CancelledError:
                    state.code = "CANCELLED"
                    raise
                except Exception as error:
                    status = status_of(method, error, deadline)
                    state.code = _CODE_NAMES[status.code]
                    await abort_with(context, status)
                state.code = _code_name(context.code())
            finally:
                if state.holds_stream:
                    streams.give_back()  # type: ignore[union-attr]  # held only with streams
                call.end(state)

        return server_stream


class _State:
    """What one call carries from its start to its end."""

    __slots__ = (
        "authorization",
        "code",
        "holds_stream",
        "metadata",
        "principal_token",
        "request_id",
        "started",
    )

    def __init__(self, metadata: Sequence[Any], authorization: list[str], request_id: Any) -> None:
        self.metadata = metadata
        self.authorization = authorization
        self.request_id = request_id
        self.principal_token: Any = None
        self.holds_stream = False
        self.code = "UNKNOWN"
        self.started = time.perf_counter()


class _Call:
    """The per-method half of the pipeline: everything resolved at registration."""

    __slots__ = (
        "_access_log",
        "_authenticate",
        "_authenticator",
        "_level",
        "_method",
        "_metrics",
        "_trusted_gateways",
    )

    def __init__(self, method: str, pipeline: Pipeline, authenticate: bool) -> None:
        self._method = method
        self._authenticate = authenticate
        self._authenticator = pipeline._authenticator
        self._trusted_gateways = pipeline._trusted_gateways
        self._access_log = pipeline._access_log
        self._level = logging.DEBUG if method in _QUIET_METHODS else logging.INFO
        self._metrics = metrics.RPC_CALLS.method(method)

    def begin(self, context: grpc.aio.ServicerContext) -> _State:
        """Reads the metadata once; sets the request id."""
        metadata: Any = context.invocation_metadata() or ()
        authorization: list[str] = []
        sent_id = None
        for key, value in metadata:
            if key == _AUTHORIZATION:
                if isinstance(value, str):
                    authorization.append(value)
            elif key == _REQUEST_ID:
                sent_id = str(value)
        request_id = logs.new_request_id() if sent_id is None else logs.accept_request_id(sent_id)
        return _State(metadata, authorization, logs.REQUEST_ID.set(request_id))

    async def admit(self, request: Any, state: _State, context: grpc.aio.ServicerContext) -> None:
        """Refuses what is not a request or too large, then authenticates the caller (unless
        anonymous). The caller's address is worked out only if its credentials need it (an
        application password is throttled per source)."""
        kind = type(request)
        if kind is _Undecodable:
            raise errors.bad_field("request", f"not a valid request: {request.reason}")
        if kind is TooLarge:
            raise too_large(request)
        if self._authenticate:
            principal = await self._authenticator.authenticate(
                state.authorization,
                lambda: client_address(context.peer(), state.metadata, self._trusted_gateways),
            )
            state.principal_token = authz.set_current_principal(principal)

    def end(self, state: _State) -> None:
        """Counts the call, writes its access line (or failure line), clears its context."""
        seconds = time.perf_counter() - state.started
        code = state.code
        self._metrics.record(code, seconds)
        method = self._method
        if self._access_log or code != "OK":
            access.log(
                self._level,
                "%s %s",
                method,
                code,
                extra={"grpc_method": method, "grpc_code": code, "duration_ms": seconds * 1e3},
            )
        if access.isEnabledFor(logging.DEBUG):
            # Credentials among the metadata are masked by the log redactor.
            access.debug("%s metadata", method, extra={"metadata": list(state.metadata)})
        if state.principal_token is not None:
            authz.reset_current_principal(state.principal_token)
        logs.REQUEST_ID.reset(state.request_id)


class _Registrar:
    """Stands in for the server while a servicer registers: wraps each handler first."""

    def __init__(self, server: grpc.aio.Server, pipeline: Pipeline) -> None:
        self._server = server
        self._pipeline = pipeline

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        # grpc >= 1.63 has it; the installed type stubs predate it.
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service_name,
            {
                name: self._pipeline.wrap(f"/{service_name}/{name}", handler)
                for name, handler in method_handlers.items()
            },
        )

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            [_PipelinedGenericHandler(handler, self._pipeline) for handler in handlers]
        )


class _PipelinedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose answers are behind the pipeline, wrapped once per method.

    Registered methods take precedence in the server, so for generated services this is
    only the fallback; it keeps a handler registered only this way behind the pipeline too.
    """

    def __init__(self, inner: grpc.GenericRpcHandler, pipeline: Pipeline) -> None:
        self._inner = inner
        self._pipeline = pipeline

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None  # not ours; an unknown name is never cached (clients choose them)
        return self._pipeline.wrap(handler_call_details.method, handler)


def _capped_stream(inner: Callable[..., Any], limits: Limits | None) -> Callable[..., Any]:
    """An anonymous bidirectional handler whose requests past the cap end the call, and
    which holds one of the process's stream slots while it runs."""

    async def checked(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            if type(request) is TooLarge:
                await abort_with(context, to_rpc_status(too_large(request)))
            if type(request) is _Undecodable:
                bad = errors.bad_field("request", f"not a valid request: {request.reason}")
                await abort_with(context, to_rpc_status(bad))
            yield request

    async def capped(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        if limits is None:
            async for response in inner(requests, context):
                yield response
            return
        try:
            limits.streams.take()
        except errors.TiersetError as error:
            await abort_with(context, to_rpc_status(error))
        try:
            async for response in inner(checked(requests, context), context):
                yield response
        finally:
            limits.streams.give_back()

    return capped


@types.coroutine
def _resumed(running: Any, waiting_on: Any) -> Any:
    """Finishes `running`, a coroutine already stepped once and now waiting on `waiting_on`,
    exactly as ``await`` would have: what the task sends or throws in goes to it."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            running.close()
            raise
        except BaseException as thrown:  # cancellation, mostly
            try:
                waiting_on = running.throw(thrown)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = running.send(sent)
            except StopIteration as done:
                return done.value


def _passing_bytes(
    serialize: Callable[[Any], bytes] | None,
) -> Callable[[Any], bytes] | None:
    """`serialize`, letting a response that is already bytes go out as it is.

    A handler that answers the same message many times (a cached read) serialises it once
    and returns the bytes; serialising it again on every call was the largest share of a
    cached read's cost that was tierset's own."""
    if serialize is None:
        return None

    def serialize_unless_bytes(response: Any) -> bytes:
        return response if response.__class__ is bytes else serialize(response)

    return serialize_unless_bytes


def _refused(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A streaming kind the pipeline does not cover: refused, never served unauthenticated."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication required")

    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        refuse, handler.request_deserializer, handler.response_serializer
    )
