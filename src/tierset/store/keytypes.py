"""The one-type-per-key rule's refusals, as the write statements raise them (migration 0007).

``tierset_check_key_type`` (SQLSTATE TS422, DETAIL: JSON naming the clashing row) and
``tierset_definitions_changed`` (TS412) abort a write statement whole: no row, no log
row, no revision. :func:`raise_for_statement` maps them by SQLSTATE, never by message.
"""

from __future__ import annotations

import json

import asyncpg

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import Level, SettingType

TYPE_CLASH = "TS422"  # tierset_check_key_type: the key is stored with another type elsewhere
DEFINITIONS_CHANGED = "TS412"  # tierset_definitions_changed: check the value again


class DefinitionsChanged(Exception):
    """The definitions a write was checked against changed before it could commit; nothing
    was written. Read them again, check again, write again."""


def where(level: Level | str, account_id: int | None, retailer_id: int | None) -> str:
    """A (level, scope) as messages name it: 'GLOBAL', 'ACCOUNT 1111', 'RETAILER 2222'."""
    level = Level(level)
    if level is Level.GLOBAL:
        return "GLOBAL"
    return f"{level.value} {retailer_id if level is Level.RETAILER else account_id}"


# ErrorInfo metadata of TYPE_MISMATCH the service removes before the error leaves
# (services/keydefs.py `type_errors_for`): which account holds the clashing value.
OWNER_METADATA = "owner_account_id"


def type_mismatch(
    key: str,
    wanted: SettingType,
    existing: SettingType,
    at: str,
    owner_account_id: int | None = None,
) -> errors.TiersetError:
    """FAILED_PRECONDITION, TYPE_MISMATCH: `key` is `existing` at `at` ('ACCOUNT 1111',
    'GLOBAL', 'its definition'), so a write of `wanted` is refused."""
    error = errors.failed_precondition(
        f"{key} is {existing.value} at {at}; a key has one type at every level, so it cannot"
        f" be written as {wanted.value}",
        Reason.TYPE_MISMATCH,
        key=key,
        existing_type=existing.value,
        where=at,
    )
    if owner_account_id is not None:
        error.metadata[OWNER_METADATA] = str(owner_account_id)
    return error


def raise_for_statement(error: asyncpg.PostgresError, key: str, wanted: SettingType) -> None:
    """Raises what a write statement's own refusal means (TS422, TS412); returns otherwise."""
    if error.sqlstate == DEFINITIONS_CHANGED:
        raise DefinitionsChanged from None
    if error.sqlstate == TYPE_CLASH:
        clash = json.loads(error.detail or "{}")
        raise type_mismatch(
            key,
            wanted,
            SettingType(clash["type"]),
            where(clash["level"], clash["account_id"], clash["retailer_id"]),
            clash.get("owner_account_id"),
        ) from None
