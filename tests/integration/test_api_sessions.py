"""Console sessions: ``/c/login``, the ``sid`` cookie, CSRF on writes, ``/c/log_out``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client

from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.iam.models import LoginSession, UserGroup

PASSWORD = "Passw0rdPassw0rd"
CSRF = "X-Harbor-CSRF-Token"


def _name(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def _create_user(admin: httpx.AsyncClient) -> tuple[int, str]:
    username = _name("u")
    response = await admin.post(
        "/api/v2.0/users",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "realname": "Console User",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1]), username


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials that keeps cookies, as a browser does."""
    async with make_client(app) as client:
        yield client


async def _login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Sign in; returns the CSRF token the answer hands out."""
    response = await client.post("/c/login", data={"principal": username, "password": password})
    assert response.status_code == 200, response.text
    return response.headers[CSRF]


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """``Set-Cookie`` headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def _group_count(state: AppState) -> int:
    async with state.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(UserGroup)) or 0)


async def test_login_sets_cookies_and_session_reads_work(
    state: AppState, admin: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    user_id, username = await _create_user(admin)
    response = await browser.post("/c/login", data={"principal": username, "password": PASSWORD})
    assert response.status_code == 200
    token = response.headers[CSRF]
    cookies = _set_cookies(response)
    sid = cookies["sid"].lower()
    assert "httponly" in sid and "samesite=lax" in sid and "path=/" in sid
    assert "secure" not in sid  # plain http here
    assert cookies["__csrf"].startswith(f"__csrf={token};")

    current = await browser.get("/api/v2.0/users/current")
    assert current.status_code == 200
    assert current.json()["user_id"] == user_id
    assert current.headers[CSRF] == token
    # The database keeps only a hash of the cookie's secret.
    secret = browser.cookies["sid"]
    async with state.db.read() as session:
        assert await session.get(LoginSession, secret) is None
        row = await session.get(LoginSession, hashlib.sha256(secret.encode()).hexdigest())
    assert row is not None and row.user_id == user_id


async def test_session_writes_need_the_csrf_token(
    state: AppState, browser: httpx.AsyncClient
) -> None:
    token = await _login(browser, "admin", ADMIN_PASSWORD)
    before = await _group_count(state)
    body = {"group_type": 2, "group_name": _name("g")}
    for headers in ({}, {CSRF: "wrong"}, {CSRF: ""}, {CSRF: token[:-1]}):
        refused = await browser.post("/api/v2.0/usergroups", json=body, headers=headers)
        assert refused.status_code == 403, headers
        error = refused.json()["errors"][0]
        assert error["code"] == "FORBIDDEN"
        assert "CSRF" in error["message"]
    assert await _group_count(state) == before
    created = await browser.post("/api/v2.0/usergroups", json=body, headers={CSRF: token})
    assert created.status_code == 201, created.text
    group_url = created.headers["location"]
    assert (await browser.delete(group_url)).status_code == 403
    assert (await browser.get(group_url)).status_code == 200
    assert (await browser.delete(group_url, headers={CSRF: token})).status_code == 200


async def test_basic_credentials_need_no_csrf_token_and_win_over_the_cookie(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    _, username = await _create_user(admin)
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
        await _login(client, username)
        # Basic says admin; the cookie (a plain user) is not consulted.
        listed = await client.get("/api/v2.0/users")
        assert listed.status_code == 200
        assert CSRF not in listed.headers
        body = {"group_type": 2, "group_name": _name("g")}
        assert (await client.post("/api/v2.0/usergroups", json=body)).status_code == 201


async def test_robots_cannot_sign_in(app: Starlette, browser: httpx.AsyncClient) -> None:
    for name in ("robot$ci", "robot$library+ci", "robot$"):
        response = await browser.post("/c/login", data={"principal": name, "password": "x"})
        assert response.status_code == 401
        assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "form",
    [
        {"principal": "admin", "password": "wrong"},
        {"principal": "no-such-user", "password": PASSWORD},
        {"principal": "", "password": ""},
        {"password": ADMIN_PASSWORD},
        {"principal": "ad\x00min", "password": ADMIN_PASSWORD},
        {"principal": "' OR 1=1--", "password": "' OR 1=1--"},
    ],
)
async def test_failed_logins_set_no_cookie(
    browser: httpx.AsyncClient, form: dict[str, str]
) -> None:
    response = await browser.post("/c/login", data=form)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert (await browser.get("/api/v2.0/users/current")).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://registry.test.evil.example"},
        {"Referer": "https://evil.example/login-csrf.html"},
        {"Origin": "https://evil.example", "Referer": "http://registry.test/harbor"},
    ],
)
async def test_cross_site_login_posts_are_refused(
    browser: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Login CSRF: another site's page must not sign a browser in (as its own account)."""
    form = {"principal": "admin", "password": ADMIN_PASSWORD}
    response = await browser.post("/c/login", data=form, headers=headers)
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "FORBIDDEN"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a program (a Harbor API client, curl): no Origin, no Referer
        {"Origin": "http://registry.test"},
        {"Referer": "http://registry.test/harbor/sign-in"},
    ],
)
async def test_same_site_and_programmatic_logins_work(
    browser: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    form = {"principal": "admin", "password": ADMIN_PASSWORD}
    response = await browser.post("/c/login", data=form, headers=headers)
    assert response.status_code == 200, response.text
    assert CSRF in response.headers


async def test_malformed_login_forms(browser: httpx.AsyncClient) -> None:
    too_big = await browser.post("/c/login", content=b"principal=" + b"a" * 100_000)
    assert too_big.status_code == 400
    not_utf8 = await browser.post("/c/login", content=b"principal=\xff&password=x")
    assert not_utf8.status_code in (400, 401)
    many = await browser.post("/c/login", content=b"&".join([b"a=b"] * 100))
    assert many.status_code == 400
    assert (await browser.get("/c/login")).status_code == 405


async def test_log_out_ends_the_session(
    app: Starlette, state: AppState, admin: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    _, username = await _create_user(admin)
    await _login(browser, username)
    secret = browser.cookies["sid"]
    out = await browser.get("/c/log_out")
    assert out.status_code == 200
    cleared = _set_cookies(out)["sid"].lower()
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared
    assert (await browser.get("/api/v2.0/users/current")).status_code == 401
    async with state.db.read() as session:
        row = await session.get(LoginSession, hashlib.sha256(secret.encode()).hexdigest())
    assert row is None
    # A replayed copy of the old cookie opens nothing.
    async with make_client(app) as replay:
        replay.cookies.set("sid", secret)
        assert (await replay.get("/api/v2.0/users/current")).status_code == 401
    assert (await browser.get("/c/log_out")).status_code == 200  # signing out twice is fine


async def test_idle_sessions_expire_and_use_extends_them(
    state: AppState, admin: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    user_id, username = await _create_user(admin)
    await _login(browser, username)
    lifetime = timedelta(minutes=state.settings.session_timeout_minutes)

    async def set_expiry(when: object) -> None:
        async with state.db.write() as session:
            await session.execute(
                update(LoginSession).where(LoginSession.user_id == user_id).values(expires_at=when)
            )

    async def expiry() -> object:
        async with state.db.read() as session:
            return await session.scalar(
                select(LoginSession.expires_at).where(LoginSession.user_id == user_id)
            )

    recent = utcnow() + lifetime - timedelta(seconds=10)
    await set_expiry(recent)
    assert (await browser.get("/api/v2.0/users/current")).status_code == 200
    assert await expiry() == recent  # used less than a minute ago: no write

    stale = utcnow() + lifetime - timedelta(minutes=5)
    await set_expiry(stale)
    assert (await browser.get("/api/v2.0/users/current")).status_code == 200
    moved = await expiry()
    assert isinstance(moved, type(stale)) and moved > stale + timedelta(minutes=4)

    await set_expiry(utcnow() - timedelta(seconds=1))
    assert (await browser.get("/api/v2.0/users/current")).status_code == 401


async def test_password_reset_and_deletion_end_sessions(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    user_id, username = await _create_user(admin)
    async with make_client(app) as browser:
        token = await _login(browser, username)
        changed = await browser.put(
            f"/api/v2.0/users/{user_id}/password",
            json={"old_password": PASSWORD, "new_password": "Chang3dPassword"},
            headers={CSRF: token},
        )
        assert changed.status_code == 200, changed.text
        # The user's own session survives their own change.
        assert (await browser.get("/api/v2.0/users/current")).status_code == 200
        reset = await admin.put(
            f"/api/v2.0/users/{user_id}/password", json={"new_password": "Adm1nReset99"}
        )
        assert reset.status_code == 200
        assert (await browser.get("/api/v2.0/users/current")).status_code == 401
    async with make_client(app) as browser:
        await _login(browser, username, "Adm1nReset99")
        assert (await admin.delete(f"/api/v2.0/users/{user_id}")).status_code == 200
        assert (await browser.get("/api/v2.0/users/current")).status_code == 401


async def test_session_follows_the_users_current_rights(
    app: Starlette, admin: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    user_id, username = await _create_user(admin)
    await _login(browser, username)
    assert (await browser.get("/api/v2.0/users")).status_code == 403
    promoted = await admin.put(f"/api/v2.0/users/{user_id}/sysadmin", json={"sysadmin_flag": True})
    assert promoted.status_code == 200
    assert (await browser.get("/api/v2.0/users")).status_code == 200


async def test_cookies_are_secure_over_https(app: Starlette, admin: httpx.AsyncClient) -> None:
    _, username = await _create_user(admin)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://registry.test") as client:
        response = await client.post("/c/login", data={"principal": username, "password": PASSWORD})
        assert response.status_code == 200
        cookies = _set_cookies(response)
        assert "secure" in cookies["sid"].lower()
        assert "secure" in cookies["__csrf"].lower()
        assert (await client.get("/api/v2.0/users/current")).status_code == 200


@pytest.mark.parametrize(
    "cookie",
    ["';DROP TABLE login_session;--", "x" * 43, "A" * 5000, "%00" * 20, ""],
)
async def test_unknown_cookies_are_anonymous(app: Starlette, cookie: str) -> None:
    async with make_client(app) as client:
        client.cookies.set("sid", cookie)
        assert (await client.get("/api/v2.0/users/current")).status_code == 401
        assert (await client.get("/api/v2.0/ping")).status_code == 200
        refused = await client.post("/api/v2.0/usergroups", json={"group_name": "x"})
        assert refused.status_code == 401
