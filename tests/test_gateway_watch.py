"""Server-Sent Events in the gateway over real HTTP: the snapshot, a live event with the
revision as event id, Last-Event-ID resumes, and refusals with the GET's shapes."""

from __future__ import annotations

import asyncio
import json

from tests.watching import put
from tierset.v1 import settings_pb2


async def _frames(lines, count: int) -> list[dict]:
    """The next `count` non-progress events as {"id", "event", "data"}."""
    out: list[dict] = []
    frame: dict = {}
    async with asyncio.timeout(15):
        async for line in lines:
            if line == "":
                if frame and frame.get("event") != "progress":
                    frame["data"] = json.loads(frame["data"])
                    out.append(frame)
                    if len(out) == count:
                        return out
                frame = {}
                continue
            name, _, value = line.partition(": ")
            frame[name] = value
    return out


async def test_sse_sends_the_snapshot_then_events_and_resumes_from_last_event_id(
    http, rest_auth_headers, settings_stub, new_account, unique_key
):
    account = await new_account()
    key = unique_key("S")
    await put(settings_stub, "ACCOUNT", key, 1, account=account)
    path = f"/api/v4.1/settings/account/{account}/{key}/watch"
    async with http.stream("GET", path, headers=rest_auth_headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        (snapshot,) = await _frames(lines, 1)
        assert snapshot["event"] == "snapshot"
        assert snapshot["data"]["settings"][0]["value"] == 1
        await put(settings_stub, "ACCOUNT", key, 2, account=account)
        (event,) = await _frames(lines, 1)
    assert event["event"] == "events"
    assert int(event["id"]) == event["data"]["revision"] > int(snapshot["id"])
    (change,) = event["data"]["events"]
    assert (change["key"], change["setting"]["value"], change["previous"]["value"]) == (key, 2, 1)
    headers = {**rest_auth_headers, "Last-Event-ID": snapshot["id"]}
    async with http.stream("GET", path, headers=headers) as response:
        (replayed,) = await _frames(response.aiter_lines(), 1)
    assert replayed["id"] == event["id"] and replayed["data"] == event["data"]


async def test_sse_carries_a_lock_in_the_snapshot_and_as_events(
    http, rest_auth_headers, settings_stub, new_account, unique_key
):
    account = await new_account()
    key = unique_key("S")
    await put(settings_stub, "ACCOUNT", key, 1, account=account)
    scope = settings_pb2.Scope(account_id=account)
    first = await settings_stub.LockSetting(settings_pb2.LockSettingRequest(scope=scope, key=key))
    path = f"/api/v4.1/settings/account/{account}/{key}/watch"
    async with http.stream("GET", path, headers=rest_auth_headers) as response:
        lines = response.aiter_lines()
        (snapshot,) = await _frames(lines, 1)
        unlocked = await settings_stub.UnlockSetting(
            settings_pb2.UnlockSettingRequest(scope=scope, key=key)
        )
        (event,) = await _frames(lines, 1)
    lock = first.setting.lock
    shown = {
        "revision": first.revision,
        "time": lock.lock_time.ToJsonString(),
        "username": lock.actor.username,
    }
    assert snapshot["data"]["settings"][0]["lock"] == shown
    assert int(event["id"]) == unlocked.revision
    (change,) = event["data"]["events"]
    assert "lock" not in change["setting"] and change["previous"]["lock"] == shown
    assert change["setting"]["value"] == change["previous"]["value"] == 1


async def test_sse_refusals_have_the_gets_status_and_body(http, rest_auth_headers, new_account):
    account = await new_account()
    async with http.stream(
        "GET", f"/api/v4.1/settings/account/{account}/bad key/watch", headers=rest_auth_headers
    ) as response:
        assert response.status_code == 400
    async with http.stream("GET", f"/api/v4.1/settings/account/{account}/A/watch") as response:
        assert response.status_code == 401
    headers = {**rest_auth_headers, "Last-Event-ID": "x"}
    async with http.stream(
        "GET", f"/api/v4.1/settings/account/{account}/A/watch", headers=headers
    ) as response:
        assert response.status_code == 400


async def test_a_resume_with_nothing_new_within_the_gateways_bound_ends_cleanly(
    http, rest_auth_headers, settings_stub, new_account, unique_key
):
    """Resumed at the last revision, the server has nothing to send until its first
    PROGRESS (TIERSET_WATCH_PROGRESS_SECONDS, 10 s here); the session gateway's bound is
    2 s. The stream ends at the bound as any stream does (200, no event), so EventSource
    reconnects with the same Last-Event-ID; it was a 504, which ends EventSource for good."""
    account = await new_account()
    key = unique_key("S")
    await put(settings_stub, "ACCOUNT", key, 1, account=account)
    latest = settings_pb2.ListChangesRequest(newest_first=True, page_size=1)
    current = (await settings_stub.ListChanges(latest)).revision
    path = f"/api/v4.1/settings/account/{account}/{key}/watch"
    headers = {**rest_auth_headers, "Last-Event-ID": str(current)}
    async with http.stream("GET", path, headers=headers) as response:
        body = await response.aread()
    assert response.status_code == 200, body
    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"event: error" not in body
