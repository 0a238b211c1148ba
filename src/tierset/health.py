"""Keeps ``grpc.health.v1`` in step with whether the database answers.

One background task pings the database every interval. When a ping fails or
takes longer than the timeout, every service is reported NOT_SERVING (so load
balancers stop sending calls that could only fail); when pings succeed again,
SERVING. The pool reconnects by itself; this only reports what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2

from tierset.store import Store

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class DatabaseHealth:
    """The probe: one task, one cheap query per interval, status flipped on change only."""

    def __init__(
        self,
        servicer: health_aio.HealthServicer,
        store: Store,
        service_names: Sequence[str],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self._servicer = servicer
        self._store = store
        self._names = tuple(service_names)
        self._interval = interval
        self._timeout = timeout
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.ping()
        except Exception as error:  # any failure to answer means "not reachable"
            if self._serving is not False:
                log.warning("database unreachable: %s", type(error).__name__)
            return False
        return True

    async def report(self, serving: bool) -> None:
        """Sets every service's status (a no-op once graceful shutdown has begun)."""
        if serving == self._serving:
            return
        if self._serving is not None:
            log.warning("health: %s", "SERVING (database back)" if serving else "NOT_SERVING")
        self._serving = serving
        for name in self._names:
            await self._servicer.set(name, SERVING if serving else NOT_SERVING)

    async def check_once(self) -> bool:
        """Pings the database once and reports the result; returns whether it answered."""
        answers = await self._database_answers()
        await self.report(answers)
        return answers

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    def start(self) -> None:
        """Starts probing in the background."""
        self._task = asyncio.create_task(self._run(), name="tierset-database-health")

    async def stop(self) -> None:
        """Stops probing (before shutdown flips everything to NOT_SERVING for good)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
