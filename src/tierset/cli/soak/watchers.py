"""The soak's watchers: raw WatchSettings streams and client views, each recording what it
received for the checks.

A raw stream starts with a SNAPSHOT; after any failure it reconnects on a fresh call and
resumes from the last revision it received (``start_revision``), exactly as the API tells
a client to. It records every message, so the checks can see a replayed revision (a
duplicate), a revision skipped (a miss) or one arriving after a later one (out of order).
A view (:mod:`tierset.client.view`) does its own reconnecting; the soak only reads its
final state once the run has settled.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from tierset.cli.soak.load import CALL_TIMEOUT_SECONDS, PREFIX, Plan, grpc_channel
from tierset.cli.soak.records import Answer, Records, ScopeKey, WatchLog
from tierset.client import ApiToken, Client, Scope
from tierset.client.view import View
from tierset.v1 import settings_pb2, settings_pb2_grpc

RECONNECT_SECONDS = 0.1
_EOF = grpc.aio.EOF  # type: ignore[attr-defined]  # the stubs do not name it
_KINDS = settings_pb2.WatchSettingsResponse.Kind


def _values(message: settings_pb2.WatchSettingsResponse) -> dict[str, str | None]:
    if message.kind == settings_pb2.WatchSettingsResponse.KIND_SNAPSHOT:
        return {s.key: s.value.string_value for s in message.settings}
    return {
        e.key: (e.setting.value.string_value if e.HasField("setting") else None)
        for e in message.events
    }


async def raw_watch(
    plan: Plan, scope: ScopeKey, log: WatchLog, records: Records, stop: asyncio.Event
) -> None:
    """Follows `scope`'s keys under the soak's prefix until `stop`, reconnecting."""
    async with grpc_channel(plan) as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        while not stop.is_set():
            request = settings_pb2.WatchSettingsRequest(
                scope=plan.proto_scope(scope),
                key_prefix=PREFIX,
                start_revision=log.revision if log.messages else None,
            )
            call = stub.WatchSettings(request)
            ended = asyncio.create_task(stop.wait())
            try:
                while True:
                    read = asyncio.ensure_future(call.read())
                    await asyncio.wait({read, ended}, return_when=asyncio.FIRST_COMPLETED)
                    if not read.done():
                        read.cancel()
                        return
                    message = read.result()
                    if message is _EOF:
                        status = "UNAVAILABLE"  # the server ended it (shutting down)
                        break
                    log.messages.append(
                        (
                            _KINDS.Name(message.kind).removeprefix("KIND_"),
                            message.revision,
                            _values(message),
                        )
                    )
            except grpc.aio.AioRpcError as error:
                status = error.code().name
            finally:
                ended.cancel()
                call.cancel()
            records.answers.append(Answer(time.monotonic(), "watch", status))
            log.reconnects += 1
            await asyncio.sleep(RECONNECT_SECONDS)


async def open_view(plan: Plan, scope: ScopeKey) -> tuple[Client, View]:
    """A client view of `scope`'s keys under the prefix (waits for its first snapshot)."""
    target = Client(plan.grpc_target, ApiToken(plan.token), timeout_seconds=CALL_TIMEOUT_SECONDS)
    level, scope_id = scope
    view = await target.view(Scope(**{f"{level}_id": scope_id}), prefix=PREFIX, wait_seconds=30)
    return target, view


async def settle(
    logs: list[WatchLog], views: list[View], revision: int, within: float
) -> list[str]:
    """Waits until every watcher and view has reached `revision`; names the ones that did
    not within `within` seconds (their missing events then count as missed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        behind = [w.name for w in logs if w.revision < revision]
        behind += [f"view {v.scope}" for v in views if v.revision < revision]
        if not behind:
            return []
        await asyncio.sleep(0.05)
    return behind
