"""What wraps every request: its id, one log line, and the last line of defence.

The envelope picks the request id (the client's ``X-Request-ID`` when sane,
else a new one), returns it as a response header, and makes it the
``request_id`` of every log line written while the request is served
(:data:`tierset.ops.logs.REQUEST_ID`, as the gRPC server does), ending with one
access line. Every response gets ``Cache-Control: no-store`` and
``X-Content-Type-Options: nosniff`` (:data:`errors.SECURITY_HEADERS`). It refuses
a path or query that is not UTF-8 once percent-decoded (the family's 400), and
turns anything that escapes a handler into the family's 500 — the stack trace
goes to the log, never to the client. A client that hangs up before its body is
read is not an error: it is logged at INFO and counted as 499 (the response
goes nowhere, but the log line and the metrics see its status).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote_to_bytes

import grpc
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierset.core.reasons import Reason
from tierset.gateway import errors
from tierset.gateway.calls import REQUEST_ID_HEADER, request_id_from
from tierset.ops import logs

log = logging.getLogger("tierset.gateway")


_SECURITY_HEADERS = [(name.encode(), value.encode()) for name, value in errors.SECURITY_HEADERS]


def _with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    return [*headers, *(pair for pair in _SECURITY_HEADERS if pair[0] not in present)]


def _is_utf8(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class RequestEnvelope:
    """ASGI middleware around the whole app (inside it, handlers raise; nothing escapes it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = request_id_from(header.decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = request_id
        context_token = logs.REQUEST_ID.set(request_id)
        path = scope["path"]
        family = errors.family_of(path)
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *_with_security_headers(list(message.get("headers", []))),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        try:
            raw_path = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
            if not (_is_utf8(raw_path) and _is_utf8(scope.get("query_string", b""))):
                failure = errors.Failure(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "The path or query is not valid UTF-8.",
                    Reason.BAD_PATH,
                    (("path", "The path or query is not valid UTF-8."),),
                )
                await errors.response(failure, family)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The connection may have cut the body off itself (connections.py, a body timeout):
            # it answered the client already and left its refusal here for the log.
            refused = scope["state"].get(errors.CONNECTION_REFUSAL)
            if refused is None:
                log.info(
                    "request %s: the client closed the connection before sending its body",
                    request_id,
                )
            else:
                log.info("request %s: %s", request_id, refused.message)
            if not status:  # sent to a closed connection: only the log and the metrics see it
                failure = refused or errors.Failure(
                    grpc.StatusCode.CANCELLED,
                    "The client closed the connection.",
                    Reason.CLIENT_CLOSED,
                )
                await errors.response(failure, family)(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s: unhandled error on %s %s", request_id, scope["method"], path)
            if status:  # the response has begun; all that is left is to drop the connection
                raise
            failure = errors.Failure(grpc.StatusCode.INTERNAL, "internal error", Reason.INTERNAL)
            await errors.response(failure, family)(scope, receive, send_with_id)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s -> %s in %.1f ms request_id=%s",
                scope["method"],
                path[:200],
                status,
                duration_ms,
                request_id,
                extra={
                    "http_method": scope["method"],
                    "http_path": path[:200],
                    "http_status": status,
                    "duration_ms": duration_ms,
                },
            )
            logs.REQUEST_ID.reset(context_token)
