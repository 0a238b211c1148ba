"""Editing in the console, in a real browser: an input that fits the type, the server's
errors beside the form, inherit; a VIEWER sees no controls and its forged posts are
refused by the server; a form without its CSRF token is refused (over plain HTTP)."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import sign_in_over_http
from tierset.core.authz import Role
from tierset.v1 import settings_pb2

pytestmark = pytest.mark.timeout(120)


async def put(settings_stub, scope: settings_pb2.Scope, key: str, value: str, kind: str = "JSON"):
    await settings_stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=scope,
            key=key,
            type=settings_pb2.SettingType.Value(f"SETTING_TYPE_{kind}"),
            value=settings_pb2.SettingValue(json_value=value),
        )
    )


async def effective(settings_stub, retailer: int, key: str) -> settings_pb2.Setting | None:
    reply = await settings_stub.GetSettings(
        settings_pb2.GetSettingsRequest(scope=settings_pb2.Scope(retailer_id=retailer), keys=[key])
    )
    return reply.settings[0] if reply.settings else None


@pytest.mark.parametrize(
    ("kind", "value", "control"),
    [
        ("BOOLEAN", "true", "select"),
        ("INTEGER", "7", 'input[type="number"]'),
        ("JSON", '{"a": 1}', "textarea"),
        ("LOB", '"long text"', "textarea"),
        ("STRING", '"short"', 'input[type="text"]'),
    ],
)
async def test_the_input_fits_the_type(
    console_scope, settings_stub, unique_key, kind, value, control
):
    key = unique_key("TYPED")
    await put(settings_stub, settings_pb2.Scope(account_id=console_scope.account), key, value, kind)
    page = console_scope.admin
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    for level in ("ACCOUNT", "RETAILER"):
        form = page.locator(f'section[data-level="{level}"] form.edit')
        await expect(form.locator(f'{control}[name="value"]')).to_have_count(1)


async def test_an_override_wins_and_inherit_removes_it(console_scope, settings_stub, unique_key):
    key = unique_key("OVERRIDE")
    await put(
        settings_stub, settings_pb2.Scope(account_id=console_scope.account), key, "5", "INTEGER"
    )
    page = console_scope.admin
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    retailer = page.locator('section[data-level="RETAILER"]')
    await retailer.get_by_label("Value").fill("2")
    await retailer.get_by_label("Reason").fill("express store")
    await retailer.get_by_role("button", name="Override at RETAILER").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved at revision")
    await expect(retailer.locator(".badge")).to_have_text("wins")
    await expect(page.locator('section[data-level="ACCOUNT"] .badge')).to_have_text("shadowed")
    found = await effective(settings_stub, console_scope.retailer, key)
    assert found is not None and found.value.integer_value == 2
    assert found.level == settings_pb2.SETTING_LEVEL_RETAILER

    await retailer.get_by_role("button", name="Inherit").click()
    await expect(retailer.locator(".badge")).to_have_text("not set: inherits")
    await expect(page.locator('section[data-level="ACCOUNT"] .badge')).to_have_text("wins")
    found = await effective(settings_stub, console_scope.retailer, key)
    assert found is not None and found.level == settings_pb2.SETTING_LEVEL_ACCOUNT


@pytest.mark.parametrize(
    ("kind", "sent", "message"),
    [
        ("JSON", '{"a": ', "not valid JSON"),
        ("INTEGER", "99999999999999999999", "INTEGER"),
    ],
)
async def test_a_bad_value_is_refused_beside_its_form(
    console_scope, settings_stub, unique_key, kind, sent, message
):
    key = unique_key("BAD")
    await put(settings_stub, settings_pb2.Scope(account_id=console_scope.account), key, "1", kind)
    page = console_scope.admin
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    retailer = page.locator('section[data-level="RETAILER"]')
    await retailer.get_by_label("Value").fill(sent)
    await retailer.get_by_role("button", name="Override at RETAILER").click()
    alert = retailer.get_by_role("alert")
    await expect(alert).to_contain_text(message)
    await expect(alert).to_contain_text(key)
    await expect(retailer.get_by_label("Value")).to_have_value(sent)  # kept for correcting
    found = await effective(settings_stub, console_scope.retailer, key)
    assert found is not None and found.level == settings_pb2.SETTING_LEVEL_ACCOUNT


async def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused(
    console_scope, settings_stub, unique_key
):
    key = unique_key("VIEWED")
    account = settings_pb2.Scope(account_id=console_scope.account)
    await put(settings_stub, account, key, "1", "INTEGER")
    await put(
        settings_stub, settings_pb2.Scope(retailer_id=console_scope.retailer), key, "2", "INTEGER"
    )
    page = console_scope.viewer
    await page.goto(f"/console/retailers/{console_scope.retailer}/keys/{key}")
    await expect(page.locator('section[data-level="RETAILER"] pre.value')).to_have_text("2")
    await expect(page.get_by_test_id("who")).to_contain_text("read only")
    await expect(page.locator("main form[method=post]")).to_have_count(0)
    await expect(page.locator("main button")).to_have_count(0)

    # By hand, with the session's own cookie and CSRF token: the server refuses it.
    csrf = await page.locator('header input[name="csrf"]').get_attribute("value")
    reply = await page.request.post(
        f"/console/retailers/{console_scope.retailer}/put",
        form={"csrf": csrf or "", "level": "RETAILER", "key": key, "type": "INTEGER", "value": "3"},
        max_redirects=0,
    )
    assert reply.status == 403
    assert "permission denied: this needs SETTINGS_EDIT" in await reply.text()
    found = await effective(settings_stub, console_scope.retailer, key)
    assert found is not None and found.value.integer_value == 2


@pytest.mark.parametrize("token", [None, "", "not-the-token"], ids=["missing", "empty", "wrong"])
async def test_a_form_without_its_csrf_token_is_refused(
    console, console_user, settings_stub, new_account, new_retailer, unique_key, token
):
    account = await new_account()
    retailer = await new_retailer(account)
    user = await console_user(Role.ADMIN, account_id=account)
    key = unique_key("CSRF")
    async with httpx.AsyncClient(base_url=console, trust_env=False) as http:
        real_token = await sign_in_over_http(http, user.username, user.password)
        form = {"level": "RETAILER", "key": key, "type": "STRING", "value": "forged"}
        if token is not None:
            form["csrf"] = token
        refused = await http.post(f"/console/retailers/{retailer}/put", data=form)
        assert refused.status_code == 403
        assert "security token" in refused.text
        assert await effective(settings_stub, retailer, key) is None
        # The same form with the page's token goes through: the token is all that was missing.
        done = await http.post(
            f"/console/retailers/{retailer}/put", data={**form, "csrf": real_token}
        )
        assert done.status_code == 303
    found = await effective(settings_stub, retailer, key)
    assert found is not None and found.value.string_value == "forged"
