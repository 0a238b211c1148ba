"""The gateway's side of every gRPC call: the stubs, a deadline, and the metadata sent.

Every call carries the configured deadline, the request id as ``x-request-id``,
the client's address as ``tierset-client-address`` (the TCP peer, or what a proxy
in ``TIERSET_GATEWAY_TRUSTED_PROXIES`` put in X-Forwarded-For; the server uses it
to throttle password guesses when it trusts this gateway) and, when the client
sent one, its ``Authorization`` header as ``authorization``, untouched: the
server decides what it means.

Nothing is sent that gRPC itself would refuse for its size, which would come back
as RESOURCE_EXHAUSTED, a 429 that clients retry: an ``Authorization`` header over
half of ``TIERSET_GRPC_MAX_METADATA_BYTES`` is a 431, a message over
``TIERSET_GRPC_MAX_REQUEST_BYTES`` a 413. Both are the server's own variables, read
by the gateway from the same configuration, so an operator who lowers them on the
server lowers them here too (set them alike on both). Two ``Authorization`` headers are a 401
``CREDENTIALS_MALFORMED``, as gRPC refuses two ``authorization`` entries: which
one counts must not depend on who reads them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2_grpc
from starlette.requests import Request

from tierset.core.reasons import Reason
from tierset.gateway.errors import (
    CONTENT_TOO_LARGE,
    HEADERS_TOO_LARGE,
    Failure,
    GatewayError,
    bad_request,
    too_large,
)
from tierset.ops.client_address import CLIENT_ADDRESS_METADATA
from tierset.ops.config import Config
from tierset.v1 import accounts_pb2_grpc, auth_pb2_grpc, integrations_pb2_grpc, settings_pb2_grpc

REQUEST_ID_HEADER = "x-request-id"
# A client's request id is kept when it is short and plain enough to log and forward.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def max_authorization_bytes(config: Config) -> int:
    """The longest Authorization header passed on: the server refuses a call whose metadata
    passes ``grpc_max_metadata_bytes``; half of that for the credential leaves room for the
    rest (4 KiB of the default 8 KiB, far above any real credential)."""
    return config.grpc_max_metadata_bytes // 2


@dataclass(frozen=True)
class Backend:
    """The gRPC server as the handlers see it, plus the limits they apply."""

    settings: settings_pb2_grpc.SettingsServiceStub
    integrations: integrations_pb2_grpc.IntegrationServiceStub
    auth: auth_pb2_grpc.AuthServiceStub
    accounts: accounts_pb2_grpc.AccountServiceStub
    health: health_pb2_grpc.HealthStub
    deadline_seconds: float
    max_body_bytes: int
    # What the server accepts in one call (the server's own settings, see the module).
    max_message_bytes: int
    max_authorization_bytes: int
    watch_seconds: float = 300.0

    @classmethod
    def over(cls, channel: grpc.aio.Channel, config: Config) -> Backend:
        """Stubs over `channel` with `config`'s deadline and body limit."""
        return cls(
            settings=settings_pb2_grpc.SettingsServiceStub(channel),
            integrations=integrations_pb2_grpc.IntegrationServiceStub(channel),
            auth=auth_pb2_grpc.AuthServiceStub(channel),
            accounts=accounts_pb2_grpc.AccountServiceStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
            deadline_seconds=config.gateway_deadline_seconds,
            max_body_bytes=config.http_max_body_bytes,
            max_message_bytes=config.grpc_max_request_bytes,
            max_authorization_bytes=max_authorization_bytes(config),
            watch_seconds=config.gateway_watch_seconds,
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
    # " " to "~": in ASCII, what isprintable() allows (it refuses the controls and DEL).
    return value.isascii() and value.isprintable()


def _authorization(request: Request) -> str | None:
    """The one Authorization header, if any, checked to travel as gRPC metadata."""
    sent = request.headers.getlist("authorization")
    if len(sent) > 1:
        raise GatewayError(
            Failure(
                grpc.StatusCode.UNAUTHENTICATED,
                f"Send one Authorization header, not {len(sent)}.",
                Reason.CREDENTIALS_MALFORMED,
            )
        )
    return sent[0] if sent else None


def call_options(
    request: Request, message: Message, *, session_token: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for a stub call carrying `message`: the deadline and the metadata.

    `session_token` is the console's (gateway/console): the bearer token of a signed-in
    session, sent instead of any Authorization header the browser sent.
    """
    limits = backend(request)
    if message.ByteSize() > limits.max_message_bytes:
        raise too_large(
            CONTENT_TOO_LARGE,
            "body",
            f"The request is larger than the {limits.max_message_bytes} bytes one call may carry.",
            Reason.BODY_TOO_LARGE,
        )
    metadata = [(REQUEST_ID_HEADER, request_id(request))]
    if request.client is not None and request.client.host:
        metadata.append((CLIENT_ADDRESS_METADATA, request.client.host))
    authorization = _authorization(request) if session_token is None else f"Bearer {session_token}"
    if authorization is not None:
        if len(authorization) > limits.max_authorization_bytes:
            raise too_large(
                HEADERS_TOO_LARGE,
                "Authorization",
                f"The Authorization header is longer than {limits.max_authorization_bytes} bytes.",
                Reason.HEADERS_TOO_LARGE,
            )
        # gRPC metadata is printable ASCII; anything else cannot be passed on unchanged.
        if not _printable_ascii(authorization):
            raise bad_request(
                "Authorization",
                "The Authorization header must be printable ASCII.",
                Reason.BAD_HEADER,
            )
        metadata.append(("authorization", authorization))
    return {"timeout": limits.deadline_seconds, "metadata": metadata}
