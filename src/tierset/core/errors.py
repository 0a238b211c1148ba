"""One error vocabulary for every interface.

Rules raise a :class:`TiersetError` carrying a :class:`Code` (gRPC's canonical
codes, by number, so this module needs no grpc), a :class:`~tierset.core.reasons.Reason`
from the one catalogue and, for bad input, the fields that were wrong.
``tierset.api.status.to_rpc_status`` is the one place that turns it into a
``google.rpc.Status`` with exactly one ``ErrorInfo`` (and a ``BadRequest`` when
fields are named); the REST gateway reads those details back to build its
documented bodies, and the admin CLI prints the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, unique

from tierset.core.reasons import Reason

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


@unique
class Code(IntEnum):
    """The canonical status codes (google.rpc.Code), numbered as gRPC numbers them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass
class TiersetError(Exception):
    """A failure a client can act on; never carries a secret or a stack trace."""

    code: Code
    reason: Reason
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # By construction, only catalogued reasons leave: an unknown one fails here, at
        # its raise site, in the first test that reaches it (ValueError names it).
        self.reason = Reason(self.reason)

    def __str__(self) -> str:
        return self.message


def invalid_argument(
    message: str, violations: list[FieldViolation], reason: Reason = Reason.INVALID_ARGUMENT
) -> TiersetError:
    """Bad input: names every offending field."""
    return TiersetError(Code.INVALID_ARGUMENT, reason, message, violations)


def bad_field(
    field_path: str, description: str, reason: Reason = Reason.INVALID_ARGUMENT
) -> TiersetError:
    """Bad input in exactly one field; the message is the description itself."""
    return invalid_argument(description, [FieldViolation(field_path, description)], reason)


def not_found(message: str, reason: Reason, **metadata: str) -> TiersetError:
    """The named thing does not exist (or the caller may not know it does)."""
    return TiersetError(Code.NOT_FOUND, reason, message, metadata=metadata)


def already_exists(message: str, reason: Reason, **metadata: str) -> TiersetError:
    """A create collided with something that exists."""
    return TiersetError(Code.ALREADY_EXISTS, reason, message, metadata=metadata)


def aborted(message: str, reason: Reason, **metadata: str) -> TiersetError:
    """A conditional write lost to another writer; re-read and retry."""
    return TiersetError(Code.ABORTED, reason, message, metadata=metadata)


def failed_precondition(message: str, reason: Reason, **metadata: str) -> TiersetError:
    """The system is not in the state the call needs (e.g. history already compacted)."""
    return TiersetError(Code.FAILED_PRECONDITION, reason, message, metadata=metadata)


def out_of_range(field_path: str, description: str, reason: Reason) -> TiersetError:
    """A valid value past what exists yet (a revision after the current one)."""
    return TiersetError(
        Code.OUT_OF_RANGE, reason, description, [FieldViolation(field_path, description)]
    )


def unavailable(message: str, reason: Reason = Reason.BACKEND_UNAVAILABLE) -> TiersetError:
    """A dependency is down; the call may be retried."""
    return TiersetError(Code.UNAVAILABLE, reason, message)


def resource_exhausted(message: str, reason: Reason) -> TiersetError:
    """A server-side limit is reached; the call may be retried once others have ended."""
    return TiersetError(Code.RESOURCE_EXHAUSTED, reason, message)


def deadline_exceeded() -> TiersetError:
    """The caller's deadline passed before the work was done; it was abandoned."""
    return TiersetError(
        Code.DEADLINE_EXCEEDED,
        Reason.DEADLINE_EXCEEDED,
        "the call's deadline passed before it completed",
    )


def clip(text: str, limit: int) -> str:
    """`text` as valid UTF-8 of at most `limit` bytes, with "..." when cut."""
    encoded = text.encode("utf-8", "replace")  # an unpaired surrogate becomes "?"
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def at_index(error: TiersetError, index: int, field: str = "changes") -> TiersetError:
    """`error` as the failure of item `index` of a list (a changeset's changes): the
    message starts with ``changes[i]:``, the metadata holds ``index``, and wrong fields
    are named inside the item (``changes[i].key``)."""
    prefix = f"{field}[{index}]"
    if "index" in error.metadata:
        return error  # already placed
    error.message = f"{prefix}: {error.message}"
    error.metadata["index"] = str(index)
    error.violations = [
        v if v.field.startswith(prefix) else FieldViolation(f"{prefix}.{v.field}", v.description)
        for v in error.violations
    ]
    return error
