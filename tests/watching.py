"""Test helpers for WatchSettings: a stream read into a queue, and writes through the API
or the store (deletes have no RPC on this branch yet)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tests.helpers import json_value
from tierset.core.values import Level
from tierset.store.database import ScopeRef, Store
from tierset.v1 import settings_pb2, settings_pb2_grpc

DEADLINE = 15.0
Response = settings_pb2.WatchSettingsResponse


class Stream:
    """One open WatchSettings call; `next()` waits (with a deadline) for its next message."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.queue: asyncio.Queue[Response | BaseException] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for message in self.call:
                await self.queue.put(message)
            await self.queue.put(EOFError("stream ended OK"))
        except BaseException as error:
            await self.queue.put(error)

    async def next(self, skip_progress: bool = True) -> Response:
        while True:
            async with asyncio.timeout(DEADLINE):
                item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if skip_progress and item.kind == Response.KIND_PROGRESS:
                continue
            return item

    async def error(self) -> grpc.aio.AioRpcError:
        """The status the stream ends with (messages before it are skipped)."""
        while True:
            async with asyncio.timeout(DEADLINE):
                item = await self.queue.get()
            if isinstance(item, grpc.aio.AioRpcError):
                return item
            assert not isinstance(item, BaseException), item

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


@contextlib.asynccontextmanager
async def watching(
    stub: settings_pb2_grpc.SettingsServiceStub, metadata: Any = None, **request: Any
) -> AsyncIterator[Stream]:
    stream = Stream(
        stub.WatchSettings(settings_pb2.WatchSettingsRequest(**request), metadata=metadata)
    )
    try:
        yield stream
    finally:
        await stream.close()


def values(message: Response) -> dict[str, Any]:
    """key -> (level name, JSON value) of a SNAPSHOT."""
    return {s.key: (settings_pb2.SettingLevel.Name(s.level), _value(s)) for s in message.settings}


def _value(setting: settings_pb2.Setting) -> Any:
    kind = setting.value.WhichOneof("kind")
    raw = getattr(setting.value, kind)
    return json.loads(raw) if kind == "json_value" else raw


def events(message: Response) -> list[tuple[str, Any, Any]]:
    """(key, (level, value) or None, previous (level, value) or None) of an EVENTS message."""
    out = []
    for event in message.events:
        new = (
            (settings_pb2.SettingLevel.Name(event.setting.level), _value(event.setting))
            if event.HasField("setting")
            else None
        )
        old = (
            (settings_pb2.SettingLevel.Name(event.previous.level), _value(event.previous))
            if event.HasField("previous")
            else None
        )
        out.append((event.key, new, old))
    return out


async def put(
    stub, level: str, key: str, value: Any, *, account: int = 0, retailer: int = 0
) -> None:
    if level == "GLOBAL":
        await stub.SetGlobal(
            settings_pb2.SetGlobalRequest(
                key=key, type=settings_pb2.SETTING_TYPE_JSON, value=json_value(value)
            )
        )
        return
    scope = (
        settings_pb2.Scope(account_id=account)
        if level == "ACCOUNT"
        else settings_pb2.Scope(retailer_id=retailer)
    )
    await stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=scope, key=key, type=settings_pb2.SETTING_TYPE_JSON, value=json_value(value)
        )
    )


async def delete(pool, level: str, key: str, *, account: int = 0, retailer: int = 0) -> int:
    scope = None
    if level == "ACCOUNT":
        scope = ScopeRef(Level.ACCOUNT, account)
    elif level == "RETAILER":
        scope = ScopeRef(Level.RETAILER, retailer)
    return (await Store(pool).delete(scope, key)).revision
