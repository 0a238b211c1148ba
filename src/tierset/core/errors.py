"""One error vocabulary for every interface.

Rules raise a :class:`TiersetError` carrying a gRPC status code, a machine
reason and, for bad input, the fields that were wrong. :func:`to_rpc_status`
is the one place that turns it into a ``google.rpc.Status`` with exactly one
``ErrorInfo`` (and a ``BadRequest`` when fields are named); the REST gateway
reads those details back to build its documented bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "tierset.dev"

# A status travels in the response trailers, which gRPC caps at 16 KiB (and may refuse
# from 8 KiB). Errors can echo client input, so what a client sees is clipped (in UTF-8
# bytes) to stay far below that whatever the request held.
MAX_MESSAGE_BYTES = 300
MAX_FIELD_BYTES = 100
MAX_DESCRIPTION_BYTES = 200
MAX_VIOLATIONS = 10


@dataclass(frozen=True)
class FieldViolation:
    """One wrong field: its path in the request and what is wrong with it."""

    field: str
    description: str


@dataclass
class TiersetError(Exception):
    """A failure a client can act on; never carries a secret or a stack trace."""

    code: grpc.StatusCode
    reason: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def invalid_argument(
    message: str, violations: list[FieldViolation], reason: str = "INVALID_ARGUMENT"
) -> TiersetError:
    """Bad input: names every offending field."""
    return TiersetError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, violations)


def bad_field(field_path: str, description: str, reason: str = "INVALID_ARGUMENT") -> TiersetError:
    """Bad input in exactly one field; the message is the description itself."""
    return invalid_argument(description, [FieldViolation(field_path, description)], reason)


def not_found(message: str, reason: str, **metadata: str) -> TiersetError:
    """The named thing does not exist (or the caller may not know it does)."""
    return TiersetError(grpc.StatusCode.NOT_FOUND, reason, message, metadata=metadata)


def already_exists(message: str, reason: str, **metadata: str) -> TiersetError:
    """A create collided with something that exists."""
    return TiersetError(grpc.StatusCode.ALREADY_EXISTS, reason, message, metadata=metadata)


def aborted(message: str, reason: str, **metadata: str) -> TiersetError:
    """A conditional write lost to another writer; re-read and retry."""
    return TiersetError(grpc.StatusCode.ABORTED, reason, message, metadata=metadata)


def unavailable(message: str, reason: str = "BACKEND_UNAVAILABLE") -> TiersetError:
    """A dependency is down; the call may be retried."""
    return TiersetError(grpc.StatusCode.UNAVAILABLE, reason, message)


def resource_exhausted(message: str, reason: str) -> TiersetError:
    """A server-side limit is reached; the call may be retried once others have ended."""
    return TiersetError(grpc.StatusCode.RESOURCE_EXHAUSTED, reason, message)


def deadline_exceeded() -> TiersetError:
    """The caller's deadline passed before the work was done; it was abandoned."""
    return TiersetError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        "the call's deadline passed before it completed",
    )


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def clip(text: str, limit: int) -> str:
    """`text` as valid UTF-8 of at most `limit` bytes, with "..." when cut."""
    encoded = text.encode("utf-8", "replace")  # an unpaired surrogate becomes "?"
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def to_rpc_status(error: TiersetError) -> status_pb2.Status:
    """Builds the ``google.rpc.Status`` for an error: one ErrorInfo, plus BadRequest if any.

    Messages, fields and the number of violations are clipped (see ``MAX_*``) so the
    status always fits in the trailers.
    """
    info = error_details_pb2.ErrorInfo(
        reason=error.reason,
        domain=ERROR_DOMAIN,
        metadata={k: clip(v, MAX_FIELD_BYTES) for k, v in error.metadata.items()},
    )
    details = [_pack(info)]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=clip(v.field, MAX_FIELD_BYTES),
                    description=clip(v.description, MAX_DESCRIPTION_BYTES),
                )
                for v in error.violations[:MAX_VIOLATIONS]
            ]
        )
        details.append(_pack(bad_request))
    return status_pb2.Status(
        code=error.code.value[0], message=clip(error.message, MAX_MESSAGE_BYTES), details=details
    )


def internal_status() -> status_pb2.Status:
    """What a client sees of a bug: a fixed message, never the exception."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error", details=[_pack(info)]
    )
