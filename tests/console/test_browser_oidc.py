"""OIDC sign-in in Debian's Chromium: the sign-in button, the provider's login page,
choosing a username, the CLI secret on the profile page (shown, copied, used), and
signing out at the provider. A real ``dockyard serve`` and a real provider
(``tests/support/oidc_provider.py``), both on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OidcProviderServer,
    start_provider,
)
from tests.support.server import DockyardServer

USERS = {"erin": {"preferred_username": "erin", "email": "erin@example.org", "groups": ["qa"]}}


@pytest.fixture(scope="module")
def oidc_pair() -> Iterator[tuple[DockyardServer, OidcProviderServer]]:
    dockyard = DockyardServer(env={"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true"})
    provider = start_provider(
        [dockyard.url + "/c/oidc/callback"],
        USERS,
        post_logout_redirect_uris=[dockyard.url + "/harbor/sign-in"],
    )
    try:
        with dockyard:
            configured = httpx.put(
                dockyard.url + "/api/v2.0/configurations",
                auth=dockyard.admin_auth,
                timeout=30,
                json={
                    "auth_mode": "oidc_auth",
                    "oidc_name": "TestIdP",
                    "oidc_endpoint": provider.issuer,
                    "oidc_client_id": CLIENT_ID,
                    "oidc_client_secret": CLIENT_SECRET,
                    "oidc_scope": "openid,profile,email,groups",
                    "oidc_groups_claim": "groups",
                    "oidc_logout": True,
                },
            )
            assert configured.status_code == 200, configured.text
            yield dockyard, provider
    finally:
        provider.close()


@pytest.fixture(scope="module")
def server(oidc_pair: tuple[DockyardServer, OidcProviderServer]) -> DockyardServer:
    """The console fixtures' server: the one signing in through the provider."""
    return oidc_pair[0]


def test_sign_in_via_the_provider_choose_a_name_and_use_the_cli_secret(
    page: Page, server: DockyardServer, screenshots: Path
) -> None:
    page.goto("/harbor/sign-in")
    page.get_by_role("link", name="Sign in via TestIdP").click()
    # The provider's own login page (oidc-provider's development interaction).
    page.locator('input[name="login"]').fill("erin")
    page.locator('input[name="password"]').fill("any-password")
    page.locator('button[type="submit"]').first.click()

    expect(page.get_by_role("heading", name="Choose a username")).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("erin")
    page.screenshot(path=str(screenshots / "oidc-onboard.png"))
    page.get_by_label("Username").fill("erin-qa")
    page.get_by_role("button", name="Save and sign in").click()
    expect(page).to_have_url(re.compile(r"/harbor/dashboard$"))

    page.goto("/harbor/account/profile")
    expect(page.get_by_role("heading", name="CLI secret")).to_be_visible()
    page.get_by_text("Show the secret").click()
    page.get_by_role("button", name="Copy the CLI secret").click()
    secret = page.evaluate("navigator.clipboard.readText()")
    assert len(secret) >= 20
    page.screenshot(path=str(screenshots / "oidc-profile.png"))
    me = httpx.get(server.url + "/api/v2.0/users/current", auth=("erin-qa", secret), timeout=30)
    assert me.status_code == 200 and me.json()["username"] == "erin-qa"

    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_text("A new CLI secret was made")).to_be_visible()
    old = httpx.get(server.url + "/api/v2.0/users/current", auth=("erin-qa", secret), timeout=30)
    assert old.status_code == 401

    # Sign out: the console, then the provider (its confirmation page), back to sign-in.
    page.get_by_test_id("user-menu").click()
    page.get_by_role("button", name="Sign out").click()
    page.locator('button[type="submit"]', has_text=re.compile("sign me out", re.I)).click()
    expect(page).to_have_url(re.compile(r"/harbor/sign-in"))
    page.get_by_role("link", name="Sign in via TestIdP").click()
    expect(page.locator('input[name="login"]')).to_be_visible()  # signed out there too
