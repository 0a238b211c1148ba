"""The refusals of locks (migration 0008), as the store raises them.

A lock lives on a stored GLOBAL or ACCOUNT value. A write that would override a locked
value (an ACCOUNT or RETAILER value under a locked GLOBAL one, a RETAILER value under
its account's locked one) is FAILED_PRECONDITION, reason KEY_LOCKED, naming the level
that locked it, who and when; so is deleting a locked value (unlock it first). A lock
over values that override it is FAILED_PRECONDITION, reason KEY_OVERRIDDEN, listing
the first of them. Both are raised only after the write statement has rolled back:
nothing is written and no revision is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import Level

# Overriding scopes named in a KEY_OVERRIDDEN refusal; the count says how many in all.
OVERRIDES_SHOWN = 20


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _where(level: Level, scope_id: int) -> str:
    return "GLOBAL" if level is Level.GLOBAL else f"{level} {scope_id}"


def key_locked(key: str, lock: Any, write_level: Level | None) -> errors.TiersetError:
    """The refusal of a write at `write_level` (None: a delete of the locked value itself)
    by `lock`, a row with level, scope_id, lock_revision, lock_time and lock_username."""
    level = Level(lock["level"])
    who = lock["lock_username"] or "an unknown user"
    when = _when(lock["lock_time"])
    action = (
        "unlock it before deleting it"
        if write_level is None
        else f"it cannot be overridden at {write_level} level"
    )
    error = errors.failed_precondition(
        f"{key} is locked at {_where(level, lock['scope_id'])} by {who} at {when}"
        f" (revision {lock['lock_revision']}): {action}",
        Reason.KEY_LOCKED,
        key=key,
        locked_level=level.value,
        locked_by=lock["lock_username"] or "",
        lock_time=when,
        lock_revision=str(lock["lock_revision"]),
    )
    if level is Level.ACCOUNT:
        error.metadata["locked_account_id"] = str(lock["scope_id"])
    return error


def key_overridden(key: str, level: Level, overrides: Sequence[Any]) -> errors.TiersetError:
    """The refusal of a lock of `key` at `level` over `overrides` (rows of level, scope_id)."""
    shown = [f"{Level(r['level']).lower()}:{r['scope_id']}" for r in overrides[:OVERRIDES_SHOWN]]
    more = len(overrides) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more" if more else "")
    return errors.failed_precondition(
        f"{key} cannot be locked at {level} level: {len(overrides)} scope(s) below override it"
        f" ({listed}); remove those values, or lock with remove_overrides",
        Reason.KEY_OVERRIDDEN,
        key=key,
        overrides=",".join(shown),
        override_count=str(len(overrides)),
    )


def version_mismatch(key: str, expected: int | None, current: int | None) -> errors.TiersetError:
    """A conditional change whose `expected_version` is not the stored version."""
    return errors.aborted(
        f"{key}: expected version {expected}, "
        + ("but it does not exist" if current is None else f"but it is at version {current}"),
        Reason.VERSION_MISMATCH,
        key=key,
        current_version=str(current or 0),
    )
