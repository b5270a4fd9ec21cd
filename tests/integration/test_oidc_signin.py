"""OIDC sign-in (``auth_mode: oidc_auth``) against a real provider
(``tests/support/oidc_provider.py``).

The module runs its own app on a fresh database (the mode can change only while ``admin``
is the only user), on SQLite and on PostgreSQL, and one ``oidc-provider`` on loopback. The
browser is httpx holding each side's cookies (``BrowserFlow``). The ID token checks that
need forged tokens (expired, tampered, wrong audience) are in ``tests/unit/test_oidc_tokens.py``;
here they are driven end to end where the provider can make them happen (a replayed state,
a rotated key, a provider answering garbage).
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, BASE_URL, make_client, serving
from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    BrowserFlow,
    OidcProviderServer,
    forms,
    start_provider,
)
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.iam.models import OidcPending, OidcUser, User, UserGroup
from dockyard.iam.policy import ROLE_PERMISSIONS, Action, Resource, Role
from dockyard.settings import Settings

CONFIGURATIONS = "/api/v2.0/configurations"
CALLBACK = f"{BASE_URL}/c/oidc/callback"
SIGNED_OUT = f"{BASE_URL}/harbor/sign-in"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"preferred_username": "alice", "name": "Alice A.", "email": "alice@example.org"},
    "bob": {
        "preferred_username": "bob",
        "name": "Bob B.",
        "email": "bob@example.org",
        "groups": ["devs", "ops", "marketing"],
    },
    "carol": {"preferred_username": "carol", "email": "carol@example.org", "groups": ["admins"]},
    "dan": {"preferred_username": "admin", "email": "dan@example.org"},
    "erin": {"email": "erin@example.org"},
    "robo": {"preferred_username": "robot$sneaky"},
    **{
        f"m{role.value}": {
            "preferred_username": f"matrix-{role.value}",
            "groups": [f"mx-{role.value}"],
        }
        for role in Role
    },
}
_SECRET = re.compile(r'data-testid="cli-secret">.*?<code>([^<]+)</code>', re.S)
_CSRF = re.compile(r'name="_csrf" value="([^"]*)"')


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProviderServer]:
    server = start_provider([CALLBACK], USERS, post_logout_redirect_uris=[SIGNED_OUT])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def oidc_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('oidc-sqlite') / 'dockyard.db'}"
        return
    with temporary_database(postgres_admin_url()) as url:
        yield url


def _base_config(provider: OidcProviderServer) -> dict[str, Any]:
    return {
        "oidc_name": "TestIdP",
        "oidc_endpoint": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_scope": "openid,profile,email,groups",
        "oidc_user_claim": "",
        "oidc_groups_claim": "groups",
        "oidc_admin_group": "admins",
        "oidc_group_filter": "^(devs|ops|admins)$",
        "oidc_verify_cert": True,
        "oidc_auto_onboard": False,
        "oidc_extra_redirect_parms": '{"prompt": "login"}',
        "oidc_logout": False,
    }


@pytest.fixture(scope="module")
async def oidc_app(
    oidc_database_url: str, tmp_path_factory: pytest.TempPathFactory, provider: OidcProviderServer
) -> AsyncIterator[Starlette]:
    data_dir: Path = tmp_path_factory.mktemp("oidc-data")
    settings = Settings(
        data_dir=data_dir,
        database_url=oidc_database_url,
        admin_password=ADMIN_PASSWORD,
        egress_allow_loopback=True,  # the provider runs on loopback
        oidc_cli_secret_max_age_days=30,
    )
    async with serving(settings) as application:
        async with make_client(application, ("admin", ADMIN_PASSWORD)) as admin:
            answer = await admin.put(
                CONFIGURATIONS, json={"auth_mode": "oidc_auth", **_base_config(provider)}
            )
            assert answer.status_code == 200, answer.text
        yield application


@pytest.fixture
async def admin(oidc_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(oidc_app, ("admin", ADMIN_PASSWORD)) as client:
        yield client


@pytest.fixture
async def browser(oidc_app: Starlette) -> AsyncIterator[BrowserFlow]:
    async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
        yield BrowserFlow(console, idp, BASE_URL)


def _state(app: Starlette) -> AppState:
    found: AppState = app.state.dockyard
    return found


async def _configure(admin: httpx.AsyncClient, **changes: Any) -> None:
    answer = await admin.put(CONFIGURATIONS, json=changes)
    assert answer.status_code == 200, answer.text


async def _user(app: Starlette, name: str) -> User | None:
    async with _state(app).db.read() as session:
        return await session.scalar(
            select(User).where(User.username == name, User.deleted.is_(False))
        )


async def _cli_secret(browser: BrowserFlow) -> str:
    page = await browser.console.get("/harbor/account/profile")
    assert page.status_code == 200
    found = _SECRET.search(page.text)
    assert found, "the profile page shows no CLI secret"
    return found.group(1)


def _basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


async def _signed_in_as(browser: BrowserFlow) -> str:
    answer = await browser.console.get("/api/v2.0/users/current")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["username"])


# --- settings ---------------------------------------------------------------------------


async def test_settings_are_stored_and_the_client_secret_never_shown(
    admin: httpx.AsyncClient, oidc_app: Starlette
) -> None:
    shown = (await admin.get(CONFIGURATIONS)).json()
    assert shown["auth_mode"]["value"] == "oidc_auth"
    assert shown["oidc_name"] == {"value": "TestIdP", "editable": True}
    assert shown["oidc_group_filter"]["value"] == "^(devs|ops|admins)$"
    assert "oidc_client_secret" not in shown
    async with _state(oidc_app).db.read() as session:
        stored = await session.scalar(
            select(func.count()).select_from(User).where(User.username == CLIENT_SECRET)
        )
    assert stored == 0
    for change, words in [
        ({"oidc_endpoint": "http://idp.example.com"}, "https"),
        ({"oidc_endpoint": "https://idp.example.com/?x=1"}, "query"),
        ({"oidc_scope": "profile,email"}, "openid"),
        ({"oidc_group_filter": "(unclosed"}, "regular expression"),
        ({"oidc_extra_redirect_parms": '{"state": "x"}'}, "cannot set state"),
        ({"oidc_extra_redirect_parms": "[1]"}, "JSON object"),
        ({"oidc_auto_onboard": "yes"}, "true or false"),
    ]:
        refused = await admin.put(CONFIGURATIONS, json=change)
        assert refused.status_code == 400, (change, refused.text)
        assert words in refused.json()["errors"][0]["message"], (change, refused.text)
    after = (await admin.get(CONFIGURATIONS)).json()
    assert after["oidc_endpoint"] == shown["oidc_endpoint"]


async def test_ping_reads_discovery_and_keys(
    admin: httpx.AsyncClient, oidc_app: Starlette, provider: OidcProviderServer
) -> None:
    good = await admin.post("/api/v2.0/system/oidc/ping", json={"url": provider.issuer})
    assert good.status_code == 200, good.text
    nothing = await admin.post(
        "/api/v2.0/system/oidc/ping", json={"url": "http://127.0.0.1:9/", "verify_cert": False}
    )
    assert nothing.status_code == 400
    assert "cannot be reached" in nothing.json()["errors"][0]["message"]
    async with make_client(oidc_app) as anon:
        refused = await anon.post("/api/v2.0/system/oidc/ping", json={"url": provider.issuer})
    assert refused.status_code == 401


# --- sign-in, onboarding, groups, admin group ---------------------------------------------


async def test_new_user_chooses_a_username_then_signs_in(
    browser: BrowserFlow, oidc_app: Starlette
) -> None:
    sign_in_page = await browser.console.get("/harbor/sign-in")
    assert "Sign in via TestIdP" in sign_in_page.text
    zh = await browser.console.get("/harbor/sign-in", headers={"Accept-Language": "zh-CN"})
    assert "通过 TestIdP 登录" in zh.text

    start = await browser.console.get("/c/oidc/login", params={"redirect_url": "/harbor/projects"})
    assert start.status_code == 303
    location = start.headers["location"]
    assert "code_challenge_method=S256" in location and "prompt=login" in location
    back = await browser.follow_provider(location, "alice")
    assert back.status_code == 303 and back.headers["location"] == "/harbor/oidc-onboard"
    assert await _user(oidc_app, "alice") is None  # nothing made before the choice

    form = await browser.console.get("/harbor/oidc-onboard")
    assert form.status_code == 200 and 'value="alice"' in form.text
    taken = await browser.console.post("/harbor/oidc-onboard", data={"username": "admin"})
    assert taken.status_code == 409 and "taken" in taken.text
    bad = await browser.console.post("/harbor/oidc-onboard", data={"username": "a$b"})
    assert bad.status_code == 400
    done = await browser.console.post("/harbor/oidc-onboard", data={"username": "alice-a"})
    assert done.status_code == 303 and done.headers["location"] == "/harbor/projects"
    assert await _signed_in_as(browser) == "alice-a"
    user = await _user(oidc_app, "alice-a")
    assert user is not None and user.email == "alice@example.org" and user.password == ""
    again = await browser.console.post("/harbor/oidc-onboard", data={"username": "alice-b"})
    assert again.status_code == 403  # the ticket was used (and its cookie dropped)
    assert await _user(oidc_app, "alice-b") is None

    # The same subject signs in straight away next time, under the name chosen.
    async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
        second = BrowserFlow(console, idp, BASE_URL)
        landed = await second.sign_in("alice")
        assert landed.status_code == 303 and landed.headers["location"] == "/harbor/projects"
        assert await _signed_in_as(second) == "alice-a"


async def test_auto_onboard_groups_and_admin_group(
    admin: httpx.AsyncClient, oidc_app: Starlette
) -> None:
    await _configure(admin, oidc_auto_onboard=True)
    try:
        async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
            bob = BrowserFlow(console, idp, BASE_URL)
            landed = await bob.sign_in("bob")
            assert landed.status_code == 303, landed.text
            assert await _signed_in_as(bob) == "bob"
            members = (await console.get("/api/v2.0/users/current/permissions")).status_code
            assert members == 200
        async with _state(oidc_app).db.read() as session:
            groups = {
                g.group_name: g.group_type for g in (await session.scalars(select(UserGroup))).all()
            }
        assert groups.get("devs") == 3 and groups.get("ops") == 3
        assert "marketing" not in groups  # filtered out by oidc_group_filter
        bob_user = await _user(oidc_app, "bob")
        assert bob_user is not None and not bob_user.admin_role_in_auth

        async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
            carol = BrowserFlow(console, idp, BASE_URL)
            await carol.sign_in("carol")
            assert await _signed_in_as(carol) == "carol"
            listed = await console.get("/api/v2.0/users")
            assert listed.status_code == 200  # an administrator through oidc_admin_group
        async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
            bob_again = BrowserFlow(console, idp, BASE_URL)
            await bob_again.sign_in("bob")
            listed = await console.get("/api/v2.0/users")
            assert listed.status_code == 403
    finally:
        await _configure(admin, oidc_auto_onboard=False)


async def test_a_name_the_provider_gives_that_cannot_be_used_makes_no_account(
    admin: httpx.AsyncClient, oidc_app: Starlette, browser: BrowserFlow
) -> None:
    await _configure(admin, oidc_auto_onboard=True)
    try:
        async with _state(oidc_app).db.read() as session:
            before = await session.scalar(select(func.count()).select_from(User))
        taken = await browser.sign_in("dan")  # says its username is "admin"
        assert taken.status_code == 409 and "exists already" in taken.text
        robot = await browser.sign_in("robo")
        assert robot.status_code == 401 and "cannot be a Dockyard user name" in robot.text
        await _configure(admin, oidc_user_claim="nickname")
        missing = await browser.sign_in("erin")
        assert missing.status_code == 401 and "no nickname claim" in missing.text
        async with _state(oidc_app).db.read() as session:
            after = await session.scalar(select(func.count()).select_from(User))
        assert after == before
        assert (await browser.console.get("/api/v2.0/users/current")).status_code == 401
    finally:
        await _configure(admin, oidc_auto_onboard=False, oidc_user_claim="")


async def test_role_matrix_through_oidc_groups(
    admin: httpx.AsyncClient, oidc_app: Starlette
) -> None:
    """Each project role given to an OIDC group holds exactly Harbor's table for the
    group's members: in the permission view, and in what the token service grants their
    CLI secret on the project's repository."""
    project = "oidcmatrix"
    created = await admin.post(
        "/api/v2.0/projects", json={"project_name": project, "metadata": {"public": "false"}}
    )
    assert created.status_code == 201, created.text
    project_id = (await admin.get(f"/api/v2.0/projects/{project}")).json()["project_id"]
    for role in Role:
        group = await admin.post(
            "/api/v2.0/usergroups", json={"group_name": f"mx-{role.value}", "group_type": 3}
        )
        assert group.status_code == 201, group.text
        group_id = int(group.headers["location"].rsplit("/", 1)[1])
        member = await admin.post(
            f"/api/v2.0/projects/{project}/members",
            json={"role_id": role.value, "member_group": {"id": group_id}},
        )
        assert member.status_code == 201, member.text
    await _configure(admin, oidc_auto_onboard=True, oidc_group_filter="^mx-")
    try:
        for role in Role:
            async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
                flow = BrowserFlow(console, idp, BASE_URL)
                landed = await flow.sign_in(f"m{role.value}")
                assert landed.status_code == 303, landed.text
                held = await console.get(
                    "/api/v2.0/users/current/permissions",
                    params={"scope": f"/project/{project_id}", "relative": "true"},
                )
                table = {
                    (str(r), str(a))
                    for r, actions in ROLE_PERMISSIONS[role].items()
                    for a in actions
                }
                assert {(p["resource"], p["action"]) for p in held.json()} == table, role
                me = (await console.get("/api/v2.0/users/current")).json()
                secret = me["oidc_user_meta"]["secret"]
            async with make_client(oidc_app) as cli:
                token = await cli.get(
                    "/service/token",
                    params={
                        "service": "harbor-registry",
                        "scope": f"repository:{project}/app:pull,push,delete",
                    },
                    headers=_basic(me["username"], secret),
                )
            assert token.status_code == 200, token.text
            claims = json.loads(
                base64.urlsafe_b64decode(token.json()["token"].split(".")[1] + "==")
            )
            granted = {a for entry in claims["access"] for a in entry["actions"]}
            wanted = {
                a
                for a, action in (
                    ("pull", Action.PULL),
                    ("push", Action.PUSH),
                    ("delete", Action.DELETE),
                )
                if action in ROLE_PERMISSIONS[role].get(Resource.REPOSITORY, frozenset())
            }
            assert granted == wanted, role
    finally:
        await _configure(admin, oidc_auto_onboard=False, oidc_group_filter="^(devs|ops|admins)$")


# --- the flow's own checks ------------------------------------------------------------------


async def test_a_state_is_good_once_and_only_in_the_browser_that_started(
    browser: BrowserFlow, oidc_app: Starlette
) -> None:
    # A redirect_url that leads away from the console ends on the dashboard instead.
    start = await browser.console.get(
        "/c/oidc/login", params={"redirect_url": "https://evil.example/x" + "y" * 5000}
    )
    state_cookie = browser.console.cookies.get("dy_oidc_state")
    assert state_cookie
    # Follow the provider by hand to catch the callback URL.
    landed = await browser.follow_provider(start.headers["location"], "alice")
    assert landed.status_code == 303 and landed.headers["location"] == "/harbor/dashboard"
    callback = str(landed.request.url)
    assert await _signed_in_as(browser) == "alice-a"

    # The same callback again (a replayed state, and its nonce): refused, no new session.
    browser.console.cookies.set("dy_oidc_state", state_cookie, path="/c/oidc")
    browser.console.cookies.delete("sid")
    replay = await browser.console.get(callback)
    assert replay.status_code == 401 and "used already or has expired" in replay.text
    assert (await browser.console.get("/api/v2.0/users/current")).status_code == 401

    # A callback in a browser that did not start the sign-in (login CSRF): refused.
    async with make_client(oidc_app) as other:
        start = await other.get("/c/oidc/login")
        state = re.search(r"state=([^&]+)", start.headers["location"])
        assert state
        forged = await other.get(
            "/c/oidc/callback", params={"state": "x" + state.group(1), "code": "abc"}
        )
        assert forged.status_code == 401 and "not started in this browser" in forged.text
    errored = await browser.console.get(
        "/c/oidc/callback", params={"state": "s", "error": "access_denied"}
    )
    assert errored.status_code == 401
    async with _state(oidc_app).db.read() as session:
        kinds = (await session.scalars(select(OidcPending.kind))).all()
    assert kinds.count("login") <= 1  # only the unfinished one of the other browser


async def test_key_rotation_is_followed(
    browser: BrowserFlow, oidc_app: Starlette, provider: OidcProviderServer
) -> None:
    await browser.sign_in("alice")  # the current key set is cached
    assert await _signed_in_as(browser) == "alice-a"
    old = provider.config["jwks"]
    try:
        kid = provider.rotate_keys()
        async with httpx.AsyncClient() as plain:
            keys = (await plain.get(provider.issuer + "/jwks")).json()["keys"]
        assert [k["kid"] for k in keys] == [kid]
        async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
            fresh = BrowserFlow(console, idp, BASE_URL)
            landed = await fresh.sign_in("alice")
            assert landed.status_code == 303, landed.text
            assert await _signed_in_as(fresh) == "alice-a"
    finally:
        provider.config["jwks"] = old
        provider.reload()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("expired", "the ID token has expired"),
        ("audience", "the ID token's aud claim is not valid"),
        ("signature", "the ID token's signature is not valid"),
    ],
)
async def test_bad_id_tokens_from_the_real_provider_sign_in_nobody(
    oidc_app: Starlette, provider: OidcProviderServer, mode: str, reason: str
) -> None:
    """The provider's token endpoint hands out an ID token that is expired or for another
    client (signed again with the provider's own key), or altered under its signature: the
    callback refuses it with the reason, and no session, account or onboarding is made."""
    async with _state(oidc_app).db.read() as session:
        users_before = await session.scalar(select(func.count()).select_from(User))
        onboarding_before = (await session.scalars(select(OidcPending.kind))).all()
    provider.tamper_id_tokens(mode)
    try:
        async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
            fresh = BrowserFlow(console, idp, BASE_URL)
            for login in ("alice", "erin"):  # a known user, and one never seen
                landed = await fresh.sign_in(login)
                assert landed.status_code == 401, landed.text
                assert reason in html.unescape(landed.text)
                assert (await console.get("/api/v2.0/users/current")).status_code == 401
    finally:
        provider.tamper_id_tokens(None)
    async with _state(oidc_app).db.read() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == users_before
        pending = (await session.scalars(select(OidcPending.kind))).all()
    assert pending.count("onboard") == onboarding_before.count("onboard")
    # The same provider, untampered again, signs alice in: the refusals were the tokens'.
    async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
        again = BrowserFlow(console, idp, BASE_URL)
        landed = await again.sign_in("alice")
        assert landed.status_code == 303, landed.text


async def test_logout_at_the_provider(
    admin: httpx.AsyncClient, browser: BrowserFlow, provider: OidcProviderServer
) -> None:
    await _configure(admin, oidc_logout=True, oidc_extra_redirect_parms="")
    try:
        await browser.sign_in("alice")
        page = await browser.console.get("/harbor/account/profile")
        csrf = _CSRF.search(page.text)
        assert csrf
        out = await browser.console.post("/harbor/sign-out", data={"_csrf": csrf.group(1)})
        assert out.status_code == 200  # a page that moves on to the provider by itself
        found = re.search(r'id="provider-logout" href="([^"]+)"', out.text)
        assert found and 'http-equiv="refresh"' in out.text, out.text[:3000]
        target = found.group(1).replace("&amp;", "&")
        assert target.startswith(provider.issuer) and "id_token_hint=" in target
        assert (await browser.console.get("/api/v2.0/users/current")).status_code == 401
        confirm = await browser.provider.get(target)
        while confirm.is_redirect:
            confirm = await browser.provider.get(confirm.headers["location"])
        form = forms(confirm.text)[0]
        done = await browser.provider.post(
            httpx.URL(str(confirm.url)).join(form["action"]),
            data={**form["fields"], "logout": "yes"},
        )
        while done.is_redirect and not done.headers["location"].startswith(BASE_URL):
            done = await browser.provider.get(
                httpx.URL(str(done.url)).join(done.headers["location"])
            )
        assert done.headers["location"].startswith(SIGNED_OUT)
        # Signed out at the provider too: the next sign-in asks for the login again.
        with pytest.raises(AssertionError, match="asked to sign in again"):
            await browser.sign_in(None)
    finally:
        await _configure(admin, oidc_logout=False, oidc_extra_redirect_parms='{"prompt": "login"}')


# --- CLI secrets ------------------------------------------------------------------------------


async def test_cli_secret_logs_in_and_can_be_regenerated(
    browser: BrowserFlow, oidc_app: Starlette, admin: httpx.AsyncClient
) -> None:
    await browser.sign_in("alice")
    secret = await _cli_secret(browser)
    current = await browser.console.get("/api/v2.0/users/current")
    user_id = current.json()["user_id"]
    meta = current.json()["oidc_user_meta"]
    assert meta["secret"] == secret and meta["subiss"].startswith("alice")
    by_admin = (await admin.get(f"/api/v2.0/users/{user_id}")).json()["oidc_user_meta"]
    assert "secret" not in by_admin and by_admin["user_id"] == user_id
    info = (await browser.console.get("/api/v2.0/systeminfo")).json()
    assert info["auth_mode"] == "oidc_auth" and info["oidc_provider_name"] == "TestIdP"
    async with make_client(oidc_app) as anon:
        api = await anon.get("/api/v2.0/users/current", headers=_basic("alice-a", secret))
        assert api.status_code == 200 and api.json()["username"] == "alice-a"
        token = await anon.get(
            "/service/token",
            params={"service": "harbor-registry", "scope": "repository:library/x:pull"},
            headers=_basic("alice-a", secret),
        )
        assert token.status_code == 200 and token.json()["token"]
        v2 = await anon.get("/v2/", headers=_basic("alice-a", secret))
        assert v2.status_code == 200
        wrong = await anon.get("/api/v2.0/users/current", headers=_basic("alice-a", "x" + secret))
        assert wrong.status_code == 401

        # Set through the API (Harbor's rules), then regenerate from the console.
        weak = await anon.put(
            f"/api/v2.0/users/{user_id}/cli_secret",
            json={"secret": "short"},
            headers=_basic("alice-a", secret),
        )
        assert weak.status_code == 400
        chosen = "Chosen-secret-42"
        put = await anon.put(
            f"/api/v2.0/users/{user_id}/cli_secret",
            json={"secret": chosen},
            headers=_basic("alice-a", secret),
        )
        assert put.status_code == 200, put.text
        assert (
            await anon.get("/api/v2.0/users/current", headers=_basic("alice-a", secret))
        ).status_code == 401
        assert await _cli_secret(browser) == chosen
        password = await admin.put(
            f"/api/v2.0/users/{user_id}/password", json={"new_password": "Some-Passw0rd"}
        )
        assert password.status_code == 403 and "OIDC provider" in password.text
        not_oidc = await admin.put("/api/v2.0/users/1/cli_secret", json={"secret": chosen})
        assert not_oidc.status_code == 412
        nobody = await admin.put("/api/v2.0/users/999999/cli_secret", json={"secret": chosen})
        assert nobody.status_code == 404

        page = await browser.console.get("/harbor/account/profile")
        csrf = _CSRF.search(page.text)
        assert csrf
        regen = await browser.console.post(
            "/harbor/account/cli-secret", data={"_csrf": csrf.group(1)}
        )
        assert regen.status_code == 303
        newest = await _cli_secret(browser)
        assert newest != chosen
        assert (
            await anon.get("/api/v2.0/users/current", headers=_basic("alice-a", chosen))
        ).status_code == 401
        assert (
            await anon.get("/api/v2.0/users/current", headers=_basic("alice-a", newest))
        ).status_code == 200

        # The administrator's maximum age (30 days here): an older secret stops working.
        async with _state(oidc_app).db.write() as session:
            await session.execute(
                update(OidcUser)
                .where(OidcUser.user_id == user_id)
                .values(secret_time=utcnow() - timedelta(days=31))
            )
        old = await anon.get("/api/v2.0/users/current", headers=_basic("alice-a", newest))
        assert old.status_code == 401
        assert "oidc_cli_secret_max_age_days" in old.text


# --- a provider that answers garbage ----------------------------------------------------------


class _Garbage(BaseHTTPRequestHandler):
    """Discovery that points every endpoint at this server, which answers garbage."""

    def do_GET(self) -> None:
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/.well-known/openid-configuration":
            body = json.dumps(
                {
                    "issuer": host,
                    "authorization_endpoint": f"{host}/auth",
                    "token_endpoint": f"{host}/token",
                    "jwks_uri": f"{host}/jwks",
                }
            ).encode()
        else:
            body = b"\x00<html>not json"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _unchecked_client(app: Starlette) -> httpx.AsyncClient:
    """A client that may see a 503 (``make_client`` refuses every 5xx): the provider is
    down or broken on purpose, and the sign-in page must say so."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40002))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


async def test_a_provider_answering_garbage_is_a_clear_error(
    admin: httpx.AsyncClient,
    oidc_app: Starlette,
    garbage_provider: str,
    provider: OidcProviderServer,
) -> None:
    async with _state(oidc_app).db.read() as session:
        before = await session.scalar(select(func.count()).select_from(User))
    browser = BrowserFlow(_unchecked_client(oidc_app), httpx.AsyncClient(timeout=30), BASE_URL)
    try:
        await _configure(admin, oidc_endpoint="http://127.0.0.1:9")
        down = await browser.console.get("/c/oidc/login")
        assert down.status_code == 503 and "cannot be reached" in down.text

        await _configure(admin, oidc_endpoint=garbage_provider, oidc_auto_onboard=True)
        start = await browser.console.get("/c/oidc/login")
        assert start.status_code == 303  # discovery is fine; the rest is garbage
        state = re.search(r"state=([^&]+)", start.headers["location"])
        assert state
        back = await browser.console.get(
            "/c/oidc/callback", params={"state": state.group(1), "code": "c0de"}
        )
        assert back.status_code == 503 and "token endpoint" in back.text
        assert "not JSON" in back.text
        ping = await admin.post("/api/v2.0/system/oidc/ping", json={"url": garbage_provider})
        assert ping.status_code == 400
    finally:
        await _configure(admin, oidc_endpoint=provider.issuer, oidc_auto_onboard=False)
        await browser.console.aclose()
        await browser.provider.aclose()
    async with _state(oidc_app).db.read() as session:
        after = await session.scalar(select(func.count()).select_from(User))
    assert after == before


async def test_a_deleted_user_loses_the_cli_secret_and_onboards_afresh(
    admin: httpx.AsyncClient, oidc_app: Starlette, browser: BrowserFlow
) -> None:
    await browser.sign_in("alice")
    me = (await browser.console.get("/api/v2.0/users/current")).json()
    secret = me["oidc_user_meta"]["secret"]
    deleted = await admin.delete(f"/api/v2.0/users/{me['user_id']}")
    assert deleted.status_code == 200, deleted.text
    async with make_client(oidc_app) as anon:
        gone = await anon.get("/api/v2.0/users/current", headers=_basic(me["username"], secret))
        assert gone.status_code == 401
    again = await browser.sign_in("alice")
    assert again.status_code == 303 and again.headers["location"] == "/harbor/oidc-onboard"


# --- primary_auth_mode ------------------------------------------------------------------


async def test_primary_auth_mode_sends_the_sign_in_page_to_the_provider(
    admin: httpx.AsyncClient, oidc_app: Starlette, provider: OidcProviderServer
) -> None:
    assert (await admin.get("/api/v2.0/systeminfo")).json()["primary_auth_mode"] is False
    await _configure(admin, primary_auth_mode=True)
    try:
        shown = (await admin.get(CONFIGURATIONS)).json()
        assert shown["primary_auth_mode"] == {"value": True, "editable": True}
        assert (await admin.get("/api/v2.0/systeminfo")).json()["primary_auth_mode"] is True
        async with make_client(oidc_app) as console, httpx.AsyncClient(timeout=30) as idp:
            # A page that needs a session leads, through the sign-in page, to the provider.
            page = await console.get("/harbor/projects")
            assert page.status_code == 303
            to_form = page.headers["location"]
            assert to_form.startswith("/harbor/sign-in")
            sent = await console.get(to_form)
            assert sent.status_code == 303
            assert sent.headers["location"] == "/c/oidc/login?redirect_url=%2Fharbor%2Fprojects"
            started = await console.get(sent.headers["location"])
            assert started.status_code == 303
            assert started.headers["location"].startswith(provider.issuer)
            flow = BrowserFlow(console, idp, BASE_URL)
            landed = await flow.follow_provider(started.headers["location"], "alice")
            # Back from the provider: signed in, or (alice was deleted by an earlier test)
            # choosing a username first, as without primary_auth_mode.
            assert landed.status_code == 303
            assert landed.headers["location"] in ("/harbor/projects", "/harbor/oidc-onboard")
        # admin's way in: the password form at ?local=1, which a wrong password keeps.
        async with make_client(oidc_app) as console:
            form = await console.get("/harbor/sign-in", params={"local": "1"})
            assert form.status_code == 200 and 'name="password"' in form.text
            csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            wrong = await console.post(
                "/harbor/sign-in",
                data={"_csrf": csrf.group(1), "principal": "admin", "password": "wrong"},
            )
            assert wrong.status_code == 401 and 'name="password"' in wrong.text
            good = await console.post(
                "/harbor/sign-in",
                data={"_csrf": csrf.group(1), "principal": "admin", "password": ADMIN_PASSWORD},
            )
            assert good.status_code == 303, good.text[:300]
            me = await console.get("/api/v2.0/users/current")
            assert me.status_code == 200 and me.json()["username"] == "admin"
        # Malformed values are refused; the setting stays.
        for bad in ("yes", 1, [True]):
            refused = await admin.put(CONFIGURATIONS, json={"primary_auth_mode": bad})
            assert refused.status_code == 400, refused.text
        assert (await admin.get(CONFIGURATIONS)).json()["primary_auth_mode"]["value"] is True
    finally:
        await _configure(admin, primary_auth_mode=False)
    async with make_client(oidc_app) as console:
        assert (await console.get("/harbor/sign-in")).status_code == 200
