"""gRPC handlers of IntegrationService: FluentCart's "Set Global Settings".

"Global" means account-wide, as in a store: each account has its own
configuration per integration, and a caller only ever reaches its own
account's (reading them is management too: they hold API keys).
"""

from __future__ import annotations

import json

import grpc

from tierset.core import authz, errors, integrations
from tierset.core.authz import Permission, Principal
from tierset.store.database import Store
from tierset.v1 import integrations_pb2, integrations_pb2_grpc


def _caller_account(permission: Permission = Permission.INTEGRATIONS_MANAGE) -> int:
    """The account whose integration settings the caller manages: its own."""
    principal: Principal = authz.current_principal()
    authz.require(principal, permission, principal.account_id)
    return principal.account_id


class IntegrationService(integrations_pb2_grpc.IntegrationServiceServicer):
    """Saves and reads integration configuration, checked against the catalogue."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def SetGlobalSettings(
        self, request: integrations_pb2.SetGlobalSettingsRequest, context: grpc.aio.ServicerContext
    ) -> integrations_pb2.SetGlobalSettingsResponse:
        account_id = _caller_account()
        entry = integrations.lookup(request.integration_name)
        if request.integration_id < 0:
            raise errors.bad_field("integration_id", "integration_id must be 0 or a saved id")
        config = integrations.validate_config(
            entry, integrations.decode_config(request.integration, request.data_type)
        )
        to_store = config
        if integrations.sends_back_masks(entry, config):
            stored = await self._store.get_integration(account_id, entry.name)
            if stored is not None:
                to_store = integrations.keep_masked_secrets(
                    entry, config, json.loads(stored.config)
                )
        saved = await self._store.save_integration(
            account_id, entry.name, json.dumps(to_store), request.integration_id
        )
        return integrations_pb2.SetGlobalSettingsResponse(
            message=integrations.SAVED,
            integration_id=saved.id,
            integration_name=entry.name,
            created=saved.created,
            feed_data=integrations_pb2.FeedData(
                meta_key=entry.name,
                # What the caller sent (it knows those secrets already): a secret it left
                # masked stays masked here too.
                meta_value=integrations.to_struct(config),
                object_type=integrations.OBJECT_TYPE,
            ),
        )

    async def GetGlobalSettings(
        self, request: integrations_pb2.GetGlobalSettingsRequest, context: grpc.aio.ServicerContext
    ) -> integrations_pb2.GetGlobalSettingsResponse:
        account_id = _caller_account()
        entry = integrations.lookup(request.settings_key)
        saved = await self._store.get_integration(account_id, entry.name)
        config = entry.defaults() if saved is None else json.loads(saved.config)
        return integrations_pb2.GetGlobalSettingsResponse(
            integration_id=0 if saved is None else saved.id,
            integration_name=entry.name,
            settings=integrations.to_struct(integrations.masked(entry, config)),
        )
