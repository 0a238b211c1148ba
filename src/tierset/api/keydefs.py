"""gRPC adapter of the key definition RPCs of SettingsService (services/definitions.py).

Kept apart from api/settings.py so each group of methods changes on its own; the
settings servicer mixes this in.
"""

from __future__ import annotations

import grpc

from tierset.api.history import LEVEL_FROM_PROTO
from tierset.core import authz, errors
from tierset.core.values import LEVEL_TO_PROTO, TYPE_TO_PROTO, Level
from tierset.services.definitions import DefinitionInput, KeyDefinitionsService
from tierset.store.definitions import DefinitionRow
from tierset.v1 import settings_pb2


def definition_to_proto(row: DefinitionRow) -> settings_pb2.KeyDefinition:
    """A definition as the API shows it."""
    message = settings_pb2.KeyDefinition(
        key=row.key,
        type=TYPE_TO_PROTO[row.type],
        description=row.description,
        value_schema=row.value_schema or "",
        secret=row.secret,
        allowed_levels=[LEVEL_TO_PROTO[level] for level in row.allowed_levels],
        version=row.version,
        updated_by=row.updated_by,
    )
    if row.create_time is not None:
        message.create_time.FromDatetime(row.create_time)
    if row.update_time is not None:
        message.update_time.FromDatetime(row.update_time)
    return message


def _levels(numbers: list[int]) -> list[Level]:
    levels = []
    for index, number in enumerate(numbers):
        level = LEVEL_FROM_PROTO.get(number)
        if level is None:
            raise errors.bad_field(
                f"definition.allowed_levels[{index}]", "a level must be GLOBAL, ACCOUNT or RETAILER"
            )
        levels.append(level)
    return levels


def definition_input(request: settings_pb2.DefineKeyRequest) -> DefinitionInput:
    """The service's view of a DefineKey request (output-only fields ignored)."""
    given = request.definition
    return DefinitionInput(
        key=given.key,
        type_number=given.type,
        description=given.description,
        value_schema=given.value_schema,
        secret=given.secret,
        allowed_levels=_levels(list(given.allowed_levels)),
    )


class KeyDefinitionRpcs:
    """DefineKey, GetKeyDefinition, ListKeyDefinitions, DeleteKeyDefinition."""

    _key_definitions: KeyDefinitionsService

    async def DefineKey(
        self, request: settings_pb2.DefineKeyRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DefineKeyResponse:
        row, created = await self._key_definitions.define(
            authz.current_principal(), definition_input(request)
        )
        return settings_pb2.DefineKeyResponse(definition=definition_to_proto(row), created=created)

    async def GetKeyDefinition(
        self, request: settings_pb2.GetKeyDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetKeyDefinitionResponse:
        row = await self._key_definitions.get(authz.current_principal(), request.key)
        return settings_pb2.GetKeyDefinitionResponse(definition=definition_to_proto(row))

    async def ListKeyDefinitions(
        self, request: settings_pb2.ListKeyDefinitionsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ListKeyDefinitionsResponse:
        listed = await self._key_definitions.page(
            authz.current_principal(), request.page_size, request.page_token
        )
        return settings_pb2.ListKeyDefinitionsResponse(
            definitions=[definition_to_proto(row) for row in listed.definitions],
            next_page_token=listed.next_page_token,
        )

    async def DeleteKeyDefinition(
        self, request: settings_pb2.DeleteKeyDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteKeyDefinitionResponse:
        row = await self._key_definitions.delete(authz.current_principal(), request.key)
        return settings_pb2.DeleteKeyDefinitionResponse(definition=definition_to_proto(row))
