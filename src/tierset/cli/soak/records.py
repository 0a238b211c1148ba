"""What the soak's clients did and saw, kept for the checks (:mod:`.checks`).

A *target* is one key at one stored level and scope: ``("account", 7, "SOAK.K1")`` or
``("retailer", 9, "SOAK.K1")``. Each target is written by exactly one writer, one call at a
time, so its operations form one sequence and "what the target must hold" has one answer.
Every value written is unique (a fresh uuid), so a value found anywhere — the settings
table, the change log, a read, a watch event — names the one operation that wrote it.

An operation's outcome:

* ``acked``: the server said it was done. It must be in the database and in the log, once.
* ``uncertain``: the call failed (UNAVAILABLE, a dropped connection, a 503): it may or may
  not have committed, so it may be in the log at most once and may be the final state.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

# ("account" | "retailer", id)
ScopeKey = tuple[str, int]
# (level, scope id, key)
Target = tuple[str, int, str]

ACKED = "acked"
UNCERTAIN = "uncertain"
PENDING = "pending"


@dataclass
class Op:
    """One write a client sent: a put of `value`, or a delete removing `value`."""

    target: Target
    kind: str  # "put" | "delete"
    value: str
    via: str  # "grpc" | "rest" | "changeset"
    started: float
    finished: float = 0.0
    outcome: str = PENDING
    changeset: int | None = None  # the changeset's number when written in one


@dataclass
class Read:
    """One read of `scope`'s effective values of `keys`: key -> (level, value) or None."""

    scope: ScopeKey
    started: float
    keys: tuple[str, ...]
    seen: dict[str, tuple[str, str] | None]
    via: str


@dataclass
class Answer:
    """One call's outcome, for the count of unexpected answers."""

    at: float
    via: str  # "grpc" | "rest" | "watch" | "view"
    status: str  # "OK", a gRPC code name, "HTTP 503", "unreachable"


@dataclass
class WatchLog:
    """What one watch stream (reconnecting) received, in order of arrival.

    ``messages`` holds (kind, revision, {key: value or None}) with kind SNAPSHOT, EVENTS or
    PROGRESS; a SNAPSHOT's map is the whole watched state, an EVENTS map the keys that
    changed at that revision.
    """

    name: str
    scope: ScopeKey
    prefix: str
    messages: list[tuple[str, int, dict[str, str | None]]] = field(default_factory=list)
    reconnects: int = 0

    @property
    def revision(self) -> int:
        """The revision it has seen everything up to."""
        return max((revision for _, revision, _ in self.messages), default=0)


@dataclass
class Records:
    """Everything one run recorded."""

    ops: list[Op] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    watches: list[WatchLog] = field(default_factory=list)
    # (name, scope, final {key: value}) of each client view after the run settled.
    views: list[tuple[str, ScopeKey, dict[str, str]]] = field(default_factory=list)
    # The fault windows: (fault, start, end) on the monotonic clock.
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_target(self) -> dict[Target, list[Op]]:
        """Each target's operations in the order they were sent."""
        grouped: dict[Target, list[Op]] = collections.defaultdict(list)
        for op in sorted(self.ops, key=lambda o: o.started):
            grouped[op.target].append(op)
        return grouped


@dataclass(frozen=True)
class LogRow:
    """One change_log row, values as text (None: no value)."""

    revision: int
    seq: int
    target: Target
    operation: str  # "PUT" | "DELETE"
    old_value: str | None
    new_value: str | None
