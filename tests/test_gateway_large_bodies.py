"""A large REST body is parsed and re-encoded off the gateway's event loop.

While one connection's large PUT is being parsed (seconds of work: many small objects,
exact numbers), a small GET on another connection is answered. The bound is relative, so
that a loaded machine slows both sides alike: the GET must be answered before the PUT, in
less than half the time the PUT takes. On the event loop, the GET would wait for the
whole parse and come back together with the PUT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

from tests import rawhttp
from tests.conftest import running_gateway

MIB = 1 << 20


def _large_put(account: int, authorization: str) -> bytes:
    # About 6 MB: objects (each checked for duplicate members) holding exact numbers.
    items = ",".join(['{"n": 1.25}'] * 500_000)
    body = json.dumps({"setting": {"value": None, "type": "JSON"}}).replace(
        "null", "[" + items + "]"
    )
    head = (
        f"PUT /api/v4.1/settings/account/{account}/K HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.encode()


async def test_a_small_get_is_answered_while_a_large_put_is_parsed(
    gateway_config, rest_auth_headers, new_account
):
    config = dataclasses.replace(
        gateway_config, http_max_body_bytes=16 * MIB, http_body_timeout_seconds=120.0
    )
    account = await new_account()
    request = _large_put(account, rest_auth_headers["Authorization"])
    async with running_gateway(config) as base_url:
        put_reader, put_writer = await rawhttp.connect(base_url)
        get_reader, get_writer = await rawhttp.connect(base_url)
        try:
            started = time.perf_counter()
            put_writer.write(request)
            await put_writer.drain()
            answered = []

            async def put() -> float:
                response = await rawhttp.read_response(put_reader, within=120)
                answered.append("PUT")
                assert response.status in (200, 413), response.body[:300]
                return time.perf_counter() - started

            putting = asyncio.create_task(put())
            # Let the gateway take the whole body in and start on it.
            await asyncio.sleep(0.5)
            get_started = time.perf_counter()
            get_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await get_writer.drain()
            got = await rawhttp.read_response(get_reader, within=120)
            answered.append("GET")
            get_seconds = time.perf_counter() - get_started
            put_seconds = await putting
        finally:
            put_writer.close()
            get_writer.close()

    assert got.status == 200
    assert answered == ["GET", "PUT"]
    assert get_seconds < put_seconds / 2, (get_seconds, put_seconds)
