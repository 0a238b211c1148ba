"""`tierset dev` trusts its own gateway child, so REST clients are throttled one by one.

A real `tierset dev` (its own database, gRPC server and gateway child), with a strict
per-source limit of three failures and the gateway believing X-Forwarded-For from
loopback (as a proxy in front would set it): one client's brute force must not lock out
another client's sign-in. Before, the server saw every REST call as the gateway's address.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from urllib.parse import urlencode

import httpx

from tests.conftest import free_port
from tierset import client


async def _start_dev(database_url: str, data_dir, port: int, http_port: int):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierset.cli",
        "dev",
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TIERSET_DATA_DIR": str(data_dir),
            "TIERSET_GRPC_ADDRESS": f"127.0.0.1:{port}",
            "TIERSET_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
            "TIERSET_METRICS_ADDRESS": "",
            "TIERSET_GATEWAY_METRICS_ADDRESS": "",
            "TIERSET_AUTH_THROTTLE_SOURCE_FAILURES": "3",
            "TIERSET_AUTH_THROTTLE_WINDOW_SECONDS": "3600",
            "TIERSET_GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        await client.wait_until_serving(f"127.0.0.1:{port}")
    return process


async def _wait_for_gateway(http: httpx.AsyncClient) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def test_one_rest_clients_brute_force_does_not_lock_out_another(create_database, tmp_path):
    database_url = await create_database()
    port, http_port = free_port(), free_port()
    process = await _start_dev(database_url, tmp_path, port, http_port)
    try:
        values = {}
        for line in (tmp_path / "demo-credentials.env").read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                values[name] = value.strip("'")

        def form(username: str, password: str) -> str:
            return urlencode(
                {
                    "grant_type": "password",
                    "username": username,
                    "password": password,
                    "client_id": values["TIERSET_CLIENT_ID"],
                    "client_secret": values["TIERSET_CLIENT_SECRET"],
                }
            )

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}", timeout=30, trust_env=False
        ) as http:
            await _wait_for_gateway(http)

            async def post(username: str, password: str, address: str) -> httpx.Response:
                return await http.post(
                    "/oauth/token",
                    content=form(username, password),
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Forwarded-For": address,
                    },
                )

            # The attacker sprays made-up usernames from one address until it is throttled.
            attack = [await post(f"nobody-{n}", "guess", "192.0.2.66") for n in range(4)]
            other = await post(values["TIERSET_USERNAME"], values["TIERSET_PASSWORD"], "192.0.2.7")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=15)

    assert [r.status_code for r in attack] == [400, 400, 400, 429]
    assert other.status_code == 200, other.text
