"""System endpoints: ping, health, system info, statistics, and the OpenAPI document."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from starlette.applications import Starlette
from tests.integration.conftest import BASE_URL, make_client

from dockyard.app import api_operations
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import Action, Principal, Resource, RobotGrant, Role
from dockyard.projects.models import Project, ProjectMember
from dockyard.projects.service import create_project
from dockyard.registry.models import Blob, ProjectBlob, Repository
from dockyard.system import config, service

USER_PASSWORD = "Passw0rdPassw0rd"
ANONYMOUS_INFO = {
    "auth_mode",
    "primary_auth_mode",
    "self_registration",
    "harbor_version",
    "banner_message",
}


async def _user(state: AppState) -> tuple[str, int]:
    username = f"u{uuid.uuid4().hex[:10]}"
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(USER_PASSWORD))
        session.add(user)
        await session.flush()
        return username, user.user_id


async def _private_project(state: AppState, *, member_id: int | None = None) -> int:
    """A private project of admin's with one repository and one 1000-byte blob."""
    name = f"p{uuid.uuid4().hex[:10]}"
    async with state.db.write() as session:
        project = await create_project(session, name, owner_id=1, public=False)
        repository = Repository(name=f"{name}/app", project_id=project.project_id)
        blob = Blob(digest=f"sha256:{uuid.uuid4().hex * 2}", size=1000)
        session.add_all([repository, blob])
        await session.flush()
        session.add(ProjectBlob(project_id=project.project_id, blob_id=blob.id))
        if member_id is not None:
            session.add(
                ProjectMember(
                    project_id=project.project_id,
                    entity_id=member_id,
                    entity_type="u",
                    role=int(Role.GUEST),
                )
            )
        return project.project_id


async def _statistics(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/v2.0/statistics")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- ping and health -------------------------------------------------------------------


async def test_ping_answers_pong(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/v2.0/ping")
    assert response.status_code == 200
    assert response.text == "Pong"


async def test_health_reports_every_component_healthy(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/v2.0/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "components": [
            {"name": "core", "status": "healthy"},
            {"name": "database", "status": "healthy"},
            {"name": "storage", "status": "healthy"},
            {"name": "jobservice", "status": "healthy"},
        ],
    }


# --- system info -----------------------------------------------------------------------


async def test_systeminfo_for_anonymous_is_the_public_subset(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/v2.0/systeminfo")
    assert response.status_code == 200
    info = response.json()
    assert set(info) == ANONYMOUS_INFO
    assert info["auth_mode"] == "db_auth"
    assert info["self_registration"] is False
    assert info["harbor_version"].startswith("v")


async def test_systeminfo_for_a_signed_in_user_adds_the_protected_part(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    response = await admin.get("/api/v2.0/systeminfo")
    assert response.status_code == 200
    info = response.json()
    assert set(info) > ANONYMOUS_INFO
    assert info["external_url"] == BASE_URL
    assert info["registry_url"] == "registry.test"
    assert info["project_creation_restriction"] == "everyone"
    assert info["registry_storage_provider_name"] == state.settings.storage_driver
    assert info["read_only"] is False
    assert info["has_ca_root"] is False
    assert info["current_time"].endswith("Z")
    assert "with_chartmuseum" not in info  # gone from Harbor's GeneralInfo


async def test_systeminfo_with_wrong_credentials_answers_as_to_anonymous(app: Starlette) -> None:
    async with make_client(app, ("admin", "not-the-password")) as client:
        response = await client.get("/api/v2.0/systeminfo")
    assert response.status_code == 200
    assert set(response.json()) == ANONYMOUS_INFO


async def test_systeminfo_shows_self_registration_from_properties(
    anon: httpx.AsyncClient, state: AppState
) -> None:
    async with state.db.write() as session:
        await config.set_property(session, config.SELF_REGISTRATION, "true")
    try:
        response = await anon.get("/api/v2.0/systeminfo")
        assert response.json()["self_registration"] is True
    finally:
        async with state.db.write() as session:
            await config.set_property(session, config.SELF_REGISTRATION, "false")
    response = await anon.get("/api/v2.0/systeminfo")
    assert response.json()["self_registration"] is False


# --- statistics ------------------------------------------------------------------------


async def test_statistics_need_a_signed_in_caller(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/v2.0/statistics")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


async def test_statistics_count_a_private_project_for_admin_and_members_only(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    username, user_id = await _user(state)
    async with make_client(app, (username, USER_PASSWORD)) as user:
        admin_before = await _statistics(admin)
        user_before = await _statistics(user)

        await _private_project(state)

        admin_after = await _statistics(admin)
        assert admin_after["private_project_count"] == admin_before["private_project_count"] + 1
        assert admin_after["total_project_count"] == admin_before["total_project_count"] + 1
        assert admin_after["private_repo_count"] == admin_before["private_repo_count"] + 1
        assert admin_after["public_project_count"] == admin_before["public_project_count"]
        assert (
            admin_after["total_storage_consumption"]
            == admin_before["total_storage_consumption"] + 1000
        )
        assert await _statistics(user) == user_before  # not a member: nothing changes

        await _private_project(state, member_id=user_id)
        user_after = await _statistics(user)

    assert user_after["private_project_count"] == user_before["private_project_count"] + 1
    assert user_after["private_repo_count"] == user_before["private_repo_count"] + 1
    assert user_after["total_project_count"] == user_before["total_project_count"] + 1
    assert user_after["public_project_count"] == admin_after["public_project_count"]
    assert user_after["total_storage_consumption"] == 0  # shown to admins only


async def test_statistics_count_public_projects_for_everyone(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    username, _ = await _user(state)
    async with make_client(app, (username, USER_PASSWORD)) as user:
        before = await _statistics(user)
        async with state.db.write() as session:
            await create_project(session, f"p{uuid.uuid4().hex[:10]}", owner_id=1, public=True)
        after = await _statistics(user)
    assert after["public_project_count"] == before["public_project_count"] + 1
    assert after["total_project_count"] == before["total_project_count"] + 1
    assert after["private_project_count"] == before["private_project_count"]


async def test_statistics_leave_out_deleted_projects(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project_id = await _private_project(state)
    before = await _statistics(admin)
    async with state.db.write() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        project.deleted = True
    after = await _statistics(admin)
    assert after["private_project_count"] == before["private_project_count"] - 1
    assert after["private_repo_count"] == before["private_repo_count"] - 1
    assert after["total_storage_consumption"] == before["total_storage_consumption"] - 1000


async def test_statistics_of_a_robot_count_the_projects_it_is_granted(state: AppState) -> None:
    project_id = await _private_project(state)

    def robot(scope: str) -> Principal:
        grant = RobotGrant(scope, Resource.REPOSITORY, Action.PULL)
        return Principal(kind="robot", name="robot$t", robot_id=1, grants=frozenset({grant}))

    admin = Principal(kind="user", name="admin", user_id=1, sysadmin=True)
    async with state.db.read() as session:
        everything = await service.statistics(session, admin)
        one = await service.statistics(session, robot(f"/project/{project_id}"))
        every = await service.statistics(session, robot("/project/*"))
        system = await service.statistics(session, robot("/system"))
    assert system.private_project_count == 0
    assert one.private_project_count == 1
    assert one.private_repo_count == 1
    assert every.private_project_count == everything.private_project_count
    assert every.total_storage_consumption == 0


# --- the OpenAPI document --------------------------------------------------------------


async def test_openapi_document_lists_every_implemented_operation(
    anon: httpx.AsyncClient,
) -> None:
    response = await anon.get("/api/v2.0/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api/v2.0"}]
    listed = {
        (method.upper(), path, entry["operationId"])
        for path, item in document["paths"].items()
        for method, entry in item.items()
    }
    for op in api_operations():
        assert any(m == op.method and p == op.path for m, p, _ in listed), op
        if op.operation_id is not None:
            assert (op.method, op.path, op.operation_id) in listed
    statistic = document["paths"]["/statistics"]["get"]
    assert statistic["summary"].startswith("Project and repository counts")
    schema = statistic["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Statistic"}
    assert "total_repo_count" in document["components"]["schemas"]["Statistic"]["properties"]
