"""One load process for the whole of `make bench`, kept between workloads.

Usage: ``python bench/loader.py`` reads one JSON object per line on stdin,
``{"script": "load.py", "spec": {...}}``, runs that load client's ``run(spec)`` in this
process (load.py, history_load.py, sql_load.py or http_load.py, imported once) and writes
its JSON result as one line on stdout; ``{"error": "..."}`` when it raised.

Why: each of those clients used to be a fresh Python process per workload, and
load.py spawned two more. Importing grpc alone took 1-4 s of wall time on the loaded
2-core box, i.e. several seconds of every 2.5-second interleaved round went to starting
Python, and that, not measuring, was where most of `make bench`'s ten minutes went. The
clients still measure only their own window (each reports the CPU it burnt during it,
as a difference), so a kept process changes no figure but the wall time around it.

One event loop runs for the process's life (grpc.aio binds to the loop it first runs
on); a client whose ``run`` is synchronous (wrk's) runs on a thread.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
CLIENTS = {"load.py", "history_load.py", "sql_load.py", "http_load.py"}


async def answer(line: str) -> dict[str, Any]:
    order = json.loads(line)
    if order["script"] not in CLIENTS:
        return {"error": f"unknown load client {order['script']!r}"}
    run = importlib.import_module(order["script"].removesuffix(".py")).run
    try:
        if inspect.iscoroutinefunction(run):
            return dict(await run(order["spec"]))
        return dict(await asyncio.to_thread(run, order["spec"]))
    except (Exception, SystemExit):  # reported to the bench, which fails the workload
        return {"error": traceback.format_exc()[-2000:]}


async def main() -> None:
    while line := await asyncio.to_thread(sys.stdin.readline):
        print(json.dumps(await answer(line)), flush=True)


if __name__ == "__main__":
    uvloop.run(main())
