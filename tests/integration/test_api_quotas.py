"""``/api/v2.0/quotas`` and the quota in ``getProjectSummary``: shapes, permissions,
validation, the audit event, and a lowered limit refusing further pushes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import digest_of, error_code, push_blob

from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.iam.policy import Role
from dockyard.projects.models import ProjectMember
from dockyard.projects.service import create_project
from dockyard.quota import repository as quota_repo

API = "/api/v2.0"
PASSWORD = "Quota-Passw0rd"
SKIP_CONTRACT = {"X-Dockyard-Contract": "skip"}


async def new_project(state: AppState, storage_limit: int | None = None) -> tuple[int, str, int]:
    """(project id, name, quota id)."""
    name = f"qa{uuid.uuid4().hex[:12]}"
    async with state.db.write() as session:
        project = await create_project(session, name, owner_id=1, storage_limit=storage_limit)
        quota = await quota_repo.find_quota(session, project.project_id)
        assert quota is not None
        return project.project_id, name, quota.id


@pytest.fixture
async def member(app: Starlette, state: AppState) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """A developer of a fresh project (not an administrator), and that project's id."""
    username = f"qu{uuid.uuid4().hex[:10]}"
    project_id, _, _ = await new_project(state, storage_limit=5000)
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(PASSWORD))
        session.add(user)
        await session.flush()
        session.add(
            ProjectMember(
                project_id=project_id,
                entity_id=user.user_id,
                entity_type="u",
                role=int(Role.DEVELOPER),
            )
        )
    async with make_client(app, (username, PASSWORD)) as client:
        yield client, project_id


async def hard_of(state: AppState, project_id: int) -> int:
    async with state.db.read() as session:
        quota = await quota_repo.find_quota(session, project_id)
        assert quota is not None
        return quota.hard_storage


async def test_get_quota_shape(admin: httpx.AsyncClient, state: AppState) -> None:
    project_id, name, quota_id = await new_project(state, storage_limit=1024)
    await push_blob(admin, f"{name}/app", b"x" * 100)
    response = await admin.get(f"{API}/quotas/{quota_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == quota_id
    assert body["ref"] == {"id": project_id, "name": name, "owner_name": "admin"}
    assert body["hard"] == {"storage": 1024}
    assert body["used"] == {"storage": 100}
    assert body["creation_time"] and body["update_time"]


async def test_list_quotas_filters_sorts_and_pages(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    made = [await new_project(state, storage_limit=limit) for limit in (3000, 1000, 2000)]
    by_ref = await admin.get(
        f"{API}/quotas", params={"reference": "project", "reference_id": str(made[1][0])}
    )
    assert by_ref.status_code == 200
    assert by_ref.headers["X-Total-Count"] == "1"
    assert [q["id"] for q in by_ref.json()] == [made[1][2]]
    assert by_ref.json()[0]["ref"]["name"] == made[1][1]
    # Other references than projects hold nothing.
    other = await admin.get(f"{API}/quotas", params={"reference": "registry"})
    assert other.json() == [] and other.headers["X-Total-Count"] == "0"

    for made_id, made_name, quota_id in made:
        response = await admin.get(f"{API}/quotas", params={"reference_id": str(made_id)})
        assert [(q["id"], q["ref"]["name"]) for q in response.json()] == [(quota_id, made_name)]
    for sort in ("hard.storage", "-hard.storage", "used.storage", "-used.storage"):
        response = await admin.get(f"{API}/quotas", params={"sort": sort, "page_size": 100})
        assert response.status_code == 200
        numbers = [q[sort.lstrip("-").split(".")[0]]["storage"] for q in response.json()]
        assert numbers == sorted(numbers, reverse=sort.startswith("-"))
    newest = await admin.get(f"{API}/quotas", params={"sort": "-creation_time", "page_size": 3})
    assert {q["id"] for q in newest.json()} == {quota_id for _, _, quota_id in made}
    paged = await admin.get(f"{API}/quotas", params={"page": 1, "page_size": 1})
    assert len(paged.json()) == 1
    assert "next" in paged.headers["Link"]


@pytest.mark.parametrize(
    "params",
    [{"sort": "name"}, {"sort": "hard.count"}, {"page_size": "0"}, {"reference_id": "a\x00b"}],
)
async def test_bad_listing_parameters(admin: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await admin.get(f"{API}/quotas", params=params, headers=SKIP_CONTRACT)
    assert response.status_code == 400, response.text


async def test_update_quota(admin: httpx.AsyncClient, state: AppState) -> None:
    project_id, name, quota_id = await new_project(state, storage_limit=1000)
    response = await admin.put(f"{API}/quotas/{quota_id}", json={"hard": {"storage": 2048}})
    assert response.status_code == 200, response.text
    assert await hard_of(state, project_id) == 2048
    assert (await admin.get(f"{API}/quotas/{quota_id}")).json()["hard"] == {"storage": 2048}
    assert (
        await admin.put(f"{API}/quotas/{quota_id}", json={"hard": {"storage": -1}})
    ).status_code == 200
    assert await hard_of(state, project_id) == -1
    async with state.db.read() as session:
        events = (
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.resource_type == "quota", AuditLog.resource == name)
                .order_by(AuditLog.id)
            )
        ).all()
    assert [(e.operation, e.username, e.project_id) for e in events] == [
        ("update", "admin", project_id),
        ("update", "admin", project_id),
    ]
    assert events[0].operation_description.endswith("1000 B -> 2.0 KiB")
    assert events[1].operation_description.endswith("2.0 KiB -> unlimited")


async def test_limit_below_usage_is_accepted_and_refuses_further_pushes(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    _, name, quota_id = await new_project(state)
    await push_blob(admin, f"{name}/app", b"y" * 500)
    response = await admin.put(f"{API}/quotas/{quota_id}", json={"hard": {"storage": 100}})
    assert response.status_code == 200
    summary = (await admin.get(f"{API}/projects/{name}/summary")).json()
    assert summary["quota"] == {"hard": {"storage": 100}, "used": {"storage": 500}}
    blob = b"z" * 10
    refused = await admin.post(
        f"/v2/{name}/app/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
    )
    assert refused.status_code == 403
    assert error_code(refused) == "DENIED"
    assert (
        "uses 500 B of its 100 B storage limit; this request needs 10 B more"
        in (refused.json()["errors"][0]["message"])
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"hard": {}}',
        b'{"hard": null}',
        b'{"hard": {"storage": -2}}',
        b'{"hard": {"storage": "100"}}',
        b'{"hard": {"storage": 1.5}}',
        b'{"hard": {"storage": true}}',
        b'{"hard": {"storage": 9223372036854775808}}',
        b'{"hard": {"storage": 100, "count": 1}}',
        b'{"hard": {"count": 1}}',
        b'{"hard": [100]}',
        b'{"hard": {"storage": null}}',
    ],
)
async def test_bad_update_bodies_are_refused(
    admin: httpx.AsyncClient, state: AppState, body: bytes
) -> None:
    project_id, _, quota_id = await new_project(state, storage_limit=777)
    response = await admin.put(
        f"{API}/quotas/{quota_id}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert await hard_of(state, project_id) == 777


async def test_unknown_quotas(admin: httpx.AsyncClient) -> None:
    for quota_id in ("999999999999", "abc", "0", "-1", "1e3"):
        assert (await admin.get(f"{API}/quotas/{quota_id}")).status_code == 404
        response = await admin.put(f"{API}/quotas/{quota_id}", json={"hard": {"storage": 1}})
        assert response.status_code == 404


async def test_only_administrators_see_and_change_quotas(
    anon: httpx.AsyncClient, member: tuple[httpx.AsyncClient, int], state: AppState
) -> None:
    client, project_id = member
    async with state.db.read() as session:
        quota = await quota_repo.find_quota(session, project_id)
        assert quota is not None
    for who, expected in ((client, 403), (anon, 401)):
        assert (await who.get(f"{API}/quotas")).status_code == expected
        assert (await who.get(f"{API}/quotas/{quota.id}")).status_code == expected
        response = await who.put(f"{API}/quotas/{quota.id}", json={"hard": {"storage": -1}})
        assert response.status_code == expected
        # A malformed body from someone who may not update is refused for who they are.
        response = await who.put(
            f"{API}/quotas/{quota.id}",
            content=b"nonsense",
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == expected
    assert await hard_of(state, project_id) == 5000


async def test_members_read_their_quota_in_the_summary(
    member: tuple[httpx.AsyncClient, int],
) -> None:
    client, project_id = member
    response = await client.get(f"{API}/projects/{project_id}/summary")
    assert response.status_code == 200
    assert response.json()["quota"] == {"hard": {"storage": 5000}, "used": {"storage": 0}}


async def test_default_limit_comes_from_the_configuration(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    set_default = await admin.put(f"{API}/configurations", json={"storage_per_project": 4096})
    assert set_default.status_code == 200
    try:
        configured = (await admin.get(f"{API}/configurations")).json()
        assert configured["storage_per_project"] == {"value": 4096, "editable": True}
        default_name, given_name, zero_name = (f"qd{uuid.uuid4().hex[:12]}" for _ in range(3))
        for name, limit in ((default_name, None), (given_name, 8192), (zero_name, 0)):
            body: dict[str, object] = {"project_name": name}
            if limit is not None:
                body["storage_limit"] = limit
            assert (await admin.post(f"{API}/projects", json=body)).status_code == 201
        for name, hard in ((default_name, 4096), (given_name, 8192), (zero_name, 4096)):
            summary = (await admin.get(f"{API}/projects/{name}/summary")).json()
            assert summary["quota"]["hard"] == {"storage": hard}, name
    finally:
        await admin.put(f"{API}/configurations", json={"storage_per_project": -1})
    for bad in (-2, "big", 2**63):
        response = await admin.put(f"{API}/configurations", json={"storage_per_project": bad})
        assert response.status_code == 400


async def test_storage_limit_of_create_project_is_validated(admin: httpx.AsyncClient) -> None:
    for limit in (-2, 2**63):
        name = f"qv{uuid.uuid4().hex[:12]}"
        response = await admin.post(
            f"{API}/projects", json={"project_name": name, "storage_limit": limit}
        )
        assert response.status_code == 400, response.text
        assert (
            await admin.head(f"{API}/projects", params={"project_name": name})
        ).status_code == 404


async def test_storage_limit_from_a_non_administrator_is_ignored(
    member: tuple[httpx.AsyncClient, int],
) -> None:
    """Users may create projects, but not choose their own quota (they get the default)."""
    client, _ = member
    name = f"qn{uuid.uuid4().hex[:12]}"
    response = await client.post(f"{API}/projects", json={"project_name": name, "storage_limit": 5})
    assert response.status_code == 201, response.text
    summary = (await client.get(f"{API}/projects/{name}/summary")).json()
    assert summary["quota"]["hard"] == {"storage": -1}
