"""The gateway's side of every gRPC call: the stubs, a deadline, and the metadata sent.

Every call carries the configured deadline, the request id as ``x-request-id``,
the client's address as ``tierset-client-address`` (the TCP peer, or what a proxy
in ``TIERSET_GATEWAY_TRUSTED_PROXIES`` put in X-Forwarded-For; the server uses it
to throttle password guesses when it trusts this gateway) and, when the client
sent one, its ``Authorization`` header as ``authorization``, untouched: the
server decides what it means.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from starlette.requests import Request

from tierset.client_address import CLIENT_ADDRESS_METADATA
from tierset.config import Config
from tierset.gateway.errors import bad_request
from tierset.v1 import auth_pb2_grpc, integrations_pb2_grpc, settings_pb2_grpc

REQUEST_ID_HEADER = "x-request-id"
# A client's request id is kept when it is short and plain enough to log and forward.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class Backend:
    """The gRPC server as the handlers see it, plus the limits they apply."""

    settings: settings_pb2_grpc.SettingsServiceStub
    integrations: integrations_pb2_grpc.IntegrationServiceStub
    auth: auth_pb2_grpc.AuthServiceStub
    health: health_pb2_grpc.HealthStub
    deadline_seconds: float
    max_body_bytes: int

    @classmethod
    def over(cls, channel: grpc.aio.Channel, config: Config) -> Backend:
        """Stubs over `channel` with `config`'s deadline and body limit."""
        return cls(
            settings=settings_pb2_grpc.SettingsServiceStub(channel),
            integrations=integrations_pb2_grpc.IntegrationServiceStub(channel),
            auth=auth_pb2_grpc.AuthServiceStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
            deadline_seconds=config.gateway_deadline_seconds,
            max_body_bytes=config.http_max_body_bytes,
        )


def backend(request: Request) -> Backend:
    """The backend the app's lifespan opened."""
    found: Backend = request.app.state.backend
    return found


def request_id_from(header: str | None) -> str:
    """The client's request id if it is sane, else a new one."""
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def request_id(request: Request) -> str:
    """This request's id, as the envelope middleware chose it."""
    found: str = request.scope["state"]["request_id"]
    return found


def _printable_ascii(value: str) -> bool:
    return all(" " <= character <= "~" for character in value)


def call_options(request: Request) -> dict[str, Any]:
    """Keyword arguments for a stub call: the deadline and the metadata."""
    metadata = [(REQUEST_ID_HEADER, request_id(request))]
    if request.client is not None and request.client.host:
        metadata.append((CLIENT_ADDRESS_METADATA, request.client.host))
    authorization = request.headers.get("authorization")
    if authorization is not None:
        # gRPC metadata is printable ASCII; anything else cannot be passed on unchanged.
        if not _printable_ascii(authorization):
            raise bad_request(
                "Authorization", "The Authorization header must be printable ASCII.", "BAD_HEADER"
            )
        metadata.append(("authorization", authorization))
    return {"timeout": backend(request).deadline_seconds, "metadata": metadata}
