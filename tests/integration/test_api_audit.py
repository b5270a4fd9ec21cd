"""Harbor's audit log API: ``/audit-logs``, ``/auditlog-exts``, ``/auditlog-exts/events``,
``/projects/{project_name}/logs`` and ``/projects/{project_name}/auditlog-exts``.

Filters (``q`` on operation, resource_type, resource, username and an op_time
range), ``sort`` and paging; who may read what; hostile input is a 400.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.audit import hooks as audit_hooks
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password

API = "/api/v2.0"
PASSWORD = "Passw0rdLogs1"
LEGACY_KEYS = {"id", "username", "resource", "resource_type", "operation", "op_time"}
EXT_KEYS = LEGACY_KEYS | {"operation_description", "operation_result"}


def _uid(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:10]}"


async def _user(state: AppState) -> tuple[str, int]:
    username = _uid("lu")
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(PASSWORD), email=f"{username}@x.io")
        session.add(user)
        await session.flush()
        return username, user.user_id


async def _project(client: httpx.AsyncClient, name: str, public: bool = False) -> None:
    body = {"project_name": name, "metadata": {"public": str(public).lower()}}
    response = await client.post(f"{API}/projects", json=body)
    assert response.status_code == 201, response.text


async def _member(admin: httpx.AsyncClient, project: str, user_id: int, role: int) -> None:
    response = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": role, "member_user": {"user_id": user_id}},
    )
    assert response.status_code == 201, response.text


async def _get(client: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    return await client.get(f"{API}{path}", params=params)


@pytest.fixture
async def three_projects(admin: httpx.AsyncClient) -> str:
    """Three projects whose names share a fresh stem; returns the stem."""
    stem = _uid("lg")
    for i in range(3):
        await _project(admin, f"{stem}-{i}")
    return stem


async def test_filters_sort_and_paging(admin: httpx.AsyncClient, three_projects: str) -> None:
    stem = three_projects
    response = await _get(admin, "/audit-logs", q=f"resource=~{stem}")
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "3"
    rows = response.json()
    assert {r["resource"] for r in rows} == {f"{stem}-{i}" for i in range(3)}
    assert all(set(r) == LEGACY_KEYS for r in rows)
    assert all(r["operation"] == "create" and r["resource_type"] == "project" for r in rows)
    assert all(r["username"] == "admin" for r in rows)
    # Newest first by default.
    assert [r["resource"] for r in rows] == [f"{stem}-{i}" for i in (2, 1, 0)]

    ext = await _get(admin, "/auditlog-exts", q=f"resource=~{stem}", sort="op_time")
    assert ext.status_code == 200
    assert [r["resource"] for r in ext.json()] == [f"{stem}-{i}" for i in range(3)]
    assert all(set(r) == EXT_KEYS and r["operation_result"] is True for r in ext.json())
    assert ext.json()[0]["operation_description"] == "create project"

    exact = await _get(
        admin,
        "/audit-logs",
        q=f"operation=create,resource_type=project,username=admin,resource={stem}-1",
    )
    assert [r["resource"] for r in exact.json()] == [f"{stem}-1"]
    for q in (
        f"operation=delete,resource=~{stem}",
        f"resource_type=user,resource=~{stem}",
        f"username=nobody,resource=~{stem}",
    ):
        none = await _get(admin, "/audit-logs", q=q)
        assert none.status_code == 200 and none.json() == [], q
        assert none.headers["X-Total-Count"] == "0"

    now = datetime.now(UTC)
    past = (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    future = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    later = (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    within = await _get(admin, "/audit-logs", q=f"resource=~{stem},op_time=[{past}~{future}]")
    assert within.headers["X-Total-Count"] == "3"
    outside = await _get(admin, "/audit-logs", q=f"resource=~{stem},op_time=[{future}~{later}]")
    assert outside.headers["X-Total-Count"] == "0"

    first = await _get(admin, "/audit-logs", q=f"resource=~{stem}", page_size="2", sort="op_time")
    second = await _get(
        admin, "/audit-logs", q=f"resource=~{stem}", page_size="2", page="2", sort="op_time"
    )
    assert first.headers["X-Total-Count"] == "3"
    assert [r["resource"] for r in first.json()] == [f"{stem}-0", f"{stem}-1"]
    assert [r["resource"] for r in second.json()] == [f"{stem}-2"]
    assert 'rel="next"' in first.headers["Link"]
    assert 'rel="prev"' in second.headers["Link"]


@pytest.mark.parametrize(
    "params",
    [
        {"q": "password=secret"},
        {"q": "operation"},
        {"q": "op_time=~2026"},
        {"q": "op_time=[yesterday~today]"},
        {"q": "op_time=[~]"},
        {"q": "resource=\x00"},
        {"q": "a=" + "x" * 5000},
        {"sort": "password"},
        {"sort": "op_time," * 100},
        {"page_size": "1000"},
        {"page": "-1"},
        {"page": "abc"},
    ],
)
async def test_hostile_listing_input_is_a_400(
    admin: httpx.AsyncClient, params: dict[str, str]
) -> None:
    for path in ("/audit-logs", "/auditlog-exts", "/projects/library/logs"):
        response = await admin.get(f"{API}{path}", params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["errors"][0]["code"] == "BAD_REQUEST"


async def test_who_reads_what(admin: httpx.AsyncClient, app: Starlette, state: AppState) -> None:
    owned, other = _uid("own"), _uid("oth")
    project_admin, admin_id = await _user(state)
    developer, developer_id = await _user(state)
    await _project(admin, owned)
    await _project(admin, other)
    await _member(admin, owned, admin_id, 1)
    await _member(admin, owned, developer_id, 2)

    async with make_client(app, (project_admin, PASSWORD)) as client:
        # Harbor: a non-administrator lists the events of the projects it administers.
        for path in ("/audit-logs", "/auditlog-exts"):
            mine = await _get(client, path, q=f"resource=~{owned}")
            assert mine.status_code == 200
            assert {r["resource"] for r in mine.json()} >= {owned}
            theirs = await _get(client, path, q=f"resource=~{other}")
            assert theirs.status_code == 200 and theirs.json() == []
        for path in (f"/projects/{owned}/logs", f"/projects/{owned}/auditlog-exts"):
            logs = await _get(client, path, q=f"resource={owned},operation=create")
            assert logs.status_code == 200
            assert [r["resource"] for r in logs.json()] == [owned]
        # A private project it is no member of does not exist for it.
        hidden = await client.get(
            f"{API}/projects/{other}/logs", headers={"X-Dockyard-Contract": "skip"}
        )
        assert hidden.status_code == 404
        events = await _get(client, "/auditlog-exts/events")
        assert events.status_code == 403

    async with make_client(app, (developer, PASSWORD)) as client:
        for path in (f"/projects/{owned}/logs", f"/projects/{owned}/auditlog-exts"):
            assert (await _get(client, path)).status_code == 403
        everything = await _get(client, "/audit-logs", q=f"resource=~{owned}")
        assert everything.status_code == 200 and everything.json() == []

    async with make_client(app) as anonymous:
        for path in (
            "/audit-logs",
            "/auditlog-exts",
            "/auditlog-exts/events",
            "/projects/library/logs",
        ):
            assert (await _get(anonymous, path)).status_code == 401

    # The administrator sees every project's events.
    both = await _get(
        admin, "/audit-logs", q=f"resource_type=project,operation=create,resource=~{owned}"
    )
    assert [r["resource"] for r in both.json()] == [owned]
    project_logs = await _get(admin, f"/projects/{other}/logs")
    assert project_logs.status_code == 200
    assert {r["resource"] for r in project_logs.json()} == {other}


async def test_robot_with_system_audit_log_grant_reads_everything(
    admin: httpx.AsyncClient, app: Starlette, three_projects: str
) -> None:
    body = {
        "name": _uid("aud"),
        "level": "system",
        "duration": -1,
        "permissions": [
            {
                "kind": "system",
                "namespace": "/",
                "access": [{"resource": "audit-log", "action": "list", "effect": "allow"}],
            }
        ],
    }
    response = await admin.post(f"{API}/robots", json=body)
    assert response.status_code == 201, response.text
    robot = response.json()
    async with make_client(app, (robot["name"], robot["secret"])) as client:
        found = await _get(client, "/auditlog-exts", q=f"resource=~{three_projects}")
        assert found.status_code == 200 and found.headers["X-Total-Count"] == "3"
        events = await _get(client, "/auditlog-exts/events")
        assert events.status_code == 200


async def test_event_types(admin: httpx.AsyncClient) -> None:
    response = await _get(admin, "/auditlog-exts/events")
    assert response.status_code == 200
    types = {item["event_type"] for item in response.json()}
    assert {"create_artifact", "delete_artifact", "pull_artifact", "login_user"} <= types
    assert {"create_project", "delete_project", "update_configure"} <= types


async def _flush_refusals(state: AppState) -> None:
    hooks = getattr(state.registry.hooks, "hooks", ())
    await next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks)).flush()


async def test_refusals_are_listed_in_both_shapes_with_their_reason(
    admin: httpx.AsyncClient, app: Starlette, state: AppState
) -> None:
    """A denied API write and a failed sign-in: both listings show them; the extended
    one says they failed and why, and ``operation_result=false`` finds them."""
    project = _uid("rf")
    await _project(admin, project)
    name, user_id = await _user(state)
    await _member(admin, project, user_id, 2)  # developer: may not delete the project
    async with make_client(app, (name, PASSWORD)) as developer:
        denied = await developer.delete(f"{API}/projects/{project}")
    assert denied.status_code == 403
    async with make_client(app) as client:
        signin = await client.post("/c/login", data={"principal": name, "password": "Wr0ng0ne1"})
    assert signin.status_code == 401
    await _flush_refusals(state)

    legacy = await _get(admin, "/audit-logs", q=f"username={name}", sort="op_time")
    assert legacy.status_code == 200
    assert [(e["operation"], e["resource_type"]) for e in legacy.json()] == [
        ("delete", "project"),
        ("login", "user"),
    ]
    assert all(set(e) == LEGACY_KEYS for e in legacy.json())
    ext = await _get(admin, "/auditlog-exts", q=f"username={name}", sort="op_time")
    assert [(e["operation"], e["operation_result"]) for e in ext.json()] == [
        ("delete", False),
        ("login", False),
    ]
    denial, login = (e["operation_description"] for e in ext.json())
    assert denial.startswith(f"refused: {name} may not delete"), denial
    assert login == "login through the console (refused: invalid username or password)"
    refused = await _get(admin, "/auditlog-exts", q=f"username={name},operation_result=false")
    assert refused.headers["x-total-count"] == "2"
    succeeded = await _get(admin, "/auditlog-exts", q=f"username={name},operation_result=true")
    assert succeeded.json() == []
