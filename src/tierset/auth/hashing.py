"""Password checks within a memory budget: argon2id off the event loop, a bounded few at once.

An argon2id check holds its memory cost (64 MiB with argon2-cffi's defaults) for as long
as it runs, so how many run at once decides how much memory a burst of logins takes.
Python's default thread pool is sized from the machine's CPUs, not the container's
limit, so it is not used. Instead:

* ``slots = max(1, memory budget // memory per check)`` checks run at once, each on a
  thread of a pool of exactly that many threads: the memory they hold never exceeds the
  budget (but one check is always allowed, whatever the budget).
* A check with no free slot waits at most ``wait_seconds``, and at most
  ``slots * WAITERS_PER_SLOT`` checks wait at all; anything beyond is refused at once with
  UNAVAILABLE, reason ``PASSWORD_HASHING_BUSY`` (REST: 503). Nothing queues without limit.
* A slot is given back when its thread finishes, not when the caller stops waiting: a
  cancelled call (its deadline passed) cannot let more checks run than the budget holds.

The budget is per process; every server process has its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import secrets

import argon2

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.ops import metrics

# How many checks may wait for a slot, per slot: enough to absorb a few users signing in
# at the same moment, few enough that a burst is refused quickly instead of timing out.
WAITERS_PER_SLOT = 4

BUSY_REASON = Reason.PASSWORD_HASHING_BUSY


def busy() -> errors.TiersetError:
    """UNAVAILABLE: no room to check a password now; the client may retry shortly."""
    return errors.TiersetError(
        errors.Code.UNAVAILABLE,
        BUSY_REASON,
        "too many sign-ins are being checked right now; retry in a moment",
        metadata={"retry_after_seconds": "1"},
    )


class PasswordHashing:
    """argon2id hashing and verification, at most `slots` at a time."""

    def __init__(
        self,
        memory_budget_bytes: int,
        wait_seconds: float,
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        self._hasher = hasher or argon2.PasswordHasher()
        self.bytes_per_check = self._hasher.memory_cost * 1024  # argon2 counts KiB
        self.slots = max(1, memory_budget_bytes // self.bytes_per_check)
        self.max_waiting = self.slots * WAITERS_PER_SLOT
        self._wait_seconds = wait_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix="tierset-argon2"
        )
        self._free = asyncio.Semaphore(self.slots)
        self._waiting = 0

    @functools.cached_property
    def _decoy_hash(self) -> str:
        # Verified against when the username is unknown, so that a wrong username takes
        # as long as a wrong password and does not reveal which users exist.
        return self._hasher.hash(secrets.token_urlsafe(16))

    def _check(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._decoy_hash, password) and bool(
                password_hash
            )
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches `password_hash` (None: an unknown user, always False,
        after checking a decoy just as long). UNAVAILABLE when there is no room in time."""
        await self._take_slot()
        loop = asyncio.get_running_loop()
        future = self._executor.submit(self._check, password_hash, password)
        future.add_done_callback(lambda _done: self._give_back(loop))
        return await asyncio.wrap_future(future)

    async def _take_slot(self) -> None:
        if not self._free.locked():
            await self._free.acquire()
            return
        if self._waiting >= self.max_waiting:
            metrics.PASSWORD_CHECKS_REFUSED.labels("queue_full").inc()
            raise busy()
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait_seconds):
                await self._free.acquire()
        except TimeoutError:
            metrics.PASSWORD_CHECKS_REFUSED.labels("wait_timeout").inc()
            raise busy() from None
        finally:
            self._waiting -= 1

    def _give_back(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs on the hashing thread when the check ends (or on cancellation before it
        # started): the slot returns only once its memory is released.
        # A closed loop means the process is stopping: nothing waits for the slot any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._free.release)

    def close(self) -> None:
        """Stops the hashing threads once the checks running now are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
