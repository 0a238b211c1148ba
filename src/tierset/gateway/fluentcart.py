"""FluentCart's integration settings paths, translated to IntegrationService.

``POST /wp-json/fluent-cart/v2/integration/global-settings`` with
``{"integration_name", "integration", "integration_id", "data_type"}`` →
SetGlobalSettings → FluentCart's 200 body with ``feedData``.
``GET .../integration/global-settings?settings_key=<name>`` →
GetGlobalSettings → ``{"integration_id", "integration_name", "settings"}``.

``integration`` goes to the server unchanged, as a google.protobuf.Value (a
JSON string for ``stringify``, an object for ``object``); the server decodes
and validates it. An absent ``data_type`` is left UNSPECIFIED, so the server
infers it from what arrived, as FluentCart does. The gateway refuses only what
has no protobuf form: a field of the wrong JSON type, or a ``data_type`` other
than ``stringify`` or ``object``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tierset.gateway import jsonbody
from tierset.gateway.calls import backend, call_options
from tierset.gateway.errors import bad_request
from tierset.v1 import integrations_pb2

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DATA_TYPES = {
    "stringify": integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY,
    "object": integrations_pb2.INTEGRATION_DATA_TYPE_OBJECT,
}


def _integration_name(body: dict[str, Any]) -> str:
    name = body.get("integration_name", "")
    if not isinstance(name, str):
        raise bad_request("integration_name", "integration_name must be a string.")
    return name


def _integration_id(body: dict[str, Any]) -> int:
    raw = body.get("integration_id", 0)
    # WordPress clients send ids as numbers or as digit strings; both mean the same id.
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        raw = int(raw)
    if raw is None:
        raw = 0
    if isinstance(raw, bool) or not isinstance(raw, int) or not INT64_MIN <= raw <= INT64_MAX:
        raise bad_request("integration_id", "integration_id must be a whole number.")
    return raw


def _data_type(body: dict[str, Any]) -> integrations_pb2.IntegrationDataType:
    raw = body.get("data_type")
    if raw is None:
        return integrations_pb2.INTEGRATION_DATA_TYPE_UNSPECIFIED
    if not isinstance(raw, str) or raw not in DATA_TYPES:
        raise bad_request("data_type", "data_type must be stringify or object.")
    return DATA_TYPES[raw]


def _integration(body: dict[str, Any]) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if "integration" in body:
        try:
            json_format.ParseDict(body["integration"], value)
        except (json_format.Error, ValueError, ArithmeticError, RecursionError):
            raise bad_request(
                "integration", "integration must be a JSON string or object of plain values."
            ) from None
    return value


async def save_global_settings(request: Request) -> Response:
    """POST /wp-json/fluent-cart/v2/integration/global-settings"""
    body = await jsonbody.read_json(request, backend(request).max_body_bytes, exact_numbers=False)
    if not isinstance(body, dict):
        raise bad_request("body", "The request body must be a JSON object.")
    try:
        message = integrations_pb2.SetGlobalSettingsRequest(
            integration_name=_integration_name(body),
            integration=_integration(body),
            integration_id=_integration_id(body),
            data_type=_data_type(body),
        )
    except ValueError:  # text protobuf cannot carry (an unpaired surrogate)
        raise bad_request(
            "body", "The request body holds text that is not valid Unicode."
        ) from None
    reply = await backend(request).integrations.SetGlobalSettings(
        message, **call_options(request, message)
    )
    return JSONResponse(
        {
            "message": reply.message,
            "integration_id": reply.integration_id,
            "integration_name": reply.integration_name,
            "created": reply.created,
            "feedData": {
                "meta_key": reply.feed_data.meta_key,
                "meta_value": json_format.MessageToDict(reply.feed_data.meta_value),
                "object_type": reply.feed_data.object_type,
            },
        }
    )


async def get_global_settings(request: Request) -> Response:
    """GET /wp-json/fluent-cart/v2/integration/global-settings?settings_key=<name>"""
    name = request.query_params.get("settings_key", "")
    message = integrations_pb2.GetGlobalSettingsRequest(settings_key=name)
    reply = await backend(request).integrations.GetGlobalSettings(
        message, **call_options(request, message)
    )
    return JSONResponse(
        {
            "integration_id": reply.integration_id,
            "integration_name": reply.integration_name,
            "settings": json_format.MessageToDict(reply.settings),
        }
    )
