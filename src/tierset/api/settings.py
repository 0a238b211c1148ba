"""gRPC handlers of SettingsService: proto in, rules and store, proto out."""

from __future__ import annotations

import contextlib

import grpc

from tierset.core import authz, errors
from tierset.core.authz import Permission
from tierset.core.values import (
    LEVEL_TO_PROTO,
    TYPE_TO_PROTO,
    Level,
    check_key,
    check_keys,
    decode_value,
    encode_value,
    setting_type_from_proto,
)
from tierset.ops.large_reads import off_loop
from tierset.store.database import Resolution, ScopeRef, Store, StoredSetting
from tierset.v1 import settings_pb2, settings_pb2_grpc

# Where a GetSettingsResponse is kept among a Resolution's renderings.
_RESPONSE = "grpc.GetSettingsResponse"


def scope_from_proto(scope: settings_pb2.Scope, field: str = "scope") -> ScopeRef:
    """The scope a request names, or INVALID_ARGUMENT when it names none or a bad id."""
    kind = scope.WhichOneof("kind")
    if kind is None:
        raise errors.bad_field(field, "scope must name an account_id or a retailer_id")
    scope_id = getattr(scope, kind)
    if scope_id <= 0:
        raise errors.bad_field(f"{field}.{kind}", f"{kind} must be a positive integer")
    level = Level.ACCOUNT if kind == "account_id" else Level.RETAILER
    return ScopeRef(level, scope_id)


def setting_to_proto(setting: StoredSetting) -> settings_pb2.Setting:
    """A resolved setting as the API shows it."""
    message = settings_pb2.Setting(
        id=setting.id,
        key=setting.key,
        type=TYPE_TO_PROTO[setting.type],
        value=encode_value(setting.type, setting.value),
        level=LEVEL_TO_PROTO[setting.level],
        version=setting.version,
    )
    message.update_time.FromDatetime(setting.update_time)
    return message


def _expected_version(
    request: settings_pb2.PutSettingRequest | settings_pb2.SetGlobalRequest,
) -> int | None:
    if not request.HasField("expected_version"):
        return None
    if request.expected_version < 0:
        raise errors.bad_field("expected_version", "expected_version must not be negative")
    return request.expected_version


def _response(resolution: Resolution) -> settings_pb2.GetSettingsResponse:
    return settings_pb2.GetSettingsResponse(
        settings=[setting_to_proto(s) for s in resolution.settings]
    )


class SettingsService(settings_pb2_grpc.SettingsServiceServicer):
    """Layered settings: reads resolve precedence, writes upsert one level."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def GetSettings(
        self, request: settings_pb2.GetSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetSettingsResponse:
        scope = scope_from_proto(request.scope)
        keys = check_keys(list(request.keys))
        # The lease keeps a large read's share of the read budget until its response is
        # built: that is another copy of its values.
        async with contextlib.AsyncExitStack() as lease:
            resolution = await authz.resolve_authorized(
                authz.current_principal(), scope, keys, self._store, lease
            )
            # Built once per resolution: a cached one is answered many times, and building
            # its Setting messages (typed values, timestamps) cost more than the rest of a
            # hit. grpc only reads the message to serialise it, so sharing it is safe.
            cached: settings_pb2.GetSettingsResponse | None = resolution.renderings.get(_RESPONSE)
            if cached is not None:
                return cached
            # Off the event loop when large: decoding megabytes would stall every call.
            response = await off_loop(resolution.read_bytes, lambda: _response(resolution))
            resolution.renderings[_RESPONSE] = response
            return response

    async def PutSetting(
        self, request: settings_pb2.PutSettingRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.PutSettingResponse:
        scope = scope_from_proto(request.scope)
        await authz.authorize_scope(
            authz.current_principal(), Permission.SETTINGS_EDIT, scope, self._store
        )
        key = check_key(request.key)
        setting_type = setting_type_from_proto(request.type)
        # Checking a megabyte of JSON takes a while: off the loop, like a large read.
        value_json = await off_loop(
            request.value.ByteSize(), lambda: decode_value(key, setting_type, request.value)
        )
        result = await self._store.write(
            scope, key, setting_type, value_json, _expected_version(request)
        )
        return settings_pb2.PutSettingResponse(
            id=result.id, version=result.version, created=result.created
        )

    async def SetGlobal(
        self, request: settings_pb2.SetGlobalRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.SetGlobalResponse:
        authz.require_platform(authz.current_principal())
        key = check_key(request.key)
        setting_type = setting_type_from_proto(request.type)
        # Checking a megabyte of JSON takes a while: off the loop, like a large read.
        value_json = await off_loop(
            request.value.ByteSize(), lambda: decode_value(key, setting_type, request.value)
        )
        result = await self._store.write(
            None, key, setting_type, value_json, _expected_version(request)
        )
        return settings_pb2.SetGlobalResponse(
            id=result.id, version=result.version, created=result.created
        )
