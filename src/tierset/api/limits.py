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
  is taken once the call's request is checked and its caller authenticated, before its
  handler runs, and given back when the call ends, however it ends (completed, failed,
  cancelled, connection lost).
* **Connections.** A connection without calls is closed after
  ``grpc_max_connection_idle_seconds``, and any connection after
  ``grpc_max_connection_age_seconds`` (plus a grace for calls in flight; gRPC adds ±10 %
  jitter). One with calls but no traffic is pinged every ``grpc_keepalive_seconds`` and
  dropped when a ping goes unanswered for ``grpc_keepalive_timeout_seconds`` (a vanished
  peer). Clients may ping at most every ``grpc_min_client_ping_interval_seconds``, and
  never on a connection without calls: pings do not keep an idle connection open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    in force (the per-method request caps and the process stream cap are the call pipeline's)."""
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
class TooLarge:
    """Stands in for a request past its method's cap; its bytes are not kept."""

    size: int
    cap: int


def too_large(request: TooLarge) -> errors.TiersetError:
    """The refusal of a request past its method's cap."""
    message = f"the request has {request.size} bytes; this method takes at most {request.cap}"
    return errors.bad_field("request", message, reason=Reason.REQUEST_TOO_LARGE)


class StreamSlots:
    """This process's open server-streaming calls, counted against the cap.

    The event loop runs one call's code at a time, so a plain counter is exact.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> None:
        """Takes a slot, or raises RESOURCE_EXHAUSTED (TOO_MANY_STREAMS) when none is free."""
        if self.open >= self.limit:
            raise errors.resource_exhausted(
                f"this server already holds {self.limit} streaming calls, its limit; "
                "retry once some have ended",
                Reason.TOO_MANY_STREAMS,
            )
        self.open += 1

    def give_back(self) -> None:
        """Frees the slot of a call that has ended."""
        self.open -= 1


class Limits:
    """This process's limits as the call pipeline applies them, method by method."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.streams = StreamSlots(config.grpc_max_streaming_calls)

    def capped(
        self, method: str, deserialize: Callable[[bytes], Any] | None
    ) -> Callable[[bytes], Any] | None:
        """`method`'s request deserializer, refusing past its cap (as a :class:`TooLarge`)
        without parsing; `deserialize` itself when the method has no cap of its own."""
        cap = request_cap(method, self._config)
        if cap is None:
            return deserialize

        def parse(raw: bytes) -> Any:
            if len(raw) > cap:
                return TooLarge(len(raw), cap)
            return raw if deserialize is None else deserialize(raw)

        return parse
