"""gRPC status → HTTP status and body, for each path family: the gateway's one error table.

Every failure the gateway answers with, whether the gRPC server returned it
or the gateway found the request malformed before calling, is a
:class:`Failure` (a gRPC code, a message, a reason and the wrong fields) and is
rendered here, so the two path families answer consistently:

* Fluent Commerce (``/api/...``): ``{"error": [{"code", "message"}], "message",
  "code"}`` with one entry per wrong field, else one entry for the reason;
* FluentCart (``/wp-json/...``): its documented 400 and 404 bodies, and
  WordPress's ``{"code", "message", "data": {"status"}}`` for everything else;
* the OAuth token endpoint (``/oauth/...``): RFC 6749 §5.2's ``{"error",
  "error_description"}``, the OAuth error code picked by the ErrorInfo reason.

A 401 carries ``WWW-Authenticate`` with the schemes that would have worked
(Bearer and Basic on the API paths; Basic, for the client, on the token endpoint).
A failure whose ErrorInfo says ``retry_after_seconds`` (a throttled sign-in, 429; no
room to check a password, 503) carries ``Retry-After`` with those seconds.

The reasons the gateway sends of its own are members of the one catalogue
(:class:`tierset.core.reasons.Reason`, documented in ``error_reason.proto``), like the
server's; the tables below are keyed by them.

Messages are shown only when they were written for clients (the server's
error vocabulary or the gateway's own); a status made by the gRPC transport
(a refused connection, say) shows the table's fixed text instead, so no
internal address or library message reaches a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import JSONResponse

from tierset.core.errors import ERROR_DOMAIN
from tierset.core.reasons import Reason

STATUS_DETAILS_KEY = "grpc-status-details-bin"

# FluentCart's own words for the bodies its reference documents.
FLUENTCART_VALIDATION_FAILED = "Validation Failed, Please fill up the required fields."
FLUENTCART_NOT_FOUND = "Integration not found"
WORDPRESS_FORBIDDEN = "Sorry, you are not allowed to do that."
WORDPRESS_NO_ROUTE = "No route was found matching the URL and request method."


class Family(Enum):
    """A group of paths sharing one documented error shape."""

    FLUENT_COMMERCE = "fluentcommerce"
    FLUENTCART = "fluentcart"
    OAUTH = "oauth"


def family_of(path: str) -> Family:
    """The family whose error shape a path answers with (FluentCart lives under /wp-json/)."""
    if path.startswith("/wp-json/"):
        return Family.FLUENTCART
    if path.startswith("/oauth/"):
        return Family.OAUTH
    return Family.FLUENT_COMMERCE


@dataclass(frozen=True)
class Row:
    """How one gRPC code is answered over HTTP."""

    http_status: int
    # Fluent Commerce's top-level "message"; also the text shown when the failure's own
    # message was not written for clients.
    title: str


@dataclass(frozen=True)
class Failure:
    """A failed request, as a gRPC status with its details."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    # (field, description) per wrong field, as google.rpc.BadRequest names them.
    violations: tuple[tuple[str, str], ...] = ()
    # False when the message came from the transport, not from code written for clients.
    trusted: bool = True
    # Whole seconds after which a retry may succeed (ErrorInfo `retry_after_seconds`).
    retry_after_seconds: int | None = None
    # The gateway's own refusals that HTTP has a status for and gRPC has not (413, 431,
    # 408) answer with this row instead of their code's: gRPC's RESOURCE_EXHAUSTED would
    # be a 429, which clients retry.
    row: Row | None = None


class GatewayError(Exception):
    """A request the gateway cannot translate; rendered like a server failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


# The rows of the gateway's own refusals (Failure.row), with RFC 9110's and RFC 6585's titles.
CONTENT_TOO_LARGE = Row(413, "Content Too Large")
HEADERS_TOO_LARGE = Row(431, "Request Header Fields Too Large")
REQUEST_TIMEOUT = Row(408, "Request Timeout")
# The request scope's state key of a refusal the connection answered itself while the
# handler was still waiting for the body (connections.py); the envelope logs it.
CONNECTION_REFUSAL = "connection_refusal"

# On every response: nothing the gateway answers (settings, integration secrets, tokens)
# may be kept by a cache, or be sniffed into something other than the declared type.
SECURITY_HEADERS = (("cache-control", "no-store"), ("x-content-type-options", "nosniff"))


def too_large(row: Row, field: str, description: str, reason: str) -> GatewayError:
    """A request the gateway refuses for its size, answered with `row` (413 or 431)."""
    return GatewayError(
        Failure(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            description,
            reason,
            ((field, description),),
            row=row,
        )
    )


def bad_request(field: str, description: str, reason: str = Reason.BAD_REQUEST) -> GatewayError:
    """A malformed request, naming the one thing that is wrong with it."""
    return GatewayError(
        Failure(grpc.StatusCode.INVALID_ARGUMENT, description, reason, ((field, description),))
    )


# The table. The Fluent Commerce reference lists 400, 401, 403, 404 and 500 with these
# titles; the other rows follow the usual gRPC/HTTP correspondence in the same shape.
STATUS_TABLE: dict[grpc.StatusCode, Row] = {
    # A failure claiming OK is a broken call, not a success.
    grpc.StatusCode.OK: Row(500, "Status 500 Error"),
    grpc.StatusCode.CANCELLED: Row(499, "Client Closed Request"),
    grpc.StatusCode.UNKNOWN: Row(500, "Status 500 Error"),
    grpc.StatusCode.INVALID_ARGUMENT: Row(400, "Bad Request"),
    grpc.StatusCode.DEADLINE_EXCEEDED: Row(504, "Gateway Timeout"),
    grpc.StatusCode.NOT_FOUND: Row(404, "Not Found"),
    grpc.StatusCode.ALREADY_EXISTS: Row(409, "Conflict"),
    grpc.StatusCode.PERMISSION_DENIED: Row(403, "Forbidden"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: Row(429, "Too Many Requests"),
    grpc.StatusCode.FAILED_PRECONDITION: Row(400, "Bad Request"),
    grpc.StatusCode.ABORTED: Row(409, "Conflict"),
    grpc.StatusCode.OUT_OF_RANGE: Row(400, "Bad Request"),
    grpc.StatusCode.UNIMPLEMENTED: Row(501, "Not Implemented"),
    grpc.StatusCode.INTERNAL: Row(500, "Status 500 Error"),
    grpc.StatusCode.UNAVAILABLE: Row(503, "Service Unavailable"),
    grpc.StatusCode.DATA_LOSS: Row(500, "Status 500 Error"),
    grpc.StatusCode.UNAUTHENTICATED: Row(401, "Unauthorized"),
}


def _message(failure: Failure, row: Row) -> str:
    return failure.message if failure.trusted and failure.message else row.title


def fluent_commerce_body(failure: Failure, row: Row) -> dict[str, Any]:
    """Fluent Commerce's failure body: one error per wrong field, else one for the reason."""
    entries = [{"code": field, "message": description} for field, description in failure.violations]
    if not entries:
        entries = [{"code": failure.reason or failure.code.name, "message": _message(failure, row)}]
    return {"error": entries, "message": row.title, "code": str(row.http_status)}


def _fluentcart_field(field: str) -> str:
    # The server names configuration fields inside the request ("integration.api_key");
    # FluentCart names them alone ("api_key").
    return field.removeprefix("integration.")


def wordpress_error(code: str, message: str, status: int) -> dict[str, Any]:
    """WordPress's WP_Error body, which FluentCart answers with for what it does not document."""
    return {"code": code, "message": message, "data": {"status": status}}


def fluentcart_body(failure: Failure, row: Row) -> dict[str, Any]:
    """FluentCart's documented bodies for 400, 404, 401 and 403; WordPress's for the rest."""
    status = row.http_status
    if status == 400:
        errors: dict[str, str] = {}
        for field, description in failure.violations:
            errors.setdefault(_fluentcart_field(field), description)
        if not errors:
            errors[failure.reason.lower() or "request"] = _message(failure, row)
        return {"message": FLUENTCART_VALIDATION_FAILED, "errors": errors}
    if status == 404:
        return {"message": FLUENTCART_NOT_FOUND}
    if status in (401, 403):
        return wordpress_error("rest_forbidden", WORDPRESS_FORBIDDEN, status)
    return wordpress_error(f"tierset_{failure.code.name.lower()}", _message(failure, row), status)


# RFC 6749 §5.1: token responses, and their errors, are never cached.
OAUTH_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# RFC 6749 §5.2: the token endpoint's error codes, by the ErrorInfo reason AuthService
# gives (its gRPC code alone cannot tell invalid_grant from invalid_client).
OAUTH_ERRORS: dict[str, tuple[int, str]] = {
    Reason.INVALID_GRANT: (400, "invalid_grant"),
    Reason.INVALID_CLIENT: (401, "invalid_client"),
    Reason.UNSUPPORTED_GRANT_TYPE: (400, "unsupported_grant_type"),
    Reason.INVALID_SCOPE: (400, "invalid_scope"),
    Reason.INVALID_REQUEST: (400, "invalid_request"),
    # Too many failed sign-ins. RFC 6749 has no code for it; "slow_down" is the registered
    # OAuth code (RFC 8628 §3.5) that tells a client to wait before asking again.
    Reason.AUTH_THROTTLED: (429, "slow_down"),
}


def oauth_error(failure: Failure, row: Row) -> tuple[int, dict[str, Any]]:
    """RFC 6749's error body; without a known reason, the table's status picks the code."""
    status, error = OAUTH_ERRORS.get(failure.reason, (row.http_status, ""))
    if not error:
        if status == 503:
            error = "temporarily_unavailable"
        elif status >= 500:
            error = "server_error"
        elif status == 401:
            error = "invalid_client"
        else:  # the gateway's own 400s (content type, size, encoding) and the rest
            error = "invalid_request"
    return status, {"error": error, "error_description": _message(failure, row)}


def render(failure: Failure, family: Family) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body answering `failure` on a path of `family`."""
    row = failure.row or STATUS_TABLE[failure.code]
    if family is Family.FLUENTCART:
        return row.http_status, fluentcart_body(failure, row)
    if family is Family.OAUTH:
        return oauth_error(failure, row)
    return row.http_status, fluent_commerce_body(failure, row)


REALM = "tierset"
# RFC 6750 §3.1: a Bearer challenge says why a token that was sent is refused
# (and says nothing when none was sent).
_BEARER_ERRORS: dict[str, str] = {
    Reason.CREDENTIALS_INVALID: "invalid_token",
    Reason.CREDENTIALS_EXPIRED: "invalid_token",
    Reason.CREDENTIALS_MALFORMED: "invalid_request",
}


def challenges(failure: Failure, family: Family) -> list[str]:
    """The ``WWW-Authenticate`` values of a 401: how the caller may authenticate."""
    if family is Family.OAUTH:
        # invalid_client: clients authenticate with client_id and client_secret fields only
        # (RFC 6749 §2.3.1's HTTP Basic is not supported), so no scheme is offered: a
        # `Basic` challenge would invite a client to send what is never read.
        return []
    bearer = f'Bearer realm="{REALM}"'
    if failure.reason in _BEARER_ERRORS:
        bearer += f', error="{_BEARER_ERRORS[failure.reason]}"'
    # Basic carries a WordPress-style application password (username:password).
    return [bearer, f'Basic realm="{REALM}", charset="UTF-8"']


def response(failure: Failure, family: Family) -> JSONResponse:
    """`render` as a response, with the headers its status calls for."""
    status, body = render(failure, family)
    reply = JSONResponse(body, status_code=status)
    if status == 401:
        for challenge in challenges(failure, family):
            reply.headers.append("WWW-Authenticate", challenge)
    if failure.retry_after_seconds is not None:
        reply.headers["Retry-After"] = str(failure.retry_after_seconds)
    if family is Family.OAUTH:
        reply.headers.update(OAUTH_NO_STORE)
    return reply


def from_rpc_error(error: grpc.aio.AioRpcError) -> Failure:
    """A failed call's status, with the ErrorInfo reason and BadRequest fields from its trailers."""
    rich = None
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            rich = status_pb2.Status.FromString(value)
    if rich is None:
        return Failure(error.code(), error.details() or "", trusted=False)
    reason, trusted, retry_after = "", False, None
    violations: list[tuple[str, str]] = []
    for detail in rich.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, trusted = info.reason, info.domain == ERROR_DOMAIN
            retry_after = (
                _seconds(info.metadata.get("retry_after_seconds", "")) if trusted else None
            )
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request_detail = error_details_pb2.BadRequest()
            detail.Unpack(bad_request_detail)
            violations.extend((v.field, v.description) for v in bad_request_detail.field_violations)
    return Failure(error.code(), rich.message, reason, tuple(violations), trusted, retry_after)


def _seconds(text: str) -> int | None:
    # Passed on only as the plain small number RFC 9110 allows in Retry-After.
    return int(text) if text.isdigit() and len(text) <= 6 else None


def route_not_found(family: Family) -> JSONResponse:
    """No route has this path: the family's 404 (WordPress's ``rest_no_route`` for FluentCart)."""
    if family is Family.FLUENTCART:
        return JSONResponse(wordpress_error("rest_no_route", WORDPRESS_NO_ROUTE, 404), 404)
    # The path is not echoed: a client's text in an answer is one more thing to escape.
    failure = Failure(
        grpc.StatusCode.NOT_FOUND, "No route matches this method and path.", Reason.NOT_FOUND
    )
    return response(failure, family)


def method_not_allowed(family: Family, allow: str) -> JSONResponse:
    """The path exists but not with this method: 405 in the family's shape, with Allow."""
    headers = {"Allow": allow}
    if family is Family.OAUTH:
        oauth_body = {"error": "invalid_request", "error_description": f"Allowed methods: {allow}"}
        return JSONResponse(oauth_body, 405, headers={**headers, **OAUTH_NO_STORE})
    if family is Family.FLUENTCART:
        return JSONResponse(
            wordpress_error("rest_no_route", WORDPRESS_NO_ROUTE, 405), 405, headers=headers
        )
    body = {
        "error": [{"code": Reason.METHOD_NOT_ALLOWED, "message": f"Allowed methods: {allow}"}],
        "message": "Method Not Allowed",
        "code": "405",
    }
    return JSONResponse(body, 405, headers=headers)
