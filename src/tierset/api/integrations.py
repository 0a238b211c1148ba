"""gRPC adapter of IntegrationService: FluentCart's "Set Global Settings".

The rules (the catalogue's checks, per-account storage, masked secrets) live in
:mod:`tierset.services.integrations`; this decodes the request's configuration
when the service asks for it and renders the answer as FluentCart shapes it.
"""

from __future__ import annotations

import grpc

from tierset.core import authz, integrations
from tierset.services import integrations as service
from tierset.store.database import Store
from tierset.v1 import integrations_pb2, integrations_pb2_grpc


class IntegrationService(integrations_pb2_grpc.IntegrationServiceServicer):
    """Saves and reads integration configuration, checked against the catalogue."""

    def __init__(self, store: Store) -> None:
        self._integrations = service.IntegrationService(store)

    async def SetGlobalSettings(
        self, request: integrations_pb2.SetGlobalSettingsRequest, context: grpc.aio.ServicerContext
    ) -> integrations_pb2.SetGlobalSettingsResponse:
        saved = await self._integrations.save(
            authz.current_principal(),
            request.integration_name,
            request.integration_id,
            lambda: integrations.decode_config(request.integration, request.data_type),
        )
        return integrations_pb2.SetGlobalSettingsResponse(
            message=integrations.SAVED,
            integration_id=saved.integration_id,
            integration_name=saved.entry.name,
            created=saved.created,
            feed_data=integrations_pb2.FeedData(
                meta_key=saved.entry.name,
                # What the caller sent (it knows those secrets already): a secret it left
                # masked stays masked here too.
                meta_value=integrations.to_struct(saved.config),
                object_type=integrations.OBJECT_TYPE,
            ),
        )

    async def GetGlobalSettings(
        self, request: integrations_pb2.GetGlobalSettingsRequest, context: grpc.aio.ServicerContext
    ) -> integrations_pb2.GetGlobalSettingsResponse:
        current = await self._integrations.get(authz.current_principal(), request.settings_key)
        return integrations_pb2.GetGlobalSettingsResponse(
            integration_id=current.integration_id,
            integration_name=current.entry.name,
            settings=integrations.to_struct(current.config),
        )
