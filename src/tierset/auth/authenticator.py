"""Authentication of every call: the ``authorization`` metadata → a Principal.

Accepted forms (the REST gateway passes the HTTP header through unchanged):

* ``Bearer <access token>`` from ``AuthService/CreateToken`` (expires), or
  ``Bearer <API token>`` (``tsk_...``, long-lived, for internal services);
* ``Basic base64(username:application password)``, WordPress style.

Verification is one lookup by SHA-256 digest through a unique index; verified
principals are then kept in a small in-process cache for at most
``auth_cache_seconds`` (and never past the token's own expiry). The cache is keyed by
the ``authorization`` value exactly as sent, so a Bearer call it knows costs one dict
lookup and a clock read: no parsing, no digest (the same secret spelt two ways is two
entries of one credential, and a revocation drops both). It holds those values in
this process's memory for the cache's lifetime, as the call itself did. Calls that miss
the cache with the same Bearer header at once share one lookup (its answer is taken from
the cache, never handed over past a revocation heard meanwhile). A revocation
reaches this process's cache at once: revocations made here forget their ids
directly, and every revocation NOTIFYs ``tierset_credentials_revoked``, which
every server hears on its one LISTEN connection (tierset.store.listener). If that
notification is missed (the listening connection was down), the cache TTL bounds the
delay; the cache is emptied whenever that connection is lost and again when it is back.

Application passwords over Basic carry a username someone may guess for, so they
go through the password-guess throttle (throttle.py) by username and source
address (client_address.py): the attempt is reserved (counted) by the check before the
lookup and refunded after unless the credentials were invalid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from tierset.auth.credentials import CredentialStore, Kind, digest
from tierset.auth.throttle import LoginThrottle
from tierset.core import errors
from tierset.core.authz import Principal, Role
from tierset.core.reasons import Reason
from tierset.store.listener import Listener, Subscription

log = logging.getLogger(__name__)

REVOCATION_CHANNEL = "tierset_credentials_revoked"

# Callable without credentials: health and reflection (whole services), and the one RPC
# that issues tokens (it checks the credentials in its request itself). Named exactly, so
# a new RPC is never anonymous by accident of its name.
ANONYMOUS_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
CREATE_TOKEN_METHOD = "/tierset.v1.AuthService/CreateToken"  # noqa: S105 - a method name
ANONYMOUS_METHODS = frozenset({CREATE_TOKEN_METHOD})
# Each anonymous method takes only a small request (tierset.api.limits checks it before the
# request is parsed): CreateToken a few KiB of credentials, every other one the smaller
# TIERSET_GRPC_ANONYMOUS_MAX_REQUEST_BYTES, so a new anonymous method is small by default.

_BEARER_KINDS = frozenset({Kind.ACCESS_TOKEN.value, Kind.API_TOKEN.value})


def unauthenticated(reason: Reason, message: str) -> errors.TiersetError:
    """UNAUTHENTICATED with a reason; the message never repeats what was sent."""
    return errors.TiersetError(errors.Code.UNAUTHENTICATED, reason, message)


def _missing() -> errors.TiersetError:
    return unauthenticated(
        Reason.CREDENTIALS_MISSING,
        "authentication required: send 'authorization: Bearer <token>' or "
        "'authorization: Basic base64(username:application password)'",
    )


def _invalid() -> errors.TiersetError:
    # One answer for unknown, revoked, wrong-kind and wrong-username: which it
    # was would tell a guesser something.
    return unauthenticated(Reason.CREDENTIALS_INVALID, "invalid credentials")


def _expired() -> errors.TiersetError:
    return unauthenticated(Reason.CREDENTIALS_EXPIRED, "the access token has expired")


def _malformed(what: str) -> errors.TiersetError:
    return unauthenticated(Reason.CREDENTIALS_MALFORMED, f"malformed authorization: {what}")


@dataclass(frozen=True)
class _Presented:
    """What the caller sent: a secret, and for Basic the username it claims."""

    secret: str
    username: str | None


def parse_authorization(values: list[str]) -> _Presented:
    """Splits the ``authorization`` metadata into a secret (and username for Basic)."""
    if not values:
        raise _missing()
    if len(values) > 1:
        raise _malformed("send one authorization header")
    scheme, _, credentials = values[0].strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        if not credentials or not credentials.isascii() or not credentials.isprintable():
            raise _malformed("Bearer needs a token")
        if " " in credentials:
            raise _malformed("a Bearer token has no spaces")
        return _Presented(credentials, None)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _malformed("Basic needs base64 of username:password") from None
        username, colon, password = decoded.partition(":")
        if not colon or not username or not password:
            raise _malformed("Basic needs base64 of username:password")
        # WordPress shows application passwords in groups separated by spaces.
        return _Presented(password.replace(" ", ""), username)
    if not scheme:
        raise _missing()
    raise _malformed("unsupported scheme; use Bearer or Basic")


def _check_presented(principal: Principal, presented: _Presented) -> Principal:
    """The credential must fit how it was sent: tokens as Bearer, application
    passwords as Basic with their own user's name (compared in constant time)."""
    if presented.username is None:
        if principal.credential_kind not in _BEARER_KINDS:
            raise _invalid()
    elif principal.credential_kind != Kind.APP_PASSWORD.value or not hmac.compare_digest(
        principal.username.encode(), presented.username.encode()
    ):
        raise _invalid()
    return principal


class _Cached:
    """A verified principal, how long to trust it, and the credential's own expiry."""

    __slots__ = ("bearer", "expires_at", "principal", "trusted_until")

    def __init__(
        self, principal: Principal, trusted_until: float, expires_at: datetime | None, bearer: bool
    ) -> None:
        self.principal = principal
        self.trusted_until = trusted_until  # time.monotonic()
        # The credential's own expiry as a Unix time (compared with time.time()), or None.
        self.expires_at = None if expires_at is None else expires_at.timestamp()
        # Sent as Bearer: then nothing but the cache stands between the header and the
        # principal (Basic goes through the password-guess throttle on every call).
        self.bearer = bearer


class Authenticator:
    """Verifies presented credentials, with a bounded, short-lived cache."""

    def __init__(
        self,
        credentials: CredentialStore,
        cache_seconds: float,
        cache_size: int,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._credentials = credentials
        self._throttle = throttle
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        # By the authorization value as sent (see the module docstring). A lookup compares
        # strings only on a full match of their (per-process keyed) hashes, so its timing
        # tells a guesser nothing about a secret.
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        # Grows with every revocation heard; a lookup that overlapped one is not cached,
        # since the revocation may be of the very credential it was looking up.
        self._generation = 0
        # The lookup in flight for a Bearer header, set when it ends (see _verify).
        self._lookups: dict[str, asyncio.Future[None]] = {}

    async def authenticate(
        self, values: list[str], source: str | Callable[[], str] = "unknown"
    ) -> Principal:
        """The principal the ``authorization`` metadata proves, or UNAUTHENTICATED.

        Basic (username and application password) from `source` is throttled:
        RESOURCE_EXHAUSTED / AUTH_THROTTLED after too many failures. `source` may be a
        function, asked only then: working out a call's address is wasted on a token.
        """
        if len(values) == 1:
            cached = self._cache.get(values[0])
            if cached is not None and cached.bearer and cached.trusted_until > time.monotonic():
                if cached.expires_at is None:  # an API token: it never expires
                    return cached.principal
                return self._unexpired(values[0], cached)
        presented = parse_authorization(values)
        if presented.username is None or self._throttle is None:
            return await self._verify(presented, values[0])
        if callable(source):
            source = source()
        # check() reserves the attempt (counts it as failed) before the lookup's await, so
        # concurrent guesses cannot all pass; only invalid credentials keep it counted.
        self._throttle.check(presented.username, source, "application password")
        try:
            principal = await self._verify(presented, values[0])
        except errors.TiersetError as error:
            if error.reason == Reason.CREDENTIALS_INVALID:
                self._throttle.failed(presented.username, source, "application password")
            else:
                self._throttle.refund(presented.username, source)
            raise
        except BaseException:
            self._throttle.refund(presented.username, source)
            raise
        self._throttle.succeeded(presented.username, source)
        return principal

    def _unexpired(self, header: str, cached: _Cached) -> Principal:
        """The cached principal, unless its credential has expired since (then forgotten)."""
        if cached.expires_at is not None and cached.expires_at <= time.time():
            self._cache.pop(header, None)
            raise _expired()
        return cached.principal

    async def _verify(self, presented: _Presented, header: str) -> Principal:
        cached = self._cache.get(header)
        if cached is not None and cached.trusted_until > time.monotonic():
            # Stored only once this very header passed _check_presented; checked again
            # all the same, since only Basic gets here (a cached Bearer is answered above).
            return _check_presented(self._unexpired(header, cached), presented)
        if presented.username is not None or self._cache_seconds <= 0 or self._cache_size <= 0:
            return await self._look_up(presented, header)
        # A Bearer token: one lookup in flight per header. When its cache entry ages out,
        # every call (and every watch stream's re-check) carrying it misses at once; they
        # wait for the first one's lookup and take its answer from the cache, instead of
        # each queueing for a pool connection (10,000 watchers once timed out there).
        in_flight = self._lookups.get(header)
        if in_flight is not None:
            await asyncio.shield(in_flight)  # never cancels the lookup it waits for
            cached = self._cache.get(header)
            if cached is not None and cached.trusted_until > time.monotonic():
                return _check_presented(self._unexpired(header, cached), presented)
            # It failed, or its answer was not kept (a revocation was heard meanwhile):
            # this call looks the credential up itself.
            return await self._look_up(presented, header)
        done = asyncio.get_running_loop().create_future()
        self._lookups[header] = done
        try:
            return await self._look_up(presented, header)
        finally:
            if self._lookups.get(header) is done:
                del self._lookups[header]
            done.set_result(None)

    async def _look_up(self, presented: _Presented, header: str) -> Principal:
        """Asks the database for the credential; remembers a valid one."""
        generation = self._generation
        row = await self._credentials.principal_row(digest(presented.secret))
        # The lookup compares digests of 256-bit secrets inside an index: timing
        # reveals nothing an attacker can steer. The username is compared in
        # constant time by _check_presented.
        if row is None or row["revoke_time"] is not None:
            raise _invalid()
        principal = Principal(
            user_id=row["user_id"],
            username=row["username"],
            account_id=row["account_id"],
            roles=frozenset(map(Role, row["roles"])),
            credential_kind=row["kind"],
            credential_id=row["credential_id"],
        )
        principal = _check_presented(principal, presented)
        if row["expired"]:
            raise _expired()
        self._remember(
            header, principal, row["expire_time"], generation, bearer=presented.username is None
        )
        return principal

    def _remember(
        self,
        header: str,
        principal: Principal,
        expires_at: datetime | None,
        generation: int,
        *,
        bearer: bool,
    ) -> None:
        if self._cache_seconds <= 0 or self._cache_size <= 0 or generation != self._generation:
            return
        self._cache[header] = _Cached(
            principal,
            time.monotonic() + self._cache_seconds,
            expires_at,
            bearer,
        )
        self._cache.move_to_end(header)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget(self, credential_ids: Iterable[int]) -> None:
        """Drops revoked credentials from the cache (at once, in this process)."""
        doomed = set(credential_ids)
        if not doomed:
            return
        self._generation += 1
        for key in [k for k, v in self._cache.items() if v.principal.credential_id in doomed]:
            del self._cache[key]

    def forget_all(self) -> None:
        """Empties the cache (a revocation too large to list, or a missed notification)."""
        self._generation += 1
        self._cache.clear()

    def on_revoked(self, payload: str) -> None:
        """Applies a ``tierset_credentials_revoked`` payload: '*' or comma-separated ids."""
        if payload == "*":
            self.forget_all()
        elif payload:
            self.forget(int(part) for part in payload.split(",") if part.isdigit())

    async def follow_revocations(self, listener: Listener) -> Subscription:
        """Follows revocations made by other processes through the process's listener.

        Anything revoked while it was not listening is unknown, so the cache is emptied
        both when LISTEN comes into force and when the connection is lost; in between
        a missed revocation is bounded by the cache lifetime.
        """
        return await listener.subscribe(
            REVOCATION_CHANNEL,
            self.on_revoked,
            on_connected=self.forget_all,
            on_disconnected=self.forget_all,
        )


def is_anonymous(method: str) -> bool:
    """Whether a full method name may be called without credentials."""
    return method in ANONYMOUS_METHODS or method.startswith(ANONYMOUS_SERVICES)
