"""Harbor's role x resource x action table, cell by cell, through the real flows.

For every project role and every (resource, action) the table mentions, the
expected answer is read from the table (``ROLE_PERMISSIONS``) and checked:

- through ``/users/current/permissions`` (the REST API's view of ``can``), for every cell;
- through the token service plus a real ``/v2/`` request, for repository pull, push
  and delete (the token's access list and the registry's answer both);
- through the REST endpoint itself where Dockyard has it (project, member,
  metadata, robot): allowed means 2xx, denied means exactly 403.

Outsiders, anonymous callers and system administrators get rows of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import push_image

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import ROLE_PERMISSIONS, Action, Resource, Role
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import ProjectMember
from dockyard.projects.service import create_project

PASSWORD = "Matrix-Passw0rd"

# Every (resource, action) any role holds: the table's columns.
CELLS: list[tuple[Resource, Action]] = sorted(
    {
        (resource, action)
        for table in ROLE_PERMISSIONS.values()
        for resource, actions in table.items()
        for action in actions
    }
)
ROLE_CELLS = [(role, resource, action) for role in Role for resource, action in CELLS]


def expected(role: Role, resource: Resource, action: Action) -> bool:
    return action in ROLE_PERMISSIONS[role].get(resource, frozenset())


@dataclass
class Matrix:
    """A private project with one member per role, each with a pushed image of its own."""

    project: str
    project_id: int
    users: dict[Role, str]
    user_ids: dict[Role, int]
    images: dict[Role, str]  # the manifest digest each role's delete probe may remove
    permissions: dict[Role, set[tuple[str, str]]]


async def _new_user(state: AppState, prefix: str) -> tuple[str, int]:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        user = User(username=name, password=hash_password(PASSWORD), email=f"{name}@example.com")
        session.add(user)
        await session.flush()
        return name, user.user_id


async def _add_member(state: AppState, project_id: int, user_id: int, role: Role) -> None:
    async with state.db.write() as session:
        session.add(
            ProjectMember(project_id=project_id, entity_id=user_id, entity_type="u", role=int(role))
        )


@pytest.fixture(scope="module")
async def matrix(app: Starlette, state: AppState) -> Matrix:
    name = f"matrix{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        project = await create_project(session, name, owner_id=1, public=False)
        project_id = project.project_id
    users: dict[Role, str] = {}
    user_ids: dict[Role, int] = {}
    images: dict[Role, str] = {}
    permissions: dict[Role, set[tuple[str, str]]] = {}
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        await push_image(admin, f"{name}/app", "v1", seed=b"shared")
        for role in Role:
            users[role], user_ids[role] = await _new_user(state, f"m{role.value}")
            await _add_member(state, project_id, user_ids[role], role)
            images[role], _ = await push_image(
                admin, f"{name}/app", f"r{role.value}", seed=role.name.encode()
            )
    for role in Role:
        async with make_client(app, (users[role], PASSWORD)) as client:
            response = await client.get(
                "/api/v2.0/users/current/permissions",
                params={"scope": f"/project/{project_id}", "relative": "true"},
            )
            assert response.status_code == 200, response.text
            permissions[role] = {(p["resource"], p["action"]) for p in response.json()}
    return Matrix(name, project_id, users, user_ids, images, permissions)


# --- every cell through the REST API's permission view ---------------------------------


@pytest.mark.parametrize(
    ("role", "resource", "action"),
    ROLE_CELLS,
    ids=[f"{r.name.lower()}-{res}-{a}" for r, res, a in ROLE_CELLS],
)
async def test_permission_view(
    matrix: Matrix, role: Role, resource: Resource, action: Action
) -> None:
    held = (str(resource), str(action)) in matrix.permissions[role]
    assert held == expected(role, resource, action)


async def test_permission_view_lists_nothing_outside_the_table(matrix: Matrix) -> None:
    for role in Role:
        table = {(str(r), str(a)) for r, actions in ROLE_PERMISSIONS[role].items() for a in actions}
        assert matrix.permissions[role] == table


# --- repository pull / push / delete through tokens and /v2/ ----------------------------

REGISTRY_ACTIONS = {"pull": Action.PULL, "push": Action.PUSH, "delete": Action.DELETE}
REGISTRY_CELLS = [(role, docker) for role in Role for docker in REGISTRY_ACTIONS]


async def _token(client: httpx.AsyncClient, scope: str) -> tuple[str, set[str]]:
    response = await client.get("/service/token", params={"service": "dockyard", "scope": scope})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    granted = {a for entry in claims["access"] for a in entry["actions"]}
    return token, granted


async def _registry_probe(
    client: httpx.AsyncClient, matrix: Matrix, role: Role, docker: str, token: str
) -> int:
    repository = f"{matrix.project}/app"
    headers = {"Authorization": f"Bearer {token}"}
    if docker == "pull":
        response = await client.get(
            f"/v2/{repository}/manifests/v1",
            headers={**headers, "Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    elif docker == "push":
        response = await client.post(f"/v2/{repository}/blobs/uploads/", headers=headers)
        if response.status_code == 202:
            await client.delete(response.headers["location"], headers=headers)
    else:
        response = await client.delete(
            f"/v2/{repository}/manifests/{matrix.images[role]}", headers=headers
        )
    return response.status_code


@pytest.mark.parametrize(
    ("role", "docker"), REGISTRY_CELLS, ids=[f"{r.name.lower()}-{d}" for r, d in REGISTRY_CELLS]
)
async def test_registry_through_token(
    app: Starlette, matrix: Matrix, role: Role, docker: str
) -> None:
    allowed = expected(role, Resource.REPOSITORY, REGISTRY_ACTIONS[docker])
    # Clients ask for pull with push: starting an upload needs both.
    wanted = "pull,push" if docker == "push" else docker
    scope = f"repository:{matrix.project}/app:{wanted}"
    async with make_client(app, (matrix.users[role], PASSWORD)) as client:
        token, granted = await _token(client, scope)
    assert (docker in granted) == allowed
    async with make_client(app) as bare:
        status = await _registry_probe(bare, matrix, role, docker, token)
    if allowed:
        assert status in (200, 202), status
    else:
        assert status == 401, status  # the token lacks the scope: insufficient_scope


@pytest.mark.parametrize(("who"), ["outsider", "anonymous"])
async def test_registry_strangers_get_nothing_of_a_private_project(
    app: Starlette, state: AppState, matrix: Matrix, who: str
) -> None:
    auth = None
    if who == "outsider":
        name, _ = await _new_user(state, "out")
        auth = (name, PASSWORD)
    async with make_client(app, auth) as client:
        token, granted = await _token(client, f"repository:{matrix.project}/app:pull,push,delete")
    assert granted == set()
    async with make_client(app) as bare:
        for docker in REGISTRY_ACTIONS:
            assert await _registry_probe(bare, matrix, Role.GUEST, docker, token) == 401


# --- the REST endpoints that exist, cell by cell ---------------------------------------

Probe = Callable[[httpx.AsyncClient, httpx.AsyncClient, Matrix, Role], Awaitable[int]]


async def _throwaway_member(admin: httpx.AsyncClient, state: AppState, matrix: Matrix) -> int:
    _, user_id = await _new_user(state, "tm")
    response = await admin.post(
        f"/api/v2.0/projects/{matrix.project_id}/members",
        json={"role_id": int(Role.GUEST), "member_user": {"user_id": user_id}},
    )
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _throwaway_robot(admin: httpx.AsyncClient, matrix: Matrix) -> int:
    response = await admin.post(
        "/api/v2.0/robots",
        json={
            "name": f"tr{uuid.uuid4().hex[:8]}",
            "level": "project",
            "duration": -1,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": matrix.project,
                    "access": [{"resource": "repository", "action": "pull", "effect": "allow"}],
                }
            ],
        },
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _rest_probes(state: AppState) -> dict[tuple[Resource, Action], Probe]:
    base = "/api/v2.0/projects"

    async def project_read(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        return (await c.get(f"{base}/{m.project_id}")).status_code

    async def project_update(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        body = {"metadata": {"auto_scan": "false"}}
        return (await c.put(f"{base}/{m.project_id}", json=body)).status_code

    async def project_delete(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        name = f"del{uuid.uuid4().hex[:8]}"
        async with state.db.write() as session:
            project_id = (await create_project(session, name, owner_id=1)).project_id
        await _add_member(state, project_id, m.user_ids[r], r)
        status = (await c.delete(f"{base}/{project_id}")).status_code
        async with state.db.read() as session:
            still_there = await projects_repo.find_project_by_name(session, name) is not None
        assert still_there == (status == 403)
        return status

    async def member_list(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        return (await c.get(f"{base}/{m.project_id}/members")).status_code

    async def member_read(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        member_id = await _throwaway_member(a, state, m)
        return (await c.get(f"{base}/{m.project_id}/members/{member_id}")).status_code

    async def member_create(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        _, user_id = await _new_user(state, "nm")
        body = {"role_id": int(Role.GUEST), "member_user": {"user_id": user_id}}
        return (await c.post(f"{base}/{m.project_id}/members", json=body)).status_code

    async def member_update(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        member_id = await _throwaway_member(a, state, m)
        body = {"role_id": int(Role.DEVELOPER)}
        return (await c.put(f"{base}/{m.project_id}/members/{member_id}", json=body)).status_code

    async def member_delete(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        member_id = await _throwaway_member(a, state, m)
        return (await c.delete(f"{base}/{m.project_id}/members/{member_id}")).status_code

    async def metadata_read(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        return (await c.get(f"{base}/{m.project_id}/metadatas/")).status_code

    async def metadata_create(
        c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role
    ) -> int:
        await a.delete(f"{base}/{m.project_id}/metadatas/severity")
        body = {"severity": "low"}
        return (await c.post(f"{base}/{m.project_id}/metadatas/", json=body)).status_code

    async def metadata_update(
        c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role
    ) -> int:
        await a.post(f"{base}/{m.project_id}/metadatas/", json={"prevent_vul": "false"})
        body = {"prevent_vul": "false"}
        url = f"{base}/{m.project_id}/metadatas/prevent_vul"
        return (await c.put(url, json=body)).status_code

    async def metadata_delete(
        c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role
    ) -> int:
        await a.post(f"{base}/{m.project_id}/metadatas/", json={"auto_sbom_generation": "false"})
        url = f"{base}/{m.project_id}/metadatas/auto_sbom_generation"
        return (await c.delete(url)).status_code

    async def robot_list(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        params = {"q": f"Level=project,ProjectID={m.project_id}"}
        return (await c.get("/api/v2.0/robots", params=params)).status_code

    async def robot_read(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        robot_id = await _throwaway_robot(a, m)
        return (await c.get(f"/api/v2.0/robots/{robot_id}")).status_code

    async def robot_create(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        body = {
            "name": f"rc{uuid.uuid4().hex[:8]}",
            "level": "project",
            "duration": -1,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": m.project,
                    "access": [{"resource": "repository", "action": "pull", "effect": "allow"}],
                }
            ],
        }
        return (await c.post("/api/v2.0/robots", json=body)).status_code

    async def robot_update(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        robot_id = await _throwaway_robot(a, m)
        current = (await a.get(f"/api/v2.0/robots/{robot_id}")).json()
        current["description"] = "changed"
        return (await c.put(f"/api/v2.0/robots/{robot_id}", json=current)).status_code

    async def robot_delete(c: httpx.AsyncClient, a: httpx.AsyncClient, m: Matrix, r: Role) -> int:
        robot_id = await _throwaway_robot(a, m)
        return (await c.delete(f"/api/v2.0/robots/{robot_id}")).status_code

    return {
        (Resource.PROJECT, Action.READ): project_read,
        (Resource.PROJECT, Action.UPDATE): project_update,
        (Resource.PROJECT, Action.DELETE): project_delete,
        (Resource.MEMBER, Action.LIST): member_list,
        (Resource.MEMBER, Action.READ): member_read,
        (Resource.MEMBER, Action.CREATE): member_create,
        (Resource.MEMBER, Action.UPDATE): member_update,
        (Resource.MEMBER, Action.DELETE): member_delete,
        (Resource.METADATA, Action.READ): metadata_read,
        (Resource.METADATA, Action.CREATE): metadata_create,
        (Resource.METADATA, Action.UPDATE): metadata_update,
        (Resource.METADATA, Action.DELETE): metadata_delete,
        (Resource.ROBOT, Action.LIST): robot_list,
        (Resource.ROBOT, Action.READ): robot_read,
        (Resource.ROBOT, Action.CREATE): robot_create,
        (Resource.ROBOT, Action.UPDATE): robot_update,
        (Resource.ROBOT, Action.DELETE): robot_delete,
    }


REST_KEYS = [
    (Resource.PROJECT, Action.READ),
    (Resource.PROJECT, Action.UPDATE),
    (Resource.PROJECT, Action.DELETE),
    (Resource.MEMBER, Action.LIST),
    (Resource.MEMBER, Action.READ),
    (Resource.MEMBER, Action.CREATE),
    (Resource.MEMBER, Action.UPDATE),
    (Resource.MEMBER, Action.DELETE),
    (Resource.METADATA, Action.READ),
    (Resource.METADATA, Action.CREATE),
    (Resource.METADATA, Action.UPDATE),
    (Resource.METADATA, Action.DELETE),
    (Resource.ROBOT, Action.LIST),
    (Resource.ROBOT, Action.READ),
    (Resource.ROBOT, Action.CREATE),
    (Resource.ROBOT, Action.UPDATE),
    (Resource.ROBOT, Action.DELETE),
]
REST_CELLS = [(role, resource, action) for role in Role for resource, action in REST_KEYS]


@pytest.mark.parametrize(
    ("role", "resource", "action"),
    REST_CELLS,
    ids=[f"{r.name.lower()}-{res}-{a}" for r, res, a in REST_CELLS],
)
async def test_rest_endpoint(
    app: Starlette,
    state: AppState,
    matrix: Matrix,
    role: Role,
    resource: Resource,
    action: Action,
) -> None:
    probe = _rest_probes(state)[(resource, action)]
    async with (
        make_client(app, (matrix.users[role], PASSWORD)) as client,
        make_client(app, ("admin", ADMIN_PASSWORD)) as admin,
    ):
        status = await probe(client, admin, matrix, role)
    if expected(role, resource, action):
        assert 200 <= status < 300, f"{role.name} {resource}:{action} answered {status}"
    else:
        assert status == 403, f"{role.name} {resource}:{action} answered {status}"


# Robots are addressed by id, not through the project path; deleting is probed on
# throwaway projects the outsider is no member of by construction.
OUTSIDER_KEYS = [
    key
    for key in REST_KEYS
    if key[0] is not Resource.ROBOT and key != (Resource.PROJECT, Action.DELETE)
]


@pytest.mark.parametrize(
    ("resource", "action"), OUTSIDER_KEYS, ids=[f"{r}-{a}" for r, a in OUTSIDER_KEYS]
)
async def test_rest_endpoint_hides_the_project_from_outsiders(
    app: Starlette, state: AppState, matrix: Matrix, resource: Resource, action: Action
) -> None:
    """A signed-in outsider learns nothing (404); an anonymous caller is asked to sign in."""
    probe = _rest_probes(state)[(resource, action)]
    name, _ = await _new_user(state, "ox")
    async with (
        make_client(app, (name, PASSWORD)) as outsider,
        make_client(app) as anonymous,
        make_client(app, ("admin", ADMIN_PASSWORD)) as admin,
    ):
        if (resource, action) == (Resource.MEMBER, Action.CREATE):
            # Harbor answers 404 here too (for a missing project) but its swagger
            # does not declare it for this operation.
            outsider.headers["X-Dockyard-Contract"] = "skip"
            anonymous.headers["X-Dockyard-Contract"] = "skip"
        assert await probe(outsider, admin, matrix, Role.GUEST) == 404
        assert await probe(anonymous, admin, matrix, Role.GUEST) == 401


async def test_sysadmin_passes_every_cell(app: Starlette, matrix: Matrix) -> None:
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
        response = await admin.get(
            "/api/v2.0/users/current/permissions",
            params={"scope": f"/project/{matrix.project_id}", "relative": "true"},
        )
        held = {(p["resource"], p["action"]) for p in response.json()}
        assert {(str(r), str(a)) for r, a in CELLS} <= held
        _, granted = await _token(admin, f"repository:{matrix.project}/app:pull,push,delete")
        assert granted == {"pull", "push", "delete"}
