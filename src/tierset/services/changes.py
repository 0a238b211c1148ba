"""Locks and changesets: the rules every door (gRPC, a future import command) gets alike.

* **Who may.** GLOBAL changes (puts, deletes, locks, unlocks) need PLATFORM. ACCOUNT and
  RETAILER puts and deletes need SETTINGS_EDIT on the owning account, as single writes;
  locking or unlocking an ACCOUNT value too (an account's ADMIN, or PLATFORM). Nothing is
  below a retailer, so a RETAILER lock is INVALID_ARGUMENT. A changeset holds GLOBAL
  changes and the changes of ONE account: changes in a second account are refused.
  Every scope is authorised before any key, type or value is looked at; another
  account's scope is PERMISSION_DENIED whether or not it exists.
* **What is checked.** Each put goes through SettingsService.prepare_put, the one check
  single puts use too; the store checks locks, versions and overrides in the changeset's
  transaction. A changeset holds 1 to MAX_CHANGES changes, and changes a (level, scope,
  key)'s value at most once and its lock at most once (a put and a lock of one key is
  fine). A failure names the change's index (message ``changes[i]: ...``, ErrorInfo
  metadata ``index``) and writes nothing.
* **Deleting a locked value** is refused (KEY_LOCKED): unlock it first. Puts at the
  locked level itself are allowed: a lock stops overrides below, not its owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tierset.core import authz, errors
from tierset.core.authz import Permission, Principal
from tierset.core.errors import TiersetError, at_index
from tierset.core.reasons import Reason
from tierset.core.values import Level, check_key
from tierset.ops.large_reads import off_loop
from tierset.services.history import actor_of, check_reason
from tierset.services.keydefs import KeyRules
from tierset.services.scopes import authorize_scope
from tierset.services.settings import IncomingValue, SettingsService
from tierset.store.changes import (
    MAX_CHANGES,
    Applied,
    ChangesetResult,
    Operation,
    PlannedChange,
)
from tierset.store.database import ScopeRef, Store


@dataclass(frozen=True)
class IncomingChange:
    """One change of a changeset as an adapter received it (the scope already parsed;
    None is GLOBAL). `operation` None: the client named none."""

    operation: Operation | None
    scope: ScopeRef | None
    key: str
    type_number: int = 0
    value: IncomingValue | None = None
    expected_version: int | None = None
    remove_overrides: bool = False


def _check_version(expected_version: int | None) -> int | None:
    if expected_version is not None and expected_version < 0:
        raise errors.bad_field("expected_version", "expected_version must not be negative")
    return expected_version


def _lockable(scope: ScopeRef | None) -> None:
    if scope is not None and scope.level is Level.RETAILER:
        raise errors.bad_field(
            "scope", "only GLOBAL and ACCOUNT values can be locked: nothing is below a retailer"
        )


def check_count(count: int) -> None:
    """Refuses a changeset of no change or more than MAX_CHANGES (INVALID_ARGUMENT)."""
    if count == 0:
        raise errors.bad_field("changes", "a changeset needs at least one change")
    if count > MAX_CHANGES:
        raise errors.bad_field(
            "changes",
            f"a changeset holds at most {MAX_CHANGES:,} changes; this one has {count:,}: split it",
        )


class ChangesService:
    """LockSetting, UnlockSetting and ApplyChanges."""

    def __init__(self, store: Store, settings: SettingsService) -> None:
        self._store = store
        self._settings = settings

    async def _authorize_lock(self, principal: Principal, scope: ScopeRef | None) -> None:
        if scope is None:
            authz.require_platform(principal)
            return
        await authorize_scope(principal, Permission.SETTINGS_EDIT, scope, self._store)
        _lockable(scope)
        if principal.acts_on_any_account:
            await self._store.get_account(scope.id)  # NOT_FOUND for an unknown account

    async def set_lock(
        self,
        principal: Principal,
        scope: ScopeRef | None,
        key: str,
        *,
        locking: bool,
        remove_overrides: bool,
        expected_version: int | None,
        reason: str,
    ) -> tuple[int | None, Applied]:
        """Locks (or unlocks) the value of `key` at `scope` (None: GLOBAL); returns the
        revision (None: nothing changed) and what was done."""
        await self._authorize_lock(principal, scope)
        change = PlannedChange(
            Operation.LOCK if locking else Operation.UNLOCK,
            scope,
            check_key(key),
            account_id=None if scope is None else scope.id,
            expected_version=_check_version(expected_version),
            remove_overrides=remove_overrides,
        )
        result = await self._store.apply_changes(
            [change], actor_of(principal), check_reason(reason), indexed=False
        )
        return result.revision, result.applied[0]

    async def apply(
        self,
        principal: Principal,
        changes: Sequence[IncomingChange],
        reason: str,
        dry_run: bool,
    ) -> ChangesetResult:
        """Applies (or, with `dry_run`, works out) a changeset; see the module docstring."""
        check_count(len(changes))
        owners = await self._authorize(principal, changes)
        reason = check_reason(reason)
        planned: list[PlannedChange] = []
        seen: dict[tuple[bool, Level, int, str], int] = {}
        for index, change in enumerate(changes):
            try:
                item = await self._plan(principal, change, owners[index])
            except TiersetError as error:
                raise at_index(error, index) from None
            lock_op = item.operation in (Operation.LOCK, Operation.UNLOCK)
            where = (lock_op, item.level, 0 if item.scope is None else item.scope.id, item.key)
            if where in seen:
                what = "lock" if lock_op else "value"
                raise at_index(
                    errors.bad_field(
                        "key",
                        f"change {seen[where]} already changes the {what} of {item.key} at"
                        " this level and scope; a changeset changes each at most once",
                    ),
                    index,
                )
            seen[where] = index
            planned.append(item)
        actor = actor_of(principal)
        puts = [(i, c) for i, c in enumerate(planned) if c.operation is Operation.PUT]
        size = sum(len(c.value_json or "") for _, c in puts)

        def check_definitions(rules: KeyRules) -> None:
            for index, item in puts:
                assert item.setting_type is not None and item.value_json is not None
                try:
                    rules.check_write(item.level, item.key, item.setting_type, item.value_json)
                except TiersetError as error:
                    raise at_index(error, index) from None

        async def run(rules: KeyRules) -> ChangesetResult:
            # Every put checked against the key definitions as a single put is, and the
            # store refuses the changeset whole when they changed before it held the counter.
            await off_loop(size, lambda: check_definitions(rules))
            return await self._store.apply_changes(
                planned, actor, reason, dry_run=dry_run, rules_version=rules.version
            )

        return await self._settings.under_definitions(principal, run)

    async def _authorize(
        self, principal: Principal, changes: Sequence[IncomingChange]
    ) -> list[int | None]:
        """Authorises every change's scope; returns each one's owning account (None for
        GLOBAL). One statement finds the retailers' accounts."""
        if Permission.SETTINGS_EDIT not in principal.permissions:
            raise authz.denied(Permission.SETTINGS_EDIT)
        retailer_ids = sorted(
            {c.scope.id for c in changes if c.scope and c.scope.level is Level.RETAILER}
        )
        accounts = await self._store.retailer_accounts(retailer_ids) if retailer_ids else {}
        owners: list[int | None] = []
        account: tuple[int, int] | None = None  # (account, index of its first change)
        for index, change in enumerate(changes):
            try:
                owner = self._owner(principal, change.scope, accounts)
            except TiersetError as error:
                raise at_index(error, index) from None
            if owner is not None:
                if account is None:
                    account = (owner, index)
                elif owner != account[0]:
                    raise at_index(
                        errors.bad_field(
                            "scope",
                            f"this change is in account {owner}, change {account[1]} in account"
                            f" {account[0]}: a changeset changes GLOBAL and one account",
                        ),
                        index,
                    )
            owners.append(owner)
        if account is not None and principal.acts_on_any_account:
            try:
                await self._store.get_account(account[0])
            except TiersetError as error:
                raise at_index(error, account[1]) from None
        return owners

    @staticmethod
    def _owner(
        principal: Principal, scope: ScopeRef | None, accounts: dict[int, int]
    ) -> int | None:
        if scope is None:
            authz.require_platform(principal)
            return None
        if scope.level is Level.ACCOUNT:
            authz.require(principal, Permission.SETTINGS_EDIT, scope.id)
            return scope.id
        owner = accounts.get(scope.id)
        authz.require(principal, Permission.SETTINGS_EDIT, owner)
        if owner is None:  # only PLATFORM gets here: it may learn the retailer is unknown
            raise errors.not_found(
                f"retailer {scope.id} does not exist",
                Reason.RETAILER_NOT_FOUND,
                retailer_id=str(scope.id),
            )
        return owner

    async def _plan(
        self, principal: Principal, change: IncomingChange, owner: int | None
    ) -> PlannedChange:
        if change.operation is None:
            raise errors.bad_field("operation", "operation must be PUT, DELETE, LOCK or UNLOCK")
        expected_version = _check_version(change.expected_version)
        if change.operation is not Operation.LOCK and change.remove_overrides:
            raise errors.bad_field("remove_overrides", "remove_overrides is for LOCK only")
        if change.operation is Operation.PUT:
            if change.value is None:
                raise errors.bad_field("value", "a PUT needs a value")
            prepared = await self._settings.prepare_put(
                change.key, change.type_number, change.value
            )
            return PlannedChange(
                Operation.PUT,
                change.scope,
                prepared.key,
                owner,
                prepared.setting_type,
                prepared.value_json,
                expected_version,
            )
        if change.type_number or change.value is not None:
            raise errors.bad_field(
                "value" if change.value is not None else "type",
                f"type and value are for PUT only, not {change.operation}",
            )
        if change.operation is not Operation.DELETE:
            _lockable(change.scope)
        return PlannedChange(
            change.operation,
            change.scope,
            check_key(change.key),
            owner,
            expected_version=expected_version,
            remove_overrides=change.remove_overrides,
        )
