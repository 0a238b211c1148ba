"""The load client: a separate process that drives one workload and reports what it saw.

Usage: ``python bench/load.py SPEC.json`` prints a JSON result. The spec names
the target, the gRPC method, a file of pre-serialised requests (pickled list of
bytes, sent round-robin), the total concurrency, how many client processes
share it, and how long to warm up and measure.

The client sends and receives raw bytes (no protobuf work) and runs on uvloop,
in several processes, so that it costs as little CPU as a Python client can;
each process opens its own connections. It still shares the machine's cores
with the server it measures: see the README's performance section.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
import resource
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

# Connections spread over SO_REUSEPORT workers by the kernel's hash: enough of them
# that two server processes get an even share.
CHANNELS_PER_PROCESS = 8


async def _drive(spec: dict[str, Any], worker: int, concurrency: int) -> dict[str, Any]:
    requests: list[bytes] = pickle.loads(Path(spec["requests_file"]).read_bytes())  # noqa: S301
    channels = [
        grpc.aio.insecure_channel(
            spec["target"],
            # Own connections, not shared with the other channels of this process.
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(CHANNELS_PER_PROCESS)
    ]
    calls = [channel.unary_unary(spec["method"]) for channel in channels]
    metadata = tuple(tuple(pair) for pair in spec.get("metadata", [])) or None
    warm_until = time.perf_counter() + spec["warmup_seconds"]
    stop_at = warm_until + spec["seconds"]
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def client(n: int) -> None:
        call = calls[n % len(calls)]
        i = worker * 7919 + n * 104729
        while True:
            payload = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            if started >= stop_at:
                return
            try:
                await call(payload, timeout=10, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                if started >= warm_until:
                    errors[error.code().name] = errors.get(error.code().name, 0) + 1
                continue
            if started >= warm_until:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    for channel in channels:
        await channel.close()
    return {"latencies": latencies, "errors": errors}


def _worker(spec: dict[str, Any], worker: int, concurrency: int, out: Any) -> None:
    out.send(uvloop.run(_drive(spec, worker, concurrency)))
    out.close()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs the workload in `spec["processes"]` client processes; merges their results."""
    processes = spec["processes"]
    shares = [spec["concurrency"] // processes] * processes
    shares[0] += spec["concurrency"] - sum(shares)
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for worker, share in enumerate(shares):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(spec, worker, share, send))
        process.start()
        pipes.append(receive)
        workers.append(process)
    results = [pipe.recv() for pipe in pipes]
    for process in workers:
        process.join()
    latencies = sorted(x for r in results for x in r["latencies"])
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)

    def percentile(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "rps": len(latencies) / spec["seconds"],
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "errors": errors,
        # CPU the client itself burnt, warm-up included, as a share of one core.
        "client_cpu_cores": (usage.ru_utime + usage.ru_stime)
        / (spec["seconds"] + spec["warmup_seconds"]),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
