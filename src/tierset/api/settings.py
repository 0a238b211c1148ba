"""gRPC adapter of SettingsService: proto in, the settings service, proto out.

The rules (validation, authorisation, precedence) live in
:mod:`tierset.services.settings`; this converts requests to its arguments and its
results to messages, and keeps each resolution's rendered response.
"""

from __future__ import annotations

import contextlib

import grpc

from tierset.api import history as messages
from tierset.api.changes import ChangeRpcs, incoming_value
from tierset.api.history import scope_from_proto, setting_to_proto
from tierset.core import authz
from tierset.ops.large_reads import off_loop
from tierset.services import changes as changes_service
from tierset.services import history as history_service
from tierset.services import settings as service
from tierset.store.database import Resolution, Store
from tierset.v1 import settings_pb2, settings_pb2_grpc

# Where a GetSettingsResponse is kept among a Resolution's renderings.
_RESPONSE = "grpc.GetSettingsResponse.bytes"


def _expected_version(
    request: settings_pb2.PutSettingRequest | settings_pb2.SetGlobalRequest,
) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None


def _response(resolution: Resolution) -> settings_pb2.GetSettingsResponse:
    return settings_pb2.GetSettingsResponse(
        settings=[setting_to_proto(s) for s in resolution.settings], revision=resolution.revision
    )


def _optional(request: object, field: str) -> int | None:
    return getattr(request, field) if request.HasField(field) else None  # type: ignore[attr-defined]


class _HistoryRpcs:
    """The history RPCs (issue 12): deletes, listings, explanations, the log, restores.

    Kept apart from the read/write methods below so each group changes on its own.
    """

    _history: history_service.HistoryService

    async def DeleteSetting(
        self, request: settings_pb2.DeleteSettingRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteSettingResponse:
        result = await self._history.delete(
            authz.current_principal(),
            scope_from_proto(request.scope),
            request.key,
            _optional(request, "expected_version"),
            request.reason,
        )
        response = settings_pb2.DeleteSettingResponse(revision=result.revision)
        if result.effective is not None:
            response.effective.CopyFrom(setting_to_proto(result.effective))
        return response

    async def DeleteGlobal(
        self, request: settings_pb2.DeleteGlobalRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteGlobalResponse:
        result = await self._history.delete_global(
            authz.current_principal(),
            request.key,
            _optional(request, "expected_version"),
            request.reason,
        )
        return settings_pb2.DeleteGlobalResponse(revision=result.revision)

    async def ListSettings(
        self, request: settings_pb2.ListSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ListSettingsResponse:
        listed = await self._history.list_settings(
            authz.current_principal(),
            scope_from_proto(request.scope) if request.HasField("scope") else None,
            request.key_prefix,
            request.level_only,
            request.page_size,
            request.page_token,
            _optional(request, "at_revision"),
        )
        page = listed.page
        return await off_loop(
            sum(len(s.value) for s in page.settings),
            lambda: settings_pb2.ListSettingsResponse(
                settings=[setting_to_proto(s) for s in page.settings],
                next_page_token=listed.next_page_token,
                revision=page.revision,
            ),
        )

    async def ExplainSettings(
        self, request: settings_pb2.ExplainSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ExplainSettingsResponse:
        revision, explanations = await self._history.explain(
            authz.current_principal(), scope_from_proto(request.scope), list(request.keys)
        )
        return settings_pb2.ExplainSettingsResponse(
            keys=[messages.explanation_to_proto(e) for e in explanations], revision=revision
        )

    async def ListChanges(
        self, request: settings_pb2.ListChangesRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ListChangesResponse:
        scope = scope_from_proto(request.scope) if request.HasField("scope") else None
        listed = await self._history.changes(
            authz.current_principal(),
            messages.change_filter(request, scope),
            request.page_size,
            request.page_token,
        )
        page = listed.page
        return await off_loop(
            sum(len(c.old_value or "") + len(c.new_value or "") for c in page.changes),
            lambda: settings_pb2.ListChangesResponse(
                changes=[messages.change_to_proto(c) for c in page.changes],
                next_page_token=listed.next_page_token,
                revision=page.revision,
            ),
        )

    async def RestoreSettings(
        self, request: settings_pb2.RestoreSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.RestoreSettingsResponse:
        result = await self._history.restore(
            authz.current_principal(),
            messages.level_from_proto(request.level),
            scope_from_proto(request.scope) if request.HasField("scope") else None,
            list(request.keys),
            request.revision,
            request.reason,
        )
        return settings_pb2.RestoreSettingsResponse(
            revision=result.revision or 0, changed_keys=result.changed
        )


class SettingsService(ChangeRpcs, _HistoryRpcs, settings_pb2_grpc.SettingsServiceServicer):
    """Layered settings: reads resolve precedence, writes upsert one level."""

    def __init__(self, store: Store) -> None:
        self._settings = service.SettingsService(store)
        self._history = history_service.HistoryService(store)
        self._changes = changes_service.ChangesService(store, self._settings)

    async def GetSettings(
        self, request: settings_pb2.GetSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetSettingsResponse | bytes:
        scope = scope_from_proto(request.scope)
        if request.HasField("at_revision"):
            # A past read comes from the change log, never from (or into) the cache.
            past = await self._history.resolve_at(
                authz.current_principal(), scope, list(request.keys), request.at_revision
            )
            return await off_loop(past.read_bytes, lambda: _response(past))
        # The lease keeps a large read's share of the read budget until its response is
        # built: that is another copy of its values.
        async with contextlib.AsyncExitStack() as lease:
            resolution = await self._settings.resolve(
                authz.current_principal(), scope, list(request.keys), lease
            )
            # Built and serialised once per resolution: a cached one is answered many times,
            # and building its Setting messages (typed values, timestamps) and serialising
            # them cost more than the rest of a hit. The call pipeline sends bytes as they
            # are (api/pipeline.py `_passing_bytes`).
            cached: bytes | None = resolution.renderings.get(_RESPONSE)
            if cached is not None:
                return cached
            # Off the event loop when large: decoding megabytes would stall every call.
            response = await off_loop(
                resolution.read_bytes, lambda: _response(resolution).SerializeToString()
            )
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
            incoming_value(request.value),
            _expected_version(request),
            request.reason,
        )
        return settings_pb2.PutSettingResponse(
            id=result.id, version=result.version, created=result.created, revision=result.revision
        )

    async def SetGlobal(
        self, request: settings_pb2.SetGlobalRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.SetGlobalResponse:
        result = await self._settings.set_global(
            authz.current_principal(),
            request.key,
            request.type,
            incoming_value(request.value),
            _expected_version(request),
            request.reason,
        )
        return settings_pb2.SetGlobalResponse(
            id=result.id, version=result.version, created=result.created, revision=result.revision
        )
