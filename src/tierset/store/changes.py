"""Changesets: many puts, deletes, locks and unlocks, all or nothing, one revision.

A changeset runs in ONE transaction on one connection:

1. it takes the revision counter first (``changeset_take_revision``) and holds it to
   the commit, so every other writer waits (all of them take the counter before they
   touch a settings row) and each later statement, in READ COMMITTED, reads a
   snapshot that nothing else changes until this one commits;
2. it applies the changes in order, one statement each (two or three for a lock),
   every log row numbered within the one revision (``seq``); each change sees the
   changes before it (an expected version is checked against the value as the
   earlier changes left it);
3. any refusal (a lock above, a stale version, a lock over overrides, an unknown
   scope) raises, and the whole transaction rolls back, counter bump included: no
   setting, no log row, no revision. The error names the change's index
   (:func:`tierset.core.errors.at_index`).

A change that needs doing nothing is UNCHANGED and writes nothing: a put of the value
already stored (the same text), a delete of a missing value, a lock of a locked value,
an unlock of an unlocked one. When every change is, the transaction rolls back and no
revision is spent, as a restore that finds nothing to restore.

A dry run does all of the above and rolls back at the end, so it answers exactly what
the changeset would do now (it briefly holds the counter, as a write does). It also
answers the *effects*: the effective value before and after, for a bounded set of
(scope, key) pairs (:func:`_effect_pairs`), listing those that change.

The cache and Watch see a changeset as one revision: the settings triggers (0003)
notify from the one transaction, delivered at its commit; every log row carries the
one revision, and the doorbell (0006) rings once for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from tierset.core import errors
from tierset.core.errors import TiersetError
from tierset.core.reasons import Reason
from tierset.core.values import Level, SettingType
from tierset.store.database import ScopeRef, StoredSetting, query, setting_from_row
from tierset.store.locks import key_locked, key_overridden, version_mismatch
from tierset.store.revisions import Actor

# The most changes one changeset may hold (services check it; the store trusts it).
MAX_CHANGES = 1000
# A dry run's bounds on the (scope, key) pairs it looks at (ApplyChangesResponse.effects).
EFFECT_RETAILERS = 100
MAX_EFFECT_PAIRS = 10_000


class Operation(StrEnum):
    """What a change does (the change log's operations)."""

    PUT = "PUT"
    DELETE = "DELETE"
    LOCK = "LOCK"
    UNLOCK = "UNLOCK"


class Outcome(StrEnum):
    """What a change did, or in a dry run would do."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    UNCHANGED = "UNCHANGED"
    LOCKED = "LOCKED"
    UNLOCKED = "UNLOCKED"


@dataclass(frozen=True)
class PlannedChange:
    """One checked change: `scope` None is GLOBAL; `account_id` owns the scope (None for
    GLOBAL); a PUT carries its type and JSON text."""

    operation: Operation
    scope: ScopeRef | None
    key: str
    account_id: int | None = None
    setting_type: SettingType | None = None
    value_json: str | None = None
    expected_version: int | None = None
    remove_overrides: bool = False

    @property
    def level(self) -> Level:
        return Level.GLOBAL if self.scope is None else self.scope.level

    def where(self) -> tuple[str, int | None, int | None]:
        """(level, account_id, retailer_id) as the statements take them."""
        account_id, retailer_id = (None, None) if self.scope is None else self.scope.owner_columns()
        return self.level.value, account_id, retailer_id

    def pair_scope(self) -> tuple[int | None, int | None]:
        """(retailer_id, account_id) of this change's own scope; (None, None) for GLOBAL."""
        if self.scope is None:
            return None, None
        if self.scope.level is Level.RETAILER:
            return self.scope.id, self.account_id
        return None, self.scope.id


@dataclass(frozen=True)
class Applied:
    """What one change did: its outcome, the setting's id and version after it (0 when
    none), the setting itself after a lock or unlock, and the scopes (level, id) whose
    overriding values a lock removed."""

    outcome: Outcome
    setting_id: int
    version: int
    setting: StoredSetting | None = None
    removed: tuple[tuple[Level, int], ...] = ()


# (retailer_id or None, account_id or None, key): a scope's view of a key; both None is
# the GLOBAL value itself.
EffectPair = tuple[int | None, int | None, str]


@dataclass(frozen=True)
class Effect:
    """A scope whose effective value of a key a changeset changes."""

    retailer_id: int | None
    account_id: int | None
    key: str
    before: StoredSetting | None
    after: StoredSetting | None


@dataclass(frozen=True)
class ChangesetResult:
    """A changeset's answer: its revision (None: dry run, or nothing changed), one
    Applied per change, and for a dry run the effects and whether they were cut."""

    revision: int | None
    applied: list[Applied]
    effects: list[Effect] = field(default_factory=list)
    effects_truncated: bool = False


class _RollBack(Exception):
    """Ends the transaction without committing (a dry run, or nothing to change)."""


def _scope_not_found(change: PlannedChange) -> TiersetError:
    assert change.scope is not None  # GLOBAL rows reference nothing
    noun = change.scope.level.lower()
    reason = Reason.ACCOUNT_NOT_FOUND if noun == "account" else Reason.RETAILER_NOT_FOUND
    return errors.not_found(
        f"{noun} {change.scope.id} does not exist", reason, **{f"{noun}_id": str(change.scope.id)}
    )


async def run_changes(
    connection: Any,
    changes: Sequence[PlannedChange],
    actor: Actor,
    reason: str,
    *,
    dry_run: bool,
    indexed: bool,
) -> ChangesetResult:
    """Applies `changes` on `connection` as the module docstring says."""
    result: ChangesetResult | None = None
    try:
        async with connection.transaction():
            revision = int(await connection.fetchval(query("changeset_take_revision")))
            pairs: list[EffectPair] = []
            truncated = False
            before: dict[EffectPair, StoredSetting | None] = {}
            if dry_run:
                pairs, truncated = await _effect_pairs(connection, changes)
                before = await _resolve(connection, pairs)
            seq = 0
            applied: list[Applied] = []
            for index, change in enumerate(changes):
                try:
                    done, seq = await apply_one(connection, change, revision, seq, actor, reason)
                except TiersetError as error:
                    raise errors.at_index(error, index) if indexed else error from None
                except asyncpg.ForeignKeyViolationError:
                    missing = _scope_not_found(change)
                    raise errors.at_index(missing, index) if indexed else missing from None
                applied.append(done)
            if dry_run:
                after = await _resolve(connection, pairs)
                effects = [
                    Effect(p[0], p[1], p[2], before[p], after[p])
                    for p in sorted(pairs, key=_pair_order)
                    if _identity(before[p]) != _identity(after[p])
                ]
                result = ChangesetResult(None, applied, effects, truncated)
                raise _RollBack
            if seq == 0:
                result = ChangesetResult(None, applied)
                raise _RollBack  # every change UNCHANGED: no revision spent
            result = ChangesetResult(revision, applied)
    except _RollBack:
        pass
    assert result is not None
    return result


async def apply_one(
    connection: Any,
    change: PlannedChange,
    revision: int,
    seq: int,
    actor: Actor,
    reason: str,
) -> tuple[Applied, int]:
    """Applies one change as row `seq` (onwards) of `revision`, in a transaction that holds
    the counter (a changeset's, a restore's); returns what it did and the next free seq."""
    level, account_id, retailer_id = change.where()
    key = change.key
    if change.operation is Operation.PUT:
        assert change.setting_type is not None and change.value_json is not None
        row = await connection.fetchrow(
            query("changeset_put"),
            level,
            account_id,
            retailer_id,
            key,
            change.setting_type.value,
            change.value_json,
            change.expected_version,
            revision,
            seq,
            *actor.columns(),
            reason,
        )
        if not row["unlocked"]:
            lock = await connection.fetchrow(
                query("lock_above"), level, account_id, retailer_id, key, revision
            )
            raise key_locked(key, lock, change.level)
        if not row["version_ok"]:
            raise version_mismatch(key, change.expected_version, row["old_version"])
        if not row["differs"]:
            return Applied(Outcome.UNCHANGED, row["old_id"], row["old_version"]), seq
        outcome = Outcome.CREATED if row["old_id"] is None else Outcome.UPDATED
        return Applied(outcome, row["id"], row["version"]), seq + 1
    if change.operation is Operation.DELETE:
        row = await connection.fetchrow(
            query("changeset_delete"),
            level,
            account_id,
            retailer_id,
            key,
            change.expected_version,
            revision,
            seq,
            *actor.columns(),
            reason,
        )
        if not row["version_ok"]:
            raise version_mismatch(key, change.expected_version, row["old_version"])
        if not row["unlocked"]:
            lock = {**dict(row), "level": level, "scope_id": _scope_id(change)}
            raise key_locked(key, lock, None)
        if row["gone_id"] is None:
            return Applied(Outcome.UNCHANGED, 0, 0), seq
        return Applied(Outcome.DELETED, row["gone_id"], 0), seq + 1
    return await _lock(connection, change, revision, seq, actor, reason)


def _scope_id(change: PlannedChange) -> int:
    return 0 if change.scope is None else change.scope.id


async def _lock(
    connection: Any,
    change: PlannedChange,
    revision: int,
    seq: int,
    actor: Actor,
    reason: str,
) -> tuple[Applied, int]:
    level, account_id, retailer_id = change.where()
    key = change.key
    row = await connection.fetchrow(query("setting_for_lock"), level, account_id, retailer_id, key)
    if row is None:
        where = "" if change.scope is None else f" for account {change.scope.id}"
        raise errors.not_found(
            f"{key} is not set at {change.level.lower()} level{where}: there is nothing to"
            f" {change.operation.lower()}",
            Reason.SETTING_NOT_FOUND,
            key=key,
        )
    if change.expected_version is not None and change.expected_version != row["version"]:
        raise version_mismatch(key, change.expected_version, row["version"])
    current = setting_from_row(row)
    locking = change.operation is Operation.LOCK
    if (current.lock is not None) == locking:
        return Applied(Outcome.UNCHANGED, current.id, current.version, current), seq
    removed: tuple[tuple[Level, int], ...] = ()
    if locking:
        overrides = await connection.fetch(query("lock_overrides"), level, account_id, key)
        if overrides:
            if not change.remove_overrides:
                raise key_overridden(key, change.level, overrides)
            gone = await connection.fetch(
                query("delete_overrides_at_revision"),
                level,
                account_id,
                key,
                revision,
                seq,
                *actor.columns(),
                reason,
            )
            seq += len(gone)
            removed = tuple((Level(r["level"]), r["scope_id"]) for r in gone)
    up = await connection.fetchrow(
        query("set_lock_at_revision"), current.id, revision, seq, *actor.columns(), reason, locking
    )
    outcome = Outcome.LOCKED if locking else Outcome.UNLOCKED
    return Applied(outcome, current.id, current.version, setting_from_row(up), removed), seq + 1


def _reaches(change: PlannedChange, retailer_id: int | None, account_id: int | None) -> bool:
    """Whether `change` can alter what the scope (retailer_id, account_id) resolves."""
    if change.scope is None:
        return True
    if change.scope.level is Level.ACCOUNT:
        return account_id == change.scope.id
    return retailer_id == change.scope.id


async def _effect_pairs(
    connection: Any, changes: Sequence[PlannedChange]
) -> tuple[list[EffectPair], bool]:
    """The (scope, key) pairs a dry run looks at, and whether the bounds cut them: each
    change's own scope; each scope the changeset names that the change reaches; an
    ACCOUNT change's first EFFECT_RETAILERS retailers; the scopes whose overrides a lock
    removes (as many); at most MAX_EFFECT_PAIRS in all."""
    named = list(dict.fromkeys(c.pair_scope() for c in changes))
    accounts = sorted({c.scope.id for c in changes if c.scope and c.scope.level is Level.ACCOUNT})
    truncated = False
    retailers: dict[int, list[int]] = {a: [] for a in accounts}
    if accounts:
        rows = await connection.fetch(
            query("retailers_of_accounts"), accounts, EFFECT_RETAILERS + 1
        )
        for row in rows:
            retailers[row["account_id"]].append(row["retailer_id"])
    pairs: dict[EffectPair, None] = {}
    for change in changes:
        scopes = [change.pair_scope()]
        scopes += [s for s in named if _reaches(change, *s)]
        if change.scope is not None and change.scope.level is Level.ACCOUNT:
            found = retailers[change.scope.id]
            truncated = truncated or len(found) > EFFECT_RETAILERS
            scopes += [(r, change.scope.id) for r in found[:EFFECT_RETAILERS]]
        if change.operation is Operation.LOCK and change.remove_overrides:
            level, account_id, _ = change.where()
            rows = await connection.fetch(query("lock_overrides"), level, account_id, change.key)
            truncated = truncated or len(rows) > EFFECT_RETAILERS
            for row in rows[:EFFECT_RETAILERS]:
                owner = row["owner_account_id"]
                is_retailer = row["level"] == Level.RETAILER.value
                scopes.append((row["scope_id"] if is_retailer else None, owner))
        for retailer_id, account_id in scopes:
            if len(pairs) >= MAX_EFFECT_PAIRS:
                return list(pairs), True
            pairs[(retailer_id, account_id, change.key)] = None
    return list(pairs), truncated


async def _resolve(
    connection: Any, pairs: list[EffectPair]
) -> dict[EffectPair, StoredSetting | None]:
    """Each pair's effective setting now, in one statement."""
    found: dict[EffectPair, StoredSetting | None] = dict.fromkeys(pairs)
    if not pairs:
        return found
    rows = await connection.fetch(
        query("effective_for_pairs"),
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        [p[2] for p in pairs],
    )
    for row in rows:
        found[pairs[row["n"] - 1]] = setting_from_row(row)
    return found


def _identity(setting: StoredSetting | None) -> tuple[int, int, str] | None:
    # The same row at the same version holds the same value (a lock changes neither).
    return None if setting is None else (setting.id, setting.version, setting.level.value)


def _pair_order(pair: EffectPair) -> tuple[str, int, int, int]:
    retailer_id, account_id, key = pair
    kind = 0 if account_id is None else (2 if retailer_id is not None else 1)
    return key, kind, account_id or 0, retailer_id or 0
