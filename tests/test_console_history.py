"""History and restore in the console, in a real browser: old → new, who, when, why, and
a restore that brings a past value back as a new revision."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(120)


async def test_a_keys_history_lists_its_changes_and_restores_one(
    console_scope, settings_stub, unique_key
):
    key = unique_key("HISTORY")
    page = console_scope.admin
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    retailer = page.locator('section[data-level="RETAILER"]')
    # A new key: its type is chosen with its first value.
    await retailer.get_by_label("Type").select_option("INTEGER")
    for value, reason in (("10", "first"), ("20", "second")):
        await retailer.get_by_label("Value").fill(value)
        await retailer.get_by_label("Reason").fill(reason)
        await (
            retailer.get_by_role("button", name="Override at RETAILER")
            .or_(retailer.get_by_role("button", name="Save"))
            .click()
        )
        await expect(retailer.locator("pre.value")).to_have_text(value)

    rows = page.locator("table.history tbody tr")
    await expect(rows).to_have_count(2)
    newest, oldest = rows.nth(0), rows.nth(1)
    await expect(newest.locator(".diff")).to_have_text("10 → 20")
    await expect(oldest.locator(".diff")).to_have_text("∅ → 10")
    for row, reason in ((newest, "second"), (oldest, "first")):
        await expect(row).to_contain_text(reason)
        await expect(row).to_contain_text(console_scope.admin_username)
        await expect(row).to_contain_text("UTC")

    first_revision = await oldest.get_attribute("data-revision")
    await oldest.get_by_role("button", name="Restore").click()
    await expect(retailer.locator("pre.value")).to_have_text("10")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0).locator(".diff")).to_have_text("20 → 10")
    await expect(rows.nth(0)).to_contain_text(f"restore to revision {first_revision}")
    reply = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(
            scope=settings_pb2.Scope(retailer_id=console_scope.retailer), keys=[key]
        )
    )
    assert reply.settings[0].value.integer_value == 10


async def test_a_scopes_history_page_lists_its_changes(console_scope, settings_stub, unique_key):
    key = unique_key("SCOPEHIST")
    await settings_stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=settings_pb2.Scope(account_id=console_scope.account),
            key=key,
            type=settings_pb2.SETTING_TYPE_STRING,
            value=settings_pb2.SettingValue(string_value="v1"),
            reason="for the scope's history",
        )
    )
    page = console_scope.viewer
    await page.goto(f"/console/accounts/{console_scope.account}")
    await page.get_by_role("link", name="History").click()
    await page.get_by_label("Key prefix").fill(key)
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.history tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("for the scope's history")
    await expect(rows.first.locator(".diff")).to_have_text("∅ → v1")
    await expect(rows.first.get_by_role("button")).to_have_count(0)  # a VIEWER restores nothing
