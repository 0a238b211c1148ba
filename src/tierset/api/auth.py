"""gRPC adapter of AuthService: OAuth 2.0 password and refresh-token grants, and GetCaller
(who the call's credentials are; the pipeline has authenticated it like any other call).

The grants themselves live in :class:`tierset.services.credentials.TokenService`;
this converts the request and answers with the tokens.

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

import grpc

from tierset.auth.authenticator import Authenticator
from tierset.auth.credentials import CredentialStore
from tierset.auth.hashing import PasswordHashing
from tierset.auth.throttle import LoginThrottle
from tierset.core import authz
from tierset.ops.client_address import Network, client_address
from tierset.services.credentials import TokenRequest, TokenService
from tierset.v1 import auth_pb2, auth_pb2_grpc


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
        self._tokens = TokenService(
            credentials,
            authenticator,
            hashing,
            throttle,
            access_token_seconds,
            refresh_token_seconds,
        )
        self._trusted_gateways = trusted_gateways

    async def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        grant = await self._tokens.create_token(
            TokenRequest(
                grant_type=request.grant_type,
                scope=request.scope,
                client_id=request.client_id,
                client_secret=request.client_secret,
                username=request.username,
                password=request.password,
                refresh_token=request.refresh_token,
            ),
            # The client's address, as the throttle keys it: the peer, or what a trusted
            # gateway says its client was.
            lambda: client_address(
                context.peer(), context.invocation_metadata() or (), self._trusted_gateways
            ),
        )
        return auth_pb2.CreateTokenResponse(
            access_token=grant.access_token,
            token_type="bearer",  # noqa: S106 - the OAuth token type
            expires_in=grant.expires_in,
            scope=grant.scope,
            refresh_token=grant.refresh_token,
        )

    async def GetCaller(
        self, request: auth_pb2.GetCallerRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetCallerResponse:
        # The pipeline authenticated the call; this only says what it found.
        caller = authz.current_principal()
        return auth_pb2.GetCallerResponse(
            user_id=caller.user_id,
            username=caller.username,
            account_id=caller.account_id,
            roles=sorted(caller.roles),
            permissions=sorted(caller.permissions),
            credential_kind=caller.credential_kind,
        )
