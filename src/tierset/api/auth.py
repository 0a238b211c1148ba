"""gRPC handler of AuthService: OAuth 2.0 password and refresh-token grants.

The REST gateway maps ``POST /oauth/token`` (form-encoded) onto CreateToken and
the ErrorInfo reason back onto the OAuth error code: INVALID_GRANT →
400 ``invalid_grant``, INVALID_CLIENT → 401 ``invalid_client``,
UNSUPPORTED_GRANT_TYPE / INVALID_SCOPE / INVALID_REQUEST → 400 with the same
name in lower case. A password grant with no room to check the password within
the hashing memory budget is UNAVAILABLE / PASSWORD_HASHING_BUSY (503
``temporarily_unavailable``). Password grants are throttled per username and
source (throttle.py): RESOURCE_EXHAUSTED / AUTH_THROTTLED (429 ``slow_down``
with ``Retry-After``).
"""

from __future__ import annotations

import hmac
import logging
import uuid

import grpc

from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore, digest
from tierset.auth.hashing import PasswordHashing
from tierset.auth.throttle import LoginThrottle
from tierset.core import errors
from tierset.core.values import unstorable_text
from tierset.ops.client_address import Network, client_address
from tierset.v1 import auth_pb2, auth_pb2_grpc

log = logging.getLogger(__name__)

SCOPE = "api"
GRANT_TYPES = ("password", "refresh_token")


def _invalid_request(field: str) -> errors.TiersetError:
    return errors.bad_field(field, f"{field} is required", reason="INVALID_REQUEST")


def _bad_credentials() -> errors.TiersetError:
    return errors.TiersetError(grpc.StatusCode.UNAUTHENTICATED, "INVALID_GRANT", "Bad credentials")


def _bad_client() -> errors.TiersetError:
    return errors.TiersetError(
        grpc.StatusCode.UNAUTHENTICATED, "INVALID_CLIENT", "Client authentication failed"
    )


def _require(request: auth_pb2.CreateTokenRequest, *fields: str) -> None:
    for field in fields:
        if not getattr(request, field):
            raise _invalid_request(field)


def _check_storable(request: auth_pb2.CreateTokenRequest) -> None:
    # Usernames and client ids are looked up as PostgreSQL text, which cannot hold
    # a NUL: such a request is the client's mistake, not a server error.
    for field in ("client_id", "username"):
        problem = unstorable_text(getattr(request, field))
        if problem:
            raise errors.bad_field(field, f"{field} {problem}", reason="INVALID_REQUEST")


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """Issues access and refresh tokens; anonymous, it checks its own credentials."""

    def __init__(
        self,
        credentials: CredentialStore,
        authenticator: Authenticator,
        hashing: PasswordHashing,
        throttle: LoginThrottle,
        trusted_gateways: tuple[Network, ...],
        access_token_seconds: int,
        refresh_token_seconds: int,
    ) -> None:
        self._credentials = credentials
        self._authenticator = authenticator
        self._hashing = hashing
        self._throttle = throttle
        self._trusted_gateways = trusted_gateways
        self._access_seconds = access_token_seconds
        self._refresh_seconds = refresh_token_seconds

    async def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        _require(request, "grant_type")
        if request.grant_type not in GRANT_TYPES:
            raise errors.bad_field(
                "grant_type",
                "grant_type must be 'password' or 'refresh_token'",
                reason="UNSUPPORTED_GRANT_TYPE",
            )
        if request.scope not in ("", SCOPE):
            raise errors.bad_field("scope", "the only scope is 'api'", reason="INVALID_SCOPE")
        _require(request, "client_id", "client_secret")
        _check_storable(request)
        if request.grant_type == "password":
            _require(request, "username", "password")
        else:
            _require(request, "refresh_token")
        client_pk = await self._authenticate_client(request.client_id, request.client_secret)
        if request.grant_type == "password":
            source = client_address(
                context.peer(), context.invocation_metadata() or (), self._trusted_gateways
            )
            user_id, family = await self._password_grant(request.username, request.password, source)
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
        # Before any work: a throttled guess costs no lookup and no hashing.
        self._throttle.check(username, source, "password")
        found = await self._credentials.user_by_username(username)
        # An unknown user's check runs against a decoy hash, so timing is alike.
        ok = await self._hashing.verify(None if found is None else found[1], password)
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

    async def _issue(
        self, user_id: int, family: uuid.UUID, client_pk: int
    ) -> auth_pb2.CreateTokenResponse:
        access, refresh = await self._credentials.issue_grant(
            user_id, family, client_pk, self._access_seconds, self._refresh_seconds
        )
        log.info("issued an access token (credential %d) to user %d", access.id, user_id)
        return auth_pb2.CreateTokenResponse(
            access_token=access.secret,
            token_type="bearer",  # noqa: S106 - the OAuth token type
            expires_in=self._access_seconds,
            scope=SCOPE,
            refresh_token=refresh.secret,
        )
