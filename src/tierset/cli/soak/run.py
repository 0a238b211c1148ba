"""One soak run: fresh scopes, the whole load at once, the faults spread over the run, then
a settled look at the database and the checks.

The order matters for the checks: watchers and views start (and hold their first snapshot)
before the first write, so every change of the run is theirs to receive; writers stop
before the final revision is read, and the watchers are given until they reach it.

The database is read directly (not through the store or the API) as an independent
witness: the settings table for the final state, change_log for the history.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tierset.cli.soak import checks
from tierset.cli.soak.cluster import Cluster
from tierset.cli.soak.faults import FAULTS, FaultNotInjected, Injector
from tierset.cli.soak.load import CALL_TIMEOUT_SECONDS, PREFIX, Clients, Plan, grpc_channel
from tierset.cli.soak.records import ACKED, LogRow, Records, ScopeKey, Target, WatchLog
from tierset.cli.soak.watchers import open_view, raw_watch, settle
from tierset.v1 import accounts_pb2, accounts_pb2_grpc

SETTLE_SECONDS = 15.0  # how long watchers and views get to reach the final revision
# How long another process's read cache may lag an acknowledged write: its NOTIFY, heard
# by an event loop that, on a loaded 2-core machine, may be busy for a while.
READ_GRACE_SECONDS = 2.0
# UNAVAILABLE within this long after a fault's recovery is its tail, not a new outage.
FAULT_TAIL_SECONDS = 2.0

_REVISION = "SELECT revision FROM revision_counter"
_FINAL = """
SELECT lower(level::text) AS level, coalesce(retailer_id, account_id) AS scope_id, key,
       value #>> '{}' AS value
  FROM settings
 WHERE ((level = 'ACCOUNT' AND account_id = $1) OR (level = 'RETAILER' AND retailer_id = $2))
   AND key LIKE $3
"""
_LOG = """
SELECT revision, seq, lower(level::text) AS level, coalesce(retailer_id, account_id) AS scope_id,
       key, operation::text AS operation, old_value #>> '{}' AS old_value,
       new_value #>> '{}' AS new_value
  FROM change_log
 WHERE owner_account_id = $1 AND operation IN ('PUT', 'DELETE') AND key LIKE $2
"""


@dataclass(frozen=True)
class Spec:
    """What one run does."""

    faults: tuple[str, ...]
    seconds: float
    workers: int
    outage_seconds: float

    @property
    def label(self) -> str:
        if len(self.faults) > 1 and set(self.faults) == set(FAULTS):
            return "all faults"
        return "+".join(self.faults) or "no fault"


@dataclass
class Result:
    """One run's counts (each must be zero) and what it did, for the report."""

    spec: Spec
    failures: dict[str, int] = field(default_factory=dict)
    figures: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.failures.values())


Tamper = Callable[[Cluster, ScopeKey, ScopeKey], Awaitable[None]]


async def _scopes(cluster: Cluster) -> tuple[ScopeKey, ScopeKey]:
    # The run's own set-up, before any load or fault: it waits for a connection
    # (wait_for_ready) rather than fail on one refused while a restarted server settles.
    async with grpc_channel(_plan(cluster, ("account", 0), ("retailer", 0))) as channel:
        stub = accounts_pb2_grpc.AccountServiceStub(channel)
        account = await stub.CreateAccount(
            accounts_pb2.CreateAccountRequest(display_name="soak"),
            timeout=CALL_TIMEOUT_SECONDS,
            wait_for_ready=True,
        )
        retailer = await stub.CreateRetailer(
            accounts_pb2.CreateRetailerRequest(
                account_id=account.account.id, display_name="soak retailer"
            ),
            timeout=CALL_TIMEOUT_SECONDS,
            wait_for_ready=True,
        )
    return ("account", account.account.id), ("retailer", retailer.retailer.id)


def _plan(cluster: Cluster, account: ScopeKey, retailer: ScopeKey) -> Plan:
    return Plan(cluster.grpc_target, cluster.http_base, cluster.token, account, retailer)


async def run(
    cluster: Cluster, spec: Spec, *, seed: int = 7, tamper: Tamper | None = None
) -> Result:
    """Runs `spec` against `cluster` (which it leaves running and healthy).

    `tamper`, for the tests that prove the checks can fail, is called after the load
    stopped and before the database is read."""
    await cluster.serving()  # the run before may have ended just after a restart
    account, retailer = await _scopes(cluster)
    plan = _plan(cluster, account, retailer)
    parents = {retailer: account}
    records = Records()
    stop, watch_stop = asyncio.Event(), asyncio.Event()
    clients = Clients(plan, records, stop, seed)
    writers = [f"G{i}" for i in range(spec.workers)]
    rest_writers = [f"R{i}" for i in range(max(1, spec.workers // 4))]
    changeset_writers = [f"C{i}" for i in range(max(1, spec.workers // 4))]
    everyone = writers + rest_writers + changeset_writers
    clients.all_keys = sorted({t[2] for w in everyone for t in plan.targets(w)})

    result = Result(spec)
    async with contextlib.AsyncExitStack() as cleanup:
        # Watchers first, each with its snapshot, so the whole run is theirs to receive.
        logs = [
            WatchLog(f"watch {i} {scope[0]}", scope, PREFIX)
            for i in range(2)
            for scope in (account, retailer)
        ]
        watch_tasks = [
            asyncio.create_task(raw_watch(plan, w.scope, w, records, watch_stop)) for w in logs
        ]
        cleanup.push_async_callback(_cancel, watch_tasks)
        views = []
        for scope in (account, retailer):
            client, view = await open_view(plan, scope)
            cleanup.push_async_callback(client.close)
            cleanup.push_async_callback(view.close)
            views.append((scope, view))
        await snapshots_held(logs)

        tasks = [asyncio.create_task(clients.grpc_writer(w)) for w in writers]
        tasks += [asyncio.create_task(clients.rest_writer(w)) for w in rest_writers]
        tasks += [asyncio.create_task(clients.changeset_writer(w)) for w in changeset_writers]
        readers = max(1, spec.workers // 2)
        tasks += [asyncio.create_task(clients.grpc_reader()) for _ in range(readers)]
        tasks.append(asyncio.create_task(clients.rest_reader()))
        cleanup.push_async_callback(_cancel, tasks)
        try:
            await _faults(spec, Injector(cluster, spec.outage_seconds), records, result)
        finally:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), CALL_TIMEOUT_SECONDS * 2)

        final_revision = int((await cluster.fetch(_REVISION))[0][0])
        behind = await settle(logs, [v for _, v in views], final_revision, SETTLE_SECONDS)
        result.notes += [f"{name} did not reach revision {final_revision}" for name in behind]
        watch_stop.set()
        await asyncio.wait_for(asyncio.gather(*watch_tasks), CALL_TIMEOUT_SECONDS)
        for scope, view in views:
            values = {k: str(v) for k, v in view.items().items()}
            records.views.append((f"view {scope[0]}", scope, values))
        records.watches = logs

    if tamper is not None:
        await tamper(cluster, account, retailer)
    final, rows = await _database(cluster, account, retailer)
    _judge(result, records, final, rows, parents, final_revision)
    return result


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels what is still running (after a run cut short) and waits, bounded."""
    for task in tasks:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), CALL_TIMEOUT_SECONDS)


async def snapshots_held(logs: list[WatchLog]) -> None:
    """Waits (bounded) until every raw watcher holds its first snapshot."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while any(not w.messages for w in logs):
        if time.monotonic() > deadline:
            raise TimeoutError("a watcher got no snapshot")
        await asyncio.sleep(0.02)


async def _faults(spec: Spec, injector: Injector, records: Records, result: Result) -> None:
    """The faults one after another, evenly spread, with steady load before and after."""
    started = time.monotonic()
    warmup = min(2.0, spec.seconds * 0.2)
    slot = (spec.seconds - 2 * warmup) / max(1, len(spec.faults))
    await asyncio.sleep(warmup)
    for n, fault in enumerate(spec.faults):
        begin = time.monotonic()
        try:
            did = await injector.inject(fault)
            result.notes.append(f"{fault}: {did}; recovered {time.monotonic() - begin:.1f} s in")
        except FaultNotInjected as error:
            result.failures["faults not injected"] = (
                result.failures.get("faults not injected", 0) + 1
            )
            result.notes.append(f"{fault}: NOT INJECTED: {error}")
        records.windows.append((fault, begin, time.monotonic()))
        # Steady load between faults, and after the last at least as long as before the
        # first, however long the recoveries took: writes after recovery count too.
        next_at = started + warmup + slot * (n + 1)
        await asyncio.sleep(max(0.5, next_at - time.monotonic()))
    await asyncio.sleep(max(warmup, started + spec.seconds - time.monotonic()))


async def _database(
    cluster: Cluster, account: ScopeKey, retailer: ScopeKey
) -> tuple[dict[Target, str], list[LogRow]]:
    final = {
        (r["level"], r["scope_id"], r["key"]): r["value"]
        for r in await cluster.fetch(_FINAL, account[1], retailer[1], PREFIX + "%")
    }
    rows = [
        LogRow(
            r["revision"],
            r["seq"],
            (r["level"], r["scope_id"], r["key"]),
            r["operation"],
            r["old_value"],
            r["new_value"],
        )
        for r in await cluster.fetch(_LOG, account[1], PREFIX + "%")
    ]
    return final, rows


def _judge(
    result: Result,
    records: Records,
    final: dict[Target, str],
    rows: list[LogRow],
    parents: dict[ScopeKey, ScopeKey],
    final_revision: int,
) -> None:
    log_missing, log_duplicated, log_unknown = checks.log_rows(records, rows)
    watch = dict.fromkeys(("missed", "duplicated", "out_of_order", "unknown"), 0)
    for w in records.watches:
        timeline = checks.Timeline(rows, w.scope, w.prefix, parents)
        for name, n in checks.watch_stream(w, timeline, final_revision).items():
            watch[name] += n
    differing = checks.views_differing(records, final, parents)
    result.notes += [f"{name} differs from the database" for name in differing]
    unexpected = checks.unexpected_answers(records, FAULT_TAIL_SECONDS)
    outside = collections.Counter(
        f"{a.via} {a.status}"
        for a in records.answers
        if a.status != "OK" and checks.during(records, a.at, FAULT_TAIL_SECONDS) is None
    )
    result.notes += [f"outside a fault: {what} x{n}" for what, n in sorted(outside.items())]
    result.unexpected = dict(unexpected)
    result.failures.update(
        {
            "acknowledged writes missing": checks.writes_missing(records, final),
            "changesets partly applied": checks.changesets_partial(records, rows),
            "log rows missing (acknowledged changes)": log_missing,
            "log rows duplicated": log_duplicated,
            "log rows no client wrote": log_unknown,
            "watch events missed": watch["missed"],
            "watch events duplicated": watch["duplicated"],
            "watch events out of order": watch["out_of_order"],
            "watch events the log does not imply": watch["unknown"],
            "client views differing from the database": len(differing),
            "wrong reads": checks.wrong_reads(records, parents, READ_GRACE_SECONDS),
            "answers other than OK/UNAVAILABLE": sum(unexpected.values()),
        }
    )
    result.failures.setdefault("faults not injected", 0)
    result.failures.setdefault("runs that did not complete", 0)
    acked = sum(1 for op in records.ops if op.outcome == ACKED)
    recovered = max((end for _, _, end in records.windows), default=0.0)
    result.figures.update(
        {
            "writes acknowledged": acked,
            "  of which through the gateway": sum(
                1 for op in records.ops if op.outcome == ACKED and op.via == "rest"
            ),
            "  of which after the last recovery": sum(
                1 for op in records.ops if op.outcome == ACKED and op.started > recovered
            ),
            "changesets acknowledged": len(
                {op.changeset for op in records.ops if op.outcome == ACKED and op.changeset}
            ),
            "writes unacknowledged (may or may not apply)": len(records.ops) - acked,
            "reads checked": len(records.reads),
            "watch messages received": sum(len(w.messages) for w in records.watches),
            "watch reconnects": sum(w.reconnects for w in records.watches),
            "UNAVAILABLE answers": sum(
                1
                for a in records.answers
                if a.status not in ("OK",) and a.status in checks.ALLOWED_ANSWERS
            ),
            "  of which outside a fault": checks.unavailable_outside_faults(
                records, FAULT_TAIL_SECONDS
            ),
            "log rows": len(rows),
        }
    )
