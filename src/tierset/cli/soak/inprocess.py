"""The in-process form of the soak: one server in the caller's event loop, PostgreSQL
stopped and started under load (tests/test_database_outage.py watches health with it).

Workers write fresh keys and read acknowledged ones back while `postgres` is stopped and
started in the middle. Every write goes to a fresh key, so "acknowledged" has one meaning:
that key must hold that value afterwards. :class:`Report` counts errors by status, writes
acknowledged and found, and wrong reads. ``make soak`` is the whole form
(:mod:`tierset.cli.soak.__main__`).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tierset import client
from tierset.cli.soak.cluster import platform_token
from tierset.ops.config import Config
from tierset.ops.embedded import EmbeddedPostgres
from tierset.v1 import accounts_pb2, accounts_pb2_grpc, settings_pb2, settings_pb2_grpc

HOST = "127.0.0.1"  # the soak only ever talks to what it started itself
CALL_TIMEOUT_SECONDS = 10.0  # a call still running after this counts as a hang
BACKOFF_SECONDS = 0.05  # what a polite client waits after UNAVAILABLE
ALLOWED_FAILURES = {grpc.StatusCode.UNAVAILABLE}


@dataclass
class Report:
    """What a run did and found."""

    seconds: float
    workers: int
    requests: int = 0
    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    acknowledged: dict[str, str] = field(default_factory=dict)
    acknowledged_by_phase: collections.Counter[str] = field(default_factory=collections.Counter)
    found: int = 0
    missing: list[str] = field(default_factory=list)
    reads_checked: int = 0
    wrong_reads: int = 0
    slowest_failure_seconds: float = 0.0
    health: list[str] = field(default_factory=list)
    outage: str = ""

    @property
    def unexpected_failures(self) -> int:
        """Failed calls whose status a database outage does not explain."""
        allowed = {"OK", *(code.name for code in ALLOWED_FAILURES)}
        return sum(n for status, n in self.by_status.items() if status not in allowed)

    @property
    def ok(self) -> bool:
        """Nothing acknowledged lost, nothing wrong read, no failure but UNAVAILABLE."""
        return not self.missing and not self.wrong_reads and not self.unexpected_failures

    def lines(self) -> list[str]:
        """The printed report."""
        phases = ", ".join(
            f"{p} {self.acknowledged_by_phase[p]}" for p in ("before", "during", "after")
        )
        out = [
            f"soak: {self.seconds:.1f} s, {self.workers} workers{self.outage}",
            f"requests sent:        {self.requests}",
            *(f"  {s:<20}{n}" for s, n in sorted(self.by_status.items())),
            f"writes acknowledged:  {len(self.acknowledged)} ({phases})",
            f"writes found after:   {self.found}",
            f"writes missing:       {len(self.missing)}",
            f"reads checked:        {self.reads_checked}, wrong values: {self.wrong_reads}",
            f"slowest failed call:  {self.slowest_failure_seconds:.2f} s",
            f"health:               {' -> '.join(self.health) or 'not watched'}",
        ]
        verdict = "OK (nothing acknowledged was lost)" if self.ok else "FAILED"
        return [*out, f"result:               {verdict}"]


class Load:
    """Workers writing fresh keys and reading back acknowledged ones, until told to stop."""

    def __init__(self, channel: grpc.aio.Channel, scope: settings_pb2.Scope, report: Report):
        self._settings = settings_pb2_grpc.SettingsServiceStub(channel)
        self._scope = scope
        self._report = report
        self._random = random.Random(7)  # noqa: S311 - picks keys to re-read, not secrets
        self.phase = "before"

    async def _call(self, send: Callable[[], Awaitable[Any]]) -> Any:
        self._report.requests += 1
        started = time.monotonic()
        try:
            response = await send()
        except grpc.aio.AioRpcError as error:
            elapsed = time.monotonic() - started
            self._report.slowest_failure_seconds = max(
                self._report.slowest_failure_seconds, elapsed
            )
            self._report.by_status[error.code().name] += 1
            await asyncio.sleep(BACKOFF_SECONDS)
            return None
        self._report.by_status["OK"] += 1
        return response

    async def _write(self) -> None:
        key = f"SOAK.{uuid.uuid4().hex}"
        text = uuid.uuid4().hex
        request = settings_pb2.PutSettingRequest(
            scope=self._scope,
            key=key,
            type=settings_pb2.SETTING_TYPE_STRING,
            value=settings_pb2.SettingValue(string_value=text),
        )
        response = await self._call(
            lambda: self._settings.PutSetting(request, timeout=CALL_TIMEOUT_SECONDS)
        )
        if response is not None:
            self._report.acknowledged[key] = text
            self._report.acknowledged_by_phase[self.phase] += 1

    async def _read(self) -> None:
        if not self._report.acknowledged:
            return
        key = self._random.choice(list(self._report.acknowledged)[-200:])
        request = settings_pb2.GetSettingsRequest(scope=self._scope, keys=[key])
        response = await self._call(
            lambda: self._settings.GetSettings(request, timeout=CALL_TIMEOUT_SECONDS)
        )
        if isinstance(response, settings_pb2.GetSettingsResponse):
            self._report.reads_checked += 1
            values = [s.value.string_value for s in response.settings]
            if values != [self._report.acknowledged[key]]:
                self._report.wrong_reads += 1

    async def worker(self, stop: asyncio.Event) -> None:
        """Alternates writes and reads (two writes per read) until `stop` is set."""
        turn = 0
        while not stop.is_set():
            await (self._read() if turn % 3 == 2 else self._write())
            turn += 1


async def watch_health(channel: grpc.aio.Channel, report: Report, stop: asyncio.Event) -> None:
    """Records each change of the server's overall health status."""
    stub = health_pb2_grpc.HealthStub(channel)
    while not stop.is_set():
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as error:
            status = f"ERROR({error.code().name})"
        if not report.health or report.health[-1] != status:
            report.health.append(status)
        await asyncio.sleep(0.05)


async def verify(channel: grpc.aio.Channel, scope: settings_pb2.Scope, report: Report) -> None:
    """Reads every acknowledged key back (100 per call, retrying while unavailable)."""
    stub = settings_pb2_grpc.SettingsServiceStub(channel)
    keys = list(report.acknowledged)
    for start in range(0, len(keys), 100):
        batch = keys[start : start + 100]
        request = settings_pb2.GetSettingsRequest(scope=scope, keys=batch)
        for attempt in range(100):
            try:
                reply = await stub.GetSettings(request, timeout=CALL_TIMEOUT_SECONDS)
                break
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 99:
                    raise
                await asyncio.sleep(0.1)
        stored = {s.key: s.value.string_value for s in reply.settings}
        for key in batch:
            if stored.get(key) == report.acknowledged[key]:
                report.found += 1
            else:
                report.missing.append(key)


async def run(
    postgres: EmbeddedPostgres,
    port: int,
    *,
    seconds: float,
    workers: int,
    outage_seconds: float,
    stop_mode: str = "fast",
) -> Report:
    """Load against the server on `port` for `seconds`, stopping `postgres` in the middle."""
    report = Report(seconds=seconds, workers=workers)
    outage_at = seconds * 0.35
    report.outage = (
        f", PostgreSQL stopped ({stop_mode}) at {outage_at:.1f} s for {outage_seconds:.1f} s"
    )
    token = await _platform_token(postgres.dsn)
    async with client.insecure_channel(f"{HOST}:{port}", token) as channel:
        created = await accounts_pb2_grpc.AccountServiceStub(channel).CreateAccount(
            accounts_pb2.CreateAccountRequest(display_name="soak"), timeout=CALL_TIMEOUT_SECONDS
        )
        scope = settings_pb2.Scope(account_id=created.account.id)
        load = Load(channel, scope, report)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(load.worker(stop)) for _ in range(workers)]
        tasks.append(asyncio.create_task(watch_health(channel, report, stop)))
        try:
            await asyncio.sleep(outage_at)
            load.phase = "during"
            # pg_ctl waits; in a thread, so the server and the load keep running meanwhile.
            await asyncio.to_thread(postgres.stop, stop_mode)
            await asyncio.sleep(outage_seconds)
            await asyncio.to_thread(postgres.start)
            load.phase = "after"
            await asyncio.sleep(max(seconds - outage_at - outage_seconds, 1.0))
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        await verify(channel, scope, report)
    return report


async def _platform_token(dsn: str) -> str:
    """An API token of a PLATFORM user made for this soak, in its own database."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await platform_token(pool)
    finally:
        await pool.close()


def soak_config() -> Config:
    """The server's configuration for a soak: short timeouts and a quick health probe."""
    return Config(
        grpc_address=f"{HOST}:0",
        pool_min_size=2,
        pool_max_size=10,
        db_connect_timeout_seconds=2.0,
        pool_acquire_timeout_seconds=2.0,
        db_command_timeout_seconds=5.0,
        health_probe_interval_seconds=0.25,
        shutdown_grace_seconds=5.0,
    )
