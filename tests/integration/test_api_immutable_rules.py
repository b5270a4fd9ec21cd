"""/api/v2.0/projects/{p}/immutabletagrules: Harbor's immutable tag rules, their checks,
who may manage them, and the audit rows their changes leave."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.immutability.models import ImmutableTagRule

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
SKIP = {"X-Dockyard-Contract": "skip"}
ROLES = {"admin": 1, "developer": 2, "guest": 3, "maintainer": 4}


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def rule(
    repo: str = "**",
    tag: str = "**",
    *,
    repo_decoration: str = "repoMatches",
    tag_decoration: str = "matches",
    **extra: Any,
) -> dict[str, Any]:
    """A rule body as Harbor's console sends it."""
    body: dict[str, Any] = {
        "disabled": False,
        "action": "immutable",
        "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": tag_decoration, "pattern": tag}],
        "scope_selectors": {
            "repository": [{"kind": "doublestar", "decoration": repo_decoration, "pattern": repo}]
        },
    }
    body.update(extra)
    return body


async def new_project(admin: httpx.AsyncClient, public: bool = False) -> tuple[str, int]:
    name = _name("imm")
    response = await admin.post(
        f"{API}/projects",
        json={"project_name": name, "metadata": {"public": "true" if public else "false"}},
    )
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


async def new_user(state: AppState) -> str:
    username = _name("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


async def member(admin: httpx.AsyncClient, state: AppState, project: str, role: str) -> str:
    username = await new_user(state)
    response = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": ROLES[role], "member_user": {"username": username}},
    )
    assert response.status_code == 201, response.text
    return username


async def create(client: httpx.AsyncClient, project: str, body: dict[str, Any]) -> int:
    response = await client.post(f"{API}/projects/{project}/immutabletagrules", json=body)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{API}/projects/{project}/immutabletagrules/")
    return int(location.rsplit("/", 1)[1])


async def listed(client: httpx.AsyncClient, project: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/projects/{project}/immutabletagrules", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def stored_rules(state: AppState, project_id: int) -> list[ImmutableTagRule]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(ImmutableTagRule)
            .where(ImmutableTagRule.project_id == project_id)
            .order_by(ImmutableTagRule.id)
        )
        return list(rows)


async def audit_rows(state: AppState, project_id: int) -> list[AuditLog]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditLog)
            .where(AuditLog.project_id == project_id, AuditLog.resource_type == "immutable-rule")
            .order_by(AuditLog.id)
        )
        return list(rows)


async def test_rule_crud_and_audit(admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await new_project(admin)
    first = await create(admin, project, rule("team/**", "v{1,2}.*"))
    second = await create(admin, str(project_id), rule("**", "latest", tag_decoration="excludes"))

    items = await listed(admin, project)
    assert [item["id"] for item in items] == [first, second]
    assert items[0] == {
        "id": first,
        "priority": 0,
        "disabled": False,
        "action": "immutable",
        "template": "immutable_template",
        "params": {},
        "tag_selectors": [
            {"kind": "doublestar", "decoration": "matches", "pattern": "v{1,2}.*", "extras": ""}
        ],
        "scope_selectors": {
            "repository": [
                {
                    "kind": "doublestar",
                    "decoration": "repoMatches",
                    "pattern": "team/**",
                    "extras": "",
                }
            ]
        },
    }

    # disable, then change the selectors and priority
    response = await admin.put(
        f"{API}/projects/{project}/immutabletagrules/{first}", json={"disabled": True}
    )
    assert response.status_code == 200, response.text
    assert (await listed(admin, project, q="disabled=true"))[0]["id"] == first
    response = await admin.put(
        f"{API}/projects/{project}/immutabletagrules/{first}",
        json=rule("app", "stable", priority=3, disabled=False),
    )
    assert response.status_code == 200, response.text
    (changed,) = await listed(admin, project, q=f"id={first}")
    assert changed["disabled"] is False and changed["priority"] == 3
    assert changed["tag_selectors"][0]["pattern"] == "stable"
    assert changed["scope_selectors"]["repository"][0]["pattern"] == "app"

    assert [i["id"] for i in await listed(admin, project, sort="-priority")] == [first, second]
    assert [i["id"] for i in await listed(admin, project, sort="priority")] == [second, first]
    response = await admin.get(
        f"{API}/projects/{project}/immutabletagrules", params={"page": "2", "page_size": "1"}
    )
    assert response.headers["x-total-count"] == "2"
    assert [i["id"] for i in response.json()] == [second]
    assert 'rel="prev"' in response.headers["link"]

    response = await admin.delete(f"{API}/projects/{project}/immutabletagrules/{first}")
    assert response.status_code == 200, response.text
    assert [i["id"] for i in await listed(admin, project)] == [second]

    rows = await audit_rows(state, project_id)
    assert [(r.operation, r.resource, r.username, r.operation_result) for r in rows] == [
        ("create", f"{project}/immutabletagrules/{first}", "admin", True),
        ("create", f"{project}/immutabletagrules/{second}", "admin", True),
        ("update", f"{project}/immutabletagrules/{first}", "admin", True),
        ("update", f"{project}/immutabletagrules/{first}", "admin", True),
        ("delete", f"{project}/immutabletagrules/{first}", "admin", True),
    ]
    assert "'team/**'" in rows[0].operation_description
    assert rows[2].operation_description == "disabled"
    assert rows[0].client_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (rule(template="retain_everything"), "template"),
        (rule(action="retain"), "action"),
        (rule(tag_selectors=[]), "tag_selectors"),
        ({**rule(), "tag_selectors": None}, "tag_selectors"),
        (
            rule(tag_selectors=[{"decoration": "matches", "pattern": "a"}] * 2),
            "exactly one selector",
        ),
        (rule(scope_selectors={}), "scope_selectors"),
        (rule(scope_selectors={"namespace": [{"decoration": "repoMatches"}]}), "repository"),
        (rule(scope_selectors={"repository": []}), "scope_selectors.repository"),
        (rule(tag_decoration="repoMatches"), "tag_selectors[0].decoration"),
        (rule(repo_decoration="matches"), "scope_selectors.repository[0].decoration"),
        (rule(tag=""), "pattern is required"),
        (rule(repo="{a,b"), "not valid"),
        (rule(tag="[abc"), "not valid"),
        (rule(tag="x" * 257), "longer than 256"),
        (rule(tag="{" * 20 + "a" + "}" * 20), "nested"),
        (rule(tag="{a,b}" * 5), "more than 16 alternatives"),
        (rule(repo="*{a,b}{c,d}{e,f}" + "x" * 200), "more than 16 alternatives"),
        (rule(tag="a\nb"), "control characters"),
        (
            rule(tag_selectors=[{"kind": "regexp", "decoration": "matches", "pattern": "a"}]),
            "kind",
        ),
        (rule(priority=2**40), "priority"),
        (rule(priority="high"), "priority"),
        (rule(disabled="maybe"), "disabled"),
        (rule(tag_selectors="v1"), "tag_selectors"),
        (rule(params={"x": "y" * 5000}), "params"),
        ([rule()], "body"),
    ],
)
async def test_invalid_rules_are_refused(
    admin: httpx.AsyncClient, state: AppState, body: Any, message: str
) -> None:
    project, project_id = await new_project(admin)
    response = await admin.post(f"{API}/projects/{project}/immutabletagrules", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]["message"]
    assert await stored_rules(state, project_id) == []

    good = await create(admin, project, rule())
    response = await admin.put(f"{API}/projects/{project}/immutabletagrules/{good}", json=body)
    if isinstance(body, dict) and "tag_selectors" not in body:
        return
    assert response.status_code == 400, response.text
    (stored,) = await stored_rules(state, project_id)
    assert '"pattern":"**"' in stored.tag_filter and not stored.disabled
    assert [r.operation for r in await audit_rows(state, project_id)] == ["create"]


async def test_limits_duplicates_and_unknown_rules(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    other, _ = await new_project(admin)
    ids = [await create(admin, project, rule(f"r{i}")) for i in range(15)]
    response = await admin.post(f"{API}/projects/{project}/immutabletagrules", json=rule("r99"))
    assert response.status_code == 400
    assert "15" in response.json()["errors"][0]["message"]
    assert len(await stored_rules(state, project_id)) == 15

    await admin.delete(f"{API}/projects/{project}/immutabletagrules/{ids[0]}")
    response = await admin.post(f"{API}/projects/{project}/immutabletagrules", json=rule("r1"))
    assert response.status_code == 409  # Harbor: an identical rule is a conflict
    assert response.json()["errors"][0]["code"] == "CONFLICT"
    assert f"rule {ids[1]} already" in response.json()["errors"][0]["message"]
    response = await admin.put(
        f"{API}/projects/{project}/immutabletagrules/{ids[2]}", json=rule("r1")
    )
    assert response.status_code == 409
    # the same selectors as its own are fine
    response = await admin.put(
        f"{API}/projects/{project}/immutabletagrules/{ids[2]}", json=rule("r2")
    )
    assert response.status_code == 200

    # a rule of another project, a missing one, and a bad id
    for path, status in [
        (f"{other}/immutabletagrules/{ids[1]}", 404),
        (f"{project}/immutabletagrules/{ids[0]}", 404),
        (f"{project}/immutabletagrules/99999999999999999999", 400),
        (f"{project}/immutabletagrules/-1", 400),
        (f"{project}/immutabletagrules/abc", 400),
    ]:
        response = await admin.put(f"{API}/projects/{path}", json={"disabled": True})
        assert response.status_code == status, (path, response.text)
        response = await admin.delete(f"{API}/projects/{path}")
        assert response.status_code == status, (path, response.text)
    # Harbor looks the rule up before the body: no rule 0, no body -> 404, not 400.
    response = await admin.put(f"{API}/projects/{project}/immutabletagrules/0")
    assert response.status_code == 404, response.text
    response = await admin.put(f"{API}/projects/{project}/immutabletagrules/{ids[1]}")
    assert response.status_code == 400, response.text
    assert len(await stored_rules(state, project_id)) == 14
    assert not any(r.disabled for r in await stored_rules(state, project_id))

    for params in ({"q": "pattern=x"}, {"sort": "pattern"}, {"page_size": "101"}):
        response = await admin.get(f"{API}/projects/{project}/immutabletagrules", params=params)
        assert response.status_code == 400, params


async def test_permissions(app: Starlette, admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await new_project(admin)
    public, _ = await new_project(admin, public=True)
    existing = await create(admin, project, rule("kept"))
    maintainer = await member(admin, state, project, "maintainer")
    project_admin = await member(admin, state, project, "admin")
    developer = await member(admin, state, project, "developer")
    guest = await member(admin, state, project, "guest")
    outsider = await new_user(state)
    rules = f"{API}/projects/{project}/immutabletagrules"

    for username in (maintainer, project_admin):
        async with make_client(app, (username, PASSWORD)) as client:
            made = await create(client, project, rule(username))
            assert len(await listed(client, project)) >= 2
            response = await client.put(f"{rules}/{made}", json={"disabled": True})
            assert response.status_code == 200
            response = await client.delete(f"{rules}/{made}")
            assert response.status_code == 200

    for username in (developer, guest):
        async with make_client(app, (username, PASSWORD)) as client:
            assert (await client.get(rules)).status_code == 403
            assert (await client.post(rules, json=rule(username))).status_code == 403
            # a bad body from a caller without the right is still a 403
            assert (await client.post(rules, json={"tag_selectors": 1})).status_code == 403
            assert (
                await client.put(f"{rules}/{existing}", json={"disabled": True})
            ).status_code == 403
            assert (await client.delete(f"{rules}/{existing}")).status_code == 403

    async with make_client(app, (outsider, PASSWORD)) as client:
        assert (await client.get(rules, headers=SKIP)).status_code == 404
        assert (await client.post(rules, json=rule("x"))).status_code == 404
        assert (await client.put(f"{rules}/{existing}", json={"disabled": True})).status_code == 404
        assert (await client.delete(f"{rules}/{existing}")).status_code == 404
        # a public project is visible, its rules still are not the outsider's
        public_rules = f"{API}/projects/{public}/immutabletagrules"
        assert (await client.get(public_rules)).status_code == 403
        assert (await client.post(public_rules, json=rule("x"))).status_code == 403

    async with make_client(app) as anonymous:
        assert (await anonymous.get(rules)).status_code == 401
        assert (await anonymous.post(rules, json=rule("x"))).status_code == 401
        assert (
            await anonymous.put(f"{rules}/{existing}", json={"disabled": True})
        ).status_code == 401
        assert (await anonymous.delete(f"{rules}/{existing}")).status_code == 401

    (kept,) = await stored_rules(state, project_id)
    assert kept.id == existing and not kept.disabled
    operations = [(r.operation, r.username) for r in await audit_rows(state, project_id)]
    assert operations == [
        ("create", "admin"),
        ("create", maintainer),
        ("update", maintainer),
        ("delete", maintainer),
        ("create", project_admin),
        ("update", project_admin),
        ("delete", project_admin),
    ]
