"""Server interceptors: the one place where failures become gRPC statuses.

Handlers raise :class:`~tierset.errors.TiersetError`; this turns it into a
status with details. A lost database becomes UNAVAILABLE. Anything else is a
bug: it is logged here with its stack trace and the client sees only
"internal error".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from tierset import errors

log = logging.getLogger(__name__)

# asyncpg's and the OS's ways of saying "the database is not there right now".
_DATABASE_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
)


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
            try:
                return await inner(request, context)  # type: ignore[arg-type]
            except errors.TiersetError as error:
                await abort_with(context, errors.to_rpc_status(error))
            except _DATABASE_DOWN as error:
                log.warning("%s: database unavailable: %s", method, type(error).__name__)
                await abort_with(
                    context,
                    errors.to_rpc_status(
                        errors.unavailable("the settings database is unavailable")
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
                await abort_with(context, errors.internal_status())
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("%s: unhandled error", method)
                await abort_with(context, errors.internal_status())

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
