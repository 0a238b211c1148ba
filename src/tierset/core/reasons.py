"""The one catalogue of error reasons: every ``ErrorInfo.reason`` tierset sends.

A reason is the machine-readable half of an error (the gRPC code is the coarse
half): the server puts it in the status's one ``ErrorInfo`` (domain
``tierset.dev``), the REST gateway picks bodies and OAuth error codes by it and
sends its own refusals with one, and the Fluent Commerce bodies show it as
``code``. Clients read it from the proto enum ``tierset.v1.ErrorReason``
(``protos/tierset/v1/error_reason.proto``), which documents each value: the status
it comes with, what it means and what a client should do.

Invariants (``tests/test_reasons.py``): this enum and the proto enum hold exactly
the same names (the proto adds ``ERROR_REASON_UNSPECIFIED``); each value is its own
name, so the wire strings are the names; and no code in ``src/`` raises a reason
that is not a member of it. A reason is never renamed: clients match on it.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class Reason(StrEnum):
    """An ``ErrorInfo.reason``; the value is the wire string (documented in the proto)."""

    # Bad input (INVALID_ARGUMENT).
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    READ_TOO_LARGE = "READ_TOO_LARGE"
    INTEGRATION_VALIDATION_FAILED = "INTEGRATION_VALIDATION_FAILED"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # noqa: S105 - a reason, not a secret
    FUTURE_REVISION = "FUTURE_REVISION"  # OUT_OF_RANGE
    # Credentials and permissions (UNAUTHENTICATED, PERMISSION_DENIED).
    CREDENTIALS_MISSING = "CREDENTIALS_MISSING"
    CREDENTIALS_MALFORMED = "CREDENTIALS_MALFORMED"
    CREDENTIALS_INVALID = "CREDENTIALS_INVALID"
    CREDENTIALS_EXPIRED = "CREDENTIALS_EXPIRED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    # The OAuth token endpoint (AuthService/CreateToken), named as RFC 6749 §5.2 names them.
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_GRANT = "INVALID_GRANT"
    INVALID_CLIENT = "INVALID_CLIENT"
    UNSUPPORTED_GRANT_TYPE = "UNSUPPORTED_GRANT_TYPE"
    INVALID_SCOPE = "INVALID_SCOPE"
    AUTH_THROTTLED = "AUTH_THROTTLED"
    PASSWORD_HASHING_BUSY = "PASSWORD_HASHING_BUSY"  # noqa: S105 - a reason, not a secret
    # What does not exist (NOT_FOUND) or already does (ALREADY_EXISTS), and lost races.
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    RETAILER_NOT_FOUND = "RETAILER_NOT_FOUND"
    INTEGRATION_NOT_FOUND = "INTEGRATION_NOT_FOUND"
    HEALTH_SERVICE_UNKNOWN = "HEALTH_SERVICE_UNKNOWN"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    API_TOKEN_NOT_FOUND = "API_TOKEN_NOT_FOUND"  # noqa: S105 - a reason
    APP_PASSWORD_NOT_FOUND = "APP_PASSWORD_NOT_FOUND"  # noqa: S105 - a reason
    SETTING_NOT_FOUND = "SETTING_NOT_FOUND"
    CLIENT_NOT_FOUND = "CLIENT_NOT_FOUND"
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"
    RETAILER_EXISTS = "RETAILER_EXISTS"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    CLIENT_EXISTS = "CLIENT_EXISTS"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    WRITE_CONTENDED = "WRITE_CONTENDED"
    # Locks (FAILED_PRECONDITION): an override of a locked value, a lock over overrides.
    KEY_LOCKED = "KEY_LOCKED"
    KEY_OVERRIDDEN = "KEY_OVERRIDDEN"
    # History the change log no longer holds (FAILED_PRECONDITION).
    REVISION_COMPACTED = "REVISION_COMPACTED"
    # A watcher that read too slowly (ABORTED): resume from the revision in metadata.
    WATCH_OVERFLOW = "WATCH_OVERFLOW"
    # The server's limits and health (RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED).
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    READS_OVERLOADED = "READS_OVERLOADED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"
    # The REST gateway's own refusals, before or instead of a gRPC call.
    BAD_REQUEST = "BAD_REQUEST"
    BAD_PATH = "BAD_PATH"
    BAD_HEADER = "BAD_HEADER"
    BAD_PRECONDITION = "BAD_PRECONDITION"
    MALFORMED_JSON = "MALFORMED_JSON"
    DUPLICATE_MEMBER = "DUPLICATE_MEMBER"
    NUMBER_OUT_OF_RANGE = "NUMBER_OUT_OF_RANGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    TOO_MANY_HEADERS = "TOO_MANY_HEADERS"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    HEADER_TIMEOUT = "HEADER_TIMEOUT"
    BODY_TIMEOUT = "BODY_TIMEOUT"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CLIENT_CLOSED = "CLIENT_CLOSED"
    BAD_UPSTREAM_VALUE = "BAD_UPSTREAM_VALUE"
