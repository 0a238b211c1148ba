"""The soak's verdicts: pure functions from what the clients recorded and what the database
holds afterwards to counts that must all be zero.

Each check names one way of losing something (see :mod:`.report` for the table):

* an acknowledged write missing from the final state;
* a changeset partly applied (some of its operations in the log, not all, or not at one
  revision);
* a log row missing for an acknowledged change, a change logged twice, or a log row no
  client sent;
* a watch stream that missed, duplicated, reordered or invented an event, checked against
  the effective values the log implies for its scope, across its reconnects;
* a client view whose final state differs from the database's;
* a read that saw a value never written, or one older than a write acknowledged before it
  started (by more than `grace`: another process's read cache learns of a write by NOTIFY);
* an answer other than OK or UNAVAILABLE (HTTP 503; a refused connection while the gateway
  is down), at any time; a watch stream may also end ABORTED (overflow: resume).
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable, Mapping

from tierset.cli.soak.records import (
    ACKED,
    LogRow,
    Op,
    Read,
    Records,
    ScopeKey,
    Target,
    WatchLog,
)

# What an answer may be, whatever the fault: success, or the documented "try again".
ALLOWED_ANSWERS = frozenset({"OK", "UNAVAILABLE", "HTTP 503", "unreachable"})
# A watch stream may also end ABORTED (WATCH_OVERFLOW: its reader fell behind, which a
# loaded soak can): the documented cue to resume from the last revision, as it does.
ALLOWED_WATCH_ENDS = frozenset({"ABORTED"})

State = dict[str, str]  # key -> value, the effective values of one scope


def chain(scope: ScopeKey, parents: Mapping[ScopeKey, ScopeKey]) -> list[ScopeKey]:
    """The levels a read of `scope` resolves through, most specific first."""
    levels = [scope]
    while levels[-1] in parents:
        levels.append(parents[levels[-1]])
    return levels


def effective(
    stored: Mapping[Target, str], scope: ScopeKey, parents: Mapping[ScopeKey, ScopeKey]
) -> State:
    """`scope`'s effective values given the stored ones (a more specific level wins)."""
    result: State = {}
    for level, scope_id in reversed(chain(scope, parents)):
        for (t_level, t_id, key), value in stored.items():
            if (t_level, t_id) == (level, scope_id):
                result[key] = value
    return result


def _state_after(op: Op) -> str | None:
    return op.value if op.kind == "put" else None


# -- the database ---------------------------------------------------------------------------


def writes_missing(records: Records, final: Mapping[Target, str]) -> int:
    """Targets whose final value is neither the last acknowledged write's nor one sent after
    it (those may have committed unacknowledged)."""
    missing = 0
    for target, ops in records.by_target().items():
        acked = [i for i, op in enumerate(ops) if op.outcome == ACKED]
        start = acked[-1] if acked else 0
        allowed = {_state_after(op) for op in ops[start:]}
        if not acked:
            allowed.add(None)
        if final.get(target) not in allowed:
            missing += 1
    return missing


def _row_matches(row: LogRow, op: Op) -> bool:
    if op.kind == "put":
        return row.operation == "PUT" and row.new_value == op.value
    return row.operation == "DELETE" and row.old_value == op.value


def log_rows(records: Records, rows: Iterable[LogRow]) -> tuple[int, int, int]:
    """(missing, duplicated, unknown): acknowledged changes without their log row; changes
    logged more than once; log rows of the run's targets that match no write sent. A row
    whose old value is not the previous row's new value (a gap in a target's history)
    counts as missing too."""
    by_target: dict[Target, list[LogRow]] = collections.defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.revision, r.seq)):
        by_target[row.target].append(row)
    missing = duplicated = unknown = 0
    ops_by_target = records.by_target()
    for target in set(by_target) | set(ops_by_target):
        target_rows = by_target.get(target, [])
        matched: set[int] = set()
        for op in ops_by_target.get(target, []):
            hits = [i for i, row in enumerate(target_rows) if _row_matches(row, op)]
            matched.update(hits)
            if not hits and op.outcome == ACKED:
                missing += 1
            duplicated += max(0, len(hits) - 1)
        unknown += len(target_rows) - len(matched)
        previous: str | None = None
        for row in target_rows:
            if row.old_value != previous:
                missing += 1
            previous = row.new_value
    return missing, duplicated, unknown


def changesets_partial(records: Records, rows: Iterable[LogRow]) -> int:
    """Changesets with some of their operations logged and not all, or not at one revision
    (an acknowledged one must be there whole)."""
    groups: dict[int, list[Op]] = collections.defaultdict(list)
    for op in records.ops:
        if op.changeset is not None:
            groups[op.changeset].append(op)
    rows = list(rows)
    partial = 0
    for ops in groups.values():
        revisions = [
            {r.revision for r in rows if r.target == op.target and _row_matches(r, op)}
            for op in ops
        ]
        logged = [bool(found) for found in revisions]
        acked = ops[0].outcome == ACKED
        whole = all(logged) and len(set().union(*revisions)) == 1
        if (acked and not whole) or (any(logged) and not whole):
            partial += 1
    return partial


# -- watches ------------------------------------------------------------------------------


class Timeline:
    """The effective values of one scope (keys under a prefix) revision by revision, as
    the log implies them."""

    def __init__(
        self,
        rows: Iterable[LogRow],
        scope: ScopeKey,
        prefix: str,
        parents: Mapping[ScopeKey, ScopeKey],
    ) -> None:
        levels = chain(scope, parents)
        stored: dict[Target, str] = {}
        state: State = {}
        self.revisions: list[int] = [0]
        self.states: list[State] = [{}]
        self.events: dict[int, dict[str, str | None]] = {}
        grouped: dict[int, list[LogRow]] = collections.defaultdict(list)
        for row in rows:
            if row.target[2].startswith(prefix) and (row.target[0], row.target[1]) in levels:
                grouped[row.revision].append(row)
        for revision in sorted(grouped):
            for row in sorted(grouped[revision], key=lambda r: r.seq):
                if row.new_value is None:
                    stored.pop(row.target, None)
                else:
                    stored[row.target] = row.new_value
            after = effective(stored, scope, parents)
            changed = {
                key: after.get(key)
                for key in set(after) | set(state)
                if after.get(key) != state.get(key)
            }
            if changed:
                self.events[revision] = changed
            state = after
            self.revisions.append(revision)
            self.states.append(after)

    def state_at(self, revision: int) -> State:
        """The effective values once everything up to `revision` is applied."""
        return self.states[bisect.bisect_right(self.revisions, revision) - 1]

    def events_between(self, after: int, upto: int) -> set[tuple[int, str, str | None]]:
        """Every (revision, key, value) event in (after, upto]."""
        return {
            (revision, key, value)
            for revision, changed in self.events.items()
            if after < revision <= upto
            for key, value in changed.items()
        }


def watch_stream(watch: WatchLog, timeline: Timeline, final_revision: int) -> dict[str, int]:
    """How `watch`'s messages differ from the timeline: events missed, duplicated, out of
    order, and not implied by the log. A snapshot must equal the state at its revision (each
    key it gets wrong counts as missed); after it, the events of every revision up to the
    last the stream reached (at least `final_revision`: one it never reached was missed)."""
    counts = dict.fromkeys(("missed", "duplicated", "out_of_order", "unknown"), 0)
    expected: set[tuple[int, str, str | None]] = set()
    received: collections.Counter[tuple[int, str, str | None]] = collections.Counter()
    start: int | None = None
    last = 0
    for kind, revision, values in watch.messages:
        if kind == "SNAPSHOT":
            if start is not None:
                expected |= timeline.events_between(start, last)
            want = timeline.state_at(revision)
            counts["missed"] += sum(
                1 for key in set(want) | set(values) if want.get(key) != values.get(key)
            )
            start = last = revision
            continue
        if revision < last or (kind == "EVENTS" and revision == last):
            repeats = kind == "EVENTS" and all(
                received[(revision, k, v)] for k, v in values.items()
            )
            if not repeats:
                counts["out_of_order"] += 1
        for key, value in values.items():
            received[(revision, key, value)] += 1
        last = max(last, revision)
    if start is None:
        return counts
    expected |= timeline.events_between(start, max(last, final_revision))
    counts["missed"] += len(expected - set(received))
    counts["duplicated"] += sum(n - 1 for n in received.values())
    counts["unknown"] += len(set(received) - expected)
    return counts


# -- views, reads, answers -----------------------------------------------------------------


def views_differing(
    records: Records, final: Mapping[Target, str], parents: Mapping[ScopeKey, ScopeKey]
) -> list[str]:
    """The client views whose final values are not the database's (by name)."""
    return [
        name for name, scope, values in records.views if values != effective(final, scope, parents)
    ]


def _allowed(ops: list[Op], state: str | None, since: float) -> bool:
    """Whether a read that started at `since` (less the grace) may see `state`: a state
    written by a write acknowledged before then, at the latest, or by any write after."""
    floor = -1
    for i, op in enumerate(ops):
        if op.outcome == ACKED and op.finished <= since:
            floor = i
    if state is None and floor == -1:
        return True
    return any(_state_after(op) == state for op in ops[max(floor, 0) :])


def wrong_reads(records: Records, parents: Mapping[ScopeKey, ScopeKey], grace: float) -> int:
    """Reads that saw a value nobody wrote, at the wrong level, or older than allowed."""
    ops = records.by_target()
    wrong = 0
    for read in records.reads:
        if not _read_ok(read, ops, parents, grace):
            wrong += 1
    return wrong


def _read_ok(
    read: Read,
    ops: Mapping[Target, list[Op]],
    parents: Mapping[ScopeKey, ScopeKey],
    grace: float,
) -> bool:
    since = read.started - grace
    for key in read.keys:
        seen = read.seen.get(key)
        for level, scope_id in chain(read.scope, parents):
            target_ops = ops.get((level, scope_id, key), [])
            if seen is not None and seen[0] == level:
                if not _allowed(target_ops, seen[1], since):
                    return False
                break
            # A more specific level than the one answered (or none answered) must be unset.
            if not _allowed(target_ops, None, since):
                return False
        else:
            if seen is not None:
                return False  # answered from a level the scope does not resolve through
    return True


def during(records: Records, at: float, settle: float) -> str | None:
    """The fault in progress at `at` (or ended less than `settle` seconds before), if any."""
    for fault, start, end in records.windows:
        if start <= at <= end + settle:
            return fault
    return None


def unexpected_answers(records: Records, settle: float) -> collections.Counter[str]:
    """Answers other than OK and UNAVAILABLE, by via, status and the fault they came in."""
    return collections.Counter(
        f"{a.via} {a.status} ({during(records, a.at, settle) or 'no fault'})"
        for a in records.answers
        if a.status not in ALLOWED_ANSWERS
        and not (a.via == "watch" and a.status in ALLOWED_WATCH_ENDS)
    )


def unavailable_outside_faults(records: Records, settle: float) -> int:
    """UNAVAILABLE answers with no fault in progress (nor within `settle` seconds after one):
    reported, not failed on (a reconnect may lag a fault's end)."""
    return sum(
        1 for a in records.answers if a.status != "OK" and during(records, a.at, settle) is None
    )
