"""Settings: resolved reads for a scope, and writes of one level.

Reads: a caller confined to its account resolves with that account named, so
the store answers another account's scope exactly as it answers a missing one
(NOT_FOUND, the same statement, nothing cached) and both become the same
PERMISSION_DENIED: neither the answer nor the work done tells them apart. The
owner the statement reports is checked again before anything leaves, and a
large read is fetched, or refused for its size, only after that check.

Writes: the scope is authorised before the key, the type and the value are
looked at, so a caller without the permission learns nothing about what it
sent; a large value is checked off the event loop. Every write is logged with the
caller and the call's request id (services.history.actor_of) and the caller's reason.
Every put is checked against the key definitions and the key's type at the other
levels (services.keydefs), and a secret value is masked for a caller who may not see it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tierset.core import authz, errors
from tierset.core.authz import Permission, Principal
from tierset.core.values import Level, SettingType, check_key, check_keys, setting_type_from_proto
from tierset.ops.large_reads import Lease, off_loop
from tierset.services.history import actor_of, check_reason
from tierset.services.keydefs import (
    Definitions,
    KeyRules,
    masking_for,
    may_see_secrets,
    type_errors_for,
)
from tierset.services.scopes import authorize_scope
from tierset.store.database import Resolution, ScopeRef, Store, WriteResult
from tierset.store.definitions import DefinitionStore

T = TypeVar("T")


@dataclass(frozen=True)
class IncomingValue:
    """A value as an adapter received it: checked only once its key and type are known.

    `decode` returns the JSON text to store, or raises INVALID_ARGUMENT naming the
    field; `size` (bytes) decides whether that runs off the event loop.
    """

    size: int
    decode: Callable[[str, SettingType], str]


@dataclass(frozen=True)
class PreparedPut:
    """A put's key, type and value once checked: what the store writes."""

    key: str
    setting_type: SettingType
    value_json: str


def _expected_version(expected_version: int | None) -> int | None:
    if expected_version is not None and expected_version < 0:
        raise errors.bad_field("expected_version", "expected_version must not be negative")
    return expected_version


class SettingsService:
    """Layered settings: reads resolve precedence, writes upsert one level."""

    def __init__(self, store: Store, definitions: Definitions | None = None) -> None:
        self._store = store
        self._definitions = definitions or Definitions(DefinitionStore.sharing(store))

    async def resolve(
        self,
        principal: Principal,
        scope: ScopeRef,
        keys: list[str],
        lease: Lease | None = None,
    ) -> Resolution:
        """The settings of `keys` for `scope`, returned only if the caller may view them.

        `lease` holds a large read's share of the read budget (see Store.resolve)
        until the caller has built its answer.
        """
        keys = check_keys(keys)
        if Permission.SETTINGS_VIEW not in principal.permissions:
            raise authz.denied(Permission.SETTINGS_VIEW)
        if scope.level is Level.ACCOUNT:
            authz.require(principal, Permission.SETTINGS_VIEW, scope.id)
        visible_to = None if principal.acts_on_any_account else principal.account_id
        try:
            resolution = await self._store.resolve(
                scope,
                keys,
                visible_to,
                lambda owner: authz.require(principal, Permission.SETTINGS_VIEW, owner),
                lease,
            )
        except errors.TiersetError as error:
            if error.code is errors.Code.NOT_FOUND:
                authz.require(principal, Permission.SETTINGS_VIEW, None)
            raise
        authz.require(principal, Permission.SETTINGS_VIEW, resolution.account_id)
        if may_see_secrets(principal):
            return resolution
        return (await masking_for(principal, self._definitions)).resolution(resolution)

    async def put(
        self,
        principal: Principal,
        scope: ScopeRef,
        key: str,
        type_number: int,
        value: IncomingValue,
        expected_version: int | None,
        reason: str = "",
    ) -> WriteResult:
        """Writes `key` at `scope` (ACCOUNT or RETAILER), if the caller may edit it."""
        await authorize_scope(principal, Permission.SETTINGS_EDIT, scope, self._store)
        return await self._write(
            principal, scope, key, type_number, value, expected_version, reason
        )

    async def set_global(
        self,
        principal: Principal,
        key: str,
        type_number: int,
        value: IncomingValue,
        expected_version: int | None,
        reason: str = "",
    ) -> WriteResult:
        """Writes the platform default of `key`; needs PLATFORM."""
        authz.require_platform(principal)
        return await self._write(principal, None, key, type_number, value, expected_version, reason)

    async def _write(
        self,
        principal: Principal,
        scope: ScopeRef | None,
        key: str,
        type_number: int,
        value: IncomingValue,
        expected_version: int | None,
        reason: str,
    ) -> WriteResult:
        reason = check_reason(reason)
        prepared = await self.prepare_put(key, type_number, value)
        level = Level.GLOBAL if scope is None else scope.level
        expected = _expected_version(expected_version)
        actor = actor_of(principal)

        async def write(rules: KeyRules) -> WriteResult:
            await self.check_definition(rules, level, prepared, value.size)
            return await self._store.write(
                scope,
                prepared.key,
                prepared.setting_type,
                prepared.value_json,
                expected,
                actor,
                reason,
                rules.version,
            )

        return await self.under_definitions(principal, write)

    @staticmethod
    async def prepare_put(key: str, type_number: int, value: IncomingValue) -> PreparedPut:
        """THE check of one put's key, type and value, for a single
        put and for every put of a changeset (services.changes) alike, so a rule added
        here holds for both. The caller has authorised the scope already. What must be
        checked against the stored state, race-free, is the store's, under the revision
        counter (locks: migration 0008's tierset_lock_above; one type per key: 0007's
        tierset_check_key_type; both called by both put statements). The key
        definitions are checked by :meth:`check_definition`, inside
        :meth:`under_definitions`."""
        key = check_key(key)
        setting_type = setting_type_from_proto(type_number)
        # Checking a megabyte of JSON takes a while: off the loop, like a large read.
        value_json = await off_loop(value.size, lambda: value.decode(key, setting_type))
        return PreparedPut(key, setting_type, value_json)

    @staticmethod
    async def check_definition(
        rules: KeyRules, level: Level, prepared: PreparedPut, size: int
    ) -> None:
        """The key definitions' check of one prepared put (services/keydefs.py), off the
        loop for a large value as its decoding is."""
        await off_loop(
            size,
            lambda: rules.check_write(
                level, prepared.key, prepared.setting_type, prepared.value_json
            ),
        )

    async def under_definitions(
        self, principal: Principal, write: Callable[[KeyRules], Awaitable[T]]
    ) -> T:
        """Runs `write` with the current key definitions, again when they changed under it
        (Definitions.checked); a TYPE_MISMATCH leaves as `principal` may see it."""
        with type_errors_for(principal):
            return await self._definitions.checked(write)
