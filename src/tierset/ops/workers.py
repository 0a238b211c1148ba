"""Supervising several processes on one port, to use more than one core.

One Python process runs one event loop on one core. With TIERSET_PROCESSES=N
the `tierset` command starts N worker processes that each run the whole
server (its own pool, read cache and cache listener) bound to the same
address: grpc.aio servers set SO_REUSEPORT on Linux (the `grpc.so_reuseport`
channel option, on by default), so the kernel spreads new connections across
the workers. Note that a gRPC client keeps one connection, so one client
lands on one worker; many clients spread.

The parent only supervises (:func:`supervise`, which the REST gateway's
processes use too): it applies migrations once, forwards SIGTERM and SIGINT,
and if a worker dies it stops the others and exits non-zero so the
orchestrator restarts the whole group.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int) -> None:
    """Has the kernel send this worker SIGTERM (its graceful stop) when the supervisor dies.

    Without it a supervisor killed outright (SIGKILL, OOM) leaves its workers serving, and
    holding the port, with nobody watching them.
    """
    if not stop_with_parent():
        log.warning("cannot ask to be stopped with the supervisor (errno %d)", ctypes.get_errno())
    if os.getppid() != parent_pid:  # it died before we asked: nobody will signal us
        os.kill(os.getpid(), signal.SIGTERM)


def stop_with_parent() -> bool:
    """Asks the kernel for SIGTERM when this process's parent dies; False if it refused.

    Safe as a ``subprocess`` ``preexec_fn`` (between fork and exec, where the setting also
    survives the exec): libc is loaded beforehand, so this only makes one system call.
    """
    if _LIBC is None:  # pragma: no cover - tierset ships on Linux
        return True
    return bool(_LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) == 0)


def run_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    """Runs `coroutine` on uvloop (asyncio's loop if uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we ship
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def supervise(
    target: Callable[..., None],
    args: tuple[Any, ...],
    *,
    count: int,
    grace: float,
    name: str,
    address: str,
    numbered: bool = False,
) -> int:
    """Runs `count` processes of `target(*args)` until a signal or a death; returns exit code.

    With `numbered`, each process also gets its number (0 to count - 1) as a last argument,
    for what only one of them may do. SIGTERM and SIGINT are passed on as SIGTERM (each
    process stops gracefully); a process that dies stops the others, and the result is 1.
    """
    # spawn, not fork: gRPC's core does not survive a fork of a process that used it.
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = [
        context.Process(target=target, args=(*args, n) if numbered else args, name=f"{name}-{n}")
        for n in range(count)
    ]
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        log.info("started %d %s processes on %s", len(workers), name, address)
        while not stopping.is_set():
            if any(not w.is_alive() for w in workers):
                log.error("a %s process exited; stopping the others", name)
                break
            stopping.wait(0.5)
        return _stop(workers, grace, failed=not stopping.is_set())
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(workers: list[BaseProcess], grace: float, *, failed: bool) -> int:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()  # SIGTERM: each worker shuts down gracefully
    for worker in workers:
        worker.join(grace + 5)
        if worker.is_alive():
            log.warning("%s did not stop in time; killing it", worker.name)
            worker.kill()
            worker.join()
    if failed or any(w.exitcode not in (0, -signal.SIGTERM) for w in workers):
        return 1
    return 0
