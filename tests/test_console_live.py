"""The open matrix follows changes made elsewhere (WatchSettings through the gateway's
event stream, static/live.js): from another browser session, and over gRPC."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(120)


def _put(scope: settings_pb2.Scope, key: str, text: str) -> settings_pb2.PutSettingRequest:
    return settings_pb2.PutSettingRequest(
        scope=scope,
        key=key,
        type=settings_pb2.SETTING_TYPE_STRING,
        value=settings_pb2.SettingValue(string_value=text),
    )


async def test_a_change_in_another_browser_session_reaches_the_open_matrix(
    console_scope, settings_stub, unique_key
):
    key = unique_key("LIVE")
    account = settings_pb2.Scope(account_id=console_scope.account)
    await settings_stub.PutSetting(_put(account, key, "before"))
    watching, editing = console_scope.viewer, console_scope.admin
    await watching.goto(f"/console/retailers/{console_scope.retailer}?prefix={key}")
    cell = watching.locator(f'tr[data-key="{key}"] td[data-level="RETAILER"]')
    await expect(cell).to_have_text("—")

    await editing.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    retailer = editing.locator('section[data-level="RETAILER"]')
    await retailer.get_by_label("Value").fill("after")
    await retailer.get_by_role("button", name="Override at RETAILER").click()
    await expect(retailer.locator("pre.value")).to_have_text("after")

    await expect(cell).to_contain_text("after")  # no reload: the watch brought it
    await expect(cell).to_have_class("cell winner")
    shadowed = watching.locator(f'tr[data-key="{key}"] td[data-level="ACCOUNT"]')
    await expect(shadowed).to_have_class("cell shadowed")


async def test_a_change_over_grpc_and_a_new_key_reach_the_open_matrix(
    console_scope, settings_stub, unique_key
):
    stem = unique_key("0LIVE")  # sorts before every other test's keys: on the first page
    first, second = f"{stem}.A", f"{stem}.B"
    retailer = settings_pb2.Scope(retailer_id=console_scope.retailer)
    await settings_stub.PutSetting(_put(retailer, first, "one"))
    page = console_scope.viewer
    for path in ("", f"?prefix={stem}."):  # watching the page's keys, then a prefix
        await page.goto(f"/console/retailers/{console_scope.retailer}{path}")
        await expect(page.locator("#matrix")).to_have_attribute("data-live", "open")
        text = f"changed{path and ' under the prefix'}"
        await settings_stub.PutSetting(_put(retailer, first, text))
        await expect(
            page.locator(f'tr[data-key="{first}"] td[data-level="effective"]')
        ).to_have_text(f"{text} from RETAILER")
    # Under a prefix, a key created elsewhere appears too.
    await settings_stub.PutSetting(_put(retailer, second, "new"))
    await expect(
        page.locator(f'tr[data-key="{second}"] td[data-level="RETAILER"]')
    ).to_contain_text("new")


async def test_a_lock_over_grpc_reaches_the_open_matrix(console_scope, settings_stub, unique_key):
    """A lock changes no value, but Watch reports it: the matrix shows it, then drops it."""
    key = unique_key("LIVE")
    account = settings_pb2.Scope(account_id=console_scope.account)
    await settings_stub.PutSetting(_put(account, key, "held"))
    page = console_scope.viewer
    await page.goto(f"/console/retailers/{console_scope.retailer}?prefix={key}")
    await expect(page.locator("#matrix")).to_have_attribute("data-live", "open")
    badge = page.locator(f'tr[data-key="{key}"] td[data-level="ACCOUNT"] .badge.lock')
    await expect(badge).to_have_count(0)

    await settings_stub.LockSetting(settings_pb2.LockSettingRequest(scope=account, key=key))
    await expect(badge).to_have_text("locked")  # no reload: the watch brought it
    await settings_stub.UnlockSetting(settings_pb2.UnlockSettingRequest(scope=account, key=key))
    await expect(badge).to_have_count(0)
