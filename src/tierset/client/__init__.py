"""Client-side helpers for Python callers of the gRPC API (tools, tests, services).

The client depends on grpcio, protobuf and the generated stubs in ``tierset.v1`` only
(the import contract in ``.importlinter`` checks it), so a service that reads settings
does not install the server's dependencies.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

# The largest response a client accepts. A server read is at most 16 MiB of values
# (docs/configuration.md); the rest is room for the messages around them. gRPC's default
# is 4 MiB.
CLIENT_MAX_RECEIVE_BYTES = 32 * 1024 * 1024

# grpc.health.v1 spoken without the grpcio-health-checking package: a HealthCheckRequest
# for the whole server ("") is the empty message, and a HealthCheckResponse saying
# SERVING is field 1 (status) = 1, which protobuf encodes as exactly these two bytes.
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING_RESPONSE = b"\x08\x01"


class DefaultAuthorization(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds an ``authorization`` header to every unary call that does not bring its own."""

    def __init__(self, header: str) -> None:
        self._header = header

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(("authorization", self._header))
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


CHANNEL_OPTIONS = (("grpc.max_receive_message_length", CLIENT_MAX_RECEIVE_BYTES),)


def insecure_channel(target: str, token: str | None = None) -> grpc.aio.Channel:
    """A plaintext channel to `target`; with `token`, calls authenticate as its Bearer."""
    if token is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(
        target,
        options=CHANNEL_OPTIONS,
        interceptors=[DefaultAuthorization(f"Bearer {token}")],  # type: ignore[list-item]
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
