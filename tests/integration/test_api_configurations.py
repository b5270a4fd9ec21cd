"""``/configurations``: administrators read every item and change the editable ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client

from dockyard.http.state import AppState
from dockyard.iam.models import LoginSession, User
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


async def test_token_expiration_changes_at_run_time(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, restore: None
) -> None:
    shown = (await admin.get(URL)).json()["token_expiration"]
    assert shown == {"value": 30, "editable": True}  # dockyard.yml's value until changed
    params = {"service": "dockyard", "scope": "repository:library/x:pull"}
    # The lifetime is kept per process for 2 s; this process's own change is seen at once.
    before = await anon.get("/service/token", params=params, auth=("admin", ADMIN_PASSWORD))
    assert before.json()["expires_in"] == 30 * 60
    assert (await admin.put(URL, json={"token_expiration": 7})).status_code == 200
    assert (await admin.get(URL)).json()["token_expiration"] == {"value": 7, "editable": True}
    token = await anon.get("/service/token", params=params, auth=("admin", ADMIN_PASSWORD))
    assert token.status_code == 200, token.text
    assert token.json()["expires_in"] == 7 * 60
    claims = jwt.decode(token.json()["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7 * 60


async def test_session_timeout_changes_at_run_time(
    app: Starlette, admin: httpx.AsyncClient, state: AppState, restore: None
) -> None:
    assert (await admin.get(URL)).json()["session_timeout"] == {"value": 60, "editable": True}
    assert (await admin.put(URL, json={"session_timeout": 5})).status_code == 200
    name = f"cfg{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        account = User(username=name, password=hash_password(PASSWORD))
        session.add(account)
        await session.flush()
        user_id = account.user_id
    async with make_client(app) as browser:
        login = await browser.post("/c/login", data={"principal": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
    async with state.db.read() as session:
        row = await session.scalar(select(LoginSession).where(LoginSession.user_id == user_id))
    assert row is not None
    assert row.expires_at - row.creation_time == timedelta(minutes=5)


# Harbor's items for features Dockyard lacks: refused by name, never "set it in dockyard.yml".
@pytest.mark.parametrize(
    ("change", "feature"),
    [
        ({"ldap_group_attach_parallel": True}, "attaching LDAP groups in parallel"),
        ({"uaa_endpoint": "https://uaa.example.com"}, "UAA authentication"),
        ({"scanner_skip_update_pulltime": True}, "vulnerability scanning"),
    ],
)
async def test_items_of_missing_features_are_refused_by_name(
    admin: httpx.AsyncClient, change: dict[str, object], feature: str
) -> None:
    before = (await admin.get(URL)).json()
    response = await admin.put(URL, json=change)
    assert response.status_code == 400, response.text
    message = response.json()["errors"][0]["message"]
    assert f"{feature}" in message
    assert "not supported by Dockyard yet" in message
    assert "dockyard.yml" not in message
    assert (await admin.get(URL)).json() == before


async def test_off_values_of_missing_features_are_accepted(
    admin: httpx.AsyncClient, restore: None
) -> None:
    """A tool that sends Harbor's whole default configuration back is not refused."""
    harbor_defaults = {
        "auth_mode": "db_auth",
        "primary_auth_mode": False,
        "read_only": False,
        "ldap_url": "",
        "ldap_search_password": "",
        "ldap_scope": 2,
        "ldap_timeout": 5,
        "ldap_verify_cert": True,
        "oidc_verify_cert": True,
        "oidc_auto_onboard": False,
        "uaa_verify_cert": True,
        "http_authproxy_skip_search": False,
        "scanner_skip_update_pulltime": False,
        "self_registration": False,
    }
    response = await admin.put(URL, json=harbor_defaults)
    assert response.status_code == 200, response.text
    items = (await admin.get(URL)).json()
    assert items["read_only"] == {"value": False, "editable": True}
    assert items["ldap_verify_cert"] == {"value": True, "editable": True}
    assert items["ldap_group_search_scope"] == {"value": 2, "editable": True}
    assert items["ldap_group_attach_parallel"] == {"value": False, "editable": False}
    assert "ldap_search_password" not in items  # secrets are never shown, as in Harbor


async def test_only_administrators_see_or_change_it(
    anon: httpx.AsyncClient, user: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    assert (await anon.get(URL)).status_code == 401
    assert (await user.get(URL)).status_code == 403
    assert (await user.put(URL, json={"self_registration": True})).status_code == 403
    items = (await admin.get(URL)).json()
    assert items["self_registration"] == {"value": False, "editable": True}
    assert items["project_creation_restriction"]["value"] == "everyone"
    assert items["robot_name_prefix"] == {"value": "robot$", "editable": True}
    assert items["auth_mode"] == {"value": "db_auth", "editable": True}


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
    # Harbor's body, exactly: scripts match on it.
    assert refused.json() == {
        "errors": [{"code": "FORBIDDEN", "message": "Only system admin can create project"}]
    }
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
        {"robot_name_prefix": "bot:"},
        {"auth_mode": ["ldap_auth"]},
        {"ldap_url": "http://ldap.example.org"},
        {"ldap_filter": "objectClass=person"},
        {"ldap_uid": "uid)(cn=*"},
        {"ldap_scope": 3},
        {"ldap_timeout": 0},
        {"auth_mode": "kerberos"},
        {"ldap_url": {"url": "ldap://x"}},
        {"read_only": "false"},
        {"token_expiration": 0},
        {"session_timeout": 60 * 24 * 31},
        {"quota_per_project_enable": "no"},
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


async def test_primary_auth_mode_has_no_effect_outside_oidc(
    app: Starlette, admin: httpx.AsyncClient, restore: None
) -> None:
    """As in Harbor: stored in any mode, acting only with ``oidc_auth``; ``/systeminfo``
    says whether it acts, and the sign-in page stays the password form."""
    assert (await admin.put(URL, json={"primary_auth_mode": True})).status_code == 200
    assert (await admin.get(URL)).json()["primary_auth_mode"] == {"value": True, "editable": True}
    assert (await admin.get("/api/v2.0/systeminfo")).json()["primary_auth_mode"] is False
    async with make_client(app) as anonymous:
        assert (await anonymous.get("/api/v2.0/systeminfo")).json()["primary_auth_mode"] is False
        page = await anonymous.get("/harbor/sign-in")
        assert page.status_code == 200 and 'name="password"' in page.text
    for bad in ("on", 2, {"value": True}):
        refused = await admin.put(URL, json={"primary_auth_mode": bad})
        assert refused.status_code == 400, refused.text
    assert (await admin.get(URL)).json()["primary_auth_mode"]["value"] is True
