"""Key definitions and the one-type-per-key rule, as the database keeps them (migration 0007).

Invariants:

* **One type per key.** Every write statement (``put_setting``, ``changeset_put``)
  calls ``tierset_check_key_type`` while it holds the revision counter, and that
  function reads with a fresh snapshot: a write whose type differs from the key's
  type at any other (level, scope) fails with SQLSTATE TS422, rolled back whole (no
  row, no log row, no revision). :func:`type_mismatch` turns it into the API's
  FAILED_PRECONDITION, reason TYPE_MISMATCH, naming the type and where it is set.
* **Checked against the definitions it is written under.** A writer checks its value
  against the definitions as of some ``definitions_version`` and passes that number;
  the statement compares it with the counter's as it holds the counter's lock and
  fails with TS412 (:class:`DefinitionsChanged`) when a definition changed since: the
  service reads the definitions again and checks again.
* **A definition is changed only over values that satisfy it.** :meth:`DefinitionStore.define`
  takes the counter's row lock (bumping ``definitions_version``, spending no
  revision), then reads every stored value of the key, and asks the caller's check
  before it writes: no setting write can land in between.

Every definition change sends NOTIFY ``tierset_key_definitions`` (payload: the new
definitions version) from its transaction, so every process re-reads its definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import Level, SettingType
from tierset.store.database import PoolClient, query

CHANNEL = "tierset_key_definitions"


@dataclass(frozen=True)
class DefinitionRow:
    """A key definition as stored; `value_schema` is JSON text (None: no schema)."""

    key: str
    type: SettingType
    description: str
    value_schema: str | None
    secret: bool
    allowed_levels: tuple[Level, ...]
    version: int = 0
    create_time: datetime | None = None
    update_time: datetime | None = None
    updated_by: str = ""


@dataclass(frozen=True)
class StoredValue:
    """One stored value of a key, at one (level, scope)."""

    level: Level
    account_id: int | None
    retailer_id: int | None
    type: SettingType
    value: str


@dataclass(frozen=True)
class MixedType:
    """One type a key is stored with, in a database where it has several: how many
    (level, scope)s hold it and the first few of them ('GLOBAL', 'ACCOUNT 1111', ...)."""

    key: str
    type: SettingType
    count: int
    scopes: tuple[str, ...]


def _definition(row: Any) -> DefinitionRow:
    return DefinitionRow(
        key=row["key"],
        type=SettingType(row["type"]),
        description=row["description"],
        value_schema=row["value_schema"],
        secret=row["secret"],
        allowed_levels=tuple(Level(level) for level in row["allowed_levels"]),
        version=row["version"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        updated_by=row["updated_by"],
    )


def _stored(rows: Sequence[Any]) -> list[StoredValue]:
    return [
        StoredValue(
            Level(r["level"]), r["account_id"], r["retailer_id"], SettingType(r["type"]), r["value"]
        )
        for r in rows
    ]


# Told every stored value of a key before its definition is written; raises to refuse.
StoredCheck = Callable[[list[StoredValue]], None]


class DefinitionStore(PoolClient):
    """Key definitions: read them all, define, delete, page through; find mixed types."""

    @classmethod
    def sharing(cls, client: PoolClient) -> DefinitionStore:
        """One on the same pool (and acquire timeout) as `client`."""
        return cls(client._pool, client._acquire_timeout)

    async def all(self) -> tuple[int, list[DefinitionRow]]:
        """The definitions version and every definition, in one snapshot."""
        rows = await self._fetch(query("key_definitions_all"))
        return rows[0]["definitions_version"], [_definition(r) for r in rows if r["key"]]

    async def get(self, key: str) -> DefinitionRow | None:
        """One definition, or None."""
        row = await self._fetchrow(query("key_definition_get"), key)
        return None if row is None else _definition(row)

    async def page(self, after_key: str, limit: int) -> list[DefinitionRow]:
        """Up to `limit` definitions by key, after `after_key`."""
        return [
            _definition(r)
            for r in await self._fetch(query("key_definitions_page"), after_key, limit)
        ]

    async def define(
        self, definition: DefinitionRow, updated_by: str, check: StoredCheck
    ) -> tuple[DefinitionRow, bool]:
        """Creates or replaces `definition` once `check` accepts every stored value of its
        key (read after the counter's lock is taken, so none can change before commit).
        Returns the stored definition and whether it was created."""
        async with self._acquire() as connection, connection.transaction():
            version = await connection.fetchval(query("take_definitions_version"))
            check(_stored(await connection.fetch(query("stored_values_of_key"), definition.key)))
            row = await connection.fetchrow(
                query("key_definition_upsert"),
                definition.key,
                definition.type.value,
                definition.description,
                definition.value_schema,
                definition.secret,
                [level.value for level in definition.allowed_levels],
                updated_by,
                version,
            )
            await connection.execute(query("notify_definitions"), str(version))
            return _definition(row), bool(row["created"])

    async def delete(self, key: str) -> DefinitionRow:
        """Removes a definition (the key's values stay and become undefined); NOT_FOUND if
        there is none."""
        async with self._acquire() as connection, connection.transaction():
            version = await connection.fetchval(query("take_definitions_version"))
            row = await connection.fetchrow(query("key_definition_delete"), key)
            if row is None:
                raise errors.not_found(
                    f"{key} has no definition", Reason.KEY_DEFINITION_NOT_FOUND, key=key
                )
            await connection.execute(query("notify_definitions"), str(version))
            return _definition(row)

    async def mixed_types(self, scopes_shown: int = 5) -> list[MixedType]:
        """Every key stored with more than one type, each type with where it is set."""
        rows = await self._fetch(query("mixed_type_keys"), scopes_shown)
        return [
            MixedType(r["key"], SettingType(r["type"]), r["n"], tuple(r["scopes"])) for r in rows
        ]
