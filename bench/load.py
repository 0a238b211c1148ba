"""The load client: a separate process that drives one workload and reports what it saw.

Usage: ``python bench/load.py SPEC.json`` prints a JSON result (bench/loader.py calls
`run` instead, in the one load process it keeps for the whole bench). The spec names
the target, the gRPC method, a file of pre-serialised requests (pickled list of
bytes, sent round-robin), the total concurrency, how many client processes
share it, and how long to warm up and measure.

The client sends and receives raw bytes (no protobuf work) and runs on uvloop,
in several processes, so that it costs as little CPU as a Python client can;
each process opens its own connections for each workload. The processes are kept from
one workload to the next (their start, a grpc import each, took seconds on a loaded box)
and each reports the CPU it burnt in that workload's window alone. It still shares the
machine's cores with the server it measures: see the README's performance section.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

from tierset.ops.workers import stop_with_parent

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


def _worker(connection: Any) -> None:
    """A client process, kept for as many workloads as it is sent: each message is
    (spec, worker, concurrency); each answer that run's latencies, errors and the CPU
    this process burnt during it. One event loop for its whole life; it ends with its
    parent (a bench that killed its load process leaves no client running)."""
    stop_with_parent()

    async def serve() -> None:
        while True:
            try:
                spec, worker, concurrency = await asyncio.to_thread(connection.recv)
            except EOFError:  # the parent is gone
                return
            cpu_before = time.process_time()
            result = await _drive(spec, worker, concurrency)
            connection.send(result | {"cpu_seconds": time.process_time() - cpu_before})

    uvloop.run(serve())


# The client processes, started on first use and kept (bench/loader.py runs many workloads).
_WORKERS: list[tuple[Any, Any]] = []


def _workers(count: int) -> list[tuple[Any, Any]]:
    if len(_WORKERS) != count:
        close()
        context = multiprocessing.get_context("spawn")
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs,), daemon=True)
            process.start()
            _WORKERS.append((mine, process))
    return _WORKERS


def close() -> None:
    for connection, process in _WORKERS:
        connection.close()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    _WORKERS.clear()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs the workload in `spec["processes"]` client processes; merges their results."""
    processes = spec["processes"]
    shares = [spec["concurrency"] // processes] * processes
    shares[0] += spec["concurrency"] - sum(shares)
    workers = _workers(processes)
    for worker, ((connection, _), share) in enumerate(zip(workers, shares, strict=True)):
        connection.send((spec, worker, share))
    results = [await asyncio.to_thread(connection.recv) for connection, _ in workers]
    latencies = sorted(x for r in results for x in r["latencies"])
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count

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
        # CPU the client processes burnt in this run, warm-up included, as a share of one core.
        "client_cpu_cores": sum(r["cpu_seconds"] for r in results)
        / (spec["seconds"] + spec["warmup_seconds"]),
    }


if __name__ == "__main__":
    print(json.dumps(uvloop.run(run(json.loads(Path(sys.argv[1]).read_text())))))
    close()
