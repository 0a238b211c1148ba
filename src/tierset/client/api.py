"""The async client: typed get, put, delete, list, history and watch, and live views.

Retries (the rules of the service's comment in protos/tierset/v1/settings.proto):

* Reads (``get``, ``list``, ``history``) retry UNAVAILABLE with jittered backoff, up to
  ``read_attempts`` tries: a read has no effect, so repeating it is always safe.
* Writes (``put``, ``delete``) are retried on UNAVAILABLE only when they carry
  ``expected_version``: if the lost attempt landed, the retry is ABORTED instead of
  writing twice. Without it, the error goes to the caller, who must re-read to learn
  whether the write happened.

Every failure is a :class:`~tierset.client.errors.TiersetError`. Credentials are sent as
per-call metadata (never through an interceptor), so the OAuth sign-in can use the same
channel without authenticating itself.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tierset.client.backoff import Backoff
from tierset.client.credentials import Credentials
from tierset.client.errors import TiersetError, from_rpc_error
from tierset.client.model import (
    Change,
    Deleted,
    Read,
    Scope,
    Setting,
    WatchMessage,
    Written,
    encode_value,
)
from tierset.client.view import View
from tierset.v1 import settings_pb2, settings_pb2_grpc

T = TypeVar("T")

# As CLIENT_MAX_RECEIVE_BYTES in tierset.client: a read is at most 16 MiB of values.
_MAX_RECEIVE_BYTES = 32 * 1024 * 1024


class Client:
    """A connection to one tierset server (``host:port``).

    ``tls``: False for plaintext; True for TLS with the system's roots (or
    ``root_certificates`` in PEM); or ready ``grpc.ChannelCredentials``. Use as
    ``async with Client(...) as client:`` or call ``close()``.
    """

    def __init__(
        self,
        target: str,
        credentials: Credentials,
        *,
        tls: bool | grpc.ChannelCredentials = False,
        root_certificates: bytes | None = None,
        timeout_seconds: float = 10.0,
        read_attempts: int = 4,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        options = (
            ("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),
            # Reconnect to a restarted server within seconds, not gRPC's default of up to
            # two minutes: the view's own backoff (jittered) paces the retries.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        )
        if tls is False:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            channel_credentials = (
                tls
                if isinstance(tls, grpc.ChannelCredentials)
                else grpc.ssl_channel_credentials(root_certificates)
            )
            self._channel = grpc.aio.secure_channel(target, channel_credentials, options=options)
        self.target = target
        self._credentials = credentials
        self._stub = settings_pb2_grpc.SettingsServiceStub(self._channel)
        self._timeout = timeout_seconds
        self._read_attempts = max(1, read_attempts)
        self._backoff = backoff

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    # -- the calls -----------------------------------------------------------------------

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        try:
            return (("authorization", await self._credentials.header(self._channel)),)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, retry: bool) -> T:
        """One unary call; UNAVAILABLE retried with backoff when `retry` says it is safe."""
        backoff = self._backoff()
        attempts = self._read_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await method(request, metadata=await self._metadata(), timeout=self._timeout)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if error.code == grpc.StatusCode.UNAUTHENTICATED:
                    self._credentials.invalidate()
                if error.code != grpc.StatusCode.UNAVAILABLE or attempt == attempts:
                    raise error from None
            await asyncio.sleep(backoff.next_delay())
        raise AssertionError("unreachable")

    async def get(
        self, scope: Scope, keys: Sequence[str], *, at_revision: int | None = None
    ) -> Read:
        """The effective settings of `keys` for `scope`; keys set at no level are absent."""
        request = settings_pb2.GetSettingsRequest(
            scope=scope.to_proto(), keys=list(keys), at_revision=at_revision
        )
        reply = await self._call(self._stub.GetSettings, request, retry=True)
        return Read(reply.revision, {s.key: Setting.from_proto(s) for s in reply.settings})

    async def put(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        type: str | None = None,
        expected_version: int | None = None,
        reason: str = "",
    ) -> Written:
        """Writes `value` at `scope`'s level (GLOBAL: the platform default).

        The type is inferred from the value unless given (see ``model.encode_value``).
        """
        setting_type, setting_value = encode_value(value, type)
        safe = expected_version is not None
        if scope.is_global:
            global_request = settings_pb2.SetGlobalRequest(
                key=key,
                type=setting_type,  # type: ignore[arg-type]
                value=setting_value,
                expected_version=expected_version,
                reason=reason,
            )
            reply: Any = await self._call(self._stub.SetGlobal, global_request, retry=safe)
        else:
            request = settings_pb2.PutSettingRequest(
                scope=scope.to_proto(),
                key=key,
                type=setting_type,  # type: ignore[arg-type]
                value=setting_value,
                expected_version=expected_version,
                reason=reason,
            )
            reply = await self._call(self._stub.PutSetting, request, retry=safe)
        return Written(reply.version, reply.created, reply.revision)

    async def delete(
        self, scope: Scope, key: str, *, expected_version: int | None = None, reason: str = ""
    ) -> Deleted:
        """Removes `scope`'s own value of `key`, so it inherits again."""
        safe = expected_version is not None
        if scope.is_global:
            global_request = settings_pb2.DeleteGlobalRequest(
                key=key, expected_version=expected_version, reason=reason
            )
            reply: Any = await self._call(self._stub.DeleteGlobal, global_request, retry=safe)
            return Deleted(reply.revision, None)
        request = settings_pb2.DeleteSettingRequest(
            scope=scope.to_proto(), key=key, expected_version=expected_version, reason=reason
        )
        reply = await self._call(self._stub.DeleteSetting, request, retry=safe)
        effective = Setting.from_proto(reply.effective) if reply.HasField("effective") else None
        return Deleted(reply.revision, effective)

    async def list(
        self, scope: Scope, *, prefix: str = "", level_only: bool = False, page_size: int = 0
    ) -> builtins.list[Setting]:
        """Every setting of `scope` (GLOBAL: the platform defaults) under `prefix`, by key.

        Each page is one consistent read; pages are read one after another.
        """
        settings: builtins.list[Setting] = []
        token = ""
        while True:
            request = settings_pb2.ListSettingsRequest(
                scope=None if scope.is_global else scope.to_proto(),
                key_prefix=prefix,
                level_only=level_only,
                page_size=page_size,
                page_token=token,
            )
            reply = await self._call(self._stub.ListSettings, request, retry=True)
            settings.extend(Setting.from_proto(s) for s in reply.settings)
            token = reply.next_page_token
            if not token:
                return settings

    async def history(
        self,
        scope: Scope | None = None,
        *,
        key: str = "",
        prefix: str = "",
        min_revision: int | None = None,
        max_revision: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> builtins.list[Change]:
        """Up to `limit` entries of the change log; scope GLOBAL: GLOBAL changes only."""
        changes: builtins.list[Change] = []
        token = ""
        while len(changes) < limit:
            request = settings_pb2.ListChangesRequest(
                key=key,
                key_prefix=prefix,
                min_revision=min_revision,
                max_revision=max_revision,
                newest_first=newest_first,
                page_size=min(500, limit - len(changes)),
                page_token=token,
            )
            if scope is not None and scope.is_global:
                request.global_only = True
            elif scope is not None:
                request.scope.CopyFrom(scope.to_proto())
            reply = await self._call(self._stub.ListChanges, request, retry=True)
            changes.extend(Change.from_proto(c) for c in reply.changes)
            token = reply.next_page_token
            if not token:
                break
        return changes[:limit]

    async def watch(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] = (),
        prefix: str = "",
        start_revision: int | None = None,
    ) -> AsyncIterator[WatchMessage]:
        """The messages of one WatchSettings stream, as they come; no reconnects (a view
        does those). A failure ends the iteration with a TiersetError."""
        request = settings_pb2.WatchSettingsRequest(
            scope=scope.to_proto(),
            keys=list(keys),
            key_prefix=prefix,
            start_revision=start_revision,
        )
        call = self._stub.WatchSettings(request, metadata=await self._metadata())
        try:
            async for message in call:
                yield WatchMessage.from_proto(message)
        except grpc.RpcError as rpc_error:
            error = from_rpc_error(rpc_error)
            if error.code == grpc.StatusCode.UNAUTHENTICATED:
                self._credentials.invalidate()
            raise error from None
        finally:
            call.cancel()

    async def view(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] = (),
        prefix: str = "",
        last_known_good: str | Path | None = None,
        wait_seconds: float = 10.0,
    ) -> View:
        """A live :class:`~tierset.client.view.View` of `scope`'s `keys` (or `prefix`).

        Returns once it holds values: from the server's first snapshot, or, when the server
        cannot be reached and `last_known_good` names a file written by an earlier view of
        the same selection, from that file (``view.from_file`` is then True until the
        server answers). Raises TiersetError for a refusal (bad scope, no permission), or
        when neither arrives within `wait_seconds`.
        """
        view = View(self, scope, keys=keys, prefix=prefix, last_known_good=last_known_good)
        await view.start(wait_seconds)
        return view


__all__ = ["Client", "TiersetError"]
