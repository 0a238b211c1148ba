"""The console's settings matrix: key | GLOBAL | ACCOUNT | RETAILER | effective, in a real
browser, for every combination of levels; the prefix filter; navigation; inert values."""

from __future__ import annotations

import itertools
import re

import pytest
from playwright.async_api import Page, expect

from tests.helpers import define_key
from tierset.core.authz import Role
from tierset.gateway.console.matrix import MASKED
from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(120)

LEVELS = ("GLOBAL", "ACCOUNT", "RETAILER")
COMBINATIONS = [
    combination for size in (1, 2, 3) for combination in itertools.combinations(LEVELS, size)
]


async def put(settings_stub, level: str, account: int, retailer: int, key: str, text: str):
    """Writes a STRING `text` at `level` over gRPC (as the PLATFORM caller)."""
    value = settings_pb2.SettingValue(string_value=text)
    kind = settings_pb2.SETTING_TYPE_STRING
    if level == "GLOBAL":
        await settings_stub.SetGlobal(
            settings_pb2.SetGlobalRequest(key=key, type=kind, value=value)
        )
        return
    scope = (
        settings_pb2.Scope(account_id=account)
        if level == "ACCOUNT"
        else settings_pb2.Scope(retailer_id=retailer)
    )
    await settings_stub.PutSetting(
        settings_pb2.PutSettingRequest(scope=scope, key=key, type=kind, value=value)
    )


def cell(page: Page, key: str, level: str):
    return page.locator(f'tr[data-key="{key}"] td[data-level="{level}"]')


@pytest.fixture
def viewer_page(console_scope):
    return console_scope.viewer, console_scope.account, console_scope.retailer


@pytest.mark.parametrize("view", ["retailer", "account"])
@pytest.mark.parametrize("levels", COMBINATIONS, ids=lambda c: "+".join(c))
async def test_the_matrix_shows_every_level_and_marks_the_winner(
    viewer_page, settings_stub, unique_key, view, levels
):
    page, account, retailer = viewer_page
    key = unique_key("MATRIX")
    for level in levels:
        await put(settings_stub, level, account, retailer, key, f"{level.lower()}-value")
    shown = ("GLOBAL", "ACCOUNT", "RETAILER") if view == "retailer" else ("GLOBAL", "ACCOUNT")
    path = (
        f"/console/retailers/{retailer}" if view == "retailer" else f"/console/accounts/{account}"
    )
    await page.goto(f"{path}?prefix={key}")

    applicable = [level for level in levels if level in shown]
    if not applicable:  # a retailer's own value is not the account's
        await expect(page.locator("table.matrix")).to_contain_text(f"No settings under {key}")
        return
    winner = applicable[-1]  # the most specific level that has the key
    for level in shown:
        if level not in levels:
            await expect(cell(page, key, level)).to_have_text("—")
            continue
        await expect(cell(page, key, level)).to_contain_text(f"{level.lower()}-value")
        marked = "winner" if level == winner else "shadowed"
        await expect(cell(page, key, level)).to_have_class(re.compile(rf"\b{marked}\b"))
        await expect(cell(page, key, level)).to_contain_text(
            "wins" if marked == "winner" else "shadowed"
        )
    await expect(cell(page, key, "effective")).to_have_text(f"{winner.lower()}-value from {winner}")
    await expect(page.locator("th", has_text="RETAILER")).to_have_count(
        1 if view == "retailer" else 0
    )


async def test_the_prefix_filter_shows_only_keys_under_it(viewer_page, settings_stub, unique_key):
    page, account, _ = viewer_page
    inside, outside = unique_key("INSIDE"), unique_key("OUTSIDE")
    for key in (inside, outside):
        await put(settings_stub, "ACCOUNT", account, 0, key, "x")
    await page.goto(f"/console/accounts/{account}")
    for key in (inside, outside):
        await expect(page.locator(f'tr[data-key="{key}"]')).to_be_visible()
    await page.get_by_label("Key prefix").fill(inside)
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr[data-key]")).to_have_count(1)
    await expect(page.locator(f'tr[data-key="{inside}"]')).to_be_visible()
    await page.get_by_label("Key prefix").fill("bad prefix!")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("alert")).to_contain_text("must start with a letter or digit")


async def test_accounts_lead_to_their_retailers_and_their_matrix(
    signed_in, console_user, settings_stub, new_account, new_retailer, unique_key
):
    account = await new_account()
    retailer = await new_retailer(account)
    key = unique_key("NAV")
    await put(settings_stub, "RETAILER", account, retailer, key, "here")
    page = await signed_in(await console_user(Role.PLATFORM))
    await page.get_by_label("Account id").fill(str(account))
    await page.get_by_role("button", name="Open").click()
    await page.get_by_role("link", name="Test retailer").click()
    await expect(page).to_have_url(re.compile(rf"/console/retailers/{retailer}$"))
    await expect(cell(page, key, "RETAILER")).to_contain_text("here")


async def test_another_accounts_scope_is_refused(signed_in, console_user, new_account):
    page = await signed_in(await console_user(Role.ADMIN))
    reply = await page.goto(f"/console/accounts/{await new_account()}")
    assert reply is not None and reply.status == 403
    await expect(page.get_by_role("alert")).to_contain_text("permission denied")


SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


async def test_a_value_holding_markup_is_shown_as_text(viewer_page, settings_stub, unique_key):
    page, account, retailer = viewer_page
    key = unique_key("XSS")
    await put(settings_stub, "RETAILER", account, retailer, key, SCRIPT)
    for path in (
        f"/console/retailers/{retailer}?prefix={key}",
        f"/console/retailers/{retailer}/keys/{key}",
    ):
        await page.goto(path)
        await expect(page.get_by_text(SCRIPT[:40]).first).to_be_visible()
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("main img, main script").count() == 0


async def test_a_secret_is_shown_masked_to_a_viewer(viewer_page, settings_stub, unique_key):
    page, account, retailer = viewer_page
    key = unique_key("SECRET")
    await define_key(settings_stub, key, settings_pb2.SETTING_TYPE_STRING, secret=True)
    await put(settings_stub, "ACCOUNT", account, retailer, key, "sk_live_console")
    for path in (
        f"/console/retailers/{retailer}?prefix={key}",
        f"/console/retailers/{retailer}/keys/{key}",
        f"/console/accounts/{account}/history?key={key}",
    ):
        await page.goto(path)
        await expect(page.get_by_text(MASKED).first).to_be_visible()
        assert "sk_live_console" not in await page.content()
