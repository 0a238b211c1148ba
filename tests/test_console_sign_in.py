"""The console's sign-in, session and headers, in a real browser (and over plain HTTP).

Sign-in is the OAuth password grant as the console's client; the session is a sealed,
HttpOnly, SameSite=Strict cookie (Secure over TLS); it ends on sign-out or when the
server revokes its token; every page forbids framing and inline script.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import expect

from tierset.auth.credentials import CredentialStore
from tierset.cli.bootstrap import console_client_env, write_credentials_file
from tierset.core.authz import Role
from tierset.gateway.console import CONTENT_SECURITY_POLICY
from tierset.ops.config import Config, ConfigError, Secret

pytestmark = pytest.mark.timeout(120)


async def test_good_password_signs_in_to_the_own_account(signed_in, console_user):
    user = await console_user(Role.ADMIN)
    page = await signed_in(user)
    await expect(page).to_have_url(re.compile(rf"/console/accounts/{user.caller.account_id}$"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Caller account")


async def test_platform_users_start_at_the_accounts(signed_in, console_user, new_account):
    account = await new_account()
    page = await signed_in(await console_user(Role.PLATFORM))
    await expect(page).to_have_url(re.compile(r"/console/accounts$"))
    await expect(page.locator("table.list tbody a").first).to_be_visible()  # the first 100
    await page.get_by_label("Account id").fill(str(account))
    await page.get_by_role("button", name="Open").click()
    await expect(page).to_have_url(re.compile(rf"/console/accounts/{account}$"))


async def test_bad_password_is_refused_on_the_form(new_context, console_user):
    user = await console_user(Role.ADMIN)
    page = await (await new_context()).new_page()
    await page.goto("/console/sign-in")
    await page.get_by_label("Username").fill(user.username)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Bad credentials")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    # Still signed out: the console's pages send the browser back to the form.
    await page.goto("/console/")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))


async def test_sign_out_ends_the_session(signed_in, console_user):
    page = await signed_in(await console_user(Role.VIEWER))
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await page.goto("/console/")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()


async def test_a_revoked_token_signs_the_session_out(signed_in, console_user, db):
    user = await console_user(Role.ADMIN)
    page = await signed_in(user)
    # Changing the password revokes the user's OAuth tokens, the console's among them.
    await CredentialStore(db).set_password(user.username, "a new password entirely")
    # The server hears of it by NOTIFY within moments (its cache would keep it for 60 s).
    for _ in range(100):
        await page.reload()
        if "/console/sign-in" in page.url:
            break
        await page.wait_for_timeout(50)
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?ended=1$"))
    await expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    await page.goto("/console/")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))


async def test_the_token_is_not_readable_by_script(signed_in, console_user):
    page = await signed_in(await console_user(Role.ADMIN))
    assert await page.evaluate("document.cookie") == ""
    (cookie,) = await page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", False)
    assert cookie["path"] == "/console"


async def _form_token(http: httpx.AsyncClient) -> str:
    page = await http.get("/console/sign-in")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


@pytest.mark.parametrize(
    "path", ["/console/sign-in", "/console/static/console.css", "/console/accounts"]
)
async def test_every_console_response_forbids_framing_and_inline_script(console, path):
    async with httpx.AsyncClient(base_url=console, trust_env=False) as http:
        reply = await http.get(path)
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("proto", "secure"), [("http", False), ("https", True)])
async def test_the_session_cookie_is_secure_over_tls(console, console_user, proto, secure):
    user = await console_user(Role.ADMIN)
    headers = {"X-Forwarded-Proto": proto}
    # No cookie jar: httpx would not send a Secure cookie over this plain connection, which
    # stands for the TLS a proxy ended in front of it.
    async with httpx.AsyncClient(base_url=console, trust_env=False, headers=headers) as http:
        form = await http.get("/console/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        reply = await http.post(
            "/console/sign-in",
            data={"csrf": token.group(1), "username": user.username, "password": user.password},
            headers={"Cookie": form.headers["set-cookie"].split(";")[0]},
        )
    assert reply.status_code == 303
    for cookie in (form.headers["set-cookie"], reply.headers["set-cookie"]):
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert ("Secure" in cookie) is secure
    assert user.password not in reply.headers["set-cookie"]


async def test_a_sign_in_without_its_csrf_token_is_refused(console, console_user):
    user = await console_user(Role.ADMIN)
    async with httpx.AsyncClient(base_url=console, trust_env=False) as http:
        await _form_token(http)  # the cookie, but not the form's token
        reply = await http.post(
            "/console/sign-in", data={"username": user.username, "password": user.password}
        )
    assert reply.status_code == 403
    assert "set-cookie" not in reply.headers


def test_tierset_dev_gives_its_gateway_the_demo_client(tmp_path):
    write_credentials_file(
        tmp_path, {"TIERSET_CLIENT_ID": "demo-client", "TIERSET_CLIENT_SECRET": "s3cr'et $x"}
    )
    assert console_client_env(Config(), tmp_path) == {
        "TIERSET_CONSOLE_CLIENT_ID": "demo-client",
        "TIERSET_CONSOLE_CLIENT_SECRET": "s3cr'et $x",
    }
    # A console client configured by hand wins; no file, no client.
    configured = Config(console_client_id="mine", console_client_secret=Secret("x"))
    assert console_client_env(configured, tmp_path) == {}
    assert console_client_env(Config(), tmp_path / "elsewhere") == {}


@pytest.mark.parametrize(
    "env",
    [{"TIERSET_CONSOLE_CLIENT_ID": "console"}, {"TIERSET_CONSOLE_CLIENT_SECRET": "secret"}],
)
def test_the_console_client_needs_its_id_and_secret(env):
    with pytest.raises(ConfigError, match="must be set together"):
        Config.from_env(env)


async def test_a_gateway_without_a_console_client_says_so(http):
    reply = await http.get("/console/sign-in")
    assert reply.status_code == 503
    assert "TIERSET_CONSOLE_CLIENT_ID" in reply.text
    assert "set-cookie" not in reply.headers
    refused = await http.post("/console/sign-in", data={"username": "a", "password": "b"})
    assert refused.status_code == 503
