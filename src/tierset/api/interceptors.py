"""Server interceptors: the one place where failures become gRPC statuses.

Handlers raise :class:`~tierset.core.errors.TiersetError`; this turns it into a
status with details. A request that is not a valid message is INVALID_ARGUMENT.
A handler gets at most the call's remaining time (its deadline), so a database
call is cancelled, and its connection freed, when the client stops waiting:
DEADLINE_EXCEEDED. A lost, silent or overloaded database (connection refused
or lost, connect/acquire/command timeout, statement timeout, shutdown) becomes
UNAVAILABLE: nothing was written and the call may be retried. Anything else is
a bug: it is logged here with its stack trace and the client sees only
"internal error".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpc_status import rpc_status

from tierset.api.status import internal_status, to_rpc_status
from tierset.core import errors
from tierset.ops import metrics

log = logging.getLogger(__name__)

# Refusals counted in tierset_auth_failures_total by reason: bad or missing credentials
# (AuthInterceptor, the OAuth grants) and permissions the caller lacks (authz).
_AUTH_REFUSALS = frozenset({errors.Code.UNAUTHENTICATED, errors.Code.PERMISSION_DENIED})

# asyncpg's and the OS's ways of saying "the database is not there right now", by class:
# refused or lost connections (OSError, class 08, InterfaceError for a closed connection),
# a server shutting down or starting (57P01-57P03), out of connections (53300), a statement
# timeout (57014), TimeoutError from the connect, pool-acquire and command timeouts, and
# InternalClientError, which asyncpg raises when PostgreSQL ends a session mid-call
# (MagicStack/asyncpg#1069; the store discards that connection).
_DATABASE_DOWN = (
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    ConnectionError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes are not a valid message of its type."""

    reason: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wraps a request deserializer so bad bytes reach the handler instead of failing as UNKNOWN."""
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


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by unary handlers to gRPC statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            deadline = asyncio.timeout(context.time_remaining())
            try:
                if isinstance(request, _Undecodable):
                    raise errors.bad_field("request", f"not a valid request: {request.reason}")
                async with deadline:
                    return await inner(request, context)  # type: ignore[arg-type]
            except errors.TiersetError as error:
                if error.code in _AUTH_REFUSALS:
                    metrics.AUTH_FAILURES.labels(error.reason).inc()
                await abort_with(context, to_rpc_status(error))
            except _DATABASE_DOWN as error:
                if isinstance(error, TimeoutError) and deadline.expired():
                    # The client's deadline, not the database: it has stopped waiting.
                    await abort_with(context, to_rpc_status(errors.deadline_exceeded()))
                log.warning("%s: database unavailable: %s", method, type(error).__name__)
                await abort_with(
                    context,
                    to_rpc_status(errors.unavailable("the settings database is unavailable")),
                )
            except asyncpg.DataError as error:
                # SQLSTATE class 22: a value PostgreSQL cannot take (a NUL byte, a number out
                # of range). Values come from the request, so it is the caller's to fix; the
                # rules should have caught it first, hence the warning.
                log.warning("%s: data the database refused: %s", method, type(error).__name__)
                await abort_with(
                    context,
                    to_rpc_status(
                        errors.bad_field("request", "a value in the request cannot be stored")
                    ),
                )
            except asyncpg.PostgresError as error:
                # A statement the store should have prevented; the SQLSTATE helps, the text may
                # echo data, so only the class is logged.
                log.error(
                    "%s: database error %s (%s)",
                    method,
                    type(error).__name__,
                    getattr(error, "sqlstate", "?"),
                )
                await abort_with(context, internal_status())
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("%s: unhandled error", method)
                await abort_with(context, internal_status())

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
