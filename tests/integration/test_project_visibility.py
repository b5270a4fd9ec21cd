"""Who may learn that a project exists, and who may act in it.

Anonymous callers are asked to sign in (401) for a private or missing project;
signed-in outsiders get the same 404 as for a missing project; members lacking
a permission get 403; public projects are readable by everyone.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.db.listing import PageRequest
from dockyard.errors import DeniedError, ProjectNotFoundError, UnauthorizedError
from dockyard.http.state import AppState
from dockyard.iam.models import User, UserGroup, UserGroupMembership
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import (
    ALL_PROJECTS_SCOPE,
    ANONYMOUS,
    SYSTEM_SCOPE,
    Action,
    Principal,
    Resource,
    RobotGrant,
    Role,
    project_scope,
)
from dockyard.projects import service
from dockyard.projects.models import ProjectMember
from dockyard.projects.schemas import ProjectReq

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"


def _name(prefix: str = "v") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def _user(state: AppState) -> tuple[str, int]:
    username = _name("u")
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(PASSWORD))
        session.add(user)
        await session.flush()
        return username, user.user_id


async def _project(admin: httpx.AsyncClient, public: bool = False) -> tuple[str, int]:
    name = _name()
    response = await admin.post(
        f"{API}/projects",
        json={"project_name": name, "metadata": {"public": str(public).lower()}},
    )
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


async def _member(state: AppState, project_id: int, entity: tuple[str, int], role: Role) -> None:
    async with state.db.write() as session:
        session.add(
            ProjectMember(
                project_id=project_id, entity_type=entity[0], entity_id=entity[1], role=int(role)
            )
        )


async def _member_count(state: AppState, project_id: int) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ProjectMember)
            .where(ProjectMember.project_id == project_id)
        )
    return int(count or 0)


def _not_found(segment: str) -> dict[str, object]:
    return {"errors": [{"code": "NOT_FOUND", "message": f"project {segment} not found"}]}


# Reads every visible project answers for a reader; the outsider must get 404 on each.
READS = ("", "/summary", "/members", "/_deletable", "/metadatas/")


async def test_anonymous_is_asked_to_sign_in_for_private_and_missing_projects(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    name, project_id = await _project(admin)
    missing = _name()
    for segment in (name, str(project_id), missing):
        for suffix in READS:
            response = await anon.get(f"{API}/projects/{segment}{suffix}")
            assert response.status_code == 401, (segment, suffix)
            assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
        update = await anon.put(f"{API}/projects/{segment}", json={"metadata": {}})
        assert update.status_code == 401
    # HEAD has no 401: both are simply not found.
    for segment in (name, missing):
        head = await anon.head(f"{API}/projects", params={"project_name": segment})
        assert head.status_code == 404


async def test_signed_in_outsider_sees_private_project_as_missing(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    name, project_id = await _project(admin)
    username, _ = await _user(state)
    missing = _name()
    async with make_client(app, (username, PASSWORD)) as outsider:
        for segment in (name, str(project_id), missing, "987654321"):
            for suffix in READS:
                response = await outsider.get(f"{API}/projects/{segment}{suffix}")
                assert response.status_code == 404, (segment, suffix)
                assert response.json() == _not_found(segment)
            update = await outsider.put(
                f"{API}/projects/{segment}", json={"metadata": {"public": "true"}}
            )
            assert update.json() == _not_found(segment)
            deleted = await outsider.delete(f"{API}/projects/{segment}")
            assert deleted.json() == _not_found(segment)
            member = await outsider.get(f"{API}/projects/{segment}/members/1")
            assert member.json() == _not_found(segment)
        for segment in (name, missing):
            head = await outsider.head(f"{API}/projects", params={"project_name": segment})
            assert head.status_code == 404
        listed = await outsider.get(f"{API}/projects", params={"name": name})
        assert listed.json() == []
        assert listed.headers["x-total-count"] == "0"
    # Nothing changed.
    body = (await admin.get(f"{API}/projects/{project_id}")).json()
    assert body["metadata"]["public"] == "false"


async def test_guest_reads_but_cannot_change(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    name, project_id = await _project(admin)
    username, user_id = await _user(state)
    other, other_id = await _user(state)
    await _member(state, project_id, ("u", user_id), Role.GUEST)
    async with make_client(app, (username, PASSWORD)) as guest:
        got = await guest.get(f"{API}/projects/{name}")
        assert got.status_code == 200
        assert got.json()["current_user_role_id"] == 3
        assert got.json()["current_user_role_ids"] == [3]
        assert got.json()["togglable"] is False
        assert (
            await guest.head(f"{API}/projects", params={"project_name": name})
        ).status_code == 200
        summary = (await guest.get(f"{API}/projects/{name}/summary")).json()
        assert summary["guest_count"] == 1 and summary["project_admin_count"] == 1
        assert (await guest.get(f"{API}/projects/{name}/members")).status_code == 200
        listed = await guest.get(f"{API}/projects", params={"name": name})
        assert [p["name"] for p in listed.json()] == [name]

        denied = [
            await guest.put(f"{API}/projects/{name}", json={"metadata": {"public": "true"}}),
            await guest.delete(f"{API}/projects/{name}"),
            await guest.get(f"{API}/projects/{name}/_deletable"),
            await guest.post(
                f"{API}/projects/{name}/members",
                json={"role_id": 1, "member_user": {"username": other}},
            ),
            await guest.get(f"{API}/projects/{name}/metadatas/"),
            await guest.post(f"{API}/projects/{name}/metadatas/", json={"auto_scan": "true"}),
            await guest.delete(f"{API}/projects/{name}/metadatas/public"),
        ]
        for response in denied:
            assert response.status_code == 403, (response.request.url, response.text)
            assert response.json()["errors"][0]["code"] == "FORBIDDEN"
    body = (await admin.get(f"{API}/projects/{project_id}")).json()
    assert body["metadata"] == {"public": "false"}
    assert await _member_count(state, project_id) == 2
    assert other_id  # never added


async def test_limited_guest_summary_has_no_member_counts(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    name, project_id = await _project(admin)
    username, user_id = await _user(state)
    await _member(state, project_id, ("u", user_id), Role.LIMITED_GUEST)
    async with make_client(app, (username, PASSWORD)) as limited:
        summary = await limited.get(f"{API}/projects/{name}/summary")
        # Limited guests read the quota (quota:read) but not the members.
        assert summary.json() == {
            "repo_count": 0,
            "quota": {"hard": {"storage": -1}, "used": {"storage": 0}},
        }
        assert (await limited.get(f"{API}/projects/{name}/members")).status_code == 403


async def test_public_project_is_readable_by_everyone(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    public, public_id = await _project(admin, public=True)
    private, _ = await _project(admin)
    got = await anon.get(f"{API}/projects/{public_id}")
    assert got.status_code == 200
    assert got.json()["name"] == public
    assert got.json()["current_user_role_ids"] == []
    assert got.json()["current_user_role_id"] == 0
    assert (await anon.head(f"{API}/projects", params={"project_name": public})).status_code == 200
    listed = await anon.get(f"{API}/projects", params={"q": f"name={{{public} {private}}}"})
    assert [p["name"] for p in listed.json()] == [public]
    nothing = await anon.get(f"{API}/projects", params={"name": public, "public": "false"})
    assert nothing.json() == []
    # Reading is not changing.
    assert (
        await anon.put(f"{API}/projects/{public}", json={"metadata": {"public": "false"}})
    ).status_code == 401
    assert (await anon.get(f"{API}/projects/{public}/members")).status_code == 401
    username, _ = await _user(state)
    async with make_client(app, (username, PASSWORD)) as outsider:
        assert (await outsider.get(f"{API}/projects/{public}")).status_code == 200
        assert (await outsider.get(f"{API}/projects/{public}/members")).status_code == 403
        assert (
            await outsider.put(f"{API}/projects/{public}", json={"metadata": {}})
        ).status_code == 403
        seen = await outsider.get(f"{API}/projects", params={"q": f"name={{{public} {private}}}"})
        assert [p["name"] for p in seen.json()] == [public]
    assert (await admin.get(f"{API}/projects/{public}")).json()["metadata"]["public"] == "true"


async def test_group_membership_gives_the_groups_users_its_role(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    name, project_id = await _project(admin)
    member, member_id = await _user(state)
    outsider, _ = await _user(state)
    async with state.db.write() as session:
        group = UserGroup(group_name=_name("g"), group_type=2)
        session.add(group)
        await session.flush()
        session.add(UserGroupMembership(user_id=member_id, group_id=group.id))
        group_id = group.id
    added = await admin.post(
        f"{API}/projects/{project_id}/members",
        json={"role_id": 2, "member_group": {"id": group_id}},
    )
    assert added.status_code == 201, added.text

    async with make_client(app, (member, PASSWORD)) as client:
        got = await client.get(f"{API}/projects/{name}")
        assert got.status_code == 200
        assert got.json()["current_user_role_ids"] == [2]
        listed = await client.get(f"{API}/projects", params={"name": name})
        assert [p["name"] for p in listed.json()] == [name]
        assert listed.json()[0]["current_user_role_id"] == 2
        # A developer may not manage members.
        refused = await client.post(
            f"{API}/projects/{name}/members",
            json={"role_id": 1, "member_user": {"username": outsider}},
        )
        assert refused.status_code == 403
    async with make_client(app, (outsider, PASSWORD)) as client:
        assert (await client.get(f"{API}/projects/{name}")).status_code == 404


# --- the service helpers other domains call (robots have no HTTP path of their own here) ---


def _robot(*grants: RobotGrant) -> Principal:
    return Principal(kind="robot", name="robot$test", robot_id=1, grants=frozenset(grants))


async def test_resolve_project_for_robots_and_anonymous(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    name, project_id = await _project(admin)
    public, _ = await _project(admin, public=True)
    granted = _robot(RobotGrant(project_scope(project_id), Resource.REPOSITORY, Action.PULL))
    everywhere = _robot(RobotGrant(ALL_PROJECTS_SCOPE, Resource.REPOSITORY, Action.PULL))
    elsewhere = _robot(
        RobotGrant(project_scope(project_id + 100000), Resource.REPOSITORY, Action.ANY)
    )
    async with state.db.read() as session:
        for robot in (granted, everywhere):
            project, context = await service.resolve_project(session, robot, str(project_id))
            assert project.name == name and context.roles == frozenset()
            service.require(robot, Action.PULL, Resource.REPOSITORY, context)
            with pytest.raises(DeniedError):
                service.require(robot, Action.DELETE, Resource.PROJECT, context)
        with pytest.raises(ProjectNotFoundError):
            await service.resolve_project(session, elsewhere, name, by_name=True)
        # A robot that may list every project learns it exists, but may not read it.
        lister = _robot(RobotGrant(SYSTEM_SCOPE, Resource.PROJECT, Action.LIST))
        _, context = await service.resolve_project(session, lister, name, by_name=True)
        with pytest.raises(DeniedError):
            service.require(lister, Action.READ, Resource.PROJECT, context)
        with pytest.raises(UnauthorizedError):
            await service.resolve_project(session, ANONYMOUS, name, by_name=True)
        _, context = await service.resolve_project(session, ANONYMOUS, public, by_name=True)
        with pytest.raises(UnauthorizedError):
            service.require(ANONYMOUS, Action.UPDATE, Resource.PROJECT, context)

        page = PageRequest(1, 100)
        query = service.ProjectQuery(q=f"name={{{name} {public}}}")
        seen, _ = await service.list_projects(session, granted, query, page)
        assert sorted(p.name for p in seen) == sorted([name, public])
        seen, _ = await service.list_projects(session, elsewhere, query, page)
        assert [p.name for p in seen] == [public]


async def test_robot_needs_the_system_grant_to_create_projects(state: AppState) -> None:
    plain = _robot(RobotGrant(ALL_PROJECTS_SCOPE, Resource.REPOSITORY, Action.PULL))
    creator = _robot(RobotGrant(SYSTEM_SCOPE, Resource.PROJECT, Action.CREATE))
    name = _name()
    async with state.db.write() as session:
        with pytest.raises(DeniedError):
            await service.create_project_for(session, plain, ProjectReq(project_name=name))
        with pytest.raises(UnauthorizedError):
            await service.create_project_for(session, ANONYMOUS, ProjectReq(project_name=name))
        project = await service.create_project_for(session, creator, ProjectReq(project_name=name))
        owner = await session.get(User, project.owner_id)
        assert owner is not None and owner.sysadmin_flag
