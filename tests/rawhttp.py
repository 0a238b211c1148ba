"""Raw HTTP/1.1 over a socket, for what a well-behaved client never sends: heads that are too
large or never end, requests cut off half-way, connections that say nothing.

Only ever 127.0.0.1 (the gateways the tests start); every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawResponse:
    """A response as it came off the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


async def connect(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the gateway at `base_url` (http://127.0.0.1:port)."""
    address = urlsplit(base_url)
    assert address.hostname == "127.0.0.1", base_url
    return await asyncio.open_connection(address.hostname, address.port)


async def read_response(reader: asyncio.StreamReader, within: float = 10) -> RawResponse:
    """One response: status line, headers, and the body its Content-Length announces."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines if line)
    ]
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    body = await asyncio.wait_for(reader.readexactly(length), within) if length else b""
    return RawResponse(int(status_line.split()[1]), headers, body)


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the other side closes (or resets) the connection within `within` seconds;
    whatever it sends first is read and dropped."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def send_ignoring_reset(writer: asyncio.StreamWriter, data: bytes, chunk: int) -> int:
    """Writes `data` in chunks until done or the peer drops the connection; bytes written."""
    sent = 0
    try:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
            await writer.drain()
            sent += len(data[start : start + chunk])
    except ConnectionError:
        pass
    return sent


async def exchange(base_url: str, request: bytes, within: float = 10) -> RawResponse:
    """Sends `request` as is on a new connection and reads one response."""
    reader, writer = await connect(base_url)
    try:
        sending = asyncio.create_task(send_ignoring_reset(writer, request, 64 * 1024))
        response = await read_response(reader, within)
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        return response
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
