"""The Python client of tierset, and helpers for callers of the gRPC API.

For services: :class:`Client` (async; typed ``get``, ``put``, ``delete``, ``list``,
``history``, ``watch``) and its live views (``await client.view(...)``: typed getters
answered from memory, kept current by WatchSettings; see ``view.py``), with
:class:`SyncClient` for programs without an event loop. Credentials: :class:`ApiToken`,
:class:`AppPassword`, :class:`OAuthPassword`. Every failure is a :class:`TiersetError`.

For tools and tests: ``insecure_channel``, ``DefaultAuthorization``, ``wait_until_serving``.

The client depends on grpcio, protobuf and the generated stubs in ``tierset.v1`` only
(the import contract in ``.importlinter`` checks it, and ``clients/python`` packages it
alone), so a service that reads settings does not install the server's dependencies.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tierset.client.api import Client
from tierset.client.backoff import Backoff
from tierset.client.credentials import ApiToken, AppPassword, Credentials, OAuthPassword
from tierset.client.errors import TiersetError
from tierset.client.model import (
    GLOBAL,
    Change,
    Deleted,
    Event,
    Lock,
    Read,
    Scope,
    Setting,
    WatchMessage,
    Written,
)
from tierset.client.sync import SyncClient
from tierset.client.view import View

__all__ = [
    "CHANNEL_OPTIONS",
    "CLIENT_MAX_RECEIVE_BYTES",
    "GLOBAL",
    "ApiToken",
    "AppPassword",
    "Backoff",
    "Change",
    "Client",
    "Credentials",
    "DefaultAuthorization",
    "DefaultStreamAuthorization",
    "Deleted",
    "Event",
    "Lock",
    "OAuthPassword",
    "Read",
    "Scope",
    "Setting",
    "SyncClient",
    "TiersetError",
    "View",
    "WatchMessage",
    "Written",
    "insecure_channel",
    "wait_until_serving",
]

# The largest response a client accepts. A server read is at most 16 MiB of values
# (docs/configuration.md); the rest is room for the messages around them. gRPC's default
# is 4 MiB.
CLIENT_MAX_RECEIVE_BYTES = 32 * 1024 * 1024

# grpc.health.v1 spoken without the grpcio-health-checking package: a HealthCheckRequest
# for the whole server ("") is the empty message, and a HealthCheckResponse saying
# SERVING is field 1 (status) = 1, which protobuf encodes as exactly these two bytes.
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING_RESPONSE = b"\x08\x01"


class _WithAuthorization:
    """Adds an ``authorization`` entry to a call's metadata unless it brings its own."""

    def __init__(self, header: str) -> None:
        self._header = header

    def _with_header(
        self, client_call_details: grpc.aio.ClientCallDetails
    ) -> grpc.aio.ClientCallDetails:
        metadata = list(client_call_details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(("authorization", self._header))
        return grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )


class DefaultAuthorization(_WithAuthorization, grpc.aio.UnaryUnaryClientInterceptor):
    """Adds an ``authorization`` header to every unary call that does not bring its own.

    A channel files each interceptor under the first call kind it implements only, so
    server-streaming calls get theirs from :class:`DefaultStreamAuthorization`.
    """

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_header(client_call_details), request)


class DefaultStreamAuthorization(_WithAuthorization, grpc.aio.UnaryStreamClientInterceptor):
    """As :class:`DefaultAuthorization`, for server-streaming calls (a watch)."""

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_header(client_call_details), request)


CHANNEL_OPTIONS = (("grpc.max_receive_message_length", CLIENT_MAX_RECEIVE_BYTES),)


def insecure_channel(target: str, token: str | None = None) -> grpc.aio.Channel:
    """A plaintext channel to `target`; with `token`, calls authenticate as its Bearer."""
    if token is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(
        target,
        options=CHANNEL_OPTIONS,
        interceptors=[
            DefaultAuthorization(f"Bearer {token}"),  # type: ignore[list-item]
            DefaultStreamAuthorization(f"Bearer {token}"),  # type: ignore[list-item]
        ],
    )


async def wait_until_serving(target: str) -> None:
    """Returns once the server at `target` says SERVING on grpc.health.v1.

    It keeps asking until then: bound it with ``asyncio.timeout``. Each try uses a fresh
    channel, so a server still starting is not waited for through a reconnect backoff.
    """
    while True:
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                check = channel.unary_unary(_HEALTH_CHECK, None, None)  # bytes in, bytes out
                reply = await check(b"", timeout=1)
            if reply == _SERVING_RESPONSE:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
