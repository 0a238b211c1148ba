"""The faults a soak injects, each returning once the system has recovered from it.

* ``pg-restart``: PostgreSQL stopped with ``-m immediate`` (a crash: no checkpoint, open
  transactions cut off), down for the outage, started again; done when fresh connections
  to both servers hear SERVING.
* ``server-kill``: one of the two server processes killed with SIGKILL (in turn: the first
  time the first, then the second), started again after the outage; the other serves on.
* ``listener-terminate``: ``pg_terminate_backend`` on every server's LISTEN connection
  (found in pg_stat_activity by the listener's application_name); done when each server
  has a new one. Notifications sent meanwhile are lost: watchers and the read cache must
  catch up from the log.
* ``gateway-kill``: the REST gateway killed with SIGKILL, started again after the outage.

A fault that could not be injected (no listener connection found, say) raises
:class:`FaultNotInjected`: a run that injected nothing proves nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tierset.cli.soak.cluster import READY_WITHIN_SECONDS, SERVERS, Cluster, until
from tierset.store.listener import APPLICATION_NAME

FAULTS = ("pg-restart", "server-kill", "listener-terminate", "gateway-kill")

_LISTENERS = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"


class FaultNotInjected(RuntimeError):
    """The fault could not be brought about."""


class Injector:
    """Injects faults into one cluster."""

    def __init__(self, cluster: Cluster, outage_seconds: float) -> None:
        self.cluster = cluster
        self.outage_seconds = outage_seconds

    async def inject(self, fault: str) -> str:
        """Injects `fault`, waits for recovery; returns what it did, for the report."""
        return await getattr(self, "_" + fault.replace("-", "_"))()

    async def _pg_restart(self) -> str:
        await asyncio.to_thread(self.cluster.postgres.stop, "immediate")
        await asyncio.sleep(self.outage_seconds)
        await asyncio.to_thread(self.cluster.postgres.start)
        await self.cluster.serving()
        return f"PostgreSQL stopped (immediate) for {self.outage_seconds:g} s"

    async def _server_kill(self) -> str:
        victim = self.cluster.next_victim()
        await self.cluster.kill_server(victim)
        await asyncio.sleep(self.outage_seconds)
        await self.cluster.start_server(victim)
        return f"server {victim} of {SERVERS} SIGKILLed, restarted after {self.outage_seconds:g} s"

    async def _listener_terminate(self) -> str:
        # After an earlier fault a listener may still be in its reconnect backoff.
        try:
            await until(
                lambda: self._listeners(lambda pids: len(pids) == SERVERS),
                READY_WITHIN_SECONDS,
                "a listener connection per server",
            )
        except TimeoutError as error:
            raise FaultNotInjected(str(error)) from None
        old = await self._listener_pids()
        for pid in old:
            await self.cluster.fetch("SELECT pg_terminate_backend($1)", pid)
        await until(
            lambda: self._listeners(lambda pids: len(pids - old) == SERVERS),
            READY_WITHIN_SECONDS,
            "new listener connections",
        )
        return f"{SERVERS} listener connections terminated, both reconnected"

    async def _listener_pids(self) -> set[int]:
        rows = await self.cluster.fetch(_LISTENERS, APPLICATION_NAME)
        return {int(row["pid"]) for row in rows}

    async def _listeners(self, check: Callable[[set[int]], bool]) -> bool:
        return check(await self._listener_pids())

    async def _gateway_kill(self) -> str:
        await self.cluster.kill_gateway()
        await asyncio.sleep(self.outage_seconds)
        await self.cluster.start_gateway()
        return f"gateway SIGKILLed, restarted after {self.outage_seconds:g} s"
