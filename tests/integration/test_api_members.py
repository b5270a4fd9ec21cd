"""/api/v2.0/projects/{p}/members: users and groups with Harbor roles."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.http.state import AppState
from dockyard.iam.models import User, UserGroup
from dockyard.iam.passwords import hash_password
from dockyard.projects.models import ProjectMember

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
ROLE_NAMES = {1: "projectAdmin", 2: "developer", 3: "guest", 4: "maintainer", 5: "limitedGuest"}


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def _user(state: AppState) -> tuple[str, int]:
    username = _name("u")
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(PASSWORD))
        session.add(user)
        await session.flush()
        return username, user.user_id


async def _group(state: AppState, group_type: int = 2, dn: str = "") -> tuple[str, int]:
    name = _name("g")
    async with state.db.write() as session:
        group = UserGroup(group_name=name, group_type=group_type, ldap_group_dn=dn)
        session.add(group)
        await session.flush()
        return name, group.id


async def _project(admin: httpx.AsyncClient) -> tuple[str, int]:
    name = _name("m")
    response = await admin.post(f"{API}/projects", json={"project_name": name})
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


async def _add(client: httpx.AsyncClient, project: str, body: dict[str, Any]) -> int:
    response = await client.post(f"{API}/projects/{project}/members", json=body)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{API}/projects/{project}/members/")
    return int(location.rsplit("/", 1)[1])


async def _count(state: AppState, project_id: int) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ProjectMember)
            .where(ProjectMember.project_id == project_id)
        )
    return int(count or 0)


async def test_member_crud_with_users_and_groups(admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await _project(admin)
    by_id, by_id_user = await _user(state)
    by_name, by_name_user = await _user(state)
    group_name, group_id = await _group(state)
    named_group, named_group_id = await _group(state, group_type=3)
    ldap_dn = f"cn={_name('x')},dc=example,dc=com"
    ldap_group, ldap_group_id = await _group(state, group_type=1, dn=ldap_dn)

    first = await _add(admin, project, {"role_id": 2, "member_user": {"user_id": by_id_user}})
    second = await _add(
        admin, str(project_id), {"role_id": 3, "member_user": {"username": by_name}}
    )
    third = await _add(admin, project, {"role_id": 4, "member_group": {"id": group_id}})
    fourth = await _add(
        admin,
        project,
        {"role_id": 5, "member_group": {"group_name": named_group, "group_type": 3}},
    )
    fifth = await _add(admin, project, {"role_id": 3, "member_group": {"ldap_group_dn": ldap_dn}})

    got = await admin.get(f"{API}/projects/{project}/members/{first}")
    assert got.status_code == 200
    assert got.json() == {
        "id": first,
        "project_id": project_id,
        "entity_name": by_id,
        "role_name": "developer",
        "role_id": 2,
        "entity_id": by_id_user,
        "entity_type": "u",
    }
    group = (await admin.get(f"{API}/projects/{project_id}/members/{third}")).json()
    assert (group["entity_type"], group["entity_id"], group["entity_name"]) == (
        "g",
        group_id,
        group_name,
    )
    assert group["role_name"] == "maintainer"

    listed = await admin.get(f"{API}/projects/{project}/members")
    assert listed.headers["x-total-count"] == "6"
    entries = {m["id"]: m for m in listed.json()}
    assert set(entries) >= {first, second, third, fourth, fifth}
    assert entries[second]["entity_name"] == by_name and entries[second]["role_id"] == 3
    assert entries[second]["entity_id"] == by_name_user
    assert entries[fourth]["entity_id"] == named_group_id
    assert (
        entries[fifth]["entity_id"] == ldap_group_id and entries[fifth]["entity_name"] == ldap_group
    )
    assert [m["entity_name"] for m in listed.json()] == sorted(
        m["entity_name"] for m in listed.json()
    )

    filtered = await admin.get(f"{API}/projects/{project}/members", params={"entityname": by_name})
    assert [m["id"] for m in filtered.json()] == [second]
    assert filtered.headers["x-total-count"] == "1"
    paged = await admin.get(f"{API}/projects/{project}/members", params={"page_size": 4})
    assert len(paged.json()) == 4 and 'rel="next"' in paged.headers["link"]

    updated = await admin.put(f"{API}/projects/{project}/members/{first}", json={"role_id": 1})
    assert updated.status_code == 200
    assert (await admin.get(f"{API}/projects/{project}/members/{first}")).json()["role_id"] == 1

    assert (await admin.delete(f"{API}/projects/{project}/members/{second}")).status_code == 200
    assert (await admin.get(f"{API}/projects/{project}/members/{second}")).status_code == 404
    assert (await admin.delete(f"{API}/projects/{project}/members/{second}")).status_code == 404
    assert (
        await admin.put(f"{API}/projects/{project}/members/{second}", json={"role_id": 2})
    ).status_code == 404
    assert await _count(state, project_id) == 5


@pytest.mark.parametrize("role_id", [1, 2, 3, 4, 5])
async def test_every_role_can_be_given(
    admin: httpx.AsyncClient, state: AppState, role_id: int
) -> None:
    project, _ = await _project(admin)
    username, _ = await _user(state)
    member = await _add(admin, project, {"role_id": role_id, "member_user": {"username": username}})
    body = (await admin.get(f"{API}/projects/{project}/members/{member}")).json()
    assert body["role_id"] == role_id
    assert body["role_name"] == ROLE_NAMES[role_id]


@pytest.mark.parametrize("role_id", [0, 6, -1, "x", "2", None, 1.5, True, 2**40])
async def test_bad_roles_are_refused(
    admin: httpx.AsyncClient, state: AppState, role_id: Any
) -> None:
    project, project_id = await _project(admin)
    username, _ = await _user(state)
    created = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": role_id, "member_user": {"username": username}},
    )
    assert created.status_code == 400, created.text
    assert await _count(state, project_id) == 1
    owner = (await admin.get(f"{API}/projects/{project}/members")).json()[0]
    updated = await admin.put(
        f"{API}/projects/{project}/members/{owner['id']}", json={"role_id": role_id}
    )
    assert updated.status_code == 400
    assert (await admin.get(f"{API}/projects/{project}/members/{owner['id']}")).json()[
        "role_id"
    ] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"role_id": 2},
        {"role_id": 2, "member_user": {}},
        {"role_id": 2, "member_user": {"user_id": 987654321}},
        {"role_id": 2, "member_user": {"username": "nobody-by-this-name"}},
        {"role_id": 2, "member_user": {"user_id": "1"}},
        {"role_id": 2, "member_user": {"user_id": 2**40}},
        {"role_id": 2, "member_user": {"username": "a\x00b"}},
        {"role_id": 2, "member_group": {"id": 987654321}},
        {"role_id": 2, "member_group": {"group_name": "no-such-group"}},
        {"role_id": 2, "member_group": {"ldap_group_dn": "cn=none,dc=example"}},
        {"role_id": 2, "member_user": {"username": "admin"}, "member_group": {"id": 1}},
        {"role_id": 2, "member_user": "admin"},
        [],
    ],
)
async def test_bad_member_requests_add_nothing(
    admin: httpx.AsyncClient, state: AppState, body: Any
) -> None:
    project, project_id = await _project(admin)
    response = await admin.post(f"{API}/projects/{project}/members", json=body)
    assert response.status_code == 400, response.text
    assert await _count(state, project_id) == 1


async def test_duplicate_member_is_a_conflict(admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await _project(admin)
    username, user_id = await _user(state)
    await _add(admin, project, {"role_id": 3, "member_user": {"user_id": user_id}})
    again = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": 1, "member_user": {"username": username}},
    )
    assert again.status_code == 409
    owner = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": 2, "member_user": {"username": "admin"}},
    )
    assert owner.status_code == 409
    assert await _count(state, project_id) == 2


async def test_only_project_admins_manage_members(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await _project(admin)
    developer, developer_id = await _user(state)
    project_admin, project_admin_id = await _user(state)
    newcomer, _ = await _user(state)
    developer_member = await _add(
        admin, project, {"role_id": 2, "member_user": {"user_id": developer_id}}
    )
    await _add(admin, project, {"role_id": 1, "member_user": {"user_id": project_admin_id}})

    async with make_client(app, (developer, PASSWORD)) as client:
        listed = await client.get(f"{API}/projects/{project}/members")
        assert listed.status_code == 200 and listed.headers["x-total-count"] == "3"
        assert (
            await client.get(f"{API}/projects/{project}/members/{developer_member}")
        ).status_code == 200
        refused = await client.post(
            f"{API}/projects/{project}/members",
            json={"role_id": 1, "member_user": {"username": newcomer}},
        )
        assert refused.status_code == 403
        # Even a malformed body is refused for want of permission first.
        assert (
            await client.post(f"{API}/projects/{project}/members", json={"role_id": "x"})
        ).status_code == 403
        promote = await client.put(
            f"{API}/projects/{project}/members/{developer_member}", json={"role_id": 1}
        )
        assert promote.status_code == 403
        remove = await client.delete(f"{API}/projects/{project}/members/{developer_member}")
        assert remove.status_code == 403
    assert await _count(state, project_id) == 3
    assert (await admin.get(f"{API}/projects/{project}/members/{developer_member}")).json()[
        "role_id"
    ] == 2

    # A project admin (not a system admin) manages members, their own role included (as Harbor).
    async with make_client(app, (project_admin, PASSWORD)) as client:
        added = await _add(client, project, {"role_id": 3, "member_user": {"username": newcomer}})
        assert (
            await client.put(f"{API}/projects/{project}/members/{added}", json={"role_id": 4})
        ).status_code == 200
        assert (await client.delete(f"{API}/projects/{project}/members/{added}")).status_code == 200
    assert await _count(state, project_id) == 3


async def test_member_ids_from_another_project_are_not_found(admin: httpx.AsyncClient) -> None:
    first, _ = await _project(admin)
    second, _ = await _project(admin)
    owner_of_first = (await admin.get(f"{API}/projects/{first}/members")).json()[0]["id"]
    for method in ("GET", "DELETE"):
        response = await admin.request(method, f"{API}/projects/{second}/members/{owner_of_first}")
        assert response.status_code == 404
    put = await admin.put(f"{API}/projects/{second}/members/{owner_of_first}", json={"role_id": 3})
    assert put.status_code == 404
    assert (await admin.get(f"{API}/projects/{first}/members/{owner_of_first}")).json()[
        "role_id"
    ] == 1
    assert (await admin.get(f"{API}/projects/{first}/members/abc")).status_code == 400
