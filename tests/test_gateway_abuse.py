"""A `tierset gateway` process under header abuse, its memory read from /proc: unfinished
huge heads, 100,000 headers and 200 slowloris connections at once. Every abusive connection
is refused or dropped, the process's memory stays under a stated bound, and a normal request
is answered meanwhile.

Bounded: 8 + 1 + 200 connections to 127.0.0.1, each abusive one stops by itself (16 MiB sent
at most, or dropped), and every wait has a timeout; the whole test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx

from tests import rawhttp
from tests.conftest import free_port
from tests.test_gateway_process import _start, _stop, _wait_ready

MIB = 1 << 20
# What the abuse may add to the process's resident memory. Before the caps, the 8 unfinished
# heads alone added their full size (8 x 16 MiB here; 64 -> 641 MiB with 64 MiB heads).
RSS_GROWTH_BOUND = 48 * MIB
HEADER_TIMEOUT_SECONDS = 2
SLOW_CONNECTIONS = 200
BIG_HEADS = 8
BIG_HEAD_BYTES = 16 * MIB


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def _big_unfinished_head(base_url: str) -> int:
    """Sends a header line of up to 16 MiB that never ends; the status the gateway answers."""
    reader, writer = await rawhttp.connect(base_url)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * BIG_HEAD_BYTES
    sending = asyncio.create_task(rawhttp.send_ignoring_reset(writer, head, 64 * 1024))
    try:
        response = await rawhttp.read_response(reader, within=15)
        return response.status
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()


async def _many_headers(base_url: str) -> int:
    headers = "".join(f"X-H{i}: v\r\n" for i in range(100_000))
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
    return (await rawhttp.exchange(base_url, request, within=15)).status


async def _slowloris(base_url: str) -> bool:
    """A head trickled one byte every half second; whether the gateway drops it."""
    reader, writer = await rawhttp.connect(base_url)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(0.5)
                writer.write(b"a")
                await writer.drain()

    trickling = asyncio.create_task(trickle())
    try:
        return await rawhttp.closed_by_peer(reader, within=HEADER_TIMEOUT_SECONDS + 13)
    finally:
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
        writer.close()


async def test_header_abuse_is_refused_within_a_memory_bound_while_serving(server):
    port = free_port()
    process = await _start(
        "gateway",
        {
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{port}",
            "TIERSET_GRPC_TARGET": f"127.0.0.1:{server.port}",
            "TIERSET_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_SECONDS),
        },
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base_url, process)
        baseline = _rss(process.pid)
        peak = baseline
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, _rss(process.pid))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        big = [asyncio.create_task(_big_unfinished_head(base_url)) for _ in range(BIG_HEADS)]
        many = asyncio.create_task(_many_headers(base_url))
        slow = [asyncio.create_task(_slowloris(base_url)) for _ in range(SLOW_CONNECTIONS)]
        await asyncio.sleep(0.5)  # all of it under way
        async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as client:
            served_meanwhile = [(await client.get("/healthz")).status_code for _ in range(5)]
        big_statuses = await asyncio.gather(*big, return_exceptions=True)
        many_status = await many
        slow_dropped = await asyncio.gather(*slow)
        elapsed = time.monotonic() - started
        sampling = False
        await sampler
    finally:
        output = await _stop(process)

    assert served_meanwhile == [200] * 5
    assert big_statuses == [431] * BIG_HEADS
    assert many_status == 431
    assert slow_dropped == [True] * SLOW_CONNECTIONS
    growth = peak - baseline
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / MIB:.1f} MiB in {elapsed:.1f} s"
    assert "Traceback" not in output
    print(f"baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, {elapsed:.1f} s")
