"""The gateway's HTTP connections: what one may cost before a handler runs.

uvicorn's httptools protocol holds a request's head (request line and headers) in
memory until it is complete, however large (httptools grows each header by
concatenation, so a long one costs CPU too), takes any number of headers, and
waits for ever for a head that never ends or a connection that never speaks.
:class:`GuardedHttpToolsProtocol` bounds each, per gateway process:

* a head's bytes are counted as they arrive, before the parser sees them: the
  byte after ``http_max_header_bytes`` is never parsed, and the request is a 431
  in its path family's shape; so is the header after ``http_max_headers``;
* a head must be complete ``http_header_timeout_seconds`` after the connection
  opened or the request's first byte arrived: a 408 if it had begun, else the
  connection is closed; between requests, uvicorn closes a keep-alive connection
  idle for ``http_keepalive_timeout_seconds``;
* a body must be complete ``http_body_timeout_seconds`` after its head: else a 408
  (``BODY_TIMEOUT``) in its path family's shape, the handler waiting for it is told the
  client is gone, and the connection is closed, so connections that announce a large
  Content-Length and trickle it cannot hold the gateway full; when the handler already
  answered (without reading the body) the connection is just closed;
* a connection past ``http_max_connections`` open ones is answered 503 with
  ``Retry-After`` and closed.

A refused connection gets its answer, then is half-closed and drained for at most
:data:`LINGER_SECONDS` (nothing read is kept), so a client still sending reads
the answer rather than a reset; then it is closed.

Counting is exact for a head that starts a read or follows another head. A head
that begins in the same read as the end of the previous request's body is charged
the whole rest of that read (an upper bound: it may be refused a little early,
never late).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tierset.core.reasons import Reason
from tierset.gateway import errors
from tierset.ops.config import Config

# How long a refused connection is drained before it is closed (see the module docstring).
# Long enough for a slow client to read the answer before a close with its data unread
# resets the connection (and drops the answer with it); the connection still counts
# towards the limit meanwhile, and nothing it sends is kept.
LINGER_SECONDS = 5.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds one gateway process puts on its connections (docs/configuration.md)."""

    max_header_bytes: int
    max_headers: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def of(cls, config: Config) -> ConnectionLimits:
        return cls(
            max_header_bytes=config.http_max_header_bytes,
            max_headers=config.http_max_headers,
            header_timeout_seconds=config.http_header_timeout_seconds,
            body_timeout_seconds=config.http_body_timeout_seconds,
            max_connections=config.http_max_connections,
        )


def _wire(response: Response, *extra: tuple[bytes, bytes]) -> bytes:
    """`response` as HTTP/1.1 bytes, closing the connection."""
    headers = [
        *response.raw_headers,
        *((name.encode(), value.encode()) for name, value in errors.SECURITY_HEADERS),
        *extra,
        (b"connection", b"close"),
    ]
    lines = [STATUS_LINE[response.status_code]]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    return b"".join([*lines, b"\r\n", bytes(response.body)])


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within :class:`ConnectionLimits`; see the module."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # of the head being received
        self._header_count = 0
        self._in_body = False  # between a head's end and its message's end
        self._began_in_feed = False
        self._body_in_feed = 0
        self._refusal: errors.Failure | None = None
        self._lingering = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            failure = errors.Failure(
                grpc.StatusCode.UNAVAILABLE,
                "The gateway holds as many connections as it may; retry shortly.",
                Reason.TOO_MANY_CONNECTIONS,
            )
            self._answer_and_close(failure, (b"retry-after", b"1"))
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self._lingering and not self.transport.is_closing():
            if self._in_body:
                piece, data = data, b""
            else:
                room = self.limits.max_header_bytes - self._head_bytes
                if room <= 0:
                    refusal = self._refuse_head(
                        Reason.HEADERS_TOO_LARGE,
                        "The request line and headers are longer than "
                        f"{self.limits.max_header_bytes} bytes.",
                    )
                    self._answer_and_close(refusal)
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            self._began_in_feed, self._body_in_feed = False, 0
            super().data_received(piece)
            if self._refusal is not None:
                self._answer_and_close(self._refusal)
                return
            if self._began_in_feed and not self._in_body:
                # A head began inside this piece: charge it all bytes that were not body.
                self._head_bytes = len(piece) - self._body_in_feed

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._header_count = 0, 0
        self._began_in_feed = True
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse_head(
                Reason.TOO_MANY_HEADERS,
                f"The request has more than {self.limits.max_headers} headers.",
            )
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refusal is not None:
            return  # never handed to the app
        self._cancel_head_timer()
        self._head_bytes = 0
        self._in_body = True
        super().on_headers_complete()
        self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        self._body_in_feed += len(body)
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_body_timer()
        if self._refusal is None:
            super().on_message_complete()

    # Refusing

    def _refuse_head(self, reason: str, description: str) -> errors.Failure:
        """Marks the head refused with a 431 (the first reason found wins)."""
        if self._refusal is None:
            self._refusal = errors.Failure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                description,
                reason,
                row=errors.HEADERS_TOO_LARGE,
            )
        return self._refusal

    def _answer_and_close(self, failure: errors.Failure, *extra: tuple[bytes, bytes]) -> None:
        """Answers `failure` in the family of the path so far, then lingers and closes."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        self._lingering = True
        path = getattr(self, "url", b"").decode("latin-1")
        self.transport.write(_wire(errors.response(failure, errors.family_of(path)), *extra))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    # The head timer

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout_seconds, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._lingering or self.transport.is_closing() or self._in_body:
            return
        if self._head_bytes == 0:  # nothing of a request yet: just an idle connection
            self.transport.close()
            return
        failure = errors.Failure(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"The request line and headers took longer than "
            f"{self.limits.header_timeout_seconds:g} s to arrive.",
            Reason.HEADER_TIMEOUT,
            row=errors.REQUEST_TIMEOUT,
        )
        self._answer_and_close(failure)

    # The body timer

    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(
            self.limits.body_timeout_seconds, self._body_timed_out
        )

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._lingering or self.transport.is_closing() or not self._in_body:
            return
        failure = errors.Failure(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"The request body took longer than {self.limits.body_timeout_seconds:g} s to arrive.",
            Reason.BODY_TIMEOUT,
            row=errors.REQUEST_TIMEOUT,
        )
        cycle = self.cycle
        if cycle is not None:
            # The handler waiting for the rest of the body hears the client is gone (its
            # receive() returns http.disconnect), whatever it sends is dropped, and the
            # envelope logs this refusal as the request's outcome.
            answered = cycle.response_started
            cycle.scope.setdefault("state", {})[errors.CONNECTION_REFUSAL] = failure
            cycle.disconnected = True
            cycle.message_event.set()
            if answered:  # it answered without the body: nothing more to say
                self.transport.close()
                return
        self._answer_and_close(failure)


def guarded_protocol(config: Config) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn should run for `config`'s limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": ConnectionLimits.of(config)},
    )
