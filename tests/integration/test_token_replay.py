"""A registry token must not outlive a delete-and-recreate of its project (Harbor's rule)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import update
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import push_blob

from dockyard.http.state import AppState
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import Project
from dockyard.projects.service import create_project


async def _token(admin: httpx.AsyncClient, repository: str) -> str:
    response = await admin.get(
        "/service/token",
        params={"service": "dockyard", "scope": f"repository:{repository}:pull,push"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def _delete_project(state: AppState, name: str) -> None:
    """Soft-delete as the projects API does: mark deleted and free the name."""
    async with state.db.write() as session:
        project = await projects_repo.find_project_by_name(session, name)
        assert project is not None
        await session.execute(
            update(Project)
            .where(Project.project_id == project.project_id)
            .values(deleted=True, name=f"{name}#{project.project_id}")
        )


async def test_token_from_before_a_recreate_is_refused(
    state: AppState, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    project = f"replay{uuid.uuid4().hex[:8]}"
    repository = f"{project}/app"
    async with state.db.write() as session:
        await create_project(session, project, owner_id=1)
    old_token = await _token(admin, repository)
    bearer = {"Authorization": f"Bearer {old_token}"}
    probe = await anon.get(f"/v2/{repository}/tags/list", headers=bearer)
    assert probe.status_code == 404, probe.text  # accepted: the repository is just empty

    await _delete_project(state, project)
    await asyncio.sleep(1.1)  # token times have one-second resolution
    async with state.db.write() as session:
        await create_project(session, project, owner_id=1)

    replay = await anon.get(f"/v2/{repository}/tags/list", headers=bearer)
    assert replay.status_code == 401, replay.text
    assert replay.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert 'error="invalid_token"' in replay.headers["www-authenticate"]
    upload = await anon.post(f"/v2/{repository}/blobs/uploads/", headers=bearer)
    assert upload.status_code == 401

    fresh = {"Authorization": f"Bearer {await _token(admin, repository)}"}
    ok = await anon.get(f"/v2/{repository}/tags/list", headers=fresh)
    assert ok.status_code == 404, ok.text


async def test_token_issued_right_after_creation_is_accepted(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    """The same second as the project's creation is not "before" it."""
    project = f"fresh{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        await create_project(session, project, owner_id=1)
    token = await _token(admin, f"{project}/app")
    async with make_client(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        digest = await push_blob(client, f"{project}/app", b"fresh-bytes")
    assert digest.startswith("sha256:")
