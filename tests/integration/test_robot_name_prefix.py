"""``robot_name_prefix`` is a run-time configuration item, as in Harbor: new robots take
the current prefix, existing robots keep the full name they were created with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.http.state import AppState
from dockyard.iam.ratelimit import LoginThrottle
from dockyard.iam.service import IdentityService
from dockyard.robots.models import Robot

URL = "/api/v2.0/configurations"
SCOPE = "repository:library/prefix-check:pull"


@pytest.fixture
async def restore(admin: httpx.AsyncClient) -> AsyncIterator[None]:
    """The start-time prefix back (and every other editable item), whatever the test did."""
    before = (await admin.get(URL)).json()
    yield
    editable = {k: v["value"] for k, v in before.items() if v["editable"]}
    assert (await admin.put(URL, json=editable)).status_code == 200


async def _system_robot(admin: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "name": f"p{uuid.uuid4().hex[:10]}",
        "level": "system",
        "permissions": [
            {
                "kind": "project",
                "namespace": "library",
                "access": [{"resource": "repository", "action": "pull"}],
            }
        ],
    }
    response = await admin.post("/api/v2.0/robots", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _logins(app: Starlette, name: str, secret: str) -> tuple[int, int]:
    """(``/v2/`` with Basic credentials, the token service) statuses for one login."""
    async with make_client(app, (name, secret)) as client:
        v2 = (await client.get("/v2/")).status_code
        token = await client.get("/service/token", params={"service": "dockyard", "scope": SCOPE})
    return v2, token.status_code


async def test_a_new_prefix_names_new_robots_and_old_robots_keep_theirs(
    app: Starlette, state: AppState, admin: httpx.AsyncClient, restore: None
) -> None:
    assert (await admin.get(URL)).json()["robot_name_prefix"] == {
        "value": "robot$",  # dockyard.yml's value until changed
        "editable": True,
    }
    old = await _system_robot(admin)
    assert old["name"].startswith("robot$")
    old_stem = old["name"].removeprefix("robot$")
    legacy = await _system_robot(admin)
    async with state.db.write() as session:  # as made before robots stored their prefix
        await session.execute(
            update(Robot).where(Robot.id == legacy["id"]).values(name_prefix=None)
        )

    assert (await admin.put(URL, json={"robot_name_prefix": "svc$"})).status_code == 200
    assert (await admin.get(URL)).json()["robot_name_prefix"] == {
        "value": "svc$",
        "editable": True,
    }
    new = await _system_robot(admin)
    assert new["name"].startswith("svc$")
    new_stem = new["name"].removeprefix("svc$")
    shown = (await admin.get(f"/api/v2.0/robots/{new['id']}")).json()
    assert shown["name"] == new["name"]

    assert await _logins(app, new["name"], new["secret"]) == (200, 200)
    # An existing robot keeps its full name (Harbor looks robots up by it) and logs in.
    assert await _logins(app, old["name"], old["secret"]) == (200, 200)
    assert (await admin.get(f"/api/v2.0/robots/{old['id']}")).json()["name"] == old["name"]
    # So does one with no stored prefix: it has the start-time setting's.
    assert await _logins(app, legacy["name"], legacy["secret"]) == (200, 200)
    shown_legacy = await admin.get(f"/api/v2.0/robots/{legacy['id']}")
    assert shown_legacy.json()["name"] == legacy["name"]
    # Neither is renamed: the other prefix with the same stem is no account.
    assert await _logins(app, "svc$" + old_stem, old["secret"]) == (401, 401)
    assert await _logins(app, "robot$" + new_stem, new["secret"]) == (401, 401)
    # A listing by full name finds the robot under its own prefix.
    listed = await admin.get("/api/v2.0/robots", params={"q": f"name={new['name']}"})
    assert [r["name"] for r in listed.json()] == [new["name"]]

    # A project robot takes the new prefix too: <prefix><project>+<name>.
    project = f"pp{uuid.uuid4().hex[:10]}"
    made = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert made.status_code == 201, made.text
    ci = await admin.post(
        "/api/v2.0/robots",
        json={
            "name": "ci",
            "level": "project",
            "permissions": [
                {
                    "kind": "project",
                    "namespace": project,
                    "access": [{"resource": "repository", "action": "pull"}],
                }
            ],
        },
    )
    assert ci.status_code == 201, ci.text
    assert ci.json()["name"] == f"svc${project}+ci"
    assert await _logins(app, ci.json()["name"], ci.json()["secret"]) == (200, 200)

    # Back to the start-time prefix: both robots still log in by their own names.
    assert (await admin.put(URL, json={"robot_name_prefix": "robot$"})).status_code == 200
    assert await _logins(app, new["name"], new["secret"]) == (200, 200)
    assert await _logins(app, old["name"], old["secret"]) == (200, 200)


async def test_another_node_sees_a_new_prefix(
    state: AppState, admin: httpx.AsyncClient, restore: None
) -> None:
    """A second process (its own IdentityService, the same database) reads the prefixes
    once, caches them, and reads them again when a login finds no account, so a robot
    made on another node under a new prefix logs in at once."""
    other = IdentityService(
        state.db,
        LoginThrottle(100, 500),
        state.identity.tokens,
        robot_prefix=state.settings.robot_name_prefix,
    )
    async with state.db.read() as session:
        assert "node~" not in await other.robot_prefixes(session)  # cached from now on
    assert (await admin.put(URL, json={"robot_name_prefix": "node~"})).status_code == 200
    robot = await _system_robot(admin)
    assert robot["name"].startswith("node~")
    principal = await other.authenticate(robot["name"], robot["secret"], "127.0.0.9")
    assert principal.kind == "robot"
    assert principal.name == robot["name"]
    assert await other.is_robot_name(robot["name"])


@pytest.mark.parametrize(
    "bad",
    ["", "bot", "a:b$", "team+$", "my bot$", "bot/$", "é$", "x" * 32 + "$", 5, None, True],
)
async def test_a_bad_prefix_is_refused(
    admin: httpx.AsyncClient, restore: None, bad: object
) -> None:
    """Harbor's parsing of ``<prefix><project>+<name>`` and Basic credentials must keep
    working, and no user's name may start with a robot prefix."""
    response = await admin.put(URL, json={"robot_name_prefix": bad})
    assert response.status_code == 400, response.text
    assert "robot_name_prefix" in response.json()["errors"][0]["message"]
    assert (await admin.get(URL)).json()["robot_name_prefix"]["value"] == "robot$"
