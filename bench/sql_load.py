"""The database's limit: the precedence statement itself over asyncpg, no gRPC.

Usage: ``python bench/sql_load.py SPEC.json`` prints a JSON result, like
load.py. One process with a pool the size of a tierset server's, running
`effective_settings` (the statement GetSettings runs) for the same scopes and
keys at the same concurrency.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from tierset.ops.large_reads import LARGE_READ_BYTES
from tierset.store.database import query


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    # This run's CPU alone: bench/loader.py runs many in one process.
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    pool = await asyncpg.create_pool(spec["dsn"], min_size=spec["pool"], max_size=spec["pool"])
    statement = query("effective_settings")
    reads: list[tuple[str, int, list[str]]] = [tuple(r) for r in spec["reads"]]  # type: ignore[misc]
    warm_until = time.perf_counter() + spec["warmup_seconds"]
    stop_at = warm_until + spec["seconds"]
    latencies: list[float] = []

    async def client(n: int) -> None:
        i = n * 104729
        while (started := time.perf_counter()) < stop_at:
            level, scope_id, keys = reads[i % len(reads)]
            i += 1
            # The statement as the store sends it: values inline up to LARGE_READ_BYTES.
            await pool.fetch(statement, level, scope_id, keys, None, LARGE_READ_BYTES)
            if started >= warm_until:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(n) for n in range(spec["concurrency"])))
    await pool.close()
    latencies.sort()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "rps": len(latencies) / spec["seconds"],
        "p50_ms": percentile(0.5),
        "p99_ms": percentile(0.99),
        "errors": {},
        "client_cpu_cores": cpu / (spec["seconds"] + spec["warmup_seconds"]),
    }


if __name__ == "__main__":
    print(json.dumps(uvloop.run(run(json.loads(Path(sys.argv[1]).read_text())))))
