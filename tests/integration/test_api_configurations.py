"""``/configurations``: administrators read every item and change the editable ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password

URL = "/api/v2.0/configurations"
PASSWORD = "Config-Passw0rd"


@pytest.fixture
async def restore(admin: httpx.AsyncClient) -> AsyncIterator[None]:
    """Put the editable items back as they were, whatever the test did."""
    before = (await admin.get(URL)).json()
    yield
    editable = {k: v["value"] for k, v in before.items() if v["editable"]}
    assert (await admin.put(URL, json=editable)).status_code == 200


@pytest.fixture
async def user(app: Starlette, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    name = f"cfg{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    async with make_client(app, (name, PASSWORD)) as client:
        yield client


async def test_only_administrators_see_or_change_it(
    anon: httpx.AsyncClient, user: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    assert (await anon.get(URL)).status_code == 401
    assert (await user.get(URL)).status_code == 403
    assert (await user.put(URL, json={"self_registration": True})).status_code == 403
    items = (await admin.get(URL)).json()
    assert items["self_registration"] == {"value": False, "editable": True}
    assert items["project_creation_restriction"]["value"] == "everyone"
    assert items["robot_name_prefix"] == {"value": "robot$", "editable": False}
    assert items["auth_mode"] == {"value": "db_auth", "editable": False}


async def test_self_registration_switch(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, restore: None
) -> None:
    body = {
        "username": f"self{uuid.uuid4().hex[:8]}",
        "email": f"self{uuid.uuid4().hex[:8]}@example.com",
        "realname": "Self",
        "password": "Self-Passw0rd",
    }
    assert (await anon.post("/api/v2.0/users", json=body)).status_code in (401, 403)
    assert (await admin.put(URL, json={"self_registration": True})).status_code == 200
    assert (await anon.get("/api/v2.0/systeminfo")).json()["self_registration"] is True
    assert (await anon.post("/api/v2.0/users", json=body)).status_code == 201


async def test_admin_only_project_creation(
    admin: httpx.AsyncClient, user: httpx.AsyncClient, restore: None
) -> None:
    change = {"project_creation_restriction": "adminonly"}
    assert (await admin.put(URL, json=change)).status_code == 200
    refused = await user.post("/api/v2.0/projects", json={"project_name": f"c{uuid.uuid4().hex}"})
    assert refused.status_code == 403
    assert "adminonly" in refused.json()["errors"][0]["message"]
    created = await admin.post("/api/v2.0/projects", json={"project_name": f"c{uuid.uuid4().hex}"})
    assert created.status_code == 201


async def test_robot_token_duration_is_the_default_lifetime(
    admin: httpx.AsyncClient, restore: None
) -> None:
    assert (await admin.put(URL, json={"robot_token_duration": 7})).status_code == 200
    created = await admin.post(
        "/api/v2.0/robots",
        json={
            "name": f"d{uuid.uuid4().hex[:8]}",
            "level": "system",
            "permissions": [
                {
                    "kind": "project",
                    "namespace": "library",
                    "access": [{"resource": "repository", "action": "pull"}],
                }
            ],
        },
    )
    assert created.status_code == 201, created.text
    robot = (await admin.get(f"/api/v2.0/robots/{created.json()['id']}")).json()
    assert robot["duration"] == 7


@pytest.mark.parametrize(
    "change",
    [
        {"no_such_item": True},
        {"robot_name_prefix": "bot$"},
        {"auth_mode": "ldap_auth"},
        {"self_registration": "yes"},
        {"robot_token_duration": 0},
        {"robot_token_duration": True},
        {"project_creation_restriction": "nobody"},
        {"banner_message": "x" * 5000},
        {"self_registration": True, "robot_token_duration": -5},
    ],
)
async def test_bad_changes_are_refused_and_change_nothing(
    admin: httpx.AsyncClient, change: dict[str, object]
) -> None:
    before = (await admin.get(URL)).json()
    response = await admin.put(URL, json=change)
    assert response.status_code == 400, response.text
    assert (await admin.get(URL)).json() == before


@pytest.mark.parametrize("body", [b"not json", b"[]", b"42", b""])
async def test_malformed_bodies(admin: httpx.AsyncClient, body: bytes) -> None:
    response = await admin.put(URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
