"""What every gRPC call leaves behind: its request id on each log line, metrics, an access line.

The interceptor runs outermost, so the request id is set before any other interceptor
logs, and the status it records is the final one (after ErrorInterceptor has mapped
exceptions to statuses).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tierset.ops import logs, metrics

log = logging.getLogger("tierset.access")

# Kubernetes probes call Check every few seconds: their access lines go at DEBUG.
_QUIET_METHODS = frozenset({"/grpc.health.v1.Health/Check"})


def _code_name(code: object) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    return grpc.StatusCode.OK.name if code is None else str(code)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Sets the call's request id, counts and times unary calls, and logs each one.

    With `access_log` off, successful calls get no line (a JSON line per call is a
    measurable share of a cached read; see the README's Performance section); failed
    calls are logged either way, and every other line keeps its request id.
    """

    def __init__(self, access_log: bool = True) -> None:
        self._access_log = access_log

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streams (reflection, health Watch) pass through unobserved
        inner = handler.unary_unary
        method = handler_call_details.method
        access_log = self._access_log

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = tuple(context.invocation_metadata() or ())
            sent_id = next((str(v) for k, v in metadata if k == logs.REQUEST_ID_HEADER), None)
            token = logs.REQUEST_ID.set(logs.accept_request_id(sent_id))
            started = time.perf_counter()
            code: object = None
            try:
                response = await inner(request, context)  # type: ignore[arg-type]
                code = context.code()
                return response
            except grpc.aio.AbortError:
                code = context.code()
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = grpc.StatusCode.UNKNOWN
                raise
            finally:
                seconds = time.perf_counter() - started
                name = _code_name(code)
                metrics.observe_rpc(method, name, seconds)
                if access_log or name != "OK":
                    level = logging.DEBUG if method in _QUIET_METHODS else logging.INFO
                    log.log(
                        level,
                        "%s %s",
                        method,
                        name,
                        extra={
                            "grpc_method": method,
                            "grpc_code": name,
                            "duration_ms": seconds * 1e3,
                        },
                    )
                if log.isEnabledFor(logging.DEBUG):
                    # Credentials among the metadata are masked by the log redactor.
                    log.debug("%s metadata", method, extra={"metadata": list(metadata)})
                logs.REQUEST_ID.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
