"""gRPC adapter of SettingsService: proto in, the settings service, proto out.

The rules (validation, authorisation, precedence) live in
:mod:`tierset.services.settings`; this converts requests to its arguments and its
results to messages, and keeps each resolution's rendered response.
"""

from __future__ import annotations

import contextlib

import grpc

from tierset.core import authz, errors
from tierset.core.values import (
    LEVEL_TO_PROTO,
    TYPE_TO_PROTO,
    Level,
    SettingType,
    decode_value,
    encode_value,
)
from tierset.ops.large_reads import off_loop
from tierset.services import settings as service
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


def _incoming(value: settings_pb2.SettingValue) -> service.IncomingValue:
    def decode(key: str, setting_type: SettingType) -> str:
        return decode_value(key, setting_type, value)

    return service.IncomingValue(value.ByteSize(), decode)


def _expected_version(
    request: settings_pb2.PutSettingRequest | settings_pb2.SetGlobalRequest,
) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None


def _response(resolution: Resolution) -> settings_pb2.GetSettingsResponse:
    return settings_pb2.GetSettingsResponse(
        settings=[setting_to_proto(s) for s in resolution.settings]
    )


class SettingsService(settings_pb2_grpc.SettingsServiceServicer):
    """Layered settings: reads resolve precedence, writes upsert one level."""

    def __init__(self, store: Store) -> None:
        self._settings = service.SettingsService(store)

    async def GetSettings(
        self, request: settings_pb2.GetSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetSettingsResponse:
        scope = scope_from_proto(request.scope)
        # The lease keeps a large read's share of the read budget until its response is
        # built: that is another copy of its values.
        async with contextlib.AsyncExitStack() as lease:
            resolution = await self._settings.resolve(
                authz.current_principal(), scope, list(request.keys), lease
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
        result = await self._settings.put(
            authz.current_principal(),
            scope_from_proto(request.scope),
            request.key,
            request.type,
            _incoming(request.value),
            _expected_version(request),
        )
        return settings_pb2.PutSettingResponse(
            id=result.id, version=result.version, created=result.created
        )

    async def SetGlobal(
        self, request: settings_pb2.SetGlobalRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.SetGlobalResponse:
        result = await self._settings.set_global(
            authz.current_principal(),
            request.key,
            request.type,
            _incoming(request.value),
            _expected_version(request),
        )
        return settings_pb2.SetGlobalResponse(
            id=result.id, version=result.version, created=result.created
        )
