"""Small helpers shared by tests: building values, reading rich errors, waiting for lock
waiters."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tierset.v1 import settings_pb2


def json_value(value: Any) -> settings_pb2.SettingValue:
    """A SettingValue carrying `value` as JSON text."""
    return settings_pb2.SettingValue(json_value=json.dumps(value))


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status a failed call carried in its trailers."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no rich status on {error.code()}: {error.details()}")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of a failed call."""
    infos = [d for d in rich_status(error).details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, infos
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    return info


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of a failed call, field → description."""
    found: dict[str, str] = {}
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


__all__ = ["error_info", "field_violations", "json_value", "rich_status", "rpc_status"]


def basic_authorization(username: str, password: str) -> str:
    """An ``Authorization: Basic`` value, as a WordPress application-password client sends it."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def typed_value(setting_type: int, value: Any) -> settings_pb2.SettingValue:
    """`value` in the SettingValue field its type reads (JSON as JSON text)."""
    if setting_type == settings_pb2.SETTING_TYPE_INTEGER:
        return settings_pb2.SettingValue(integer_value=value)
    if setting_type == settings_pb2.SETTING_TYPE_BOOLEAN:
        return settings_pb2.SettingValue(boolean_value=value)
    if setting_type == settings_pb2.SETTING_TYPE_JSON:
        return json_value(value)
    return settings_pb2.SettingValue(string_value=value)


async def put_setting(
    stub: Any,
    scope: settings_pb2.Scope | None,
    key: str,
    setting_type: int,
    value: Any,
    metadata: Any = None,
) -> Any:
    """A write of `key` at `scope` (None: SetGlobal, as PLATFORM)."""
    setting_value = typed_value(setting_type, value)
    if scope is None:
        return await stub.SetGlobal(
            settings_pb2.SetGlobalRequest(key=key, type=setting_type, value=setting_value),
            metadata=metadata,
        )
    return await stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=scope, key=key, type=setting_type, value=setting_value
        ),
        metadata=metadata,
    )


async def define_key(
    stub: Any,
    key: str,
    setting_type: int = settings_pb2.SETTING_TYPE_INTEGER,
    *,
    schema: Any = None,
    secret: bool = False,
    levels: tuple[int, ...] = (),
    description: str = "",
    metadata: Any = None,
) -> settings_pb2.DefineKeyResponse:
    """DefineKey of `key` (every level allowed unless `levels`; `schema` as a JSON value)."""
    return await stub.DefineKey(
        settings_pb2.DefineKeyRequest(
            definition=settings_pb2.KeyDefinition(
                key=key,
                type=setting_type,
                description=description,
                value_schema="" if schema is None else json.dumps(schema),
                secret=secret,
                allowed_levels=levels,
            )
        ),
        metadata=metadata,
    )


async def until_waiting_for_locks(db: Any, count: int = 1) -> None:
    """Until `count` sessions of this database wait for a lock (at most 10 s): a writer
    queued for the revision counter, say."""
    for _ in range(1000):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} sessions never queued for a lock")
