"""The key definitions RPCs (DefineKey, GetKeyDefinition, ListKeyDefinitions,
DeleteKeyDefinition) and the mixed-type report of ``tierset check``.

PLATFORM writes definitions; every authenticated caller reads them. A definition is
written only over stored values that satisfy it (DEFINITION_CONFLICT otherwise, listing
the offending scopes); the rules themselves are in :mod:`tierset.services.keydefs`.
Definition changes are not change-log rows: they change no setting, spend no revision
and are not history (the definition keeps its version, update time and who wrote it).
"""

from __future__ import annotations

from dataclasses import dataclass

from tierset.core import authz, errors
from tierset.core.authz import Principal
from tierset.core.reasons import Reason
from tierset.core.values import Level, check_key, setting_type_from_proto, unstorable_text
from tierset.services.history import _bound_position, _fingerprint, check_page_size
from tierset.services.keydefs import (
    MAX_DESCRIPTION_CHARS,
    MAX_OFFENDERS_SHOWN,
    Definitions,
    KeyDefinition,
    compile_schema,
)
from tierset.store.definitions import DefinitionRow, MixedType, StoredValue
from tierset.store.keytypes import where
from tierset.store.revisions import encode_token

_ALL_LEVELS = (Level.GLOBAL, Level.ACCOUNT, Level.RETAILER)


@dataclass(frozen=True)
class DefinitionInput:
    """A DefineKey request as the adapter read it."""

    key: str
    type_number: int
    description: str
    value_schema: str
    secret: bool
    allowed_levels: list[Level]


@dataclass(frozen=True)
class ListedDefinitions:
    definitions: list[DefinitionRow]
    next_page_token: str


def _offenders(definition: KeyDefinition, stored: list[StoredValue]) -> None:
    found = []
    for value in stored:
        failure = definition.failure(value.level, value.type, value.value)
        if failure is not None:
            found.append(f"{where(value.level, value.account_id, value.retailer_id)}: {failure}")
    if found:
        shown = "; ".join(found[:MAX_OFFENDERS_SHOWN])
        more = (
            f" (and {len(found) - MAX_OFFENDERS_SHOWN} more)"
            if len(found) > MAX_OFFENDERS_SHOWN
            else ""
        )
        raise errors.failed_precondition(
            f"{definition.key}: {len(found)} stored values do not satisfy this definition:"
            f" {shown}{more}",
            Reason.DEFINITION_CONFLICT,
            key=definition.key,
            offenders=str(len(found)),
        )


class KeyDefinitionsService:
    """DefineKey, GetKeyDefinition, ListKeyDefinitions, DeleteKeyDefinition, and the
    mixed-type report of ``tierset check``."""

    def __init__(self, definitions: Definitions) -> None:
        self._definitions = definitions
        self._store = definitions.store

    async def define(
        self, principal: Principal, given: DefinitionInput
    ) -> tuple[DefinitionRow, bool]:
        """Creates or replaces a definition (PLATFORM) over the values stored now."""
        authz.require_platform(principal)
        key = check_key(given.key, "definition.key")
        setting_type = setting_type_from_proto(given.type_number, "definition.type")
        if len(given.description) > MAX_DESCRIPTION_CHARS:
            raise errors.bad_field(
                "definition.description",
                f"description must be at most {MAX_DESCRIPTION_CHARS} characters",
            )
        problem = unstorable_text(given.description)
        if problem:
            raise errors.bad_field("definition.description", f"description {problem}")
        schema_text = None
        if given.value_schema:
            compile_schema(given.value_schema)
            schema_text = given.value_schema
        levels = tuple(lv for lv in _ALL_LEVELS if lv in given.allowed_levels) or _ALL_LEVELS
        row = DefinitionRow(key, setting_type, given.description, schema_text, given.secret, levels)
        definition = KeyDefinition(row)
        try:
            return await self._store.define(
                row, principal.username, lambda stored: _offenders(definition, stored)
            )
        finally:
            self._definitions.forget()

    async def get(self, principal: Principal, key: str) -> DefinitionRow:
        """One definition; any authenticated caller may read it."""
        key = check_key(key)
        row = await self._store.get(key)
        if row is None:
            raise errors.not_found(
                f"{key} has no definition", Reason.KEY_DEFINITION_NOT_FOUND, key=key
            )
        return row

    async def page(
        self, principal: Principal, page_size: int, page_token: str
    ) -> ListedDefinitions:
        """A page of definitions by key (AIP-158)."""
        size = check_page_size(page_size)
        fingerprint = _fingerprint({"definitions": True})
        after = ""
        if page_token:
            (after,) = _bound_position("definitions", page_token, fingerprint, (str,))
        rows = await self._store.page(after, size + 1)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token("definitions", [fingerprint, rows[-1].key])
        return ListedDefinitions(rows, token)

    async def delete(self, principal: Principal, key: str) -> DefinitionRow:
        """Removes a definition (PLATFORM); the key's values stay, undefined."""
        authz.require_platform(principal)
        key = check_key(key)
        try:
            return await self._store.delete(key)
        finally:
            self._definitions.forget()

    async def mixed_types(self, principal: Principal) -> list[MixedType]:
        """Keys stored with more than one type (PLATFORM: the whole database)."""
        authz.require_platform(principal)
        return await self._store.mixed_types()
