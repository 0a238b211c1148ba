"""What the machine was doing while a workload ran, so that a slow figure can say why.

Two things a load client and a server's CPU time cannot show:

* the host's share of this VM's CPU time it took back (``steal``) and the share spent
  idle waiting on I/O (``iowait``), from /proc/stat's first line, for the workload's
  window: on a shared 2-core VM a few seconds of steal look exactly like a server that
  went idle;
* where PostgreSQL's client backends were while the workload ran: every 100 ms one look
  at ``pg_stat_activity`` counts each active backend as on CPU or in its wait event.
  Shares of those looks are a sampling profile of the database side, the one py-spy
  cannot take.

`Conditions` measures one window: enter it around the workload, read `figures()` after.
The sampling connection is the bench's own (the admin DSN); a look costs well under a
millisecond of PostgreSQL's time. When PostgreSQL cannot be reached the window still
reports the host's figures and an empty profile: conditions never fail a workload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

SAMPLE_SECONDS = 0.1
# Active client backends other than the sampler's own; NULL wait event: on CPU.
_LOOK = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS state
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
"""


def cpu_ticks() -> list[int]:
    """The machine's CPU time so far, in ticks: user nice system idle iowait irq softirq
    steal (guest time is counted within user, so it is left out)."""
    return [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def host_shares(before: list[int], after: list[int]) -> dict[str, float]:
    """Steal and I/O wait as shares of all the CPU time between two `cpu_ticks`."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent) or 1
    return {"steal": spent[7] / total, "iowait": spent[4] / total}


class Conditions:
    """One workload's window: the host's shares and PostgreSQL's sampled wait events."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self.looks = 0
        self.states: Counter[str] = Counter()
        self._before: list[int] = []
        self._after: list[int] = []
        self._sampler: asyncio.Task[None] | None = None
        self._done = asyncio.Event()

    async def __aenter__(self) -> Conditions:
        self._before = cpu_ticks()
        if self.dsn:
            self._sampler = asyncio.create_task(self._sample(self.dsn))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._after = cpu_ticks()
        self._done.set()
        if self._sampler is not None:
            await self._sampler

    async def _sample(self, dsn: str) -> None:
        try:
            connection = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            return  # no profile of the database side; the workload's figures stand
        try:
            while not self._done.is_set():
                rows = await connection.fetch(_LOOK, timeout=5)
                self.looks += 1
                self.states.update(row["state"] for row in rows)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), SAMPLE_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return  # the database went away mid-window: the looks so far stand
        finally:
            with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError):
                await connection.close(timeout=1)

    def figures(self) -> dict[str, Any]:
        """``host``: steal and iowait shares; ``pg``: the mean number of active backends
        and each state's share of them (largest first)."""
        found: dict[str, Any] = {"host": host_shares(self._before, self._after or cpu_ticks())}
        busy = sum(self.states.values())
        found["pg"] = {
            "looks": self.looks,
            "active_backends": busy / self.looks if self.looks else 0.0,
            "states": {state: n / busy for state, n in self.states.most_common()} if busy else {},
        }
        return found


def merged(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several windows' figures (a workload's interleaved rounds) as one: the host's shares
    averaged, PostgreSQL's looks pooled."""
    if not windows:
        return {}
    looks = sum(w["pg"]["looks"] for w in windows)
    busy = [w["pg"]["active_backends"] * w["pg"]["looks"] for w in windows]
    states: Counter[str] = Counter()
    for window, backends in zip(windows, busy, strict=True):
        for state, share in window["pg"]["states"].items():
            states[state] += share * backends
    total = sum(states.values())
    return {
        "host": {
            name: sum(w["host"][name] for w in windows) / len(windows)
            for name in ("steal", "iowait")
        },
        "pg": {
            "looks": looks,
            "active_backends": sum(busy) / looks if looks else 0.0,
            "states": {state: n / total for state, n in states.most_common()} if total else {},
        },
    }


def summary(figures: dict[str, Any], top: int = 3) -> str:
    """One line: ``steal 1 %, iowait 0 %; PostgreSQL 2.1 active: CPU 70 %, ...``."""
    host = figures.get("host", {})
    line = f"steal {host.get('steal', 0):.0%}, iowait {host.get('iowait', 0):.0%}"
    pg = figures.get("pg", {})
    if pg.get("states"):
        states = list(pg["states"].items())[:top]
        line += f"; PostgreSQL {pg['active_backends']:.1f} active: " + ", ".join(
            f"{state} {share:.0%}" for state, share in states
        )
    return line
