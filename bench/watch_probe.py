"""The fan-out probe: one client process holding many WatchSettings streams.

Usage: ``python bench/watch_probe.py SPEC.json``. The spec names the server, the
credential, how many streams to open and over how many channels (each its own
HTTP/2 connection: the server allows only so many streams on one), the scope and
key every stream watches, and how long to wait for the change.

Protocol with bench/run.py:

1. one line on stdout, ``ready <opened> <failed>``, once every stream has either
   received its SNAPSHOT or failed to open, or once the spec's ``open_seconds`` ran out
   (the streams not open by then are given up, counted under
   ``NOT_OPEN_WITHIN_OPEN_SECONDS``); the bench then measures the server's memory and
   writes;
2. after a line on stdin (the bench has written), a JSON object in the spec's
   ``result_file`` (not stdout: ~100 KB through a pipe was once cut at 64 KiB) once
   every open stream has received one EVENTS message, or the wait ran out:
   ``received`` holds each stream's receipt time (``time.time()``, this machine's
   clock, which PostgreSQL's commit stamp also uses), ``null`` for one that never saw
   it; ``open_errors`` counts the streams refused, ``ended_errors`` those that ended
   before the change came, by status and the start of its message.

Streams open a bounded number at a time, so the probe measures fan-out, not how
the server copes with thousands of simultaneous opens. The receipt time is taken
when this Python process gets to read the message: with thousands of streams in
one process, its own event loop's queueing is part of the figure (an upper bound
on the server's delivery time, never less).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import uvloop

from tierset.v1 import settings_pb2, settings_pb2_grpc

OPENING_AT_ONCE = 100  # streams waiting for their snapshot at one time


def why(error: grpc.aio.AioRpcError) -> str:
    """A failed stream's status and the start of its message: what to count it under."""
    return f"{error.code().name}: {(error.details() or '')[:80]}"


async def probe(spec: dict[str, Any]) -> dict[str, Any]:
    count, channel_count = spec["streams"], spec["channels"]
    channels = [
        grpc.aio.insecure_channel(
            spec["target"],
            # Own connections: one shared subchannel would cap them at one connection's limit.
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(channel_count)
    ]
    stubs = [settings_pb2_grpc.SettingsServiceStub(c) for c in channels]
    metadata = tuple(tuple(pair) for pair in spec["metadata"])
    request = settings_pb2.WatchSettingsRequest(
        scope=settings_pb2.Scope(retailer_id=spec["retailer_id"]), keys=[spec["key"]]
    )
    received: list[float | None] = [None] * count
    open_errors: Counter[str] = Counter()
    ended_errors: Counter[str] = Counter()
    opening = asyncio.Semaphore(OPENING_AT_ONCE)
    settled = 0
    all_settled = asyncio.Event()
    calls: list[Any] = []
    snapshot_at: set[int] = set()  # the streams that are open (have their snapshot)

    def settle() -> None:
        nonlocal settled
        settled += 1
        if settled == count:
            all_settled.set()

    async def watch(n: int) -> None:
        try:
            async with opening:
                # Made inside the bound: grpc.aio starts a call as soon as it exists, and a
                # burst of thousands past grpc-core's pending-call limit ends them CANCELLED.
                call = stubs[n % channel_count].WatchSettings(request, metadata=metadata)
                calls.append(call)
                first = await call.read()
        except grpc.aio.AioRpcError as error:
            open_errors[why(error)] += 1
            settle()
            return
        if first is grpc.aio.EOF or first.kind != settings_pb2.WatchSettingsResponse.KIND_SNAPSHOT:
            open_errors["NO_SNAPSHOT"] += 1
            settle()
            return
        snapshot_at.add(n)
        settle()
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    ended_errors["EOF"] += 1
                    return
                if message.kind == settings_pb2.WatchSettingsResponse.KIND_EVENTS:
                    received[n] = time.time()
                    return
        except grpc.aio.AioRpcError as error:
            ended_errors[why(error)] += 1  # never received: reported as null

    tasks = [asyncio.create_task(watch(n)) for n in range(count)]
    try:
        await asyncio.wait_for(all_settled.wait(), timeout=spec.get("open_seconds"))
    except TimeoutError:
        # Out of opening time (a loaded box opens thousands slowly): the streams not open
        # yet are given up and counted, and the rest are measured as they are.
        late = [task for n, task in enumerate(tasks) if n not in snapshot_at and not task.done()]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        open_errors["NOT_OPEN_WITHIN_OPEN_SECONDS"] += len(late)
    failed = sum(open_errors.values())
    print(f"ready {count - failed} {failed}", flush=True)
    # The wait starts once the bench has written, not when this probe was ready: the other
    # probe may take a minute longer to open its share, and a wait begun here ran out
    # before the write (half of 10,000 streams once "never received it").
    await asyncio.to_thread(sys.stdin.readline)
    _, pending = await asyncio.wait(tasks, timeout=spec["wait_seconds"])
    for call in calls:
        call.cancel()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return {
        "received": received,
        "open_errors": dict(open_errors),
        "ended_errors": dict(ended_errors),
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    found = uvloop.run(probe(spec))
    # A file, not stdout: see the module docstring.
    Path(spec["result_file"]).write_text(json.dumps(found))


if __name__ == "__main__":
    main()
