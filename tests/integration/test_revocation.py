"""Revoked accounts and rights lose ``/v2/`` at once, even with a bearer token in hand.

A token is only as good as the account and the rights it was issued from: a robot
disabled, deleted or given a new secret, a user deleted or given a new password, a
member removed, a project made private or deleted — each takes the token's access away on
the next request (this process), or within ``auth_recheck_seconds`` (other nodes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.test_api_robots import (
    USER_PASSWORD,
    _create,
    _creds,
    _member,
    _project,
    _project_robot,
    _user,
)

from dockyard.app import create_app
from dockyard.http.state import AppState
from dockyard.iam import repository as users
from dockyard.iam.policy import Role
from dockyard.settings import Settings

API = "/api/v2.0"
RECHECK = 0.05


@pytest.fixture(scope="module")
async def other_node(settings: Settings, app: Starlette) -> AsyncIterator[Starlette]:
    """Another process on the same database, with its own caches."""
    node = create_app(settings.model_copy(update={"auth_recheck_seconds": RECHECK}))
    async with node.router.lifespan_context(node):
        yield node


async def _token(app: Starlette, auth: tuple[str, str] | None, repository: str) -> str:
    async with make_client(app, auth) as client:
        response = await client.get(
            "/service/token",
            params={"service": "dockyard", "scope": f"repository:{repository}:pull"},
        )
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert isinstance(token, str)
    return token


async def _pull_status(app: Starlette, token: str, repository: str) -> int:
    """404 (no such repository yet) once the token is accepted; 401 when it is refused."""
    async with make_client(app) as client:
        response = await client.get(
            f"/v2/{repository}/tags/list", headers={"Authorization": f"Bearer {token}"}
        )
    if response.status_code == 401:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    return response.status_code


async def _user_id(state: AppState, name: str) -> int:
    async with state.db.read() as session:
        user = await users.find_user_by_name(session, name)
    assert user is not None
    return user.user_id


async def _robot(state: AppState, admin: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    project, _ = await _project(state)
    created = await _create(admin, _project_robot(project, "repository:pull"))
    return created, f"{project}/app"


ROBOT_REVOCATIONS = {
    "disabled": ("put", {"disable": True}),
    "secret refreshed": ("patch", {}),
    "deleted": ("delete", None),
}


@pytest.mark.parametrize("how", list(ROBOT_REVOCATIONS))
async def test_revoked_robot_token_stops_at_once(
    app: Starlette, state: AppState, admin: httpx.AsyncClient, how: str
) -> None:
    robot, repository = await _robot(state, admin)
    token = await _token(app, _creds(robot), repository)
    admin_token = await _token(app, ("admin", "Harbor12345"), repository)
    assert await _pull_status(app, token, repository) == 404

    verb, body = ROBOT_REVOCATIONS[how]
    url = f"{API}/robots/{robot['id']}"
    changed = await (admin.delete(url) if body is None else getattr(admin, verb)(url, json=body))
    assert changed.status_code == 200, changed.text

    assert await _pull_status(app, token, repository) == 401
    async with make_client(app) as client:
        version = await client.get("/v2/", headers={"Authorization": f"Bearer {token}"})
    assert version.status_code == 401
    # others' tokens are untouched
    assert await _pull_status(app, admin_token, repository) == 404


async def _private_member(state: AppState, role: Role = Role.DEVELOPER) -> tuple[str, str, str]:
    project, _ = await _project(state)
    name = await _user(state)
    await _member(state, project, name, role)
    return name, project, f"{project}/app"


async def test_user_with_a_new_password_or_deleted_loses_tokens(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    name, _, repository = await _private_member(state)
    token = await _token(app, (name, USER_PASSWORD), repository)
    assert await _pull_status(app, token, repository) == 404
    user_id = await _user_id(state, name)

    changed = await admin.put(
        f"{API}/users/{user_id}/password", json={"new_password": "An0ther-Passw0rd"}
    )
    assert changed.status_code == 200, changed.text
    assert await _pull_status(app, token, repository) == 401

    fresh = await _token(app, (name, "An0ther-Passw0rd"), repository)
    assert await _pull_status(app, fresh, repository) == 404
    assert (await admin.delete(f"{API}/users/{user_id}")).status_code == 200
    assert await _pull_status(app, fresh, repository) == 401


async def test_member_removed_or_project_made_private_loses_the_project(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    name, project, repository = await _private_member(state)
    token = await _token(app, (name, USER_PASSWORD), repository)
    assert await _pull_status(app, token, repository) == 404
    members = await admin.get(f"{API}/projects/{project}/members", params={"entityname": name})
    member_id = members.json()[0]["id"]

    removed = await admin.delete(f"{API}/projects/{project}/members/{member_id}")
    assert removed.status_code == 200
    assert await _pull_status(app, token, repository) == 401

    public, _ = await _project(state, public=True)
    anonymous = await _token(app, None, f"{public}/app")
    assert await _pull_status(app, anonymous, f"{public}/app") == 404
    private = await admin.put(f"{API}/projects/{public}", json={"metadata": {"public": "false"}})
    assert private.status_code == 200, private.text
    assert await _pull_status(app, anonymous, f"{public}/app") == 401


async def test_deleted_project_takes_its_members_tokens_with_it(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    name, project, repository = await _private_member(state)
    token = await _token(app, (name, USER_PASSWORD), repository)
    assert await _pull_status(app, token, repository) == 404  # the decision is now cached

    deleted = await admin.delete(f"{API}/projects/{project}")
    assert deleted.status_code == 200, deleted.text
    assert await _pull_status(app, token, repository) == 401
    # the name is free again; the old member's token does not reach the new project
    recreated = await admin.post(
        f"{API}/projects", json={"project_name": project, "metadata": {"public": "false"}}
    )
    assert recreated.status_code == 201, recreated.text
    assert await _pull_status(app, token, repository) == 401


async def test_member_added_back_is_not_held_to_the_old_refusal(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    name, project, repository = await _private_member(state)
    token = await _token(app, (name, USER_PASSWORD), repository)
    members = await admin.get(f"{API}/projects/{project}/members", params={"entityname": name})
    removed = await admin.delete(f"{API}/projects/{project}/members/{members.json()[0]['id']}")
    assert removed.status_code == 200
    assert await _pull_status(app, token, repository) == 401  # a refusal this node decided

    await _member(state, project, name, Role.DEVELOPER)  # granting access moves no counter
    fresh = await _token(app, (name, USER_PASSWORD), repository)
    assert await _pull_status(app, fresh, repository) == 404


async def test_other_nodes_follow_within_the_recheck_interval(
    app: Starlette, other_node: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    robot, repository = await _robot(state, admin)
    token = await _token(app, _creds(robot), repository)
    assert await _pull_status(other_node, token, repository) == 404  # now in its cache

    disabled = await admin.put(f"{API}/robots/{robot['id']}", json={"disable": True})
    assert disabled.status_code == 200

    for _ in range(100):  # bounded: 100 x 20 ms, against a 50 ms interval
        if await _pull_status(other_node, token, repository) == 401:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the other node still accepts the disabled robot's token")


async def test_demoted_administrator_loses_the_catalog(
    app: Starlette, state: AppState, admin: httpx.AsyncClient
) -> None:
    name = await _user(state)
    user_id = await _user_id(state, name)
    promoted = await admin.put(f"{API}/users/{user_id}/sysadmin", json={"sysadmin_flag": True})
    assert promoted.status_code == 200
    async with make_client(app, (name, USER_PASSWORD)) as client:
        response = await client.get(
            "/service/token", params={"service": "dockyard", "scope": "registry:catalog:*"}
        )
    token = response.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    async with make_client(app) as client:
        assert (await client.get("/v2/_catalog", headers=bearer)).status_code == 200
        demoted = await admin.put(f"{API}/users/{user_id}/sysadmin", json={"sysadmin_flag": False})
        assert demoted.status_code == 200
        assert (await client.get("/v2/_catalog", headers=bearer)).status_code == 401
