"""Where a :class:`~tierset.core.errors.TiersetError` becomes a gRPC status: the one place.

The core and the services speak :class:`~tierset.core.errors.Code` (gRPC's canonical
numbers) so they need no grpc; this module maps a code to ``grpc.StatusCode`` and
builds the rich ``google.rpc.Status`` a client reads: exactly one ``ErrorInfo``
(reason from the catalogue, domain ``tierset.dev``) and, when fields are named, one
``BadRequest``. Messages, fields and the number of violations are clipped (the
``MAX_*`` of core.errors) so the status always fits in the trailers.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tierset.core.errors import (
    ERROR_DOMAIN,
    MAX_DESCRIPTION_BYTES,
    MAX_FIELD_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_VIOLATIONS,
    Code,
    TiersetError,
    clip,
)
from tierset.core.reasons import Reason

# By number: grpc.StatusCode's value is (number, name), and Code holds the same numbers.
_GRPC_CODES = {Code(status.value[0]): status for status in grpc.StatusCode}


def grpc_code(code: Code) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a tierset code."""
    return _GRPC_CODES[code]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_rpc_status(error: TiersetError) -> status_pb2.Status:
    """Builds the ``google.rpc.Status`` for an error: one ErrorInfo, plus BadRequest if any."""
    info = error_details_pb2.ErrorInfo(
        reason=str(error.reason),
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
        code=int(error.code), message=clip(error.message, MAX_MESSAGE_BYTES), details=details
    )


def internal_status() -> status_pb2.Status:
    """What a client sees of a bug: a fixed message, never the exception."""
    info = error_details_pb2.ErrorInfo(reason=str(Reason.INTERNAL), domain=ERROR_DOMAIN)
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error", details=[_pack(info)]
    )
