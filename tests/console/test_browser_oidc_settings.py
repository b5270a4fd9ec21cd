"""The OIDC part of the console's authentication settings in Debian's Chromium: edit and
save the settings (the API shows them; the client secret is never rendered back), "Test
OIDC server" against the real provider the OIDC sign-in tests run
(``tests/support/oidc_provider.py``) and against a loopback port where nothing listens,
then sign in through the provider as the saved settings say; a non-administrator is refused.
A real ``dockyard serve`` of its own (the mode changes only while ``admin`` is alone)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from tests.console.conftest import DESKTOP
from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OidcProviderServer,
    start_provider,
)
from tests.support.server import DockyardServer

CONFIGURATION = "/harbor/admin/configuration"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there
USERS = {
    "fay": {"preferred_username": "fay", "email": "fay@example.org", "groups": ["ops"]},
    "hal": {"preferred_username": "hal", "email": "hal@example.org", "groups": ["devs"]},
}


@pytest.fixture(scope="module")
def oidc_pair() -> Iterator[tuple[DockyardServer, OidcProviderServer]]:
    dockyard = DockyardServer(env={"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true"})
    provider = start_provider([dockyard.url + "/c/oidc/callback"], USERS)
    try:
        with dockyard:
            yield dockyard, provider
    finally:
        provider.close()


@pytest.fixture(scope="module")
def server(oidc_pair: tuple[DockyardServer, OidcProviderServer]) -> DockyardServer:
    return oidc_pair[0]


def _context(browser: Browser, server: DockyardServer) -> BrowserContext:
    ctx = browser.new_context(base_url=server.url, viewport=DESKTOP, locale="en-US")
    ctx.set_default_timeout(15_000)
    return ctx


def _sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/harbor/sign-in?local=1")
    page.locator("input[name=principal]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.locator("form[action$='/sign-in'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/harbor/dashboard$"))


def _items(server: DockyardServer) -> dict[str, dict[str, object]]:
    answer = httpx.get(server.url + "/api/v2.0/configurations", auth=server.admin_auth, timeout=30)
    assert answer.status_code == 200, answer.text
    found: dict[str, dict[str, object]] = answer.json()
    return found


def _oidc(page: Page) -> Locator:
    return page.get_by_test_id("oidc-settings")


def test_edit_test_and_save_the_oidc_settings(
    browser: Browser, oidc_pair: tuple[DockyardServer, OidcProviderServer], screenshots: Path
) -> None:
    server, provider = oidc_pair
    ctx = _context(browser, server)
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", server.admin_password)
        page.goto(CONFIGURATION)
        oidc = _oidc(page)
        heading = page.get_by_test_id("auth-form").get_by_role("heading", name="OpenID Connect")
        expect(heading).to_be_visible()
        oidc.get_by_label("Provider name").fill("TestIdP")
        oidc.get_by_label("OIDC endpoint").fill(UNREACHABLE)
        oidc.get_by_label("Client ID").fill(CLIENT_ID)
        oidc.get_by_label("Client secret").fill(CLIENT_SECRET)
        oidc.get_by_label("Scope", exact=True).fill("openid,profile,email,groups")
        oidc.get_by_label("Username claim").fill("preferred_username")
        oidc.get_by_label("Groups claim").fill("groups")
        oidc.get_by_label("Administrator group").fill("ops")
        oidc.get_by_label("Group filter").fill("^ops$")
        oidc.get_by_label("Extra redirect parameters").fill('{"prompt": "login"}')
        oidc.get_by_label("Onboard new users automatically").check()

        # The button tests what the form says, nothing saved: first nothing listening...
        oidc.get_by_test_id("oidc-ping").click()
        expect(page.get_by_test_id("oidc-ping-failed")).to_contain_text("cannot be reached")
        assert _items(server)["oidc_endpoint"]["value"] == ""
        # ...then the real provider.
        oidc.get_by_label("OIDC endpoint").fill(provider.issuer)
        oidc.get_by_test_id("oidc-ping").click()
        expect(page.get_by_test_id("oidc-ping-ok")).to_contain_text("published its keys")
        oidc.screenshot(path=str(screenshots / "oidc-settings.png"))

        page.get_by_label("Authentication mode").select_option("oidc_auth")
        page.get_by_test_id("auth-save").click()
        expect(page.get_by_role("status").first).to_contain_text("saved")
        items = _items(server)
        assert items["auth_mode"]["value"] == "oidc_auth"
        assert items["oidc_name"]["value"] == "TestIdP"
        assert items["oidc_endpoint"]["value"] == provider.issuer
        assert items["oidc_client_id"]["value"] == CLIENT_ID
        assert items["oidc_scope"]["value"] == "openid,profile,email,groups"
        assert items["oidc_admin_group"]["value"] == "ops"
        assert items["oidc_group_filter"]["value"] == "^ops$"
        assert items["oidc_extra_redirect_parms"]["value"] == '{"prompt": "login"}'
        assert items["oidc_auto_onboard"]["value"] is True
        assert items["oidc_verify_cert"]["value"] is True
        assert "oidc_client_secret" not in items

        # The secret is never rendered back; blank keeps it.
        page.goto(CONFIGURATION)
        expect(_oidc(page).get_by_label("Client secret")).to_have_value("")
        expect(_oidc(page).get_by_label("Client secret")).to_have_attribute(
            "placeholder", re.compile("leave blank to keep")
        )
        assert CLIENT_SECRET not in page.content()
        _oidc(page).get_by_label("Provider name").fill("Test IdP")
        page.get_by_test_id("auth-save").click()
        expect(page.get_by_role("status").first).to_contain_text("saved")
        assert _items(server)["oidc_name"]["value"] == "Test IdP"

        # A bad value is refused with the reason, nothing stored.
        page.goto(CONFIGURATION)
        _oidc(page).get_by_label("Group filter").fill("(unclosed")
        page.get_by_test_id("auth-save").click()
        expect(page.get_by_role("alert")).to_contain_text("regular expression")
        assert _items(server)["oidc_group_filter"]["value"] == "^ops$"
    finally:
        ctx.close()

    # The saved settings work: fay signs in through the provider (the stored secret used,
    # onboarded automatically), an administrator by the ops group, and sees the form.
    ctx = _context(browser, server)
    try:
        page = ctx.new_page()
        _sign_in_via_provider(page, "fay")
        page.goto(CONFIGURATION)
        expect(_oidc(page).get_by_label("Provider name")).to_have_value("Test IdP")
    finally:
        ctx.close()

    # hal (not in ops) is no administrator: the page, the form and the button refuse him.
    ctx = _context(browser, server)
    try:
        page = ctx.new_page()
        _sign_in_via_provider(page, "hal")
        token = page.locator("input[name=_csrf]").first.get_attribute("value") or ""
        answer = page.goto(CONFIGURATION)
        assert answer is not None and answer.status == 403
        expect(page.get_by_test_id("oidc-settings")).to_have_count(0)
        for action in ("authentication", "oidc-ping"):
            refused = page.request.post(
                f"{CONFIGURATION}/{action}",
                form={"_csrf": token, "oidc_name": "Hal", "oidc_endpoint": provider.issuer},
                max_redirects=0,
            )
            assert refused.status == 403, action
            assert "oidc-ping-ok" not in refused.text()
    finally:
        ctx.close()
    assert _items(server)["oidc_name"]["value"] == "Test IdP"


def _sign_in_via_provider(page: Page, login: str) -> None:
    page.goto("/harbor/sign-in")
    page.get_by_role("link", name="Sign in via Test IdP").click()
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any-password")
    page.locator('button[type="submit"]').first.click()
    expect(page).to_have_url(re.compile(r"/harbor/(dashboard|projects)$"))
