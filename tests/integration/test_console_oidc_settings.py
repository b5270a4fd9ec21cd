"""The console's OIDC settings form and its "Test OIDC server" button, through the ASGI
app (its own empty database, on SQLite and on PostgreSQL: the mode changes only while
``admin`` is the only user) and a real provider on loopback
(``tests/support/oidc_provider.py``). The browser side is in
``tests/console/test_browser_oidc_settings.py``."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProviderServer, start_provider

from dockyard.iam.providers import oidc as oidc_provider
from dockyard.settings import Settings

CONFIGURATIONS = "/api/v2.0/configurations"
FORM = "/harbor/admin/configuration/authentication"
PING = "/harbor/admin/configuration/oidc-ping"
HTMX = {"HX-Request": "true"}
DORA_PASSWORD = "Dora-Passw0rd"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProviderServer]:
    server = start_provider(["http://registry.test/c/oidc/callback"], {})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
async def form_app(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    data_dir: Path = tmp_path_factory.mktemp("oidc-form")
    settings = Settings(
        data_dir=data_dir,
        database_url=module_database_url,
        admin_password=ADMIN_PASSWORD,
        egress_allow_loopback=True,  # the provider runs on loopback
    )
    async with serving(settings) as application:
        yield application


def _form(csrf: str, provider: OidcProviderServer, **changes: str) -> dict[str, str]:
    """The section as the page sends it (one form: the LDAP and proxy items at their
    defaults; checkboxes present when on)."""
    fields = {
        "_csrf": csrf,
        "ldap_uid": "cn",
        "ldap_scope": "2",
        "ldap_timeout": "5",
        "ldap_verify_cert": "on",
        "http_authproxy_verify_cert": "on",
        "oidc_name": "TestIdP",
        "oidc_endpoint": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_scope": "openid,profile,email,groups",
        "oidc_user_claim": "preferred_username",
        "oidc_groups_claim": "groups",
        "oidc_admin_group": "admins",
        "oidc_group_filter": "^(devs|admins)$",
        "oidc_extra_redirect_parms": '{"prompt": "login"}',
        "oidc_verify_cert": "on",
        "oidc_logout": "on",
    }
    return fields | changes


async def _refusal(browser: httpx.AsyncClient, answer: httpx.Response) -> str:
    """The message the page shows after a refused save (the console's flash)."""
    assert answer.status_code == 303, answer.text
    return html.unescape((await browser.get(answer.headers["location"])).text)


async def _items(app: Starlette) -> dict[str, Any]:
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        found: dict[str, Any] = (await admin.get(CONFIGURATIONS)).json()
    return found


async def _ensure_dora(app: Starlette) -> None:
    """A user besides ``admin``: from then on the mode is locked."""
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        found = await admin.get("/api/v2.0/users/search", params={"username": "dora"})
        if any(u["username"] == "dora" for u in found.json()):
            return
        made = await admin.post(
            "/api/v2.0/users",
            json={
                "username": "dora",
                "email": "dora@example.org",
                "realname": "Dora",
                "password": DORA_PASSWORD,
            },
        )
        assert made.status_code == 201, made.text


async def test_the_form_saves_through_the_configuration_service(
    form_app: Starlette, provider: OidcProviderServer
) -> None:
    async with make_client(form_app) as browser:
        csrf = await sign_in(browser, "admin", ADMIN_PASSWORD)
        saved = await browser.post(FORM, data=_form(csrf, provider))
        assert saved.status_code == 303
        shown = html.unescape((await browser.get(saved.headers["location"])).text)
        assert "The authentication settings were saved." in shown
        items = await _items(form_app)
        assert items["auth_mode"]["value"] == "db_auth"  # the mode was not sent: unchanged
        assert items["oidc_endpoint"]["value"] == provider.issuer
        assert items["oidc_group_filter"]["value"] == "^(devs|admins)$"
        assert items["oidc_extra_redirect_parms"]["value"] == '{"prompt": "login"}'
        assert items["oidc_logout"]["value"] is True
        assert items["oidc_auto_onboard"]["value"] is False  # unchecked box: off
        assert "oidc_client_secret" not in items

        page = (await browser.get("/harbor/admin/configuration")).text
        assert CLIENT_SECRET not in page
        assert 'name="oidc_client_secret" type="password" value=""' in page
        assert f'name="oidc_endpoint" value="{provider.issuer}"' in page

        # A blank secret keeps the stored one (as sign-in reads it).
        kept = await browser.post(FORM, data=_form(csrf, provider, oidc_client_secret=""))
        assert kept.status_code == 303
        async with form_app.state.dockyard.db.read() as session:
            cfg = await oidc_provider.load_config(session)
        assert cfg.client_secret == CLIENT_SECRET


async def test_bad_input_is_refused_with_the_reason_and_nothing_stored(
    form_app: Starlette, provider: OidcProviderServer
) -> None:
    async with make_client(form_app) as browser:
        csrf = await sign_in(browser, "admin", ADMIN_PASSWORD)
        assert (await browser.post(FORM, data=_form(csrf, provider))).status_code == 303
        before = await _items(form_app)
        for change, words in [
            ({"oidc_endpoint": "http://idp.example.com"}, "https"),
            ({"oidc_endpoint": "javascript:alert(1)"}, "https"),
            ({"oidc_endpoint": provider.issuer + "?x=1"}, "no query"),
            ({"oidc_scope": "profile,email"}, "openid"),
            ({"oidc_scope": ""}, "openid"),
            ({"oidc_group_filter": "(unclosed"}, "regular expression"),
            ({"oidc_extra_redirect_parms": '{"state": "x"}'}, "cannot set state"),
            ({"oidc_extra_redirect_parms": "[1]"}, "JSON object"),
            ({"oidc_extra_redirect_parms": "{"}, "JSON object"),
            ({"oidc_name": "n" * 65}, "oidc_name"),
            ({"oidc_client_id": "c" * 600}, "oidc_client_id"),
            ({"oidc_user_claim": "\x00" + "u" * 300}, "oidc_user_claim"),
            ({"auth_mode": "oidc_auth ; drop"}, "auth_mode"),
        ]:
            answer = await browser.post(FORM, data=_form(csrf, provider, **change))
            shown = await _refusal(browser, answer)
            assert "Not done" in shown and words in shown, (change, shown[-2000:])
        # A form that is not UTF-8 is refused too, without a server error.
        raw = f"_csrf={csrf}&oidc_name=%FF%FE".encode()
        broken = await browser.post(
            FORM, content=raw, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert broken.status_code == 400
        assert await _items(form_app) == before


async def test_csrf_and_non_administrators_are_refused(
    form_app: Starlette, provider: OidcProviderServer
) -> None:
    before = await _items(form_app)
    async with make_client(form_app) as browser:
        csrf = await sign_in(browser, "admin", ADMIN_PASSWORD)
        no_token = {k: v for k, v in _form(csrf, provider).items() if k != "_csrf"}
        assert (await browser.post(FORM, data=no_token)).status_code == 403
        assert (await browser.post(PING, data=no_token)).status_code == 403
        forged = _form("not-the-token", provider, oidc_name="Forged")
        assert (await browser.post(FORM, data=forged)).status_code == 403
    async with make_client(form_app) as anonymous:
        assert (await anonymous.post(FORM, data=_form("x", provider))).status_code == 403

    await _ensure_dora(form_app)
    async with make_client(form_app) as browser:
        csrf = await sign_in(browser, "dora", DORA_PASSWORD)
        page = await browser.get("/harbor/admin/configuration")
        assert page.status_code == 403 and "oidc_endpoint" not in page.text
        denied = await browser.post(FORM, data=_form(csrf, provider, oidc_name="Dora's"))
        assert denied.status_code == 403
        pinged = await browser.post(PING, data=_form(csrf, provider), headers=HTMX)
        assert pinged.status_code == 403 and "oidc-ping-ok" not in pinged.text
    assert await _items(form_app) == before


async def test_the_mode_rule_applies_to_the_form(
    form_app: Starlette, provider: OidcProviderServer
) -> None:
    """With ``dora`` there, choosing ``oidc_auth`` is refused as the API refuses it, and
    the page says the mode is locked. (Choosing it while ``admin`` is alone is in the
    browser test.)"""
    await _ensure_dora(form_app)
    async with make_client(form_app) as browser:
        csrf = await sign_in(browser, "admin", ADMIN_PASSWORD)
        page = (await browser.get("/harbor/admin/configuration")).text
        assert 'data-testid="auth-mode-locked"' in page
        answer = await browser.post(FORM, data=_form(csrf, provider, auth_mode="oidc_auth"))
        shown = await _refusal(browser, answer)
        assert "Not done" in shown and "auth_mode" in shown
    assert (await _items(form_app))["auth_mode"]["value"] == "db_auth"


async def test_the_test_button_asks_the_provider(
    form_app: Starlette, provider: OidcProviderServer
) -> None:
    async with make_client(form_app) as browser:
        csrf = await sign_in(browser, "admin", ADMIN_PASSWORD)
        assert (await browser.post(FORM, data=_form(csrf, provider))).status_code == 303
        good = await browser.post(PING, data=_form(csrf, provider), headers=HTMX)
        assert good.status_code == 200 and 'data-testid="oidc-ping-ok"' in good.text
        for endpoint, words in [
            (UNREACHABLE, "cannot be reached"),
            ("", "url is required"),
            ("http://idp.example.com", "https://"),
            (provider.issuer + "/nothing-here", "discovery"),
        ]:
            failed = await browser.post(
                PING, data=_form(csrf, provider, oidc_endpoint=endpoint), headers=HTMX
            )
            assert failed.status_code == 200, failed.text
            text = html.unescape(failed.text)
            assert 'data-testid="oidc-ping-failed"' in text and words in text, (endpoint, text)
        # Without JavaScript the button submits the form: back to the page with the answer.
        plain = await browser.post(PING, data=_form(csrf, provider, oidc_endpoint=UNREACHABLE))
        assert plain.status_code == 303
        shown = html.unescape((await browser.get(plain.headers["location"])).text)
        assert "The OIDC test failed" in shown and "cannot be reached" in shown
    # The API's ping answers alike (the same check).
    async with make_client(form_app, ("admin", ADMIN_PASSWORD)) as admin:
        api = await admin.post("/api/v2.0/system/oidc/ping", json={"url": UNREACHABLE})
        assert api.status_code == 400 and "cannot be reached" in api.text
    # Nothing was saved by testing.
    assert (await _items(form_app))["oidc_endpoint"]["value"] == provider.issuer
