"""Every API operation against hostile input: a clear 4xx, never a 5xx, nothing changed.

The sweep is mechanical: it walks the operations Dockyard declares
(``dockyard.app.api_operations``), fills each path parameter with hostile
values and sends malformed bodies to every write, as an ordinary user and as
the administrator. The clients already fail any 5xx; here we also require a
4xx for everything malformed and count the rows that users can change before
and after, so nothing was written. Contract checks are off for these requests
(``X-Dockyard-Contract: skip``): Harbor's swagger does not declare every 400.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client

from dockyard.app import api_operations
from dockyard.http.api import API_PREFIX, Operation
from dockyard.http.state import AppState
from dockyard.iam.models import LoginSession, User, UserGroup, UserGroupMembership
from dockyard.iam.passwords import hash_password
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.robots.models import Robot, RobotPermission

PASSWORD = "Hostile-Passw0rd"
SKIP_CONTRACT = {"X-Dockyard-Contract": "skip"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}

HOSTILE_SEGMENTS = [
    "1' OR '1'='1",
    "1;DROP TABLE harbor_user",
    "x" * 5000,
    "%00",
    "-1",
    "0",
    "99999999999999999999999999",
    "1e3",
    "ünïcödé",
    "%2e%2e%2f%2e%2e",
    "{{7*7}}",
    "<script>",
]
MALFORMED_BODIES: list[tuple[str, bytes]] = [
    ("not-json", b"this is not json"),
    ("truncated", b'{"name": '),
    ("array", b"[]"),
    ("scalar", b"42"),
    ("deep", b"[" * 5000 + b"]" * 5000),
    ("huge", b'{"comment": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
]
# Well-formed JSON that some operations may rightly ignore (fields they do not take):
# never a 5xx and never a new row, but not always a 4xx.
ODD_BODIES: list[tuple[str, bytes]] = [
    ("wrong-types", b'{"username": 7, "project_name": [], "role_id": "x", "name": {}}'),
    ("nul", b'{"name": "a\\u0000b", "project_name": "a\\u0000b", "username": "a\\u0000b"}'),
]
COUNTED = [
    User,
    UserGroup,
    UserGroupMembership,
    Project,
    ProjectMember,
    ProjectMetadata,
    Robot,
    RobotPermission,
    LoginSession,
]


def _operations() -> list[Operation]:
    return [op for op in api_operations() if op.operation_id is not None]


def _fill(path: str, value: str) -> str:
    return API_PREFIX + re.sub(r"\{\w+\}", lambda _: value, path)


def _hostile_paths() -> Iterator[tuple[str, str, str]]:
    for op in _operations():
        if "{" not in op.path:
            continue
        for value in HOSTILE_SEGMENTS:
            yield op.operation_id or "", op.method, _fill(op.path, value)


HOSTILE_PATHS = list(_hostile_paths())
WRITE_OPS = [op for op in _operations() if op.method in {"POST", "PUT", "PATCH"}]


async def _counts(state: AppState) -> dict[str, int]:
    async with state.db.read() as session:
        return {
            model.__tablename__: int(
                await session.scalar(select(func.count()).select_from(model)) or 0
            )
            for model in COUNTED
        }


@pytest.fixture
async def user(state: AppState) -> str:
    name = f"host{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    return name


def _client(app: Starlette, auth: tuple[str, str]) -> httpx.AsyncClient:
    client = make_client(app, auth)
    client.headers.update(SKIP_CONTRACT)
    return client


PARSES_ITS_OWN_BODY = frozenset({"updateConfigurations"})
"""Writes that declare no body model but read one (a map of items checked one by one)."""

ANSWERS_AN_EMPTY_LIST = frozenset({"getWorkers"})
"""Operations whose unknown path value Harbor answers with ``200 []`` (issue 14 item 12)."""


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_hostile_path_parameters(
    app: Starlette, state: AppState, user: str, who: str
) -> None:
    """Every operation with a path parameter, every hostile value: 4xx, nothing written."""
    auth = (user, PASSWORD) if who == "user" else ("admin", ADMIN_PASSWORD)
    before = await _counts(state)
    unexpected = []
    async with _client(app, auth) as client:
        for operation_id, method, url in HOSTILE_PATHS:
            body = b"{}" if method in {"POST", "PUT", "PATCH"} else None
            response = await client.request(
                method, url, content=body, headers={"Content-Type": "application/json"}
            )
            if operation_id in ANSWERS_AN_EMPTY_LIST and response.status_code == 200:
                # Harbor answers an unknown worker pool with no workers; nothing leaks
                assert response.json() == [], url
            elif not 400 <= response.status_code < 500:
                unexpected.append(f"{operation_id} {method} {url[:80]} -> {response.status_code}")
            elif method != "HEAD":
                assert response.json()["errors"][0]["code"], url
    assert not unexpected, "\n".join(unexpected)
    assert await _counts(state) == before


@pytest.mark.parametrize(("kind", "body"), MALFORMED_BODIES, ids=[k for k, _ in MALFORMED_BODIES])
async def test_malformed_bodies_on_every_write(
    app: Starlette, state: AppState, kind: str, body: bytes
) -> None:
    """Malformed bodies, sent by the administrator to real targets: 4xx, nothing written."""
    before = await _counts(state)
    unexpected = []
    async with _client(app, ("admin", ADMIN_PASSWORD)) as client:
        for op in WRITE_OPS:
            if op.body is None and op.operation_id not in PARSES_ITS_OWN_BODY:
                # Takes no body (stop an execution, say): what is sent is not read, so the
                # answer is the operation's own, and whether target 1 exists depends on
                # which tests ran before in this database.
                continue
            url = _fill(op.path, "1")
            response = await client.request(
                op.method, url, content=body, headers={"Content-Type": "application/json"}
            )
            if not 400 <= response.status_code < 500:
                unexpected.append(f"{op.operation_id} {op.method} {url} -> {response.status_code}")
    assert not unexpected, "\n".join(unexpected)
    assert await _counts(state) == before


def _ignores(op: Operation, body: bytes) -> bool:
    """Whether ``op`` reads nothing of ``body``: it takes no body, or none of the body's
    fields is one of its model's (unknown fields are ignored, as Harbor does), so the body
    parses to what ``{}`` parses to. Such an operation answers as it would with no body:
    ``triggerRetentionExecution`` starts retention policy 1 when an earlier test in this
    database made it, and answers 404 otherwise."""
    if op.body is None:
        return op.operation_id not in PARSES_ITS_OWN_BODY
    try:
        read = op.body.model_validate_json(body)
    except ValidationError:
        return False
    try:
        return read == op.body.model_validate_json(b"{}")
    except ValidationError:
        return False


@pytest.mark.parametrize(("kind", "body"), ODD_BODIES, ids=[k for k, _ in ODD_BODIES])
async def test_odd_bodies_on_every_write(
    app: Starlette, state: AppState, kind: str, body: bytes
) -> None:
    """Creates that read these fields must refuse them outright (wrong types, NUL in a
    name); those that read none of them answer as without a body: never a 5xx."""
    before = await _counts(state)
    refusing = 0
    async with _client(app, ("admin", ADMIN_PASSWORD)) as client:
        for op in WRITE_OPS:
            if op.method != "POST":
                continue
            url = _fill(op.path, "1")
            response = await client.request(
                op.method, url, content=body, headers={"Content-Type": "application/json"}
            )
            if _ignores(op, body):
                assert response.status_code < 500, (op.operation_id, response.text)
            else:
                refusing += 1
                assert 400 <= response.status_code < 500, (op.operation_id, response.text)
    assert refusing >= 10, "the odd bodies no longer reach the creates that read them"
    assert await _counts(state) == before


async def test_unprivileged_writes_change_nothing(
    app: Starlette, state: AppState, user: str
) -> None:
    """An ordinary user's writes to the library project, user 1 and robot 1: refused, no rows."""
    before = await _counts(state)
    escalations = {
        "/users/1/sysadmin": ("PUT", {"sysadmin_flag": True}),
        "/users/1": ("PUT", {"email": "taken@example.com", "realname": "x", "comment": "x"}),
        "/users/1/password": ("PUT", {"old_password": "x", "new_password": "Takeover-Passw0rd"}),
        "/projects/1": ("PUT", {"metadata": {"public": "false"}}),
        "/projects/1/members": ("POST", {"role_id": 1, "member_user": {"username": user}}),
        "/usergroups": ("POST", {"group_name": "evil", "group_type": 2}),
        "/robots": (
            "POST",
            {
                "name": "evil",
                "level": "system",
                "duration": -1,
                "permissions": [
                    {
                        "kind": "project",
                        "namespace": "*",
                        "access": [{"resource": "repository", "action": "push"}],
                    }
                ],
            },
        ),
    }
    async with _client(app, (user, PASSWORD)) as client:
        for path, (method, payload) in escalations.items():
            response = await client.request(method, API_PREFIX + path, json=payload)
            assert response.status_code in (400, 401, 403, 404), (path, response.text)
        me = (await client.get(f"{API_PREFIX}/users/current")).json()
        assert me["sysadmin_flag"] is False
    assert await _counts(state) == before
    async with _client(app, ("admin", ADMIN_PASSWORD)) as admin:
        library = (await admin.get(f"{API_PREFIX}/projects/1")).json()
        assert library["metadata"]["public"] == "true"
