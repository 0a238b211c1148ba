"""Users, their credentials, OAuth clients, and the OAuth grants that issue tokens.

Administration (:class:`CredentialService`) is PLATFORM's: today only the admin
CLI calls it, as the local operator, and so gets the checks a gRPC caller would
(names that can be stored, positive ids, a NOT_FOUND naming what is missing).

The grants (:class:`TokenService`, behind ``AuthService/CreateToken``) are
anonymous: the call checks its own credentials. Its refusals carry the OAuth
reasons the gateway maps to RFC 6749 error codes: INVALID_REQUEST for a
missing field, UNSUPPORTED_GRANT_TYPE, INVALID_SCOPE, INVALID_CLIENT for a bad
client, INVALID_GRANT for a wrong password or a spent refresh token. Password
grants are throttled per username and source before any work (AUTH_THROTTLED);
an unknown user is checked against a decoy hash, so timing is alike; a spent
refresh token coming back revokes its whole grant.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tierset.auth.credentials import (
    CredentialRecord,
    CredentialStore,
    Issued,
    Kind,
    User,
    check_username,
    digest,
)
from tierset.auth.hashing import PasswordHashing
from tierset.auth.throttle import LoginThrottle
from tierset.core import authz, errors
from tierset.core.authz import Principal, Role
from tierset.core.reasons import Reason
from tierset.core.values import unstorable_text
from tierset.services.accounts import check_id, check_name

if TYPE_CHECKING:
    # Named only: its module holds the gRPC interceptor, and services never import grpc.
    from tierset.auth.authenticator import Authenticator

log = logging.getLogger(__name__)

SCOPE = "api"
GRANT_TYPES = ("password", "refresh_token")

_NOT_FOUND = {
    Kind.API_TOKEN: Reason.API_TOKEN_NOT_FOUND,
    Kind.APP_PASSWORD: Reason.APP_PASSWORD_NOT_FOUND,
}
_LABELS = {Kind.API_TOKEN: "API token", Kind.APP_PASSWORD: "application password"}


def _storable(value: str, field: str) -> str:
    problem = unstorable_text(value)
    if problem:
        raise errors.bad_field(field, f"{field} {problem}")
    return value


class CredentialService:
    """Users, API tokens, application passwords and OAuth clients; PLATFORM only."""

    def __init__(self, credentials: CredentialStore) -> None:
        self._credentials = credentials

    async def create_user(
        self,
        principal: Principal,
        account_id: int,
        username: str,
        password: str | None,
        roles: frozenset[Role],
    ) -> User:
        """A user of `account_id` with `roles` (and a password, unless None)."""
        authz.require_platform(principal)
        owner = check_id(account_id, "account_id")
        assert owner is not None
        if password is not None:
            _storable(password, "password")
        user = await self._credentials.create_user(owner, check_username(username), password, roles)
        log.info("user %s created in account %d by %s", user.username, owner, principal.username)
        return user

    async def set_password(self, principal: Principal, username: str, password: str) -> list[int]:
        """Changes a password; revokes the user's OAuth tokens and returns their ids."""
        authz.require_platform(principal)
        revoked = await self._credentials.set_password(
            _storable(username, "username"), _storable(password, "password")
        )
        log.info("password of %s changed by %s", username, principal.username)
        return revoked

    async def issue(
        self, principal: Principal, username: str, kind: Kind, name: str
    ) -> tuple[User, Issued]:
        """A new API token or application password for `username`; the secret is shown once."""
        authz.require_platform(principal)
        check_name(name, "name")
        user = await self._credentials.require_user(_storable(username, "username"))
        issued = await self._credentials.issue(user.id, kind, name=name)
        log.info(
            "%s %d issued to %s by %s", _LABELS[kind], issued.id, user.username, principal.username
        )
        return user, issued

    async def list_of(
        self, principal: Principal, username: str, kind: Kind
    ) -> list[CredentialRecord]:
        """A user's credentials of one kind, revoked ones included; NOT_FOUND for no user."""
        authz.require_platform(principal)
        await self._credentials.require_user(_storable(username, "username"))
        return await self._credentials.list(username, kind)

    async def revoke(self, principal: Principal, kind: Kind, credential_id: int) -> list[int]:
        """Revokes one active credential; NOT_FOUND when none such is active."""
        authz.require_platform(principal)
        checked = check_id(credential_id, "id")
        revoked = await self._credentials.revoke(credential_id, kind)
        if not revoked:
            raise errors.not_found(
                f"no active {_LABELS[kind]} {checked}", _NOT_FOUND[kind], id=str(checked)
            )
        log.info("%s %d revoked by %s", _LABELS[kind], credential_id, principal.username)
        return revoked

    async def create_oauth_client(
        self, principal: Principal, client_id: str | None, display_name: str
    ) -> tuple[str, str]:
        """Registers a client; returns (client_id, client_secret), the secret once."""
        authz.require_platform(principal)
        if client_id is not None:
            check_name(client_id, "client_id")
        chosen, secret = await self._credentials.create_oauth_client(
            client_id, check_name(display_name, "name")
        )
        log.info("OAuth client %r registered by %s", chosen, principal.username)
        return chosen, secret

    async def revoke_oauth_client(self, principal: Principal, client_id: str) -> None:
        """Retires a client and its tokens; NOT_FOUND when no such active client."""
        authz.require_platform(principal)
        if not await self._credentials.revoke_oauth_client(_storable(client_id, "client_id")):
            raise errors.not_found(f"no active OAuth client {client_id!r}", Reason.CLIENT_NOT_FOUND)
        log.info("OAuth client %r revoked by %s", client_id, principal.username)


@dataclass(frozen=True)
class TokenRequest:
    """An OAuth token request (RFC 6749 §4.3 and §6), fields as sent ("" when absent)."""

    grant_type: str
    scope: str
    client_id: str
    client_secret: str
    username: str
    password: str
    refresh_token: str


@dataclass(frozen=True)
class Grant:
    """Tokens just issued: the access token and the refresh token that renews it."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str


def _invalid_request(field: str) -> errors.TiersetError:
    return errors.bad_field(field, f"{field} is required", reason=Reason.INVALID_REQUEST)


def _bad_credentials() -> errors.TiersetError:
    return errors.TiersetError(errors.Code.UNAUTHENTICATED, Reason.INVALID_GRANT, "Bad credentials")


def _bad_client() -> errors.TiersetError:
    return errors.TiersetError(
        errors.Code.UNAUTHENTICATED, Reason.INVALID_CLIENT, "Client authentication failed"
    )


def _require(request: TokenRequest, *fields: str) -> None:
    for field in fields:
        if not getattr(request, field):
            raise _invalid_request(field)


def _check_storable(request: TokenRequest) -> None:
    # Usernames and client ids are looked up as PostgreSQL text, which cannot hold
    # a NUL: such a request is the client's mistake, not a server error.
    for field in ("client_id", "username"):
        problem = unstorable_text(getattr(request, field))
        if problem:
            raise errors.bad_field(field, f"{field} {problem}", reason=Reason.INVALID_REQUEST)


class TokenService:
    """Issues access and refresh tokens for the password and refresh-token grants."""

    def __init__(
        self,
        credentials: CredentialStore,
        authenticator: Authenticator,
        hashing: PasswordHashing,
        throttle: LoginThrottle,
        access_token_seconds: int,
        refresh_token_seconds: int,
    ) -> None:
        self._credentials = credentials
        self._authenticator = authenticator
        self._hashing = hashing
        self._throttle = throttle
        self._access_seconds = access_token_seconds
        self._refresh_seconds = refresh_token_seconds

    async def create_token(self, request: TokenRequest, source: Callable[[], str]) -> Grant:
        """Checks the request and its credentials; `source` gives the client's address."""
        _require(request, "grant_type")
        if request.grant_type not in GRANT_TYPES:
            raise errors.bad_field(
                "grant_type",
                "grant_type must be 'password' or 'refresh_token'",
                reason=Reason.UNSUPPORTED_GRANT_TYPE,
            )
        if request.scope not in ("", SCOPE):
            raise errors.bad_field("scope", "the only scope is 'api'", reason=Reason.INVALID_SCOPE)
        _require(request, "client_id", "client_secret")
        _check_storable(request)
        if request.grant_type == "password":
            _require(request, "username", "password")
        else:
            _require(request, "refresh_token")
        client_pk = await self._authenticate_client(request.client_id, request.client_secret)
        if request.grant_type == "password":
            user_id, family = await self._password_grant(
                request.username, request.password, source()
            )
        else:
            user_id, family = await self._refresh_grant(request.refresh_token, client_pk)
        return await self._issue(user_id, family, client_pk)

    async def _authenticate_client(self, client_id: str, client_secret: str) -> int:
        client = await self._credentials.oauth_client(client_id)
        presented = digest(client_secret)
        if client is None or not hmac.compare_digest(presented, client[1]):
            log.info("token request refused: client authentication failed")
            raise _bad_client()
        return client[0]

    async def _password_grant(
        self, username: str, password: str, source: str
    ) -> tuple[int, uuid.UUID]:
        # Before any work: a throttled guess costs no lookup and no hashing. A guess let
        # through is counted as a failure now (reserved), so concurrent guesses cannot all
        # pass the check while the first is still being hashed; anything but a wrong
        # password gives the reservation back.
        self._throttle.check(username, source, "password")
        try:
            found = await self._credentials.user_by_username(username)
            # An unknown user's check runs against a decoy hash, so timing is alike.
            ok = await self._hashing.verify(None if found is None else found[1], password)
        except BaseException:
            self._throttle.refund(username, source)  # busy, or the database failed
            raise
        if found is None or not ok:
            self._throttle.failed(username, source, "password")  # logs user and address
            raise _bad_credentials()
        self._throttle.succeeded(username, source)
        return found[0].id, uuid.uuid4()

    async def _refresh_grant(self, refresh_token: str, client_pk: int) -> tuple[int, uuid.UUID]:
        secret_digest = digest(refresh_token)
        row = await self._credentials.consume_refresh_token(secret_digest, client_pk)
        if row is None:
            # A spent refresh token coming back means it leaked (or was replayed):
            # the whole grant is revoked, the legitimate holder logs in again.
            revoked = await self._credentials.revoke_spent_family(secret_digest)
            if revoked:
                self._authenticator.forget(revoked)
                log.warning("reused refresh token: revoked %d tokens of its grant", len(revoked))
            raise _bad_credentials()
        return int(row["user_id"]), row["family"]

    async def _issue(self, user_id: int, family: uuid.UUID, client_pk: int) -> Grant:
        access, refresh = await self._credentials.issue_grant(
            user_id, family, client_pk, self._access_seconds, self._refresh_seconds
        )
        log.info("issued an access token (credential %d) to user %d", access.id, user_id)
        return Grant(access.secret, self._access_seconds, SCOPE, refresh.secret)
