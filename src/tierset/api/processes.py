"""Several gRPC server processes on one port, to use more than one core.

With TIERSET_PROCESSES=N (or ``--processes N``) the migrations are applied once, then
N workers each run the whole server on the same address with SO_REUSEPORT, and the
kernel spreads connections over them. They are supervised by
:func:`tierset.ops.workers.supervise`, exactly like the gateway's processes.
"""

from __future__ import annotations

import dataclasses
import os

from tierset.ops import logs
from tierset.ops.config import Config
from tierset.ops.workers import die_with_parent, run_loop, supervise


def _worker_main(config: Config, dsn: str | None, parent_pid: int) -> None:
    """A worker: the ordinary single-process server."""
    from tierset.api.server import serve  # imported here: a spawned child starts clean

    die_with_parent(parent_pid)
    logs.configure(config)
    run_loop(serve(config, dsn))


def run_workers(config: Config, dsn: str | None) -> int:
    """Runs `config.processes` servers on `config.grpc_address` until a signal; returns exit code.

    Migrations must already be applied (each worker starts with migrate_on_start off). The
    port is fixed, not ":0": Config refuses that with several processes.
    """
    # Each worker keeps `processes` (> 1: it shares the port) but leaves migrating to us.
    worker_config = dataclasses.replace(config, migrate_on_start=False)
    return supervise(
        _worker_main,
        (worker_config, dsn, os.getpid()),
        count=config.processes,
        grace=config.shutdown_grace_seconds,
        name="tierset",
        address=config.grpc_address,
    )
