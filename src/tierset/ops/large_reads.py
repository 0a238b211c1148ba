"""What keeps a large read from hurting everyone else's.

A read returns up to MAX_READ_BYTES (16 MiB) of values, and holding it costs a
process a few times that (the fetched text, the decoded values, the response
and its serialised bytes). Reads larger than LARGE_READ_BYTES therefore:

* are admitted by a per-process :class:`ReadBudget` of bytes in flight, so
  that concurrent large reads cannot exhaust memory: past the budget a read
  waits (first come, first served) up to the configured time, then is refused
  UNAVAILABLE with reason READS_OVERLOADED (HTTP 503), which a client may retry;
* are converted (JSON text to proto or JSON) in a worker thread by
  :func:`off_loop`, so that the event loop keeps answering other calls. So
  are large values being written (checked), and large REST bodies (gateway).

Smaller reads, nearly all of them, skip both: a thread hop would cost them
more than the conversion. The budget counts values' bytes as fetched from the
database; a reservation larger than the whole budget waits until it is free.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from tierset.core.errors import Code, TiersetError
from tierset.core.reasons import Reason

_Result = TypeVar("_Result")

# Up to this many bytes of values a read is small: one round trip, converted on the loop.
LARGE_READ_BYTES = 64 * 1024


async def off_loop(size: int, convert: Callable[[], _Result]) -> _Result:
    """`convert()`, in a worker thread when `size` bytes are large enough to stall the loop."""
    if size <= LARGE_READ_BYTES:
        return convert()
    return await asyncio.to_thread(convert)


class Lease:
    """Holds a large read's share of the read budget until the caller has built its answer.

    What the read enters (its reservation) is let go by :meth:`release`, which the caller
    runs however its answer ends, when `held` is set. Nearly every read is small and
    enters nothing: then the lease is a bare object, made and checked without a call of
    its own (an AsyncExitStack cost every cached read three).
    """

    # What the read entered, once it entered something.
    held: contextlib.AsyncExitStack | None = None

    async def enter_async_context(self, context: AbstractAsyncContextManager[_Result]) -> _Result:
        """Enters `context` until :meth:`release`."""
        if self.held is None:
            self.held = contextlib.AsyncExitStack()
        return await self.held.enter_async_context(context)

    async def release(self) -> None:
        """Exits what was entered, newest first."""
        held, self.held = self.held, None
        if held is not None:
            await held.aclose()


def overloaded() -> TiersetError:
    """A large read refused because the process has too many bytes of reads in flight."""
    return TiersetError(
        Code.UNAVAILABLE,
        Reason.READS_OVERLOADED,
        "too many large reads are in flight on this server; retry shortly",
    )


class ReadBudget:
    """A semaphore of bytes, granted in arrival order.

    `capacity` bytes may be reserved at once; a reservation waits at most
    `wait_seconds` for its turn, then raises :func:`overloaded`.
    """

    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.in_flight = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Holds `size` bytes (at most the whole budget) for the body of the block."""
        size = min(size, self.capacity)
        await self._acquire(size)
        try:
            yield
        finally:
            self._release(size)

    async def _acquire(self, size: int) -> None:
        if not self._waiting and self.in_flight + size <= self.capacity:
            self.in_flight += size
            return
        granted = asyncio.get_running_loop().create_future()
        entry = (size, granted)
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await asyncio.shield(granted)
        except TimeoutError:
            self._give_up(entry)
            raise overloaded() from None
        except asyncio.CancelledError:
            self._give_up(entry)
            raise

    def _give_up(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        size, granted = entry
        if granted.done():  # granted just as the wait ended: hand it back
            self._release(size)
        else:
            self._waiting.remove(entry)
            granted.cancel()
            self._grant_waiting()  # a smaller reservation behind this one may fit now

    def _release(self, size: int) -> None:
        self.in_flight -= size
        self._grant_waiting()

    def _grant_waiting(self) -> None:
        while self._waiting and self.in_flight + self._waiting[0][0] <= self.capacity:
            size, granted = self._waiting.popleft()
            self.in_flight += size
            granted.set_result(None)
