"""Fluent Commerce's Settings API paths, translated to SettingsService.

``PUT /api/v4.1/settings/{account|retailer}/{id}/{key}`` with
``{"setting": {"key", "value", "type"}}`` → PutSetting → ``{"id": "<id>"}``.
``GET /api/v4.1/settings/{account|retailer}/{id}/{keys}`` (comma-separated)
→ GetSettings → ``{"settings": [{"key", "value", "type", "level"}]}``, each
value in its natural JSON form. Keys that exist at no level are left out; an
unknown account or retailer is the server's NOT_FOUND (404).

``DELETE /api/v4.1/settings/{account|retailer}/{id}/{key}`` → DeleteSetting: the
path's level loses its value and the key inherits again; the answer is GET's body
for that key (what the scope now inherits; an empty list when nothing) with its
ETag. A key not set at that level is 404, like an unknown scope.

A GET of one key answers an ``ETag`` (level and version of what it read); a PUT
takes ``If-Match``/``If-None-Match`` and answers the new ETag. How the headers
become expected_version, and why, is in ``preconditions``; a stale one is the
server's ABORTED (409).

The value is sent as JSON text whatever the type, and the type by name: the
server decides what is acceptable. The gateway only refuses what it cannot
translate (a non-numeric id, a body that is not a setting, a body key that
differs from the path key).
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tierset.core.reasons import Reason
from tierset.gateway import jsonbody, preconditions
from tierset.gateway.calls import backend, call_options
from tierset.gateway.errors import Failure, GatewayError, bad_request
from tierset.ops.large_reads import off_loop
from tierset.v1 import settings_pb2

log = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1
_TYPE_PREFIX = "SETTING_TYPE_"
# json.dumps(text, ensure_ascii=False), without the encoder json.dumps builds on every call
# it is given an option: a GET of ten keys encodes twenty strings.
_json_text = json.JSONEncoder(ensure_ascii=False).encode
# Each enum value's name as the JSON text a body carries ("STRING", "RETAILER"), made once.
_TYPE_JSON = {
    number: json.dumps(name.removeprefix(_TYPE_PREFIX))
    for name, number in settings_pb2.SettingType.items()
}
_LEVEL_JSON = {
    number: json.dumps(preconditions.level_name(cast(settings_pb2.SettingLevel, number)))
    for number in settings_pb2.SettingLevel.values()
}
# The level a PUT writes, by the scope field its path fills.
_PATH_LEVELS = {"account_id": "ACCOUNT", "retailer_id": "RETAILER"}


def _scope(request: Request, kind: str, param: str) -> settings_pb2.Scope:
    raw = request.path_params[param]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 0 < int(raw) <= INT64_MAX:
        raise bad_request(param, f"{param} must be a positive whole number.", Reason.BAD_PATH)
    return settings_pb2.Scope(**{kind: int(raw)})


SETTING_TYPES = {
    "LOB": settings_pb2.SETTING_TYPE_LOB,
    "STRING": settings_pb2.SETTING_TYPE_STRING,
    "INTEGER": settings_pb2.SETTING_TYPE_INTEGER,
    "BOOLEAN": settings_pb2.SETTING_TYPE_BOOLEAN,
    "JSON": settings_pb2.SETTING_TYPE_JSON,
}


def setting_type(name: Any) -> settings_pb2.SettingType:
    """The enum for a type name ("JSON"); anything else is UNSPECIFIED, which the server refuses."""
    if isinstance(name, str):
        return SETTING_TYPES.get(name, settings_pb2.SETTING_TYPE_UNSPECIFIED)
    return settings_pb2.SETTING_TYPE_UNSPECIFIED


def _setting_from_body(body: Any, path_key: str) -> dict[str, Any]:
    setting = body.get("setting") if isinstance(body, dict) else None
    if not isinstance(setting, dict):
        raise bad_request("setting", 'The body must be {"setting": {"key", "value", "type"}}.')
    if "key" in setting and setting["key"] != path_key:
        raise bad_request("setting.key", "setting.key must equal the key in the path.")
    return setting


async def _put(request: Request, kind: str, param: str) -> Response:
    scope = _scope(request, kind, param)
    key = request.path_params["key"]
    level = _PATH_LEVELS[kind]
    expected_version = preconditions.expected_version(request, level)
    body, size = await jsonbody.read_json_sized(
        request, backend(request).max_body_bytes, exact_numbers=True
    )
    setting = _setting_from_body(body, key)
    value = settings_pb2.SettingValue()
    if "value" in setting:
        try:
            # Off the event loop when large, as the parse was (jsonbody.read_json_sized).
            value.json_value = await off_loop(size, lambda: jsonbody.dumps_exact(setting["value"]))
        except RecursionError:
            raise bad_request("setting.value", "setting.value is nested too deeply.") from None
    message = settings_pb2.PutSettingRequest(
        scope=scope,
        key=key,
        type=setting_type(setting.get("type")),
        value=value,
        expected_version=expected_version,
    )
    reply = await backend(request).settings.PutSetting(message, **call_options(request, message))
    return JSONResponse(
        {"id": str(reply.id)}, headers={"ETag": preconditions.etag(level, reply.version)}
    )


def _value_json(setting: settings_pb2.Setting) -> str:
    """A setting's value as JSON text in its natural form, numbers exact."""
    kind = setting.value.WhichOneof("kind")
    if kind == "integer_value":
        return str(setting.value.integer_value)
    if kind == "boolean_value":
        return "true" if setting.value.boolean_value else "false"
    if kind == "string_value":
        return _json_text(setting.value.string_value)
    if kind == "json_value":
        text = setting.value.json_value
        try:
            json.loads(text)  # spliced into the body as is, so it must be one JSON value
        except ValueError:
            log.error("server sent invalid JSON for key %s", setting.key)
            raise GatewayError(
                Failure(grpc.StatusCode.INTERNAL, "internal error", Reason.BAD_UPSTREAM_VALUE)
            ) from None
        return text
    return "null"


def _entry_json(setting: settings_pb2.Setting) -> str:
    fields = (
        ("key", _json_text(setting.key)),
        ("value", _value_json(setting)),
        ("type", _TYPE_JSON[setting.type]),
        ("level", _LEVEL_JSON[setting.level]),
        # A secret the caller may not see (VIEWER): "value" is null and this says why.
        *((("masked", "true"),) if setting.value_masked else ()),
    )
    return "{" + ",".join(f'"{name}":{text}' for name, text in fields) + "}"


def _body_json(reply: settings_pb2.GetSettingsResponse) -> str:
    return '{"settings":[' + ",".join(_entry_json(s) for s in reply.settings) + "]}"


async def _get(request: Request, kind: str, param: str) -> Response:
    scope = _scope(request, kind, param)
    joined = request.path_params["key"]
    keys = joined.split(",") if joined else []
    message = settings_pb2.GetSettingsRequest(scope=scope, keys=keys)
    reply = await backend(request).settings.GetSettings(message, **call_options(request, message))
    # Built as text so JSON values keep every digit (a float round-trip would not); off
    # the event loop when large, so that other requests are not kept waiting meanwhile.
    body = await off_loop(reply.ByteSize(), lambda: _body_json(reply))
    # One key, one resource: its ETag conditions a later PUT. Several keys have none.
    headers = (
        {"ETag": preconditions.etag_of(reply.settings[0])}
        if len(keys) == 1 and reply.settings
        else {}
    )
    return Response(body, media_type="application/json", headers=headers)


async def _delete(request: Request, kind: str, param: str) -> Response:
    scope = _scope(request, kind, param)
    key = request.path_params["key"]
    expected_version = preconditions.delete_expected_version(request, _PATH_LEVELS[kind])
    message = settings_pb2.DeleteSettingRequest(
        scope=scope, key=key, expected_version=expected_version
    )
    reply = await backend(request).settings.DeleteSetting(message, **call_options(request, message))
    inherited = [reply.effective] if reply.HasField("effective") else []
    body = '{"settings":[' + ",".join(_entry_json(s) for s in inherited) + "]}"
    headers = {"ETag": preconditions.etag_of(reply.effective)} if inherited else {}
    return Response(body, media_type="application/json", headers=headers)


async def delete_account_setting(request: Request) -> Response:
    """DELETE /api/v4.1/settings/account/{accountId}/{key}"""
    return await _delete(request, "account_id", "accountId")


async def delete_retailer_setting(request: Request) -> Response:
    """DELETE /api/v4.1/settings/retailer/{retailerId}/{key}"""
    return await _delete(request, "retailer_id", "retailerId")


async def put_account_setting(request: Request) -> Response:
    """PUT /api/v4.1/settings/account/{accountId}/{key}"""
    return await _put(request, "account_id", "accountId")


async def put_retailer_setting(request: Request) -> Response:
    """PUT /api/v4.1/settings/retailer/{retailerId}/{key}"""
    return await _put(request, "retailer_id", "retailerId")


async def get_account_settings(request: Request) -> Response:
    """GET /api/v4.1/settings/account/{accountId}/{keys}"""
    return await _get(request, "account_id", "accountId")


async def get_retailer_settings(request: Request) -> Response:
    """GET /api/v4.1/settings/retailer/{retailerId}/{keys}"""
    return await _get(request, "retailer_id", "retailerId")
