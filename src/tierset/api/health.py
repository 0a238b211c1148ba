"""``grpc.health.v1`` for tierset: the servicer, kept in step with whether the database answers.

The servicer (:class:`HealthService`) speaks the standard protocol for a fixed set of names,
``""`` (the whole server) and each tierset service, all NOT_SERVING until the first probe.
Any other name is answered at once, so an anonymous caller cannot hold anything with it:
Check ends NOT_FOUND; Watch sends SERVICE_UNKNOWN and ends NOT_FOUND rather than waiting
for a name that can never appear. A Watch of a known name sends its status, then each
change (intermediate ones may be skipped when they come faster than the client reads).
Once graceful shutdown has begun, every name is NOT_SERVING for good.

The probe (:class:`DatabaseHealth`): one background task pings the database every
interval. When a ping fails or takes longer than the timeout, every service is reported
NOT_SERVING (so load balancers stop sending calls that could only fail); when pings
succeed again, SERVING. The pool reconnects by itself; this only reports what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.store.database import Store

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# A HealthCheckResponse.ServingStatus value (the enum is an int in the generated code).
ServingStatus = int


def _unknown(name: str) -> errors.TiersetError:
    return errors.not_found(
        f"this server has no service named {name!r}", Reason.HEALTH_SERVICE_UNKNOWN, service=name
    )


class HealthService(health_pb2_grpc.HealthServicer):
    """Check and Watch over a fixed set of service names (``""`` always among them)."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self._status: dict[str, ServingStatus] = {
            name: NOT_SERVING for name in ("", *service_names)
        }
        # Woken on every change. Watchers write outside it, so a client that reads slowly
        # never holds up a status change (nor shutdown).
        self._changed = asyncio.Condition()
        self._shutting_down = False

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            raise _unknown(request.service)  # the call pipeline makes it a rich status
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> None:
        name = request.service
        if name not in self._status:
            await context.write(health_pb2.HealthCheckResponse(status=SERVICE_UNKNOWN))
            raise _unknown(name)
        sent: ServingStatus | None = None
        while True:
            sent = await self._status_other_than(name, sent)
            await context.write(health_pb2.HealthCheckResponse(status=sent))
            if self._shutting_down:
                # NOT_SERVING told, the stream ends: a watcher (a load balancer, a client)
                # moves elsewhere at once instead of holding the stop for its whole grace.
                return

    async def _status_other_than(self, name: str, sent: ServingStatus | None) -> ServingStatus:
        """`name`'s status, once it differs from the one last sent."""
        async with self._changed:
            while self._status[name] == sent:
                await self._changed.wait()
            return self._status[name]

    async def set(self, name: str, status: ServingStatus) -> None:
        """Sets a known service's status (a no-op once graceful shutdown has begun)."""
        if name not in self._status:
            raise KeyError(f"{name!r} is not a service of this server")
        if self._shutting_down:
            return
        async with self._changed:
            self._status[name] = status
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Sets every service NOT_SERVING for good; later `set` calls are ignored."""
        self._shutting_down = True
        async with self._changed:
            for name in self._status:
                self._status[name] = NOT_SERVING
            self._changed.notify_all()


class DatabaseHealth:
    """The probe: one task, one cheap query per interval, status flipped on change only."""

    def __init__(
        self,
        servicer: HealthService,
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
