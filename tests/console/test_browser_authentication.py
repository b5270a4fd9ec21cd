"""The authentication section of the system settings and "Import LDAP users", in a real
browser (Debian's Chromium) against real ``dockyard serve`` processes, a real OpenLDAP
and a real HTTP auth proxy on loopback, in English and in 简体中文."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from tests.console.conftest import DESKTOP
from tests.support.authproxy import PASSWORD as PROXY_PASSWORD
from tests.support.authproxy import AuthProxyServer
from tests.support.server import DockyardServer
from tests.support.slapd import BASE_DN, SEARCH_DN, SEARCH_PASSWORD, Slapd, start_slapd

CONFIGURATION = "/harbor/admin/configuration"
UNTRANSLATED = re.compile(r"\b(auth|users|flash)\.[a-z_]+(\.[a-z_0-9]+)?\b")


@pytest.fixture(scope="module")
def proxy() -> Iterator[AuthProxyServer]:
    server = AuthProxyServer()
    server.add("alice", ["developers"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    server = start_slapd()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def ldap_server() -> Iterator[DockyardServer]:
    with DockyardServer() as running:
        yield running


def _context(browser: Browser, server: DockyardServer, locale: str) -> BrowserContext:
    ctx = browser.new_context(base_url=server.url, viewport=DESKTOP, locale=locale)
    ctx.set_default_timeout(15_000)
    return ctx


def _sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/harbor/sign-in")
    page.locator("input[name=principal]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.locator("form[action$='/sign-in'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/harbor/dashboard$"))


def _no_missing_keys(page: Page) -> None:
    text = page.locator("main").inner_text()
    assert not UNTRANSLATED.search(text), UNTRANSLATED.search(text)


def _api(server: DockyardServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30)


def test_choose_the_http_auth_proxy_and_sign_in_through_it(
    browser: Browser, server: DockyardServer, proxy: AuthProxyServer
) -> None:
    ctx = _context(browser, server, "en-US")
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", server.admin_password)
        page.goto(CONFIGURATION)
        form = page.get_by_test_id("auth-form")
        expect(form.get_by_role("heading", name="Authentication")).to_be_visible()
        _no_missing_keys(page)
        form.get_by_label("Authentication mode").select_option("http_auth")
        form.get_by_label("Login endpoint").fill(proxy.login_url)
        form.get_by_label("Token review endpoint").fill(proxy.review_url)
        form.get_by_label("Administrator groups").fill("developers")
        form.get_by_test_id("auth-save").click()
        expect(page.get_by_role("status").first).to_contain_text(
            "The authentication settings were saved."
        )
        with _api(server) as api:
            items = api.get("/api/v2.0/configurations").json()
        assert items["auth_mode"]["value"] == "http_auth"
        assert items["http_authproxy_endpoint"]["value"] == proxy.login_url
        assert items["http_authproxy_admin_groups"]["value"] == "developers"

        # alice signs in on the console through the proxy (onboarded), an administrator.
        other = _context(browser, server, "en-US")
        try:
            visitor = other.new_page()
            _sign_in(visitor, "alice", PROXY_PASSWORD)
            visitor.goto(CONFIGURATION)
            expect(visitor.get_by_test_id("auth-form")).to_be_visible()
        finally:
            other.close()

        # Now that another user exists the mode is locked, and the page says why.
        page.goto(CONFIGURATION)
        expect(page.get_by_test_id("auth-mode")).to_be_disabled()
        expect(page.get_by_test_id("auth-mode-locked")).to_contain_text("1 other user exists")
        # Saving the rest still works (the disabled select is not sent).
        page.get_by_label("Administrator user names").fill("alice")
        page.get_by_test_id("auth-save").click()
        expect(page.get_by_role("status").first).to_contain_text("saved")
        with _api(server) as api:
            items = api.get("/api/v2.0/configurations").json()
        assert items["auth_mode"]["value"] == "http_auth"
        assert items["http_authproxy_admin_usernames"]["value"] == "alice"
        # A bad value is refused with the reason, and nothing is stored.
        page.get_by_label("Login endpoint").fill("ftp://nowhere")
        page.get_by_test_id("auth-save").click()
        expect(page.get_by_role("alert")).to_contain_text("http://")
        with _api(server) as api:
            items = api.get("/api/v2.0/configurations").json()
        assert items["http_authproxy_endpoint"]["value"] == proxy.login_url
    finally:
        ctx.close()


def test_the_section_in_simplified_chinese(browser: Browser, server: DockyardServer) -> None:
    ctx = _context(browser, server, "zh-CN")
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", server.admin_password)
        page.goto(CONFIGURATION)
        form = page.get_by_test_id("auth-form")
        expect(form.get_by_role("heading", name="认证", exact=True)).to_be_visible()
        expect(form.get_by_text("认证模式", exact=True)).to_be_visible()
        expect(form.get_by_test_id("ldap-ping")).to_have_text("测试 LDAP 服务器")
        _no_missing_keys(page)
    finally:
        ctx.close()


def test_ldap_settings_the_test_button_and_importing_users(
    browser: Browser, ldap_server: DockyardServer, directory: Slapd
) -> None:
    ctx = _context(browser, ldap_server, "en-US")
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", ldap_server.admin_password)
        page.goto(CONFIGURATION)
        form = page.get_by_test_id("auth-form")
        form.get_by_label("LDAP URL").fill(directory.url)
        form.get_by_label("Search DN").fill(SEARCH_DN)
        form.get_by_label("Search password").fill("not-the-password")
        form.get_by_label("Base DN").fill(BASE_DN)
        form.get_by_label("UID attribute").fill("uid")
        form.get_by_test_id("ldap-ping").click()
        expect(page.get_by_test_id("ldap-ping-failed")).to_contain_text("ldap_search_dn")
        form.get_by_label("Search password").fill(SEARCH_PASSWORD)
        form.get_by_test_id("ldap-ping").click()
        expect(page.get_by_test_id("ldap-ping-ok")).to_be_visible()
        form.get_by_label("Authentication mode").select_option("ldap_auth")
        form.get_by_test_id("auth-save").click()
        expect(page.get_by_role("status").first).to_contain_text("saved")
        # The password is write-only: never sent back to the page, and kept when blank.
        page.goto(CONFIGURATION)
        assert page.get_by_label("Search password").input_value() == ""
        assert SEARCH_PASSWORD not in page.content()
        page.get_by_test_id("ldap-ping").click()
        expect(page.get_by_test_id("ldap-ping-ok")).to_be_visible()

        page.goto("/harbor/admin/users")
        expect(page.get_by_test_id("new-user")).to_have_count(0)  # no local users now
        page.get_by_test_id("ldap-import").click()
        page.get_by_label("Directory user name").fill("*")
        page.get_by_test_id("ldap-search").click()
        results = page.get_by_test_id("ldap-results")
        expect(results).to_contain_text("grace")
        _no_missing_keys(page)
        results.get_by_label("grace", exact=True).check()
        results.get_by_label("frank", exact=True).check()
        page.get_by_test_id("ldap-import-submit").click()
        expect(page.get_by_role("status").first).to_contain_text("Imported from LDAP")
        with _api(ldap_server) as api:
            found = api.get("/api/v2.0/users/search", params={"username": "grace"}).json()
        assert [u["username"] for u in found] == ["grace"]
        # Searched again, grace is marked as a user already and cannot be picked.
        page.get_by_test_id("ldap-import").click()
        page.get_by_label("Directory user name").fill("grace")
        page.get_by_test_id("ldap-search").click()
        expect(page.get_by_test_id("ldap-results").get_by_label("grace")).to_be_disabled()
        page.get_by_label("Directory user name").fill("*)(uid=*")
        page.get_by_test_id("ldap-search").click()
        expect(page.get_by_test_id("ldap-none")).to_be_visible()
    finally:
        ctx.close()
