"""The OpenAPI 3 document of exactly the paths the gateway serves, at /openapi.json.

Built from small helpers so each path reads as its documented contract;
``tests/test_gateway_openapi.py`` checks the paths and methods against the
routing table and runs schemathesis against a live gateway with it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tierset.gateway.errors import FLUENTCART_NOT_FOUND, FLUENTCART_VALIDATION_FAILED

JSON = "application/json"
Schema = dict[str, Any]

SETTING_TYPES = ["LOB", "STRING", "INTEGER", "BOOLEAN", "JSON"]
LEVELS = ["GLOBAL", "ACCOUNT", "RETAILER"]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(description: str, schema: Schema, **headers: Schema) -> Schema:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/XRequestId"}, **headers},
        "content": {JSON: {"schema": schema}},
    }


def _unauthorized(description: str, schema: Schema) -> Schema:
    """A 401: the body, plus the WWW-Authenticate challenges every 401 carries."""
    response = _response(description, schema)
    response["headers"] = {
        **response["headers"],
        "WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"},
    }
    return response


def _etag(required: bool, description: str) -> Schema:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", "pattern": '^"(GLOBAL|ACCOUNT|RETAILER)\\.[0-9]+"$'},
    }


def _precondition(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _fluent_commerce_errors() -> Schema:
    error = _ref("FluentCommerceError")
    return {
        "400": _response("Bad Request: a malformed request or a value the type refuses", error),
        "401": _unauthorized("Unauthorized: no, malformed, unknown or expired credentials", error),
        "403": _response("Forbidden", error),
        "404": _response(
            "Not Found: an unknown account or retailer (DELETE: or no value at that level)",
            error,
        ),
        "default": _response("Any other failure, same shape (see the README's table)", error),
    }


def _fluentcart_errors() -> Schema:
    return {
        "400": _response("Validation failed", _ref("FluentCartValidationError")),
        "401": _unauthorized("Not authenticated", _ref("WordPressError")),
        "403": _response("Not allowed", _ref("WordPressError")),
        "404": _response("Unknown integration name or id", _ref("FluentCartNotFound")),
        "default": _response("Any other failure", _ref("WordPressError")),
    }


def _scope_id(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "format": "int64", "minimum": 1},
    }


_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "PUT, DELETE: the setting's key. GET: one or more keys, comma-separated.",
    "schema": {"type": "string"},
}


def _settings_path(level: str, id_name: str) -> Schema:
    return {
        "parameters": [_scope_id(id_name, level), _KEY],
        "put": {
            "operationId": f"put{level.title()}Setting",
            "summary": f"Create or update a {level.upper()}-level setting.",
            "parameters": [
                _precondition(
                    "If-Match",
                    'An ETag from a GET of this key, e.g. "ACCOUNT.3": the PUT happens only '
                    f"if the {level.upper()}-level setting is still at that version or, for "
                    "an ETag of a higher (inherited) level, still does not exist. * is not "
                    "supported (400).",
                ),
                _precondition("If-None-Match", "* : create only (409 when it exists)."),
            ],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("SettingBody")}}},
            "responses": {
                "200": _response(
                    "The id of the setting created or updated",
                    _ref("SettingId"),
                    ETag=_etag(True, "Level and version of the setting as written."),
                ),
                "409": _response(
                    "Conflict: If-Match or If-None-Match no longer holds; nothing written",
                    _ref("FluentCommerceError"),
                ),
                **_fluent_commerce_errors(),
            },
        },
        "delete": {
            "operationId": f"delete{level.title()}Setting",
            "summary": f"Remove a {level.upper()}-level setting, so that the key inherits "
            "again (RETAILER from ACCOUNT, ACCOUNT from GLOBAL).",
            "parameters": [
                _precondition(
                    "If-Match",
                    'An ETag from a GET of this key, e.g. "ACCOUNT.3": the DELETE happens '
                    f"only if the {level.upper()}-level setting is still at that version "
                    "(409 otherwise). * is not supported (400).",
                ),
            ],
            "responses": {
                "200": _response(
                    "What the scope now inherits for the key (an empty list when nothing)",
                    _ref("Settings"),
                    ETag=_etag(False, "Level and version of the inherited setting, if any."),
                ),
                "409": _response(
                    "Conflict: If-Match no longer holds; nothing deleted",
                    _ref("FluentCommerceError"),
                ),
                **_fluent_commerce_errors(),
            },
        },
        "get": {
            "operationId": f"get{level.title()}Settings",
            "summary": f"The effective settings of the given keys for a {level}. Keys that "
            "exist at no level are left out.",
            "responses": {
                "200": _response(
                    "The settings found, in the order asked",
                    _ref("Settings"),
                    ETag=_etag(
                        False,
                        "Only when one key was asked for and found: the level and version "
                        "of the effective setting, for If-Match on a PUT.",
                    ),
                ),
                **_fluent_commerce_errors(),
            },
        },
    }


def _watch_path(level: str, id_name: str) -> Schema:
    return {
        "parameters": [
            _scope_id(id_name, level),
            {**_KEY, "description": "One or more keys to watch, comma-separated."},
        ],
        "get": {
            "operationId": f"watch{level.title()}Settings",
            "summary": f"Server-Sent Events of the effective settings of the keys for a "
            f"{level}: a snapshot, then one event per revision that changed them, progress "
            "when idle. Each event's id is its revision; send it back as Last-Event-ID to "
            "resume. The stream ends after TIERSET_GATEWAY_WATCH_SECONDS.",
            "parameters": [
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this revision (the last event id received).",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                }
            ],
            "responses": {
                "200": {
                    "description": "An event stream (snapshot, events, progress, error)",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_fluent_commerce_errors(),
            },
        },
    }


def _object(properties: Schema, required: list[str], closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": required}
    if closed:
        schema["additionalProperties"] = False
    return schema


_SCHEMAS: Schema = {
    "SettingBody": _object(
        {
            "setting": _object(
                {
                    "key": {"type": "string", "description": "Must equal the key in the path."},
                    "value": {"description": "Any JSON value the type accepts."},
                    "type": {"type": "string", "enum": SETTING_TYPES},
                },
                ["value", "type"],
                closed=False,
            )
        },
        ["setting"],
        closed=False,
    ),
    "SettingId": _object({"id": {"type": "string", "pattern": "^[0-9]+$"}}, ["id"]),
    "Settings": _object(
        {
            "settings": {
                "type": "array",
                "items": _object(
                    {
                        "key": {"type": "string"},
                        "value": {
                            "description": "The value in its natural JSON form; null when masked."
                        },
                        "type": {"type": "string", "enum": SETTING_TYPES},
                        "level": {"type": "string", "enum": LEVELS},
                        "masked": {
                            "type": "boolean",
                            "enum": [True],
                            "description": "Present (true) when the key is secret and the"
                            " caller may not see secrets (VIEWER); `value` is then null.",
                        },
                    },
                    ["key", "value", "type", "level"],
                ),
            }
        },
        ["settings"],
    ),
    "FluentCommerceError": _object(
        {
            "error": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {"code": {"type": "string"}, "message": {"type": "string"}},
                    ["code", "message"],
                ),
            },
            "message": {"type": "string"},
            "code": {"type": "string", "pattern": "^[0-9]{3}$"},
        },
        ["error", "message", "code"],
    ),
    "IntegrationBody": _object(
        {
            "integration_name": {"type": "string", "example": "webhook"},
            "integration": {
                "description": "A JSON string (data_type stringify) or an object (object).",
                "oneOf": [{"type": "string"}, {"type": "object"}],
            },
            "integration_id": {
                "type": "integer",
                "format": "int64",
                "description": "0 creates; an existing id updates.",
            },
            "data_type": {"type": "string", "enum": ["stringify", "object"]},
        },
        ["integration_name", "integration"],
        closed=False,
    ),
    "IntegrationSaved": _object(
        {
            "message": {"type": "string"},
            "integration_id": {"type": "integer"},
            "integration_name": {"type": "string"},
            "created": {"type": "boolean"},
            "feedData": _object(
                {
                    "meta_key": {"type": "string"},
                    "meta_value": {"type": "object"},
                    "object_type": {"type": "string", "enum": ["order_integration"]},
                },
                ["meta_key", "meta_value", "object_type"],
            ),
        },
        ["message", "integration_id", "integration_name", "created", "feedData"],
    ),
    "IntegrationSettings": _object(
        {
            "integration_id": {"type": "integer", "description": "0 when nothing is saved."},
            "integration_name": {"type": "string"},
            "settings": {"type": "object"},
        },
        ["integration_id", "integration_name", "settings"],
    ),
    "FluentCartValidationError": _object(
        {
            "message": {"type": "string", "enum": [FLUENTCART_VALIDATION_FAILED]},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        ["message", "errors"],
    ),
    "FluentCartNotFound": _object(
        {"message": {"type": "string", "enum": [FLUENTCART_NOT_FOUND]}}, ["message"]
    ),
    "WordPressError": _object(
        {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "data": _object({"status": {"type": "integer"}}, ["status"]),
        },
        ["code", "message", "data"],
    ),
    "Probe": _object({"status": {"type": "string"}}, ["status"]),
    "TokenRequest": _object(
        {
            "grant_type": {"type": "string", "enum": ["password", "refresh_token"]},
            "client_id": {"type": "string"},
            "client_secret": {"type": "string"},
            "username": {"type": "string", "description": "password grant"},
            "password": {"type": "string", "description": "password grant"},
            "scope": {"type": "string", "enum": ["api"]},
            "refresh_token": {"type": "string", "description": "refresh_token grant"},
        },
        [],
        closed=False,
    ),
    "Token": _object(
        {
            "access_token": {"type": "string"},
            "token_type": {"type": "string", "enum": ["bearer"]},
            "expires_in": {"type": "integer", "description": "Seconds the access token lasts."},
            "scope": {"type": "string", "enum": ["api"]},
            "refresh_token": {"type": "string", "description": "Exchangeable once."},
        },
        ["access_token", "token_type", "expires_in", "scope", "refresh_token"],
    ),
    "OAuthError": _object(
        {
            "error": {
                "type": "string",
                "enum": [
                    "invalid_request",
                    "invalid_client",
                    "invalid_grant",
                    "unsupported_grant_type",
                    "invalid_scope",
                    "temporarily_unavailable",
                    "server_error",
                ],
            },
            "error_description": {"type": "string"},
        },
        ["error", "error_description"],
    ),
}

_TOKEN_FIELDS = ["grant_type", "client_id", "client_secret", "username", "password", "scope"]

_TOKEN_PATH: Schema = {
    "post": {
        "operationId": "createToken",
        "summary": "OAuth 2.0 token endpoint: password grant, or exchange a refresh token once.",
        "description": "Fields form-encoded in the body (RFC 6749) or, as Fluent Commerce "
        "documents them, in the query string; a field sent in both is refused (400).",
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in [*_TOKEN_FIELDS, "refresh_token"]
        ],
        "requestBody": {
            "required": False,
            "content": {"application/x-www-form-urlencoded": {"schema": _ref("TokenRequest")}},
        },
        "responses": {
            "200": _response("The access and refresh tokens", _ref("Token")),
            "400": _response(
                "invalid_grant (bad credentials; a spent, expired or revoked refresh token), "
                "invalid_request, unsupported_grant_type or invalid_scope",
                _ref("OAuthError"),
            ),
            # No challenge: HTTP Basic client authentication is not supported (oauth.py).
            "401": _response("invalid_client: unknown client or wrong secret", _ref("OAuthError")),
            "503": _response("The gRPC server is unavailable", _ref("OAuthError")),
            "default": _response("Any other failure, same shape", _ref("OAuthError")),
        },
    }
}

_INTEGRATION_PATH: Schema = {
    "post": {
        "operationId": "setIntegrationGlobalSettings",
        "summary": "Save or update an integration's global settings.",
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("IntegrationBody")}}},
        "responses": {
            "200": _response("Settings saved successfully", _ref("IntegrationSaved")),
            **_fluentcart_errors(),
        },
    },
    "get": {
        "operationId": "getIntegrationGlobalSettings",
        "summary": "An integration's saved settings (its defaults when none are saved).",
        "parameters": [
            {
                "name": "settings_key",
                "in": "query",
                "required": True,
                "description": "The integration's name, e.g. webhook.",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": _response("The saved settings", _ref("IntegrationSettings")),
            **_fluentcart_errors(),
        },
    },
}


def _probe(summary: str, codes: dict[str, str]) -> Schema:
    return {
        "get": {
            "operationId": summary.split()[0].lower(),
            "summary": summary,
            "responses": {code: _response(text, _ref("Probe")) for code, text in codes.items()},
        }
    }


# How a caller authenticates (the gRPC server checks; the gateway passes the header on).
SECURITY_SCHEMES: Schema = {
    "oauth2": {
        "type": "oauth2",
        "description": "Fluent Commerce clients: the password grant at /oauth/token, then the "
        "access token as a Bearer.",
        "flows": {
            "password": {
                "tokenUrl": "/oauth/token",
                "refreshUrl": "/oauth/token",
                "scopes": {"api": "The settings and integration APIs."},
            }
        },
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /oauth/token, or an API token (tierset token).",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "username:application password, as WordPress clients send it.",
    },
}
# Any one of them will do.
_CREDENTIALS = [{"oauth2": ["api"]}, {"bearer": []}, {"basic": []}]
# Paths that take no credentials: the token endpoint authenticates with its form fields.
ANONYMOUS_PATHS = frozenset({"/oauth/token", "/healthz", "/readyz", "/openapi.json"})


def _secured(path: str, item: Schema) -> Schema:
    """`item` with each operation's ``security``: none on anonymous paths, else credentials."""
    security = [] if path in ANONYMOUS_PATHS else _CREDENTIALS
    return {
        method: operation if method == "parameters" else {**operation, "security": security}
        for method, operation in item.items()
    }


@cache
def document() -> Schema:
    """The OpenAPI document (built once)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "tierset REST gateway",
            "version": "1",
            "description": "Fluent Commerce's Settings API and FluentCart's integration "
            "global settings over tierset's gRPC API. Every response carries X-Request-ID; "
            "the Authorization header is passed to the gRPC server unchanged.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": SECURITY_SCHEMES,
            "headers": _HEADERS,
        },
    }


def _paths() -> Schema:
    return {
        path: _secured(path, item)
        for path, item in {
            "/api/v4.1/settings/account/{accountId}/{key}": _settings_path("account", "accountId"),
            "/api/v4.1/settings/retailer/{retailerId}/{key}": _settings_path(
                "retailer", "retailerId"
            ),
            "/api/v4.1/settings/account/{accountId}/{key}/watch": _watch_path(
                "account", "accountId"
            ),
            "/api/v4.1/settings/retailer/{retailerId}/{key}/watch": _watch_path(
                "retailer", "retailerId"
            ),
            "/wp-json/fluent-cart/v2/integration/global-settings": _INTEGRATION_PATH,
            "/oauth/token": _TOKEN_PATH,
            "/healthz": _probe("Healthz: the process answers.", {"200": "Alive"}),
            "/readyz": _probe(
                "Readyz: the gRPC server reports SERVING.",
                {"200": "Ready", "503": "The gRPC server is not serving"},
            ),
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {"200": _response("OpenAPI 3 document", {"type": "object"})},
                }
            },
        }.items()
    }


_HEADERS: Schema = {
    "XRequestId": {
        "description": "The request id: the client's X-Request-ID when it is 1-128 "
        "characters of A-Z a-z 0-9 . _ : -, else a new one. Sent to gRPC as "
        "x-request-id and logged.",
        "schema": {"type": "string"},
    },
    "WWWAuthenticate": {
        "description": "How to authenticate (RFC 7235): Bearer and Basic challenges "
        "on the API paths (none on the token endpoint).",
        "required": True,
        "schema": {"type": "string"},
    },
}


async def serve(request: Request) -> Response:
    """GET /openapi.json"""
    return JSONResponse(document())
