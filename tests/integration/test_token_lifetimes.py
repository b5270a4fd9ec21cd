"""Tokens end with the credentials behind them: expiring robots, changed passwords."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
from sqlalchemy import update

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.robots.models import Robot

PASSWORD = "Lifetime-Passw0rd"


async def _password_grant(anon: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await anon.post(
        "/service/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "service": "dockyard",
            "scope": "repository:library/x:pull",
            "access_type": "offline",
        },
    )


async def _refresh(anon: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await anon.post(
        "/service/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "service": "dockyard"},
    )


async def test_a_password_change_retires_refresh_tokens(
    state: AppState, anon: httpx.AsyncClient
) -> None:
    name = f"life{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    first = await _password_grant(anon, name, PASSWORD)
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    assert (await _refresh(anon, refresh_token)).status_code == 200

    async with state.db.write() as session:
        await session.execute(
            update(User)
            .where(User.username == name)
            .values(password=hash_password("N3w-pass-word"))
        )
    refused = await _refresh(anon, refresh_token)
    assert refused.status_code == 401
    assert "password or secret change" in refused.json()["errors"][0]["message"]


async def test_robot_tokens_end_when_the_robot_does(
    state: AppState, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    created = await admin.post(
        "/api/v2.0/robots",
        json={
            "name": f"short{uuid.uuid4().hex[:8]}",
            "level": "system",
            "duration": 30,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": "library",
                    "access": [{"resource": "repository", "action": "pull", "effect": "allow"}],
                }
            ],
        },
    )
    assert created.status_code == 201, created.text
    robot = created.json()
    ends = int(time.time()) + 90
    async with state.db.write() as session:
        await session.execute(update(Robot).where(Robot.id == robot["id"]).values(expires_at=ends))

    response = await anon.get(
        "/service/token",
        params={"service": "dockyard", "scope": "repository:library/x:pull"},
        auth=(robot["name"], robot["secret"]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] <= 90
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["exp"] <= ends
