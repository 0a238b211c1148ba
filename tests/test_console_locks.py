"""Locks in the console, in a real browser: lock and unlock buttons, the lock shown in the
matrix, and an override refused by the server for another user while the lock holds."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tierset.core.authz import Role
from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(120)


def _put(scope: settings_pb2.Scope, key: str, value: int) -> settings_pb2.PutSettingRequest:
    return settings_pb2.PutSettingRequest(
        scope=scope,
        key=key,
        type=settings_pb2.SETTING_TYPE_INTEGER,
        value=settings_pb2.SettingValue(integer_value=value),
    )


async def _effective(settings_stub, retailer: int, key: str) -> settings_pb2.Setting:
    reply = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=settings_pb2.Scope(retailer_id=retailer), keys=[key])
    )
    return reply.settings[0]


async def test_a_locked_value_refuses_another_users_override(
    console_scope, signed_in, console_user, settings_stub, unique_key
):
    key = unique_key("LOCKED")
    await settings_stub.PutSetting(
        _put(settings_pb2.Scope(account_id=console_scope.account), key, 5)
    )
    page = console_scope.admin
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    account = page.locator('section[data-level="ACCOUNT"]')
    await account.get_by_role("button", name="Lock").click()
    await expect(page.get_by_test_id("lock-ACCOUNT")).to_contain_text(
        f"locked by {console_scope.admin_username}"
    )
    await page.goto(f"/console/retailers/{console_scope.retailer}?prefix={key}")
    locked_cell = page.locator(f'tr[data-key="{key}"] td[data-level="ACCOUNT"]')
    await expect(locked_cell.locator(".badge.lock")).to_have_text("locked")

    # Another ADMIN of the account, in a browser session of its own, tries to override it.
    other = await signed_in(await console_user(Role.ADMIN, account_id=console_scope.account))
    await other.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    retailer = other.locator('section[data-level="RETAILER"]')
    await expect(retailer).to_contain_text("Locked at ACCOUNT")
    await retailer.get_by_label("Value").fill("9")
    await retailer.get_by_role("button", name="Override at RETAILER").click()
    await expect(retailer.get_by_role("alert")).to_contain_text(
        f"{key} is locked at ACCOUNT {console_scope.account} by {console_scope.admin_username}"
    )
    found = await _effective(settings_stub, console_scope.retailer, key)
    assert (found.level, found.value.integer_value) == (settings_pb2.SETTING_LEVEL_ACCOUNT, 5)

    # Unlocked, the same override goes through.
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    await page.locator('section[data-level="ACCOUNT"]').get_by_role("button", name="Unlock").click()
    await expect(page.get_by_test_id("lock-ACCOUNT")).to_have_count(0)
    await other.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    await retailer.get_by_label("Value").fill("9")
    await retailer.get_by_role("button", name="Override at RETAILER").click()
    await expect(retailer.locator(".badge").first).to_have_text("wins")
    found = await _effective(settings_stub, console_scope.retailer, key)
    assert (found.level, found.value.integer_value) == (settings_pb2.SETTING_LEVEL_RETAILER, 9)


async def test_a_lock_over_overrides_is_refused_unless_they_go(
    console_scope, settings_stub, unique_key
):
    key = unique_key("LOCKOVER")
    await settings_stub.PutSetting(
        _put(settings_pb2.Scope(account_id=console_scope.account), key, 5)
    )
    await settings_stub.PutSetting(
        _put(settings_pb2.Scope(retailer_id=console_scope.retailer), key, 7)
    )
    page = console_scope.admin
    await page.goto(f"/console/accounts/{console_scope.account}/keys/{key}")
    account = page.locator('section[data-level="ACCOUNT"]')
    await account.get_by_role("button", name="Lock").click()
    await expect(account.get_by_role("alert")).to_contain_text(
        f"below override it (retailer:{console_scope.retailer})"
    )
    found = await _effective(settings_stub, console_scope.retailer, key)
    assert found.level == settings_pb2.SETTING_LEVEL_RETAILER

    await account.get_by_label("and delete the overrides below").check()
    await account.get_by_role("button", name="Lock").click()
    await expect(page.get_by_test_id("lock-ACCOUNT")).to_be_visible()
    found = await _effective(settings_stub, console_scope.retailer, key)
    assert (found.level, found.value.integer_value) == (settings_pb2.SETTING_LEVEL_ACCOUNT, 5)
    history = page.locator("table.history tbody tr").first
    await expect(history.locator(".diff")).to_contain_text("locked")
