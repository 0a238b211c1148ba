"""Server-Sent Events for clients that cannot speak gRPC: a WatchSettings stream as
``text/event-stream``.

``GET /api/v4.1/settings/{account|retailer}/{id}/{keys}/watch`` (keys comma-separated)
→ WatchSettings. Each message becomes one event whose ``id`` is its revision, so a
browser's EventSource resumes by itself: it sends the last id as ``Last-Event-ID``,
which becomes ``start_revision`` (the stream then replays every change after it and
goes live). Event names are ``snapshot``, ``events`` and ``progress``; the data is JSON:
``{"revision", "settings": [...]}`` or ``{"revision", "events": [{"key", "setting",
"previous"}]}``, each setting shaped as the GET answers it (null: not set), plus, when
its value is locked, ``"lock": {"revision", "time", "username"}`` (a lock or unlock is an
``events`` event of its own: the GET shape has no lock, the Fluent Commerce contract's).

The gateway translates, it does not decide: the first message is awaited before the
response starts, so a refusal (bad key, unknown scope, no credentials, a compacted
Last-Event-ID) has the same status and body as the GET's. A stream lasts at most
TIERSET_GATEWAY_WATCH_SECONDS, then ends cleanly; the client reconnects and resumes. That
holds before the first message too (a 200 without events, never a 504): a resume with
nothing new gets its first message, a PROGRESS, only after TIERSET_WATCH_PROGRESS_SECONDS.
An error after the first message can no longer change the status: it is sent as an
``error`` event with the same body, and the stream ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tierset.core.reasons import Reason
from tierset.gateway import errors
from tierset.gateway.calls import backend, call_options
from tierset.gateway.errors import bad_request
from tierset.gateway.fluentcommerce import _entry_json, _scope
from tierset.v1 import settings_pb2

# What read() returns at the end of a stream (the installed type stubs lag).
_EOF = grpc.aio.EOF  # type: ignore[attr-defined]

_KINDS = {
    settings_pb2.WatchSettingsResponse.KIND_SNAPSHOT: "snapshot",
    settings_pb2.WatchSettingsResponse.KIND_EVENTS: "events",
    settings_pb2.WatchSettingsResponse.KIND_PROGRESS: "progress",
}


def _setting_json(setting: settings_pb2.Setting) -> str:
    """A setting as the GET shows it, with its lock when it has one."""
    entry = _entry_json(setting)
    if not setting.HasField("lock"):
        return entry
    lock = setting.lock
    fields = (
        f'"revision":{lock.revision},"time":{json.dumps(lock.lock_time.ToJsonString())},'
        f'"username":{json.dumps(lock.actor.username, ensure_ascii=False)}'
    )
    return f'{entry[:-1]},"lock":{{{fields}}}}}'


def _frame(message: settings_pb2.WatchSettingsResponse) -> str:
    if message.kind == settings_pb2.WatchSettingsResponse.KIND_EVENTS:
        entries = []
        for event in message.events:
            setting = _setting_json(event.setting) if event.HasField("setting") else "null"
            previous = _setting_json(event.previous) if event.HasField("previous") else "null"
            entries.append(
                f'{{"key":{json.dumps(event.key)},"setting":{setting},"previous":{previous}}}'
            )
        data = f'{{"revision":{message.revision},"events":[{",".join(entries)}]}}'
    else:
        settings = ",".join(_setting_json(s) for s in message.settings)
        data = f'{{"revision":{message.revision},"settings":[{settings}]}}'
    return f"id: {message.revision}\nevent: {_KINDS[message.kind]}\ndata: {data}\n\n"


def start_revision(request: Request) -> int | None:
    """The revision to resume after, from the EventSource's ``Last-Event-ID``."""
    raw = request.headers.get("last-event-id")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise bad_request(
            "Last-Event-ID", "Last-Event-ID must be a revision (a whole number).", Reason.BAD_HEADER
        )
    return int(raw)


async def _watch(request: Request, kind: str, param: str) -> Response:
    scope = _scope(request, kind, param)
    joined = request.path_params["key"]
    message = settings_pb2.WatchSettingsRequest(
        scope=scope,
        keys=joined.split(",") if joined else [],
        start_revision=start_revision(request),
    )
    return await event_stream(request, message, call_options(request, message))


async def event_stream(
    request: Request, message: settings_pb2.WatchSettingsRequest, options: dict[str, Any]
) -> Response:
    """WatchSettings(`message`) as a ``text/event-stream`` response (see the module); the
    console's live pages use it too, with their session's credentials in `options`."""
    # A watch lasts up to TIERSET_GATEWAY_WATCH_SECONDS; the client then resumes.
    options["timeout"] = backend(request).watch_seconds
    call = backend(request).settings.WatchSettings(message, **options)
    try:
        first = await call.read()  # a refusal is still the GET's status and body
    except grpc.aio.AioRpcError as error:
        call.cancel()
        if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        # The gateway's own bound passed before the first message: a resume with nothing
        # new waits for the server's first PROGRESS (TIERSET_WATCH_PROGRESS_SECONDS), which
        # may come after it. The stream ends at its bound as any other does; a 504 would
        # end the browser's EventSource for good instead of reconnecting.
        return _stream(iter(()))
    except BaseException:
        call.cancel()
        raise
    if first is _EOF:  # pragma: no cover - the server always sends one first
        call.cancel()
        return Response(status_code=204)
    family = errors.family_of(request.url.path)

    async def frames() -> AsyncIterator[str]:
        try:
            yield _frame(first)
            while True:
                try:
                    message = await call.read()
                except grpc.aio.AioRpcError as error:
                    if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                        return  # the gateway's bound: reconnect with Last-Event-ID
                    _, body = errors.render(errors.from_rpc_error(error), family)
                    yield f"event: error\ndata: {json.dumps(body)}\n\n"
                    return
                if message is _EOF:
                    return
                yield _frame(message)
        finally:
            call.cancel()

    return _stream(frames())


def _stream(frames: AsyncIterator[str] | Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def watch_account_settings(request: Request) -> Response:
    """GET /api/v4.1/settings/account/{accountId}/{keys}/watch"""
    return await _watch(request, "account_id", "accountId")


async def watch_retailer_settings(request: Request) -> Response:
    """GET /api/v4.1/settings/retailer/{retailerId}/{keys}/watch"""
    return await _watch(request, "retailer_id", "retailerId")
