"""Throttling of password guesses: per (username, source), per source, and per username.

Every sign-in that checks a password someone chose (the OAuth password grant, and
application passwords over HTTP Basic) asks :meth:`LoginThrottle.check` first and reports
the outcome after. Three limits count *failed* attempts, each "N failures per window":

* per (username, source) — strict: one address guessing one account;
* per source — strict: one address spraying many usernames (credential stuffing);
* per username — looser, against many addresses guessing one account. It is what OWASP
  ASVS 2.2.1 asks for ("no more than 100 failed attempts per hour … on a single
  account"); its default (50 per hour, refilled at one per 72 s) allows at most 100 in
  any hour. So that it cannot be turned into a way to lock the real user out from
  everywhere, it does not apply to a source that signed in successfully as that user
  before: the user keeps getting in from where they usually do, while an attacker's new
  addresses are held back. The strict per-(username, source) limit still applies there.

Each limit is a GCRA (generic cell rate algorithm): a burst of N failures, then one more
per window/N seconds; an address that stops failing is free again within a window. An
attempt refused by the throttle is not checked at all (not even a right password passes:
that would tell a guesser which guess was right) and does not count as a failure, so
being throttled never makes it last longer. A success clears its (username, source)
count only: one good account must not reset a source's or another user's count.

An attempt let through is *reserved*: :meth:`LoginThrottle.check` counts it as a failure
against every limit at once, before the caller awaits the lookup and the hashing, so
concurrent guesses cannot all pass the check before any of them is counted (the check
and the count are one step on the event loop). The outcome then settles it:
:meth:`~LoginThrottle.failed` keeps the count (and logs), :meth:`~LoginThrottle.succeeded`
refunds it, and :meth:`~LoginThrottle.refund` gives it back for an attempt that was never
checked (refused as busy, or failing for another reason than the password).

The refusal is RESOURCE_EXHAUSTED, reason ``AUTH_THROTTLED``, with the whole seconds to
wait in ErrorInfo metadata ``retry_after_seconds`` (REST: 429 with ``Retry-After``).
Failures and refusals are logged with the username and the client address (never the
password) and counted in ``tierset_auth_throttled_total``.

State is in-process and bounded: each table keeps at most ``max_entries`` keys (least
recently failed dropped first), one float each. With several server processes or
replicas every one counts for itself, so the effective limits are multiplied by their
number.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.ops import metrics

log = logging.getLogger(__name__)

THROTTLED_REASON = Reason.AUTH_THROTTLED
# Usernames longer than any stored one cannot sign in; keyed by a prefix, so a huge
# made-up name does not take memory (usernames are at most 150 characters).
_MAX_KEYED_USERNAME = 151


@dataclass(frozen=True)
class Limit:
    """At most `failures` failures per `window_seconds` (0 failures: no limit)."""

    failures: int
    window_seconds: float

    @property
    def enabled(self) -> bool:
        """Whether this limit is in force."""
        return self.failures > 0 and self.window_seconds > 0


class _Rate:
    """One GCRA limit over many keys: per key, the time its failures are paid off."""

    def __init__(self, limit: Limit, max_entries: int) -> None:
        self.limit = limit
        self._max_entries = max_entries
        self._interval = limit.window_seconds / limit.failures if limit.enabled else 0.0
        self._paid_off_at: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._paid_off_at)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until `key` may fail once more (0: now)."""
        if not self.limit.enabled:
            return 0.0
        paid_off_at = self._paid_off_at.get(key)
        if paid_off_at is None:
            return 0.0
        return max(0.0, paid_off_at - (self.limit.window_seconds - self._interval) - now)

    def fail(self, key: Hashable, now: float) -> None:
        """Counts a failure of `key`."""
        if not self.limit.enabled:
            return
        self._paid_off_at[key] = max(self._paid_off_at.get(key, now), now) + self._interval
        self._paid_off_at.move_to_end(key)
        while len(self._paid_off_at) > self._max_entries:
            self._paid_off_at.popitem(last=False)

    def unfail(self, key: Hashable, now: float) -> None:
        """Takes back one failure of `key` counted by :meth:`fail` (a refunded reservation)."""
        paid_off_at = self._paid_off_at.get(key)
        if paid_off_at is None:
            return
        paid_off_at -= self._interval
        if paid_off_at <= now:
            del self._paid_off_at[key]
        else:
            self._paid_off_at[key] = paid_off_at

    def forget(self, key: Hashable) -> None:
        """Clears `key`'s failures."""
        self._paid_off_at.pop(key, None)


def throttled(retry_after_seconds: int) -> errors.TiersetError:
    """RESOURCE_EXHAUSTED / AUTH_THROTTLED, saying when to retry."""
    return errors.TiersetError(
        errors.Code.RESOURCE_EXHAUSTED,
        THROTTLED_REASON,
        f"too many failed sign-in attempts; retry after {retry_after_seconds} seconds",
        metadata={"retry_after_seconds": str(retry_after_seconds)},
    )


class LoginThrottle:
    """The three limits and the sources known to have signed in as each user."""

    def __init__(
        self,
        per_user_source: Limit,
        per_source: Limit,
        per_user: Limit,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_user_source = _Rate(per_user_source, max_entries)
        self._per_source = _Rate(per_source, max_entries)
        self._per_user = _Rate(per_user, max_entries)
        self._known_sources: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    def entries(self) -> int:
        """How many keys the throttle holds, in all its tables (at most 4 times max_entries)."""
        return (
            len(self._per_user_source)
            + len(self._per_source)
            + len(self._per_user)
            + len(self._known_sources)
        )

    def check(self, username: str, source: str, credential: str) -> None:
        """Raises AUTH_THROTTLED when `username` may not try to sign in from `source` now;
        else reserves the attempt (counts it as a failure) until its outcome is reported.

        No await between the check and the count: on one event loop the two are atomic.
        """
        user = username[:_MAX_KEYED_USERNAME]
        now = self._clock()
        waits = {
            "user_source": self._per_user_source.wait((user, source), now),
            "source": self._per_source.wait(source, now),
        }
        if (user, source) not in self._known_sources:
            waits["user"] = self._per_user.wait(user, now)
        limit, wait = max(waits.items(), key=lambda item: item[1])
        if wait <= 0:
            self._count(user, source, now)
            return
        retry_after = max(1, math.ceil(wait))
        metrics.AUTH_THROTTLED.labels(limit).inc()
        log.warning(
            "sign-in throttled (%s limit)",
            limit,
            extra={
                "username": user,
                "client_address": source,
                "credential": credential,
                "retry_after_seconds": retry_after,
            },
        )
        raise throttled(retry_after)

    def _count(self, user: str, source: str, now: float) -> None:
        self._per_user_source.fail((user, source), now)
        self._per_source.fail(source, now)
        self._per_user.fail(user, now)

    def refund(self, username: str, source: str) -> None:
        """Gives back the attempt :meth:`check` reserved: it was not a wrong password."""
        user = username[:_MAX_KEYED_USERNAME]
        now = self._clock()
        self._per_user_source.unfail((user, source), now)
        self._per_source.unfail(source, now)
        self._per_user.unfail(user, now)

    def failed(self, username: str, source: str, credential: str) -> None:
        """A failed sign-in (wrong password, unknown user): its reservation stays counted."""
        user = username[:_MAX_KEYED_USERNAME]
        log.warning(
            "sign-in failed: bad credentials",
            extra={"username": user, "client_address": source, "credential": credential},
        )

    def succeeded(self, username: str, source: str) -> None:
        """A right password: the reservation is refunded, this pair starts afresh, and
        `source` is known for the user."""
        self.refund(username, source)
        key = (username[:_MAX_KEYED_USERNAME], source)
        self._per_user_source.forget(key)
        self._known_sources[key] = None
        self._known_sources.move_to_end(key)
        while len(self._known_sources) > self._max_entries:
            self._known_sources.popitem(last=False)
