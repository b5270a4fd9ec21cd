"""The console's security, through the ASGI app on SQLite and PostgreSQL: every action needs
the session's CSRF token, every page and action is authorised as the API is, sign-in cookies
carry their flags, and redirects stay on the console."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from tests.console.helpers import form_token, sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client

from dockyard.console.routes import post_routes
from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.iam import sessions
from dockyard.iam.models import LoginSession

SAMPLE = {
    "project": "library",
    "repository": "nothing/here",
    "reference": "sha256:" + "0" * 64,
    "member": "1",
    "robot": "1",
    "verb": "delete",
    "label": "1",
    "rule": "1",
    "user": "1",
    "group": "1",
    "quota": "1",
    "key": "1",
    "scanner": "00000000-0000-0000-0000-000000000000",
    "report": "00000000-0000-0000-0000-000000000000",
    "execution": "1",
}
ADMIN_ONLY_PAGES = [
    "/harbor/admin/users",
    "/harbor/admin/groups",
    "/harbor/admin/robots",
    "/harbor/admin/labels",
    "/harbor/admin/audit-logs",
    "/harbor/admin/quotas",
    "/harbor/admin/configuration",
    "/harbor/admin/system",
    "/harbor/admin/interrogation-services",
    "/harbor/admin/cve-allowlist",
    "/harbor/admin/security-hub",
]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::path)?\}", lambda m: SAMPLE[m.group(1)], path)


@pytest.fixture
async def admin_console(app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


async def _new_user(admin: httpx.AsyncClient) -> tuple[str, str]:
    name, password = f"u{uuid.uuid4().hex[:10]}", "Passw0rd!x"
    response = await admin.post(
        "/api/v2.0/users",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "realname": name,
            "password": password,
        },
    )
    assert response.status_code == 201, response.text
    return name, password


async def test_every_action_refuses_a_post_without_the_csrf_token(
    admin_console: tuple[httpx.AsyncClient, str], state: object
) -> None:
    client, _ = admin_console
    paths = [concrete(p) for p in post_routes()]
    assert len(paths) > 30
    for path in paths:
        response = await client.post(path, data={"name": "x", "project_name": "x"})
        assert response.status_code == 403, f"{path} answered {response.status_code}"
        wrong = await client.post(path, data={"_csrf": "not-the-token", "project_name": "x"})
        assert wrong.status_code == 403, f"{path} took a wrong token"
        header = await client.post(path, headers={"X-Harbor-CSRF-Token": "nope"})
        assert header.status_code == 403, f"{path} took a wrong header token"


async def test_signed_out_posts_are_refused_and_pages_ask_to_sign_in(app: Starlette) -> None:
    async with make_client(app) as anon:
        for path in post_routes():
            if path == "/harbor/sign-in":
                continue
            response = await anon.post(concrete(path), data={"_csrf": "x"})
            assert response.status_code == 403, path
        page = await anon.get("/harbor/projects/library/members")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/harbor/sign-in?next=")


async def test_a_valid_token_lets_the_action_run(
    admin_console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = admin_console
    name = f"p{uuid.uuid4().hex[:10]}"
    response = await client.post("/harbor/projects", data={"_csrf": csrf, "project_name": name})
    assert response.status_code == 303
    assert response.headers["location"] == f"/harbor/projects/{name}"
    assert (await admin.get(f"/api/v2.0/projects/{name}")).status_code == 200
    # The same token in the header (as htmx sends it) works too.
    second = f"p{uuid.uuid4().hex[:10]}"
    response = await client.post(
        "/harbor/projects", data={"project_name": second}, headers={"X-Harbor-CSRF-Token": csrf}
    )
    assert response.status_code == 303
    assert (await admin.get(f"/api/v2.0/projects/{second}")).status_code == 200


async def test_sign_in_sets_a_safe_session_cookie_and_sign_out_ends_it(app: Starlette) -> None:
    async with make_client(app) as client:
        page = await client.get("/harbor/sign-in?next=https://evil.example/")
        token = form_token(page.text)
        assert 'value="/harbor/dashboard"' in page.text  # the foreign next is dropped
        refused = await client.post(
            "/harbor/sign-in",
            data={"_csrf": "forged", "principal": "admin", "password": ADMIN_PASSWORD},
        )
        assert refused.status_code == 403
        wrong = await client.post(
            "/harbor/sign-in", data={"_csrf": token, "principal": "admin", "password": "nope"}
        )
        assert wrong.status_code == 401
        assert "sid" not in wrong.cookies
        response = await client.post(
            "/harbor/sign-in",
            data={
                "_csrf": token,
                "principal": "admin",
                "password": ADMIN_PASSWORD,
                "next": "//evil.example/x",
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/harbor/dashboard"
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("sid="))
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" not in cookie  # plain http here; https sets it (below)
        projects = await client.get("/harbor/projects")
        csrf = form_token(projects.text)
        out = await client.post("/harbor/sign-out", data={"_csrf": csrf})
        assert out.status_code == 303
        again = await client.get("/harbor/projects")
        assert again.status_code == 303  # the session is gone


async def test_cookies_are_secure_over_https(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    async with httpx.AsyncClient(transport=transport, base_url="https://registry.test") as client:
        page = await client.get("/harbor/sign-in")
        response = await client.post(
            "/harbor/sign-in",
            data={"_csrf": form_token(page.text), "principal": "admin", "password": ADMIN_PASSWORD},
        )
        assert response.status_code == 303
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("sid="))
        assert "Secure" in cookie and "HttpOnly" in cookie


async def test_robots_cannot_sign_in_to_the_console(app: Starlette) -> None:
    async with make_client(app) as client:
        page = await client.get("/harbor/sign-in")
        response = await client.post(
            "/harbor/sign-in",
            data={"_csrf": form_token(page.text), "principal": "robot$x", "password": "whatever1A"},
        )
        assert response.status_code == 401


async def test_non_admins_see_no_administration_and_are_refused_there(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    name, password = await _new_user(admin)
    async with make_client(app) as client:
        csrf = await sign_in(client, name, password)
        projects = await client.get("/harbor/projects")
        assert 'data-testid="admin-nav"' not in projects.text
        for path in ADMIN_ONLY_PAGES:
            assert (await client.get(path)).status_code == 403, path
        for path in post_routes():
            if path.startswith("/harbor/admin/"):
                response = await client.post(
                    concrete(path),
                    data={"_csrf": csrf, "username": "x", "name": "x", "password": "Passw0rd!x"},
                )
                assert response.status_code == 403, path
    # Nothing was created by the refused posts.
    users = await admin.get("/api/v2.0/users", params={"q": "username=x"})
    assert users.json() == []


async def test_roles_decide_what_a_member_sees_and_may_do(
    app: Starlette, admin: httpx.AsyncClient, admin_console: tuple[httpx.AsyncClient, str]
) -> None:
    console, admin_csrf = admin_console
    project = f"p{uuid.uuid4().hex[:10]}"
    assert (
        await admin.post("/api/v2.0/projects", json={"project_name": project})
    ).status_code == 201
    guest, guest_password = await _new_user(admin)
    added = await console.post(
        f"/harbor/projects/{project}/members",
        data={"_csrf": admin_csrf, "kind": "user", "name": guest, "role_id": "3"},
    )
    assert added.status_code == 303
    outsider, outsider_password = await _new_user(admin)

    async with make_client(app) as client:
        csrf = await sign_in(client, guest, guest_password)
        listing = await client.get("/harbor/projects")
        assert f">{project}</a>" in listing.text
        members = await client.get(f"/harbor/projects/{project}/members")
        assert members.status_code == 200
        assert guest in members.text
        assert 'data-testid="new-member"' not in members.text
        robots = await client.get(f"/harbor/projects/{project}/robots")
        assert robots.status_code == 200
        assert 'data-testid="new-robot"' not in robots.text
        summary = await client.get(f"/harbor/projects/{project}")
        assert 'data-testid="delete-project"' not in summary.text
        # The endpoints refuse what the page does not offer.
        for path, data in [
            (
                f"/harbor/projects/{project}/members",
                {"kind": "user", "name": outsider, "role_id": "1"},
            ),
            (f"/harbor/projects/{project}/robots", {"name": "r", "perm": "repository:pull"}),
            (f"/harbor/projects/{project}/delete", {}),
            (f"/harbor/projects/{project}/configuration", {"public": "on"}),
            (f"/harbor/projects/{project}/labels", {"name": "l"}),
        ]:
            response = await client.post(path, data={"_csrf": csrf, **data})
            assert response.status_code == 403, f"{path}: {response.status_code}"
    project_view = await admin.get(f"/api/v2.0/projects/{project}")
    assert project_view.json()["metadata"]["public"] == "false"

    async with make_client(app) as client:
        await sign_in(client, outsider, outsider_password)
        assert (await client.get(f"/harbor/projects/{project}")).status_code == 404
        listing = await client.get("/harbor/projects")
        assert f">{project}</a>" not in listing.text


async def test_an_idle_session_ends(app: Starlette, state: AppState) -> None:
    async with make_client(app) as client:
        await sign_in(client, "admin", ADMIN_PASSWORD)
        row_id = sessions.session_id(client.cookies["sid"])
        async with state.db.write() as session:
            await session.execute(
                update(LoginSession)
                .where(LoginSession.id == row_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        page = await client.get("/harbor/projects")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/harbor/sign-in")
