"""LDAP groups on the user groups page and as project members, picked from a real
OpenLDAP's groups (``tests/support/slapd.py``) in a real browser (Debian's Chromium)
against a real ``dockyard serve``, in English and in 简体中文: the picker searches the
directory as one types (htmx), a group is picked, created, renamed and deleted, and an
LDAP user in a nested group reads the project the picked group was added to."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from tests.console.conftest import DESKTOP
from tests.support.server import DockyardServer
from tests.support.slapd import (
    BASE_DN,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USER_PASSWORD,
    Slapd,
    group_dn,
    start_slapd,
)

GROUPS = "/harbor/admin/groups"
UNTRANSLATED = re.compile(r"\b(groups|members|flash)\.[a-z_]+\b")


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    server = start_slapd(groups=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def ldap_server(directory: Slapd) -> Iterator[DockyardServer]:
    with DockyardServer() as running:
        with httpx.Client(base_url=running.url, auth=running.admin_auth, timeout=30) as api:
            answer = api.put(
                "/api/v2.0/configurations",
                json={
                    "auth_mode": "ldap_auth",
                    "ldap_url": directory.url,
                    "ldap_search_dn": SEARCH_DN,
                    "ldap_search_password": SEARCH_PASSWORD,
                    "ldap_base_dn": BASE_DN,
                    "ldap_filter": "(objectClass=inetOrgPerson)",
                    "ldap_uid": "uid",
                    "ldap_group_base_dn": BASE_DN,
                    "ldap_group_search_filter": "(objectClass=groupOfNames)",
                    "ldap_group_membership_attribute": "memberOf",
                },
            )
            assert answer.status_code == 200, answer.text
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


def test_pick_create_rename_and_delete_an_ldap_group(
    browser: Browser, ldap_server: DockyardServer
) -> None:
    ctx = _context(browser, ldap_server, "en-US")
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", ldap_server.admin_password)
        page.goto(GROUPS)
        page.get_by_test_id("new-ldap-group").click()
        picks = page.get_by_test_id("ldap-group-picks")
        expect(picks).to_contain_text("Search the directory above, then pick a group.")
        # Typing searches the directory (htmx swaps the results in; no page load).
        page.get_by_label("Directory group name").press_sequentially("team-", delay=30)
        for name in ("team-a", "team-b", "team-c"):
            expect(picks.locator(f"input[value='{group_dn(name)}']")).to_be_visible()
        expect(picks.locator("input[type=radio]")).to_have_count(3)
        assert page.url.endswith(GROUPS)  # still the same page: the results came by htmx
        picks.locator(f"input[value='{group_dn('team-b')}']").check()
        page.get_by_label("Group name (optional; the directory's name when blank)").fill("Team B")
        page.get_by_test_id("ldap-group-create").click()
        expect(page.get_by_role("status").first).to_contain_text("User group Team B was created.")
        row = page.get_by_test_id("group-table").locator("tr", has_text=group_dn("team-b"))
        expect(row).to_contain_text("Team B")
        expect(row).to_contain_text("LDAP")
        _no_missing_keys(page)

        # Searched again (the search button: a page of its own), team-b cannot be picked twice.
        page.get_by_test_id("new-ldap-group").click()
        page.get_by_label("Directory group name").fill("team-b")
        page.get_by_test_id("ldap-group-search").click()
        expect(page).to_have_url(re.compile(r"ldap_group_q=team-b"))
        taken = page.get_by_test_id("ldap-group-picks").locator(
            f"input[value='{group_dn('team-b')}']"
        )
        expect(taken).to_be_disabled()
        expect(page.get_by_test_id("ldap-group-picks")).to_contain_text("(already a user group)")
        # A DN the directory lacks is refused with the reason; nothing is made.
        page.get_by_label("Or the group's DN").fill(group_dn("no-such-team"))
        page.get_by_test_id("ldap-group-create").click()
        expect(page.get_by_role("alert").first).to_contain_text("has no group at")
        expect(page.get_by_test_id("group-table")).not_to_contain_text("no-such-team")

        # Rename, then delete.
        row = page.get_by_test_id("group-table").locator("tr", has_text=group_dn("team-b"))
        row.get_by_text("Rename").click()
        row.get_by_label("New name of Team B").fill("team-b")
        row.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status").first).to_contain_text(
            "The user group is now called team-b."
        )
        row = page.get_by_test_id("group-table").locator("tr", has_text=group_dn("team-b"))
        row.locator("summary", has_text="Delete").click()
        row.get_by_role("button", name="Yes, do it").click()
        expect(page.get_by_role("status").first).to_contain_text("The user group was deleted.")
        expect(page.get_by_test_id("group-table")).not_to_contain_text(group_dn("team-b"))
    finally:
        ctx.close()


def test_a_project_member_picked_from_the_directory(
    browser: Browser, ldap_server: DockyardServer
) -> None:
    ldap_server.create_project("browserldap")
    ctx = _context(browser, ldap_server, "en-US")
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", ldap_server.admin_password)
        page.goto("/harbor/projects/browserldap/members")
        page.get_by_test_id("new-ldap-member").click()
        form = page.get_by_test_id("ldap-member-form")
        page.get_by_label("Directory group name").press_sequentially("team-c", delay=30)
        choice = form.locator(f"input[value='{group_dn('team-c')}']")
        expect(choice).to_be_visible()
        choice.check()
        form.get_by_label("Role").select_option(label="Guest")
        page.get_by_test_id("ldap-member-add").click()
        expect(page.get_by_role("status").first).to_contain_text("team-c is now a member.")
        table = page.locator("main table").last
        expect(table.locator("tr", has_text="team-c")).to_contain_text("Guest")
        _no_missing_keys(page)
    finally:
        ctx.close()
    # carol (in team-a, in team-b, in team-c) signs in and sees the private project.
    other = _context(browser, ldap_server, "en-US")
    try:
        carol = other.new_page()
        _sign_in(carol, "carol", USER_PASSWORD)
        carol.goto("/harbor/projects")
        expect(carol.get_by_role("link", name="browserldap")).to_be_visible()
    finally:
        other.close()


def test_the_picker_in_simplified_chinese(browser: Browser, ldap_server: DockyardServer) -> None:
    ctx = _context(browser, ldap_server, "zh-CN")
    try:
        page = ctx.new_page()
        _sign_in(page, "admin", ldap_server.admin_password)
        page.goto(GROUPS)
        page.get_by_test_id("new-ldap-group").click()
        expect(page.get_by_test_id("new-ldap-group")).to_have_text("新建 LDAP 组")
        page.get_by_label("目录中的组名").press_sequentially("loop", delay=30)
        expect(page.get_by_test_id("ldap-group-picks").locator("input[type=radio]")).to_have_count(
            2
        )
        page.get_by_label("目录中的组名").fill("")
        page.get_by_label("目录中的组名").press_sequentially("nothing-like-it", delay=10)
        expect(page.get_by_test_id("ldap-group-none")).to_have_text(
            "目录中没有名称包含该文字的组。"
        )
        _no_missing_keys(page)
    finally:
        ctx.close()
