"""The HTTP load client: wrk (compiled, event-driven) run from a separate process.

Usage: ``python bench/http_load.py SPEC.json`` prints a JSON result in the shape
bench/load.py prints. The spec names the base URL, a file of paths (the
Authorization header on its first line), the concurrency and how long to warm
up and measure. wrk runs twice: an unmeasured warm-up, then the measured run,
both with bench/wrk_get.lua rotating through the paths.

wrk is written in C on an epoll loop: it costs far less CPU per request than
the Python gRPC client (bench/load.py), which the README's table takes into
account when comparing REST with gRPC.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "wrk_get.lua"
THREADS = 2


def wrk(spec: dict[str, Any], seconds: float) -> dict[str, Any]:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    completed = subprocess.run(
        [
            binary,
            f"--threads={THREADS}",
            f"--connections={spec['concurrency']}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            f"--script={SCRIPT}",
            spec["target"],
            "--",
            spec["paths_file"],
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Warms up, measures, and reports requests per second, p50, p99, errors and client CPU."""
    # This run's CPU alone: bench/loader.py runs many in one process.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    if spec["warmup_seconds"] > 0:
        wrk(spec, spec["warmup_seconds"])
    measured = wrk(spec, spec["seconds"])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    errors = {name: count for name, count in measured["errors"].items() if count}
    seconds = measured["duration_us"] / 1e6
    return {
        "requests": measured["requests"],
        "rps": measured["requests"] / seconds,
        "p50_ms": measured["p50_us"] / 1000,
        "p99_ms": measured["p99_us"] / 1000,
        # wrk counts non-2xx answers among its requests: keep them out of the rate.
        "errors": errors,
        "client_cpu_cores": cpu / (spec["seconds"] + spec["warmup_seconds"]),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
