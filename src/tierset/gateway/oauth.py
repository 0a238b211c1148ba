"""``POST /oauth/token``, as Fluent Commerce serves it, translated to AuthService/CreateToken.

The OAuth 2.0 fields (``grant_type``, ``username``, ``password``,
``client_id``, ``client_secret``, ``scope``, ``refresh_token``) come
form-encoded in the body (RFC 6749 §4.3.2) or, as Fluent Commerce's own
documentation sends them, in the query string of the POST, or some in each; a field
sent more than once, in one of them or across both, is refused (RFC 6749 §3.2), as
taking either value would let the client and the server disagree. The client
authenticates with ``client_id`` and ``client_secret`` only: HTTP Basic client
authentication (§2.3.1) is not supported, so an ``invalid_client`` 401 carries no
``WWW-Authenticate`` challenge. The answer is RFC 6749 §5.1's ``{"access_token",
"token_type", "expires_in", "scope", "refresh_token"}``, never cached.

The server checks the grant; the gateway refuses only what it cannot translate
(a body that is not form-encoded UTF-8, a field sent twice). Errors are
rendered by ``errors.py`` in RFC 6749 §5.2's shape.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tierset.core.reasons import Reason
from tierset.gateway import jsonbody
from tierset.gateway.calls import backend, call_options
from tierset.gateway.errors import OAUTH_NO_STORE, GatewayError, bad_request
from tierset.v1 import auth_pb2

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
FIELDS = (
    "grant_type",
    "client_id",
    "client_secret",
    "username",
    "password",
    "scope",
    "refresh_token",
)
# Far more than a token request has; bounds the work a hostile form can cause.
_MAX_FORM_FIELDS = 50


def _invalid_request(field: str, description: str) -> GatewayError:
    return bad_request(field, description, Reason.INVALID_REQUEST)


def _fields(encoded: str, where: str) -> dict[str, str]:
    """The token request's fields in one form-encoded string; unknown fields are ignored."""
    try:
        pairs = parse_qsl(
            encoded,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise _invalid_request(where, f"The {where} is not form-encoded UTF-8.") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in FIELDS:
            continue  # RFC 6749 §3.2: unrecognized parameters are ignored
        if name in found:
            # RFC 6749 §3.2: a parameter must not be sent more than once.
            raise _invalid_request(name, f"{name} is sent more than once.")
        found[name] = value
    return found


async def _token_request(request: Request) -> auth_pb2.CreateTokenRequest:
    fields = _fields(request.url.query, "query")
    body = await jsonbody.read_limited(request, backend(request).max_body_bytes)
    if body:
        jsonbody.check_content_type(request, FORM_MEDIA_TYPE)
        try:
            text = body.decode("ascii")  # percent-encoded; raw bytes above 127 are not a form
        except UnicodeDecodeError:
            raise _invalid_request("body", "The body is not form-encoded UTF-8.") from None
        for name, value in _fields(text, "body").items():
            if name in fields:
                # RFC 6749 §3.2 across both sources, not only within one.
                raise _invalid_request(
                    name, f"{name} is sent more than once (in the query string and the body)."
                )
            fields[name] = value
    return auth_pb2.CreateTokenRequest(**fields)


async def token(request: Request) -> Response:
    """POST /oauth/token"""
    message = await _token_request(request)
    reply = await backend(request).auth.CreateToken(message, **call_options(request, message))
    return JSONResponse(
        {
            "access_token": reply.access_token,
            "token_type": reply.token_type,
            "expires_in": reply.expires_in,
            "scope": reply.scope,
            "refresh_token": reply.refresh_token,
        },
        headers=OAUTH_NO_STORE,
    )
