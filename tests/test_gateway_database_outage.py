"""PostgreSQL stops and starts again behind the REST gateway: REST calls answer 503 in the
documented shape quickly, /readyz goes not-ready while /healthz stays OK, and after the
restart calls succeed again by themselves with every acknowledged write readable.

Real parts throughout: a PostgreSQL of the test's own, a real server on it, a real gateway
(uvicorn) pointed at that server, and httpx over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx

from tests.conftest import make_caller_in, running_gateway
from tierset.cli.soak import inprocess as soak
from tierset.core.authz import Role
from tierset.ops.config import Config

# Generous bounds: they catch a hang, not a slow machine. The server's own timeouts
# (soak_config: connect and pool acquire 2 s) decide how fast a failure really is.
FAILS_WITHIN_SECONDS = 8.0
RECOVERS_WITHIN_SECONDS = 30.0


async def _until(check, within: float) -> None:
    """Polls `check()` until it is true; fails the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.1)


async def test_rest_calls_are_503_while_postgres_is_down_and_recover_after(
    own_postgres, start_app_with
):
    app = await start_app_with(soak.soak_config(), own_postgres.dsn)
    caller = await make_caller_in(own_postgres.dsn, Role.PLATFORM)
    gateway_config = Config(
        http_address="127.0.0.1:0",
        grpc_target=f"127.0.0.1:{app.port}",
        gateway_deadline_seconds=10.0,
        shutdown_grace_seconds=1.0,
    )
    base = f"/api/v4.1/settings/account/{caller.account_id}"
    headers = {"Authorization": f"Bearer {caller.token}", "Content-Type": "application/json"}
    acknowledged: dict[str, str] = {}

    async with (
        running_gateway(gateway_config) as url,
        httpx.AsyncClient(base_url=url, timeout=20, trust_env=False) as http,
    ):

        async def put(key: str) -> httpx.Response:
            text = uuid.uuid4().hex
            body = json.dumps({"setting": {"value": text, "type": "STRING"}})
            response = await http.put(f"{base}/{key}", content=body, headers=headers)
            if response.status_code == 200:
                acknowledged[key] = text
            return response

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        async def not_ready() -> bool:
            return (await http.get("/readyz")).status_code == 503

        async def a_write_succeeds() -> bool:
            return (await put(f"AFTER.{uuid.uuid4().hex[:8]}")).status_code == 200

        for i in range(5):
            assert (await put(f"BEFORE.{i}")).status_code == 200
        assert await ready()

        await asyncio.to_thread(own_postgres.stop, "fast")
        try:
            for call in (
                lambda: put("DURING.0"),
                lambda: http.get(f"{base}/BEFORE.0", headers=headers),
                lambda: put("DURING.1"),
                lambda: http.get(f"{base}/BEFORE.0,BEFORE.1", headers=headers),
            ):
                started = time.monotonic()
                response = await call()
                assert time.monotonic() - started < FAILS_WITHIN_SECONDS
                assert response.status_code == 503, response.text
                body = response.json()
                assert (body["message"], body["code"]) == ("Service Unavailable", "503")
                assert [e["code"] for e in body["error"]] == ["BACKEND_UNAVAILABLE"]
                assert own_postgres.dsn not in response.text
            # The server's health probe notices; the gateway's readiness follows it, while
            # the gateway itself is alive.
            await _until(not_ready, FAILS_WITHIN_SECONDS)
            assert (await http.get("/healthz")).status_code == 200
        finally:
            await asyncio.to_thread(own_postgres.start)

        # Nobody restarts anything: the pool reconnects and health comes back by itself.
        await _until(a_write_succeeds, RECOVERS_WITHIN_SECONDS)
        await _until(ready, RECOVERS_WITHIN_SECONDS)
        for i in range(5):
            assert (await put(f"AFTER.{i}")).status_code == 200

        keys = list(acknowledged)
        read = await http.get(f"{base}/{','.join(keys)}", headers=headers)

    assert read.status_code == 200
    stored = {s["key"]: s["value"] for s in read.json()["settings"]}
    assert stored == acknowledged
