"""How a client authenticates: an API token, an application password, or OAuth.

Each credential gives the ``authorization`` value for the next call through
``await credential.header(channel)``. API tokens and application passwords are constant;
:class:`OAuthPassword` signs in with the OAuth password grant (``AuthService/CreateToken``)
and signs in again when the access token is near expiry or the server says it is no
longer valid. It never uses the refresh grant: a refresh that fails with UNAVAILABLE may
have spent its refresh token, and sending it again would revoke the grant, while the
password grant may always be retried (docs/authentication.md).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Protocol

import grpc

from tierset.v1 import auth_pb2, auth_pb2_grpc

# Sign in again this long before the access token's stated expiry.
_EXPIRY_MARGIN_SECONDS = 30.0


class Credentials(Protocol):
    """Anything that yields the ``authorization`` metadata value for a call."""

    async def header(self, channel: grpc.aio.Channel) -> str: ...

    def invalidate(self) -> None:
        """The server refused the header (UNAUTHENTICATED): get a new one next time."""


class ApiToken:
    """An API token (``tsk_...``) or an OAuth access token obtained elsewhere: Bearer."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    async def header(self, channel: grpc.aio.Channel) -> str:
        return self._header

    def invalidate(self) -> None:
        pass

    def __repr__(self) -> str:  # never print the secret
        return "ApiToken(***)"


class AppPassword:
    """An application password (``tsap_...``) of a user: Basic username:password."""

    def __init__(self, username: str, app_password: str) -> None:
        pair = f"{username}:{app_password}".encode()
        self._header = "Basic " + base64.b64encode(pair).decode("ascii")
        self._username = username

    async def header(self, channel: grpc.aio.Channel) -> str:
        return self._header

    def invalidate(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"AppPassword({self._username!r}, ***)"


class OAuthPassword:
    """The OAuth password grant of an OAuth client; access tokens fetched as needed."""

    def __init__(self, client_id: str, client_secret: str, username: str, password: str) -> None:
        self._request = auth_pb2.CreateTokenRequest(
            grant_type="password",
            client_id=client_id,
            client_secret=client_secret,
            username=username,
            password=password,
            scope="api",
        )
        self._header: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def header(self, channel: grpc.aio.Channel) -> str:
        async with self._lock:
            if self._header is None or time.monotonic() >= self._expires_at:
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                reply = await stub.CreateToken(self._request, timeout=10)
                self._header = f"Bearer {reply.access_token}"
                self._expires_at = time.monotonic() + max(
                    reply.expires_in - _EXPIRY_MARGIN_SECONDS, 1.0
                )
            return self._header

    def invalidate(self) -> None:
        self._header = None

    def __repr__(self) -> str:
        return f"OAuthPassword({self._request.client_id!r}, {self._request.username!r}, ***)"
