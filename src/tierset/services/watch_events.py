"""Watch's rules, pure: which watched (scope, key) pairs a log row may affect, and how
each revision changes their effective values.

A watched pair is (retailer_id or None, account_id, key). Its effective setting is the
first that is set of its RETAILER, ACCOUNT and GLOBAL triples (precedence, as
GetSettings resolves it). A log row at

* GLOBAL reaches every watcher of the key (each decides by its own overrides);
* ACCOUNT a reaches watchers of a and of a's retailers;
* RETAILER r reaches watchers of r only,

and an event is sent only where the pair's effective setting actually changed: a
GLOBAL change shadowed by an override, or an ACCOUNT change shadowed by a retailer's
value, changes nothing for that scope and sends nothing.

A setting's lock is part of it (``StoredSetting.lock``): a lock or unlock row (0008)
keeps the value and changes its lock, so a scope whose effective value it is hears an
event with ``setting`` locked (or unlocked) and ``previous`` as it was. A lock can only
ever be of a value effective for every scope below it (locking over overrides is refused
unless ``remove_overrides`` deletes them, in the same revision, and nothing may override
a locked value), so a lock is never shadowed: an ACCOUNT lock over a retailer's override
is heard by that retailer as one event, the override replaced by the locked value.

:func:`replay` walks a batch forward: from each triple's state after the batch's first
revision minus one (the store resolves it from the log, in the same snapshot), applying
each revision's rows in order, so a batch of many revisions yields each revision's own
events, previous values included. The same function serves the hub's live batches and a
watcher's resume from ``start_revision``, so both send identical events for a revision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from tierset.core.values import Level
from tierset.store.database import StoredSetting
from tierset.store.watch import LoggedChange, Triple

# (retailer_id or None, account_id, key)
Pair = tuple[int | None, int, str]

KIND_SNAPSHOT = "SNAPSHOT"
KIND_EVENTS = "EVENTS"
KIND_PROGRESS = "PROGRESS"


@dataclass(frozen=True)
class Event:
    """One key's effective setting before and after a revision (None: not set)."""

    key: str
    setting: StoredSetting | None
    previous: StoredSetting | None


@dataclass(eq=False)
class Message:
    """One message of a watch stream; shared by every watcher of the same scope and keys,
    so `renderings` keeps what adapters built from it (a proto, an SSE frame) once."""

    kind: str
    revision: int
    settings: tuple[StoredSetting, ...] = ()
    events: tuple[Event, ...] = ()
    renderings: dict[str, Any] = field(default_factory=dict, repr=False)


def triples(pair: Pair) -> list[Triple]:
    """The pair's stored settings, most specific first."""
    retailer_id, account_id, key = pair
    found: list[Triple] = [] if retailer_id is None else [(Level.RETAILER, retailer_id, key)]
    return [*found, (Level.ACCOUNT, account_id, key), (Level.GLOBAL, 0, key)]


def effective(states: dict[Triple, StoredSetting | None], pair: Pair) -> StoredSetting | None:
    """The pair's effective setting in `states` (missing triples: not set)."""
    for triple in triples(pair):
        setting = states.get(triple)
        if setting is not None:
            return setting
    return None


def reaches(change: LoggedChange, retailer_id: int | None, account_id: int) -> bool:
    """Whether a change at `change`'s level and scope can alter what this scope resolves."""
    if change.level is Level.GLOBAL:
        return True
    if change.level is Level.ACCOUNT:
        return change.scope_id == account_id
    return retailer_id is not None and change.scope_id == retailer_id


def _apply(states: dict[Triple, StoredSetting | None], row: LoggedChange) -> None:
    """The triple's state after `row`: a lock or unlock keeps the value and sets its lock;
    a put keeps the lock of the row it updates (a new row, after a delete, has none)."""
    current = states.get(row.triple)
    if row.relock:
        base = current if current is not None else row.after
        states[row.triple] = None if base is None else replace(base, lock=row.lock)
    elif (
        current is not None  # only values ever locked pay for the check below
        and current.lock is not None
        and row.after is not None
        and row.after.id == current.id
    ):
        states[row.triple] = replace(row.after, lock=current.lock)
    else:
        states[row.triple] = row.after


def replay(
    changes: Iterable[LoggedChange],
    pairs_of: dict[Triple, list[Pair]],
    states: dict[Triple, StoredSetting | None],
) -> dict[int, dict[Pair, Event]]:
    """Each revision's effective changes of the pairs: revision -> pair -> event.

    `states` holds every triple of every pair as it stood before the first change
    (it is updated in place); `pairs_of` says which pairs each triple is part of.
    Revisions come out in order; a revision that changed nothing watched is absent.
    """
    by_revision: dict[int, list[LoggedChange]] = defaultdict(list)
    for change in changes:
        by_revision[change.revision].append(change)
    result: dict[int, dict[Pair, Event]] = {}
    for revision in sorted(by_revision):
        rows = by_revision[revision]
        touched = {pair for row in rows for pair in pairs_of.get(row.triple, ())}
        if not touched:
            for row in rows:
                _apply(states, row)
            continue
        before = {pair: effective(states, pair) for pair in touched}
        for row in rows:
            _apply(states, row)
        events: dict[Pair, Event] = {}
        for pair in touched:
            after = effective(states, pair)
            if after != before[pair]:
                events[pair] = Event(pair[2], after, before[pair])
        if events:
            result[revision] = events
    return result
