"""Client-side helpers for Python callers of the gRPC API (tools, tests, services)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tierset.values import CLIENT_MAX_RECEIVE_BYTES


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


# A read may return up to MAX_READ_BYTES; gRPC's default receive limit is 4 MiB.
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
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
