"""gRPC adapter of the lock and changeset RPCs: LockSetting, UnlockSetting, ApplyChanges.

The rules live in :mod:`tierset.services.changes`; this maps fields. A change's scope
unset is GLOBAL; a malformed scope of change i is INVALID_ARGUMENT naming
``changes[i].scope`` with metadata ``index`` like every other failure of that change.
"""

from __future__ import annotations

import grpc

from tierset.api.history import scope_from_proto, setting_to_proto
from tierset.core import authz, errors
from tierset.core.errors import TiersetError
from tierset.core.values import Level, SettingType, decode_value
from tierset.services import changes as service
from tierset.services.settings import IncomingValue
from tierset.store.changes import Applied, Operation, Outcome
from tierset.store.database import ScopeRef
from tierset.v1 import settings_pb2

_OPERATIONS = {
    settings_pb2.CHANGE_OPERATION_PUT: Operation.PUT,
    settings_pb2.CHANGE_OPERATION_DELETE: Operation.DELETE,
    settings_pb2.CHANGE_OPERATION_LOCK: Operation.LOCK,
    settings_pb2.CHANGE_OPERATION_UNLOCK: Operation.UNLOCK,
}
_OUTCOMES = {
    Outcome.CREATED: settings_pb2.CHANGE_OUTCOME_CREATED,
    Outcome.UPDATED: settings_pb2.CHANGE_OUTCOME_UPDATED,
    Outcome.DELETED: settings_pb2.CHANGE_OUTCOME_DELETED,
    Outcome.UNCHANGED: settings_pb2.CHANGE_OUTCOME_UNCHANGED,
    Outcome.LOCKED: settings_pb2.CHANGE_OUTCOME_LOCKED,
    Outcome.UNLOCKED: settings_pb2.CHANGE_OUTCOME_UNLOCKED,
}


def _scope(message: object, field: str = "scope") -> ScopeRef | None:
    if not message.HasField("scope"):  # type: ignore[attr-defined]
        return None
    return scope_from_proto(message.scope, field)  # type: ignore[attr-defined]


def _scope_proto(level: Level, scope_id: int) -> settings_pb2.Scope:
    # Removed overrides are ACCOUNT or RETAILER values, never GLOBAL ones.
    if level is Level.ACCOUNT:
        return settings_pb2.Scope(account_id=scope_id)
    return settings_pb2.Scope(retailer_id=scope_id)


def incoming_value(value: settings_pb2.SettingValue) -> IncomingValue:
    """A request's value, decoded (and checked) only once its key and type are known."""

    def decode(key: str, setting_type: SettingType) -> str:
        return decode_value(key, setting_type, value)

    return IncomingValue(value.ByteSize(), decode)


def _change(index: int, change: settings_pb2.SettingChange) -> service.IncomingChange:
    try:
        return service.IncomingChange(
            operation=_OPERATIONS.get(change.operation),
            scope=_scope(change),
            key=change.key,
            type_number=change.type,
            value=incoming_value(change.value) if change.HasField("value") else None,
            expected_version=(
                change.expected_version if change.HasField("expected_version") else None
            ),
            remove_overrides=change.remove_overrides,
        )
    except TiersetError as error:
        raise errors.at_index(error, index) from None


def _result(applied: Applied) -> settings_pb2.ChangeResult:
    return settings_pb2.ChangeResult(
        outcome=_OUTCOMES[applied.outcome],
        id=applied.setting_id,
        version=applied.version,
        removed_overrides=[_scope_proto(level, i) for level, i in applied.removed],
    )


def _pair_scope(retailer_id: int | None, account_id: int | None) -> settings_pb2.Scope | None:
    if retailer_id is not None:
        return settings_pb2.Scope(retailer_id=retailer_id)
    if account_id is not None:
        return settings_pb2.Scope(account_id=account_id)
    return None


class ChangeRpcs:
    """The lock and changeset RPCs of SettingsService (issue 14), mixed into its servicer."""

    _changes: service.ChangesService

    async def LockSetting(
        self, request: settings_pb2.LockSettingRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.LockSettingResponse:
        revision, applied = await self._changes.set_lock(
            authz.current_principal(),
            _scope(request),
            request.key,
            locking=True,
            remove_overrides=request.remove_overrides,
            expected_version=(
                request.expected_version if request.HasField("expected_version") else None
            ),
            reason=request.reason,
        )
        assert applied.setting is not None
        return settings_pb2.LockSettingResponse(
            revision=revision or 0,
            setting=setting_to_proto(applied.setting),
            removed_overrides=[_scope_proto(level, i) for level, i in applied.removed],
        )

    async def UnlockSetting(
        self, request: settings_pb2.UnlockSettingRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.UnlockSettingResponse:
        revision, applied = await self._changes.set_lock(
            authz.current_principal(),
            _scope(request),
            request.key,
            locking=False,
            remove_overrides=False,
            expected_version=(
                request.expected_version if request.HasField("expected_version") else None
            ),
            reason=request.reason,
        )
        assert applied.setting is not None
        return settings_pb2.UnlockSettingResponse(
            revision=revision or 0, setting=setting_to_proto(applied.setting)
        )

    async def ApplyChanges(
        self, request: settings_pb2.ApplyChangesRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ApplyChangesResponse:
        principal = authz.current_principal()
        # Too many is refused before a single change is converted.
        service.check_count(len(request.changes))
        result = await self._changes.apply(
            principal,
            [_change(i, c) for i, c in enumerate(request.changes)],
            request.reason,
            request.dry_run,
        )
        response = settings_pb2.ApplyChangesResponse(
            revision=result.revision or 0,
            results=[_result(a) for a in result.applied],
            effects_truncated=result.effects_truncated,
        )
        for effect in result.effects:
            item = response.effects.add(key=effect.key)
            scope = _pair_scope(effect.retailer_id, effect.account_id)
            if scope is not None:
                item.scope.CopyFrom(scope)
            if effect.before is not None:
                item.before.CopyFrom(setting_to_proto(effect.before))
            if effect.after is not None:
                item.after.CopyFrom(setting_to_proto(effect.after))
        return response
