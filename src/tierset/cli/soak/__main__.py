"""``python -m tierset.cli.soak``: load and faults against a tierset of its own, a report
table, and an exit status that says whether anything was lost (0: every count is zero).

``--faults`` lists the faults of one run (``all`` for every one); ``--each`` first gives
every listed fault a run of its own, then runs them all in one. Every run has fresh scopes
on the same cluster (each fault leaves it recovered). A watchdog thread bounds the whole
command: past ``--budget-seconds`` it dumps every thread's stack, kills what the soak
started and exits 3, so the soak never hangs a CI job.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import sys
import threading
import traceback
from pathlib import Path

from tierset.cli.soak.cluster import ChildFailed, Cluster
from tierset.cli.soak.faults import FAULTS
from tierset.cli.soak.report import table
from tierset.cli.soak.run import Result, Spec, run

WATCHDOG_EXIT = 3


def parse_faults(text: str) -> tuple[str, ...]:
    """``all``, ``none`` or a comma-separated list of FAULTS."""
    if text == "all":
        return FAULTS
    if text in ("", "none"):
        return ()
    faults = tuple(f.strip() for f in text.split(","))
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown)}; choose from {', '.join(FAULTS)} or all"
        )
    return faults


def specs(args: argparse.Namespace) -> list[Spec]:
    """The runs the arguments ask for, in order."""
    runs = [(f,) for f in args.faults] if args.each and len(args.faults) > 1 else []
    runs.append(args.faults)
    return [Spec(tuple(f), args.seconds, args.workers, args.outage_seconds) for f in runs]


async def soak(runs: list[Spec], cluster: Cluster) -> list[Result]:
    """Starts the cluster, runs every spec on it, stops it; prints each run as it ends."""
    results = []
    try:
        await cluster.start()
        for spec in runs:
            try:
                result = await run(cluster, spec)
            except Exception as error:  # a run cut short fails; the next ones may still tell
                result = Result(spec, failures={"runs that did not complete": 1})
                # The soak's own frame nearest the failure, not gRPC's or asyncio's.
                frames = traceback.extract_tb(error.__traceback__)
                where = [f for f in frames if "/soak/" in f.filename][-1]
                result.notes.append(
                    f"did not complete: {type(error).__name__}: {error}"
                    f" (at {Path(where.filename).name}:{where.lineno} in {where.name})"
                )
            results.append(result)
            print(f"soak: run {spec.label} {'ok' if result.ok else 'FAILED'}", flush=True)
            if not result.ok:
                print(cluster.log_tail(), flush=True)
    finally:
        await cluster.stop()
    return results


def _watchdog(cluster: Cluster, seconds: float) -> threading.Timer:
    def fire() -> None:
        print(f"soak: watchdog: still running after {seconds:g} s; stacks:", flush=True)
        faulthandler.dump_traceback(all_threads=True)
        cluster.emergency_stop()
        os._exit(WATCHDOG_EXIT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    """Runs the soak and prints its report; the exit status says whether it passed."""
    parser = argparse.ArgumentParser(prog="python -m tierset.cli.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--workers", type=int, default=8, help="gRPC writers (readers: half)")
    parser.add_argument("--outage-seconds", type=float, default=2.0, help="each fault's down time")
    parser.add_argument(
        "--faults", type=parse_faults, default=FAULTS, help=f"all, none, or of {','.join(FAULTS)}"
    )
    parser.add_argument("--each", action="store_true", help="also one run per fault, first")
    parser.add_argument(
        "--budget-seconds", type=float, default=600.0, help="the watchdog's limit for it all"
    )
    args = parser.parse_args(argv)
    # The servers' own warnings go to their log files; the client library's reconnect
    # warnings during the faults would drown the report.
    logging.basicConfig(level=logging.ERROR)
    cluster = Cluster()
    timer = _watchdog(cluster, args.budget_seconds)
    try:
        results = asyncio.run(soak(specs(args), cluster))
    except ChildFailed as error:
        print(f"soak: could not start the system under soak: {error}", flush=True)
        return 1
    finally:
        timer.cancel()
    print(table(results), flush=True)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
