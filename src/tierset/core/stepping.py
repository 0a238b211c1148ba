"""Running a coroutine as far as it goes before paying for a timer.

A deadline (``asyncio.timeout``) costs a timer handle armed and cancelled, a few
microseconds, on every call; most hot calls (a cached read, a pool connection that is
free) never wait at all, so they can never outlive a deadline. :func:`within` steps the
awaitable once: if it finishes without waiting, no timer was needed; if it waits, the
timeout is armed from then on and the rest runs under it, exactly as ``await`` would
have run it (what the task sends or throws in goes to it). The deadline measured from
that moment differs from one armed before by the few microseconds of that first step.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """`awaitable`'s result; TimeoutError if it waits and has not finished `seconds` later
    (None: no limit)."""
    running: Any = awaitable.__await__()
    try:
        waiting_on = running.send(None)
    except StopIteration as done:
        return done.value
    if seconds is None:
        return await resumed(running, waiting_on)
    async with asyncio.timeout(seconds):
        return await resumed(running, waiting_on)


@types.coroutine
def resumed(running: Any, waiting_on: Any) -> Any:
    """Finishes `running`, a coroutine already stepped once and now waiting on `waiting_on`,
    exactly as ``await`` would have: what the task sends or throws in goes to it."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            running.close()
            raise
        except BaseException as thrown:  # cancellation, mostly
            try:
                waiting_on = running.throw(thrown)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = running.send(sent)
            except StopIteration as done:
                return done.value
