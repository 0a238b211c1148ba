"""gRPC adapter of WatchSettings: the request to a WatchRequest, messages to protos.

The rules live in :mod:`tierset.services.watch`; this reads the request, hands the
service a re-check that authenticates the call's own credentials again (so a revoked or
expired one ends the stream), and renders and serialises each message once however many
streams send it (a message is shared by every watcher of the same scope and keys).

Registered as part of SettingsService: :class:`WatchingSettingsService` is the settings
servicer with this one method added, so the other methods stay in api/settings.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from tierset.api.settings import SettingsService, scope_from_proto, setting_to_proto
from tierset.auth.authenticator import Authenticator
from tierset.core import authz
from tierset.services.keydefs import Definitions
from tierset.services.watch import WatchRequest, WatchService
from tierset.services.watch_events import KIND_EVENTS, KIND_PROGRESS, KIND_SNAPSHOT, Message
from tierset.store.database import Store
from tierset.v1 import settings_pb2

_KINDS = {
    KIND_SNAPSHOT: settings_pb2.WatchSettingsResponse.KIND_SNAPSHOT,
    KIND_EVENTS: settings_pb2.WatchSettingsResponse.KIND_EVENTS,
    KIND_PROGRESS: settings_pb2.WatchSettingsResponse.KIND_PROGRESS,
}
_RESPONSE = "grpc.WatchSettingsResponse.bytes"


def watch_request(request: settings_pb2.WatchSettingsRequest) -> WatchRequest:
    """The service's view of a request (INVALID_ARGUMENT for a bad scope)."""
    return WatchRequest(
        scope_from_proto(request.scope),
        list(request.keys),
        request.key_prefix,
        request.start_revision if request.HasField("start_revision") else None,
    )


def to_proto(message: Message) -> bytes:
    """A message as the API shows it, built and serialised once per message: one event
    reaches every watcher of its scope and keys (thousands of streams), and the call
    pipeline sends bytes as they are (api/pipeline.py `_passing_bytes`)."""
    rendered: bytes | None = message.renderings.get(_RESPONSE)
    if rendered is not None:
        return rendered
    response = settings_pb2.WatchSettingsResponse(
        kind=_KINDS[message.kind],
        revision=message.revision,
        settings=[setting_to_proto(s) for s in message.settings],
    )
    for event in message.events:
        proto = response.events.add(key=event.key)
        if event.setting is not None:
            proto.setting.CopyFrom(setting_to_proto(event.setting))
        if event.previous is not None:
            proto.previous.CopyFrom(setting_to_proto(event.previous))
    rendered = response.SerializeToString()
    message.renderings[_RESPONSE] = rendered
    return rendered


class WatchingSettingsService(SettingsService):
    """SettingsService with WatchSettings."""

    def __init__(
        self,
        store: Store,
        watch: WatchService,
        authenticator: Authenticator,
        definitions: Definitions | None = None,
    ) -> None:
        super().__init__(store, definitions)
        self._watch = watch
        self._authenticator = authenticator

    async def WatchSettings(
        self, request: settings_pb2.WatchSettingsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        authorization = [
            value
            for key, value in (context.invocation_metadata() or ())
            if key == "authorization" and isinstance(value, str)
        ]

        async def recheck() -> None:
            # The pipeline authenticated the call; this asks again with the same
            # credentials (a cache hit unless revoked, expired or aged out).
            await self._authenticator.authenticate(authorization, lambda: context.peer())

        async for message in self._watch.watch(
            authz.current_principal(), watch_request(request), recheck
        ):
            yield to_proto(message)
