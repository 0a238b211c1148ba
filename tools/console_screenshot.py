"""``make screenshot``: the README's picture of the console's settings matrix.

Starts a real ``tierset dev`` (embedded PostgreSQL, gRPC server, gateway with the console)
on free ports with a data folder of its own, so it never touches ``.data``; writes the
README's demo settings over gRPC with the demo credentials it created; signs in as
``demo-admin`` in Debian's chromium (through Playwright) and photographs retailer 2222's
matrix into docs/console-matrix.png; then stops everything it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
from playwright.async_api import async_playwright

from tierset.v1 import settings_pb2 as pb
from tierset.v1 import settings_pb2_grpc

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "console-matrix.png"
START_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _credentials(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            found[name] = value
    return found


def _json(value: object) -> pb.SettingValue:
    return pb.SettingValue(json_value=json.dumps(value))


async def _seed(target: str, secrets: dict[str, str]) -> None:
    """The README's demo settings: defaults, account values, a retailer's overrides, a lock."""
    admin = (("authorization", f"Bearer {secrets['TIERSET_TOKEN']}"),)
    platform = (("authorization", f"Bearer {secrets['TIERSET_PLATFORM_TOKEN']}"),)
    account, retailer = pb.Scope(account_id=1111), pb.Scope(retailer_id=2222)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        for key, kind, value in (
            ("PAYMENT.CURRENCY", pb.SETTING_TYPE_JSON, [{"name": "AUD"}, {"name": "NZD"}]),
            ("CHECKOUT.MAX_ITEMS", pb.SETTING_TYPE_INTEGER, 100),
            ("CHECKOUT.GUEST_ENABLED", pb.SETTING_TYPE_BOOLEAN, False),
            ("DELIVERY.WINDOW_DAYS", pb.SETTING_TYPE_INTEGER, 7),
        ):
            request = pb.SetGlobalRequest(key=key, type=kind, value=_json(value), reason="default")
            await stub.SetGlobal(request, metadata=platform)
        for scope, key, kind, value, reason in (
            (
                account,
                "PAYMENT.PROVIDER",
                pb.SETTING_TYPE_JSON,
                [{"name": "BRAINTREE"}],
                "contract",
            ),
            (account, "CHECKOUT.MAX_ITEMS", pb.SETTING_TYPE_INTEGER, 50, "smaller carts"),
            (account, "DELIVERY.WINDOW_DAYS", pb.SETTING_TYPE_INTEGER, 5, "standard"),
            (retailer, "PAYMENT.PROVIDER", pb.SETTING_TYPE_JSON, [{"name": "AFTERPAY"}], "pilot"),
            (retailer, "CHECKOUT.GUEST_ENABLED", pb.SETTING_TYPE_BOOLEAN, True, "guests welcome"),
            (retailer, "DELIVERY.WINDOW_DAYS", pb.SETTING_TYPE_INTEGER, 2, "express store"),
            (retailer, "STORE.GREETING", pb.SETTING_TYPE_STRING, "Kia ora!", "local"),
        ):
            request = pb.PutSettingRequest(
                scope=scope, key=key, type=kind, value=_json(value), reason=reason
            )
            await stub.PutSetting(request, metadata=admin)
        # A lock, so the picture shows one: the account's cart limit holds for its retailers.
        lock = pb.LockSettingRequest(scope=account, key="CHECKOUT.MAX_ITEMS", reason="policy")
        await stub.LockSetting(lock, metadata=admin)


async def _photograph(base_url: str, secrets: dict[str, str]) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM") or shutil.which("chromium") or "chromium"
        )
        page = await browser.new_page(viewport={"width": 1180, "height": 640})
        await page.goto(f"{base_url}/console/sign-in")
        await page.get_by_label("Username").fill(secrets["TIERSET_USERNAME"])
        await page.get_by_label("Password").fill(secrets["TIERSET_PASSWORD"])
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_test_id("who").wait_for()
        await page.goto(f"{base_url}/console/retailers/2222")
        await page.locator('tr[data-key="STORE.GREETING"]').wait_for()
        await page.screenshot(path=str(OUTPUT), full_page=True)
        await browser.close()


def _wait_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"tierset dev stopped (exit {server.returncode}) before it was ready")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"tierset dev was not ready after {START_SECONDS} s")


def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="tierset-screenshot-"))
    data_dir.chmod(0o755)  # the embedded PostgreSQL may run as the postgres user
    grpc_address = f"127.0.0.1:{_free_port()}"
    base_url = f"http://127.0.0.1:{_free_port()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TIERSET_", "PG"))},
        "TIERSET_DATA_DIR": str(data_dir),
        "TIERSET_GRPC_ADDRESS": grpc_address,
        "TIERSET_HTTP_ADDRESS": base_url.removeprefix("http://"),
        "TIERSET_EMBEDDED_PG_PORT": str(_free_port()),
        "TIERSET_METRICS_ADDRESS": "",
        "TIERSET_GATEWAY_METRICS_ADDRESS": "",
    }
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "tierset.cli", "dev"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(base_url, server)
        secrets = _credentials(data_dir / "demo-credentials.env")
        asyncio.run(_seed(grpc_address, secrets))
        asyncio.run(_photograph(base_url, secrets))
        print(f"wrote {OUTPUT}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
