"""History: deletes, listings, explanations, the change log, restores and past reads.

The rules every door (gRPC, REST, CLI) gets alike:

* **Who may.** Deletes and restores are writes: the scope is authorised (SETTINGS_EDIT,
  or PLATFORM for GLOBAL) before the key, the revision or the reason is looked at, and a
  scope of another account is PERMISSION_DENIED whether or not it exists. Listings,
  explanations and past reads are authorised like GetSettings (services.settings): a
  caller confined to one account reads with that account named, so another account's
  scope and a missing one are the same refusal. The change log shows ADMIN and VIEWER
  callers their account's changes (its retailers' included) and GLOBAL ones; PLATFORM
  callers see all. A secret key's values are masked for callers who may not see
  them (services.keydefs), in every listing, explanation and change.
* **Who did it.** Every write is logged with the caller (user id, username, credential
  kind and id) and the request id of the call (ops.logs.REQUEST_ID), never with what a
  client claims; `reason` is at most MAX_REASON_CHARS characters with no control
  characters but tab and newline (PostgreSQL text cannot hold NUL).
* **Pages.** page_size 0 means DEFAULT_PAGE_SIZE, else 1..MAX_PAGE_SIZE. A page token
  binds the request's other fields (a fingerprint of them): reused with other filters it
  is INVALID_ARGUMENT (INVALID_PAGE_TOKEN), never a silently different listing.
* **Retention.** Compaction removes the log older than the retention (whole days), cut
  at a revision boundary, one process at a time (the store's advisory lock); PLATFORM
  only (the server's job and ``tierset history compact`` act as the operator).
* **Revisions.** A revision below the compacted one is FAILED_PRECONDITION
  (REVISION_COMPACTED, metadata ``compacted_revision``); after the current one,
  OUT_OF_RANGE (FUTURE_REVISION). The store checks both in the statement that reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tierset.core import authz, errors
from tierset.core.authz import Permission, Principal
from tierset.core.reasons import Reason
from tierset.core.values import Level, check_key, check_keys
from tierset.ops import logs
from tierset.services.keydefs import Definitions, Masking, masking_for, type_errors_for
from tierset.services.scopes import authorize_scope
from tierset.store.database import (
    ChangesPage,
    DeleteResult,
    Explanation,
    Resolution,
    RestoreResult,
    ScopeRef,
    SettingsPage,
    Store,
)
from tierset.store.definitions import DefinitionStore
from tierset.store.revisions import Actor, decode_token, encode_token

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_REASON_CHARS = 1000

# Control characters a reason may hold: it is free text for people, shown in listings.
_ALLOWED_CONTROLS = {"\t", "\n"}


def actor_of(principal: Principal) -> Actor:
    """The caller as the change log records it, with the request id of this call."""
    return Actor(
        principal.user_id or None,
        principal.username,
        principal.credential_kind,
        principal.credential_id or None,
        logs.REQUEST_ID.get(),
    )


def check_reason(reason: str) -> str:
    """The reason if it may be logged, else INVALID_ARGUMENT naming `reason`."""
    if len(reason) > MAX_REASON_CHARS:
        raise errors.bad_field(
            "reason", f"reason is {len(reason)} characters; at most {MAX_REASON_CHARS} are kept"
        )
    for char in reason:
        if (ord(char) < 0x20 or ord(char) == 0x7F) and char not in _ALLOWED_CONTROLS:
            raise errors.bad_field(
                "reason", f"reason must not contain control character U+{ord(char):04X}"
            )
    return reason


def check_page_size(page_size: int) -> int:
    """The page size to use: 0 means DEFAULT_PAGE_SIZE; outside 1..MAX_PAGE_SIZE refused."""
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.bad_field(
            "page_size", f"page_size must be between 1 and {MAX_PAGE_SIZE} (0 means 100)"
        )
    return page_size


def check_revision(field: str, revision: int | None, *, required: bool = False) -> int | None:
    """A revision as given, refused when negative (or missing/0 when `required`)."""
    if revision is None or (revision == 0 and required):
        if required:
            raise errors.bad_field(field, f"{field} is required: a positive revision")
        return None
    if revision < 0:
        raise errors.bad_field(field, f"{field} must not be negative")
    return revision


def _prefix(prefix: str, field: str = "key_prefix") -> str:
    # A prefix follows the key's rules (so it can match keys at all); empty means every key.
    return check_key(prefix, field) if prefix else ""


def _fingerprint(fields: dict[str, object]) -> str:
    """What a page token binds: the request's fields other than paging."""
    text = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _bound_position(kind: str, token: str, fingerprint: str, shape: tuple[type, ...]) -> list:
    position = decode_token(kind, token, (str, *shape))
    if position[0] != fingerprint:
        raise errors.bad_field(
            "page_token",
            "page_token belongs to a listing with other fields; send the same fields, or"
            " no token to start again",
            Reason.INVALID_PAGE_TOKEN,
        )
    return position[1:]


def _scope_fields(scope: ScopeRef | None) -> list[object] | None:
    return None if scope is None else [scope.level.value, scope.id]


@dataclass(frozen=True)
class ListedSettings:
    """A page of ListSettings: the store's page and the token that continues it."""

    page: SettingsPage
    next_page_token: str


@dataclass(frozen=True)
class ListedChanges:
    """A page of ListChanges: the store's page and the token that continues it."""

    page: ChangesPage
    next_page_token: str


@dataclass(frozen=True)
class ChangeFilter:
    """The filters of ListChanges, as an adapter received them (every one optional)."""

    scope: ScopeRef | None = None
    global_only: bool = False
    key: str = ""
    key_prefix: str = ""
    min_revision: int | None = None
    max_revision: int | None = None
    min_time: datetime | None = None
    max_time: datetime | None = None
    actor_user_id: int | None = None
    newest_first: bool = False


class HistoryService:
    """Deletes, restores, listings, explanations, the log and reads at a revision."""

    def __init__(self, store: Store, definitions: Definitions | None = None) -> None:
        self._store = store
        self._definitions = definitions or Definitions(DefinitionStore.sharing(store))

    async def _masking(self, principal: Principal) -> Masking:
        return await masking_for(principal, self._definitions)

    # -- writes -------------------------------------------------------------------------

    async def delete(
        self,
        principal: Principal,
        scope: ScopeRef,
        key: str,
        expected_version: int | None,
        reason: str,
    ) -> DeleteResult:
        """Removes `key` at `scope` (ACCOUNT or RETAILER) so it inherits again."""
        await authorize_scope(principal, Permission.SETTINGS_EDIT, scope, self._store)
        return await self._delete(principal, scope, key, expected_version, reason)

    async def delete_global(
        self, principal: Principal, key: str, expected_version: int | None, reason: str
    ) -> DeleteResult:
        """Removes the platform default of `key`; needs PLATFORM."""
        authz.require_platform(principal)
        return await self._delete(principal, None, key, expected_version, reason)

    async def _delete(
        self,
        principal: Principal,
        scope: ScopeRef | None,
        key: str,
        expected_version: int | None,
        reason: str,
    ) -> DeleteResult:
        key = check_key(key)
        if expected_version is not None and expected_version < 0:
            raise errors.bad_field("expected_version", "expected_version must not be negative")
        return await self._store.delete(
            scope, key, expected_version, actor_of(principal), check_reason(reason)
        )

    async def restore(
        self,
        principal: Principal,
        level: Level,
        scope: ScopeRef | None,
        keys: list[str],
        revision: int,
        reason: str,
    ) -> RestoreResult:
        """Sets `keys` of one level and scope back to their values after `revision`."""
        if level is Level.GLOBAL:
            if scope is not None:
                raise errors.bad_field("scope", "scope must be unset when level is GLOBAL")
            authz.require_platform(principal)
        else:
            if scope is None:
                raise errors.bad_field("scope", f"scope is required when level is {level}")
            if scope.level is not level:
                raise errors.bad_field(
                    "scope", f"scope names a {scope.level.lower()}, but level is {level}"
                )
            await authorize_scope(principal, Permission.SETTINGS_EDIT, scope, self._store)
        keys = check_keys(keys)
        wanted = check_revision("revision", revision, required=True)
        assert wanted is not None
        actor, reason = actor_of(principal), check_reason(reason)
        # Each restored put passes the write checks of services.keydefs, in the transaction.
        with type_errors_for(principal):
            return await self._definitions.checked(
                lambda rules: self._store.restore(scope, keys, wanted, actor, reason, rules)
            )

    # -- reads --------------------------------------------------------------------------

    @staticmethod
    def _visible_to(principal: Principal, scope: ScopeRef | None) -> int | None:
        """Checks the caller may view settings at all (and an account scope); returns the
        account a confined caller's reads are limited to."""
        if Permission.SETTINGS_VIEW not in principal.permissions:
            raise authz.denied(Permission.SETTINGS_VIEW)
        if scope is not None and scope.level is Level.ACCOUNT:
            authz.require(principal, Permission.SETTINGS_VIEW, scope.id)
        return None if principal.acts_on_any_account else principal.account_id

    @staticmethod
    def _denied_if_hidden(principal: Principal, error: errors.TiersetError) -> None:
        # A confined caller's NOT_FOUND may be another account's scope: the same refusal.
        if error.code is errors.Code.NOT_FOUND:
            authz.require(principal, Permission.SETTINGS_VIEW, None)

    async def resolve_at(
        self, principal: Principal, scope: ScopeRef, keys: list[str], revision: int
    ) -> Resolution:
        """GetSettings as it stood after `revision`, answered from the change log."""
        keys = check_keys(keys)
        visible_to = self._visible_to(principal, scope)
        check_revision("at_revision", revision)
        try:
            resolution = await self._store.resolve_at(scope, keys, revision, visible_to)
        except errors.TiersetError as error:
            self._denied_if_hidden(principal, error)
            raise
        authz.require(principal, Permission.SETTINGS_VIEW, resolution.account_id)
        return (await self._masking(principal)).resolution(resolution)

    async def list_settings(
        self,
        principal: Principal,
        scope: ScopeRef | None,
        key_prefix: str,
        level_only: bool,
        page_size: int,
        page_token: str,
        at_revision: int | None,
    ) -> ListedSettings:
        """One page of a scope's settings (None: GLOBAL's), ordered by key."""
        visible_to = self._visible_to(principal, scope)
        key_prefix = _prefix(key_prefix)
        size = check_page_size(page_size)
        check_revision("at_revision", at_revision)
        fingerprint = _fingerprint(
            {
                "scope": _scope_fields(scope),
                "key_prefix": key_prefix,
                "level_only": level_only,
                "at_revision": at_revision,
            }
        )
        after_key = ""
        if page_token:
            (after_key,) = _bound_position("settings", page_token, fingerprint, (str,))
        try:
            page = await self._store.list_settings(
                scope, key_prefix, level_only, size, after_key, at_revision, visible_to
            )
        except errors.TiersetError as error:
            self._denied_if_hidden(principal, error)
            raise
        token = (
            "" if page.last_key is None else encode_token("settings", [fingerprint, page.last_key])
        )
        masking = await self._masking(principal)
        if masking:
            page = dataclasses.replace(page, settings=masking.settings(page.settings))
        return ListedSettings(page, token)

    async def explain(
        self, principal: Principal, scope: ScopeRef, keys: list[str]
    ) -> tuple[int, list[Explanation]]:
        """Every level's value of each key for `scope`, the winner first."""
        keys = check_keys(keys)
        visible_to = self._visible_to(principal, scope)
        try:
            revision, explanations = await self._store.explain(scope, keys, visible_to)
        except errors.TiersetError as error:
            self._denied_if_hidden(principal, error)
            raise
        masking = await self._masking(principal)
        return revision, [masking.explanation(e) for e in explanations]

    async def changes(
        self, principal: Principal, filters: ChangeFilter, page_size: int, page_token: str
    ) -> ListedChanges:
        """One page of the change log the caller may see, filtered."""
        if Permission.SETTINGS_VIEW not in principal.permissions:
            raise authz.denied(Permission.SETTINGS_VIEW)
        if filters.scope is not None:
            await authorize_scope(principal, Permission.SETTINGS_VIEW, filters.scope, self._store)
        visible_to = None if principal.acts_on_any_account else principal.account_id
        if filters.key and filters.key_prefix:
            raise errors.bad_field("key_prefix", "set key or key_prefix, not both")
        key = check_key(filters.key) if filters.key else None
        key_prefix = _prefix(filters.key_prefix) or None
        low = check_revision("min_revision", filters.min_revision)
        high = check_revision("max_revision", filters.max_revision)
        if low is not None and high is not None and low > high:
            raise errors.bad_field("max_revision", "max_revision must not be below min_revision")
        if filters.min_time and filters.max_time and filters.min_time > filters.max_time:
            raise errors.bad_field("max_time", "max_time must not be before min_time")
        if filters.actor_user_id is not None and filters.actor_user_id <= 0:
            raise errors.bad_field("actor_user_id", "actor_user_id must be a positive integer")
        size = check_page_size(page_size)
        fingerprint = _fingerprint(
            {
                "scope": _scope_fields(filters.scope),
                "global_only": filters.global_only,
                "key": key,
                "key_prefix": key_prefix,
                "min_revision": low,
                "max_revision": high,
                "min_time": filters.min_time,
                "max_time": filters.max_time,
                "actor_user_id": filters.actor_user_id,
                "newest_first": filters.newest_first,
            }
        )
        after = None
        if page_token:
            revision, seq = _bound_position("changes", page_token, fingerprint, (int, int))
            after = (revision, seq)
        page = await self._store.changes(
            scope=filters.scope,
            global_only=filters.global_only,
            visible_to=visible_to,
            key=key,
            key_prefix=key_prefix,
            min_revision=low,
            max_revision=high,
            min_time=filters.min_time,
            max_time=filters.max_time,
            actor_user_id=filters.actor_user_id,
            newest_first=filters.newest_first,
            after=after,
            page_size=size,
        )
        token = "" if page.last is None else encode_token("changes", [fingerprint, *page.last])
        masking = await self._masking(principal)
        if masking:
            page = dataclasses.replace(page, changes=[masking.change(c) for c in page.changes])
        return ListedChanges(page, token)

    # -- retention ----------------------------------------------------------------------

    async def compact(
        self, principal: Principal, retention_days: int, now: datetime | None = None
    ) -> int | None:
        """Removes the change log older than `retention_days` (at least 1); returns the
        compacted revision, or None when another process is compacting right now."""
        authz.require_platform(principal)
        if retention_days < 1:
            raise errors.bad_field(
                "retention_days", "retention_days must be at least 1 (0 keeps the whole log)"
            )
        before = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        return await self._store.compact(before)
