"""The audit log records exactly one correct event for each change users make.

Pushes, pulls (batched off the request path) and deletions through ``/v2/``;
project, metadata, member, robot, user, user-group and configuration changes
through the API; logins (and failed logins) through the token service and the
console. Each test finds its events by the unique names it used.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import OCI_MANIFEST, push_image

from dockyard.audit import hooks as audit_hooks
from dockyard.audit import refusals
from dockyard.audit.events import Actor
from dockyard.audit.models import AuditLog
from dockyard.db.engine import Database
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.projects.models import Project
from dockyard.registry.hooks import ManifestPull
from dockyard.registry.models import Artifact, Repository, Tag

API = "/api/v2.0"
PASSWORD = "Passw0rdAudit1"
CLIENT_IP = "127.0.0.1"
DISABLED = "disabled_audit_log_event_types"
BAD_CREDENTIALS = "invalid username or password"


def _uid(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:12]}"


async def _events(state: AppState, *, resource: str | None = None, **where: Any) -> list[AuditLog]:
    """The audit rows whose resource is ``resource`` (and whose other columns match)."""
    stmt = select(AuditLog).order_by(AuditLog.id)
    if resource is not None:
        stmt = stmt.where(AuditLog.resource == resource)
    for column, value in where.items():
        stmt = stmt.where(getattr(AuditLog, column) == value)
    async with state.db.read() as session:
        return list((await session.scalars(stmt)).all())


def _one(
    rows: list[AuditLog], operation: str, resource_type: str, username: str = "admin"
) -> AuditLog:
    matching = [r for r in rows if r.operation == operation and r.resource_type == resource_type]
    assert len(matching) == 1, [(r.operation, r.resource_type, r.resource) for r in rows]
    row = matching[0]
    assert row.username == username
    assert row.client_ip == CLIENT_IP
    assert row.operation_result is True
    assert row.op_time is not None
    return row


@pytest.fixture(autouse=True)
def _fresh_refusal_budget(state: AppState) -> None:
    """Earlier modules' floods of refusals (hostile-input sweeps) spend the audit writer's
    rate-limited row budget on this shared app; each test here starts with a full one."""
    hooks = getattr(state.registry.hooks, "hooks", ())
    hook = next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks))
    hook.refusals = refusals.RefusalQueue()


def _audit_hook(state: AppState) -> audit_hooks.RegistryHooks:
    hooks = getattr(state.registry.hooks, "hooks", ())
    return next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks))


async def _user(state: AppState) -> tuple[str, int]:
    username = _uid("au")
    async with state.db.write() as session:
        user = User(username=username, password=hash_password(PASSWORD), email=f"{username}@x.io")
        session.add(user)
        await session.flush()
        return username, user.user_id


async def _project_id(state: AppState, name: str) -> int:
    async with state.db.read() as session:
        found = await session.scalar(select(Project.project_id).where(Project.name == name))
    assert found is not None
    return int(found)


@pytest.fixture
async def pull_auditing(admin: httpx.AsyncClient) -> AsyncIterator[None]:
    """Leaves ``disabled_audit_log_event_types`` empty after the test, whatever it set."""
    yield
    response = await admin.put(f"{API}/configurations", json={DISABLED: ""})
    assert response.status_code == 200, response.text


# --- the registry ---------------------------------------------------------------------------


async def test_push_pull_and_delete_each_record_one_event(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    library = await _project_id(state, "library")
    tagged, _ = await push_image(admin, unique_repo, "1.0", seed=b"tagged")
    pushed = _one(await _events(state, resource=f"{unique_repo}:1.0"), "create", "artifact")
    assert pushed.project_id == library
    assert tagged in pushed.operation_description

    by_digest, _ = await push_image(admin, unique_repo, None, seed=b"digest")
    _one(await _events(state, resource=f"{unique_repo}@{by_digest}"), "create", "artifact")

    response = await admin.get(f"/v2/{unique_repo}/manifests/1.0", headers={"Accept": OCI_MANIFEST})
    assert response.status_code == 200
    await _audit_hook(state).flush()
    rows = await _events(state, resource=f"{unique_repo}:1.0")
    pulled = _one(rows, "pull", "artifact")
    assert pulled.project_id == library
    async with state.db.read() as session:
        artifact = await session.scalar(
            select(Artifact).where(
                Artifact.repository_name == unique_repo, Artifact.digest == tagged
            )
        )
        repository = await session.scalar(select(Repository).where(Repository.name == unique_repo))
        tag = await session.scalar(
            select(Tag).where(Tag.name == "1.0", Tag.artifact_id == artifact.id)
        )  # type: ignore[union-attr]
    assert artifact is not None and artifact.pull_time is not None
    assert repository is not None and repository.pull_count == 1
    assert tag is not None and tag.pull_time is not None

    response = await admin.delete(f"/v2/{unique_repo}/manifests/1.0")
    assert response.status_code == 202, response.text
    _one(await _events(state, resource=f"{unique_repo}:1.0"), "delete", "tag")

    response = await admin.delete(f"/v2/{unique_repo}/manifests/{by_digest}")
    assert response.status_code == 202, response.text
    rows = await _events(state, resource=f"{unique_repo}@{by_digest}")
    _one(rows, "delete", "artifact")
    assert len(rows) == 2  # its push and its deletion


async def test_pull_auditing_can_be_switched_off_and_pull_times_still_move(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str, pull_auditing: None
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"quiet")
    response = await admin.put(f"{API}/configurations", json={DISABLED: "pull_artifact"})
    assert response.status_code == 200, response.text
    for _ in range(3):
        response = await admin.get(f"/v2/{unique_repo}/manifests/{digest}")
        assert response.status_code == 200
    await _audit_hook(state).flush()
    assert await _events(state, resource=f"{unique_repo}@{digest}", operation="pull") == []
    async with state.db.read() as session:
        artifact = await session.scalar(
            select(Artifact).where(
                Artifact.digest == digest, Artifact.repository_name == unique_repo
            )
        )
        count = await session.scalar(
            select(Repository.pull_count).where(Repository.name == unique_repo)
        )
    assert artifact is not None and artifact.pull_time is not None
    assert count == 3
    # Other event types are still written.
    response = await admin.delete(f"/v2/{unique_repo}/manifests/v1")
    assert response.status_code == 202
    _one(await _events(state, resource=f"{unique_repo}:v1"), "delete", "tag")


async def test_pulls_are_written_in_the_background(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    """Without an explicit flush, the pull appears within a few seconds."""
    digest, _ = await push_image(admin, unique_repo, "bg", seed=b"background")
    response = await admin.get(f"/v2/{unique_repo}/manifests/bg")
    assert response.status_code == 200
    for _ in range(60):
        if await _events(state, resource=f"{unique_repo}:bg", operation="pull"):
            break
        await asyncio.sleep(0.1)
    rows = await _events(state, resource=f"{unique_repo}:bg", operation="pull")
    assert len(rows) == 1
    assert digest in rows[0].operation_description


async def test_a_pull_of_a_repository_deleted_since_is_skipped(state: AppState) -> None:
    """A queued pull naming a repository that is gone writes nothing and raises nothing."""
    gone = "library/" + _uid("gone")
    hook = _audit_hook(state)
    hook.manifest_pulled(ManifestPull(Actor("admin", CLIENT_IP), gone, "sha256:" + "0" * 64, "x"))
    assert await hook.flush() >= 1
    assert await _events(state, resource=f"{gone}:x") == []


# --- projects, metadata, members -------------------------------------------------------------


async def test_project_metadata_and_member_changes(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    name = _uid("ap")
    response = await admin.post(f"{API}/projects", json={"project_name": name})
    assert response.status_code == 201
    project_id = int(response.headers["location"].rsplit("/", 1)[1])
    created = _one(await _events(state, resource=name), "create", "project")
    assert created.project_id == project_id

    response = await admin.put(f"{API}/projects/{name}", json={"metadata": {"public": "true"}})
    assert response.status_code == 200
    updated = _one(await _events(state, resource=name), "update", "project")
    assert "public=true" in updated.operation_description

    response = await admin.put(
        f"{API}/projects/{name}/metadatas/severity", json={"severity": "high"}
    )
    assert response.status_code == 200
    response = await admin.delete(f"{API}/projects/{name}/metadatas/severity")
    assert response.status_code == 200
    rows = await _events(state, resource=name, operation="update")
    assert len(rows) == 3

    username, user_id = await _user(state)
    response = await admin.post(
        f"{API}/projects/{name}/members", json={"role_id": 2, "member_user": {"user_id": user_id}}
    )
    assert response.status_code == 201
    member_id = response.headers["location"].rsplit("/", 1)[1]
    member = f"{name}/{username}"
    added = _one(await _events(state, resource=member), "create", "member")
    assert added.project_id == project_id and "developer" in added.operation_description
    response = await admin.put(f"{API}/projects/{name}/members/{member_id}", json={"role_id": 3})
    assert response.status_code == 200
    assert (
        "guest"
        in _one(await _events(state, resource=member), "update", "member").operation_description
    )
    response = await admin.delete(f"{API}/projects/{name}/members/{member_id}")
    assert response.status_code == 200
    _one(await _events(state, resource=member), "delete", "member")

    # A refused change records nothing.
    response = await admin.post(
        f"{API}/projects/{name}/members", json={"role_id": 99, "member_user": {"user_id": user_id}}
    )
    assert response.status_code == 400
    assert len(await _events(state, resource=member)) == 3

    response = await admin.delete(f"{API}/projects/{name}")
    assert response.status_code == 200
    deleted = _one(await _events(state, resource=name), "delete", "project")
    assert deleted.project_id == project_id
    assert len(await _events(state, resource=name)) == 5


# --- robots ------------------------------------------------------------------------------


async def test_robot_changes_record_names_never_secrets(
    admin: httpx.AsyncClient, state: AppState, app: Starlette
) -> None:
    body = {
        "name": _uid("r"),
        "description": "audited",
        "level": "system",
        "duration": -1,
        "permissions": [
            {
                "kind": "project",
                "namespace": "library",
                "access": [{"resource": "repository", "action": "pull", "effect": "allow"}],
            }
        ],
    }
    response = await admin.post(f"{API}/robots", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    full_name, robot_id, secrets = created["name"], created["id"], [created["secret"]]
    _one(await _events(state, resource=full_name), "create", "robot")

    response = await admin.patch(f"{API}/robots/{robot_id}", json={"secret": "Refreshed0Secret"})
    assert response.status_code == 200
    secrets.append("Refreshed0Secret")
    refreshed = _one(await _events(state, resource=full_name), "update", "robot")
    assert refreshed.operation_description == "refresh secret"

    # A robot's token-service login, when such logins are audited, is under its name.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state.settings, "audit_token_service_logins", True)
        async with make_client(app) as client:
            response = await client.get(
                "/service/token", params={"service": "dockyard"}, auth=(full_name, secrets[-1])
            )
    assert response.status_code == 200
    login = await _events(state, resource=full_name, operation="login")
    assert [(r.username, r.operation_result) for r in login] == [(full_name, True)]

    response = await admin.delete(f"{API}/robots/{robot_id}")
    assert response.status_code == 200
    _one(await _events(state, resource=full_name), "delete", "robot")
    await _assert_no_secrets(state, secrets)


# --- users, groups, configuration -------------------------------------------------------------


async def test_user_changes(admin: httpx.AsyncClient, state: AppState, app: Starlette) -> None:
    username = _uid("nu")
    response = await admin.post(
        f"{API}/users",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "realname": "Audit Me",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 201, response.text
    user_id = response.headers["location"].rsplit("/", 1)[1]
    _one(await _events(state, resource=username), "create", "user")

    response = await admin.put(
        f"{API}/users/{user_id}",
        json={"email": f"{username}@example.org", "realname": "Audited", "comment": "c"},
    )
    assert response.status_code == 200
    response = await admin.put(
        f"{API}/users/{user_id}/password", json={"new_password": "An0therPassword"}
    )
    assert response.status_code == 200
    response = await admin.put(f"{API}/users/{user_id}/sysadmin", json={"sysadmin_flag": True})
    assert response.status_code == 200
    rows = await _events(state, resource=username, operation="update")
    assert sorted(r.operation_description for r in rows) == [
        "change password",
        "set sysadmin_flag True",
        "update profile",
    ]
    # Users changing their own password are recorded under their own name.
    async with make_client(app, (username, "An0therPassword")) as client:
        response = await client.put(
            f"{API}/users/{user_id}/password",
            json={"old_password": "An0therPassword", "new_password": "Th1rdPassword"},
        )
    assert response.status_code == 200
    assert len(await _events(state, resource=username, operation="update", username=username)) == 1

    response = await admin.delete(f"{API}/users/{user_id}")
    assert response.status_code == 200
    _one(await _events(state, resource=username), "delete", "user")
    await _assert_no_secrets(state, [PASSWORD, "An0therPassword", "Th1rdPassword"])


async def test_user_group_changes(admin: httpx.AsyncClient, state: AppState) -> None:
    name = _uid("grp")
    response = await admin.post(f"{API}/usergroups", json={"group_name": name, "group_type": 2})
    assert response.status_code == 201
    group_id = response.headers["location"].rsplit("/", 1)[1]
    _one(await _events(state, resource=name), "create", "user_group")
    response = await admin.put(f"{API}/usergroups/{group_id}", json={"group_name": name + "x"})
    assert response.status_code == 200
    _one(await _events(state, resource=name + "x"), "update", "user_group")
    response = await admin.delete(f"{API}/usergroups/{group_id}")
    assert response.status_code == 200
    _one(await _events(state, resource=name + "x"), "delete", "user_group")


async def test_configuration_change(admin: httpx.AsyncClient, state: AppState) -> None:
    before = await _events(state, resource="configurations")
    banner = _uid("banner")
    response = await admin.put(f"{API}/configurations", json={"banner_message": banner})
    assert response.status_code == 200
    rows = (await _events(state, resource="configurations"))[len(before) :]
    assert len(rows) == 1
    row = _one(rows, "update", "configuration")
    assert row.operation_description == "set banner_message"
    # A refused change records nothing.
    response = await admin.put(f"{API}/configurations", json={"auth_mode": "uaa_auth"})
    assert response.status_code == 400
    assert len(await _events(state, resource="configurations")) == len(before) + 1


# --- logins --------------------------------------------------------------------------------


async def _sign_in_everywhere(app: Starlette, username: str) -> None:
    """Two token-service logins (GET, POST), one failed, an anonymous token; one console
    login and one failed."""
    async with make_client(app) as client:
        ok = await client.get("/service/token", params={"service": "x"}, auth=(username, PASSWORD))
        bad = await client.get(
            "/service/token", params={"service": "x"}, auth=(username, "Wr0ngPassword")
        )
        anonymous = await client.get("/service/token", params={"service": "x"})
        form = await client.post(
            "/service/token",
            data={
                "grant_type": "password",
                "username": username,
                "password": PASSWORD,
                "service": "x",
            },
        )
        console = await client.post("/c/login", data={"principal": username, "password": PASSWORD})
        console_bad = await client.post(
            "/c/login", data={"principal": username, "password": "N0pe1234"}
        )
    assert (ok.status_code, bad.status_code, anonymous.status_code) == (200, 401, 200)
    assert (form.status_code, console.status_code, console_bad.status_code) == (200, 200, 401)


async def _login_outcomes(state: AppState, username: str) -> list[tuple[str, bool]]:
    await _audit_hook(state).flush()
    rows = await _events(state, resource=username)
    assert all(r.operation == "login" and r.resource_type == "user" for r in rows)
    assert all(r.username == username and r.client_ip == CLIENT_IP for r in rows)
    return sorted((r.operation_description, r.operation_result) for r in rows)


async def test_token_service_logins_are_not_audited_but_failures_and_console_logins_are(
    app: Starlette, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    """As in Harbor, a push or pull's token request is no audit event (a log line);
    a failed one is a refusal, and console sign-ins stay audited both ways."""
    username, _ = await _user(state)
    with caplog.at_level("INFO", logger="dockyard.iam"):
        await _sign_in_everywhere(app, username)
    assert await _login_outcomes(state, username) == [
        ("login through the console", True),
        (f"login through the console (refused: {BAD_CREDENTIALS})", False),
        (f"login through the token service (refused: {BAD_CREDENTIALS})", False),
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "dockyard.iam"]
    assert logged.count(f"token service login of {username} from {CLIENT_IP}") == 2
    # Nobody's login is recorded for an anonymous token request.
    assert await _events(state, resource="anonymous", operation="login") == []
    assert await _events(state, resource="", operation="login") == []
    await _assert_no_secrets(state, [PASSWORD, "Wr0ngPassword", "N0pe1234"])


async def test_token_service_logins_audited_when_the_setting_keeps_them(
    app: Starlette, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state.settings, "audit_token_service_logins", True)
    username, _ = await _user(state)
    await _sign_in_everywhere(app, username)
    assert await _login_outcomes(state, username) == [
        ("login through the console", True),
        (f"login through the console (refused: {BAD_CREDENTIALS})", False),
        ("login through the token service", True),
        ("login through the token service", True),
        (f"login through the token service (refused: {BAD_CREDENTIALS})", False),
    ]


async def test_a_flood_of_anonymous_failed_logins_is_bounded(
    app: Starlette, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guessed names at the token service: each refusal only queues (no write on the
    request path); repeats are one row; past the burst one summary row counts the rest."""
    hook = _audit_hook(state)
    await hook.flush()
    # Guessing is slow (a password hash each), so refill next to nothing meanwhile.
    queue = refusals.RefusalQueue(burst=10, rows_per_second=0.001, summary_seconds=0)
    monkeypatch.setattr(hook, "refusals", queue)
    stem = _uid("guess")
    guesses = [f"{stem}0"] * 6 + [f"{stem}{i}" for i in range(1, 25)]
    async with make_client(app) as client:
        for guess in guesses:
            response = await client.get(
                "/service/token", params={"service": "x"}, auth=(guess, "Guess1234")
            )
            assert response.status_code == 401
    assert len(queue) <= 10 + 1  # the burst and the summary
    await hook.flush()
    async with state.db.read() as session:
        rows = list(
            (
                await session.scalars(
                    select(AuditLog).where(AuditLog.resource.like(f"{stem}%")).order_by(AuditLog.id)
                )
            ).all()
        )
        summaries = list(
            (
                await session.scalars(
                    select(AuditLog).where(
                        AuditLog.resource == "(many)",
                        AuditLog.operation_description.like("%more refused requests%"),
                        AuditLog.op_time >= rows[0].op_time,
                    )
                )
            ).all()
        )
    assert all(r.operation_result is False and r.operation == "login" for r in rows)
    assert 10 <= len(rows) <= 11, len(rows)  # the burst (and a token refilled, at worst)
    # Each row stands for one refusal or says how many (the first guess came six times),
    # and summary rows (here one per background flush that had any) count the rest:
    # none is lost.
    times = [re.search(r"\((\d+) times\)$", r.operation_description) for r in rows]
    assert summaries
    dropped = [
        int(re.search(r"(\d+) more refused", r.operation_description).group(1))  # type: ignore[union-attr]
        for r in summaries
    ]
    assert sum(int(m.group(1)) if m else 1 for m in times) + sum(dropped) == len(guesses)
    assert any(m is not None for m in times)
    assert all(r.client_ip == CLIENT_IP and r.operation_result is False for r in summaries)


async def test_admin_console_login(app: Starlette, state: AppState) -> None:
    before = len(await _events(state, resource="admin", operation="login"))
    async with make_client(app) as client:
        response = await client.post(
            "/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD}
        )
    assert response.status_code == 200
    assert len(await _events(state, resource="admin", operation="login")) == before + 1


async def _assert_no_secrets(state: AppState, secrets: list[str]) -> None:
    """No column of any audit row carries any of ``secrets``."""
    for row in await _events(state):
        text = " ".join(
            str(value)
            for value in (
                row.resource,
                row.operation_description,
                row.username,
                row.client_ip,
                row.user_agent,
            )
        )
        for secret in [*secrets, ADMIN_PASSWORD]:
            assert secret not in text, (row.operation, row.resource_type)


# --- refused changes -----------------------------------------------------------------------


async def test_refused_deletions_record_their_failure(
    admin: httpx.AsyncClient, state: AppState, app: Starlette
) -> None:
    name = _uid("fp")
    response = await admin.post(f"{API}/projects", json={"project_name": name})
    assert response.status_code == 201
    await push_image(admin, f"{name}/app", "1", seed=b"keeps-the-project")
    response = await admin.delete(f"{API}/projects/{name}")
    assert response.status_code == 412
    await _audit_hook(state).flush()
    failed = [r for r in await _events(state, resource=name) if r.operation == "delete"]
    assert [(r.resource_type, r.username, r.operation_result) for r in failed] == [
        ("project", "admin", False)
    ]

    developer, developer_id = await _user(state)
    response = await admin.post(
        f"{API}/projects/{name}/members",
        json={"role_id": 2, "member_user": {"user_id": developer_id}},
    )
    assert response.status_code == 201
    async with make_client(app, (developer, PASSWORD)) as client:
        response = await client.delete(f"{API}/projects/{name}")
        assert response.status_code == 403
        # Not found is no refusal worth recording (and reveals nothing).
        response = await client.delete(f"{API}/projects/{_uid('nope')}")
        assert response.status_code == 404
    await _audit_hook(state).flush()
    refused = await _events(state, resource=name, operation="delete", username=developer)
    assert [(r.operation_result, r.client_ip) for r in refused] == [(False, CLIENT_IP)]
    assert len(await _events(state, resource=name, operation="delete")) == 2

    response = await admin.delete(f"{API}/users/1")
    assert response.status_code == 403
    await _audit_hook(state).flush()
    assert len(await _events(state, resource="user 1", operation_result=False)) >= 1


# --- the pull recorder's life ----------------------------------------------------------------


async def test_close_writes_what_is_queued_and_stops_taking_pulls(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "c", seed=b"closing")
    recorder = audit_hooks.RegistryHooks(state.db, state.settings)
    pull = ManifestPull(Actor("admin", CLIENT_IP), unique_repo, digest, "c")
    recorder.manifest_pulled(pull)
    await recorder.close()
    assert len(await _events(state, resource=f"{unique_repo}:c", operation="pull")) == 1
    recorder.manifest_pulled(pull)  # after close: ignored
    assert await recorder.flush() == 0


async def test_a_failed_flush_is_logged_not_raised(
    state: AppState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'missing' / 'dockyard.db'}")
    try:
        recorder = audit_hooks.RegistryHooks(broken, state.settings)
        recorder.manifest_pulled(
            ManifestPull(Actor("admin", CLIENT_IP), "library/x", "sha256:" + "1" * 64, None)
        )
        assert await recorder.flush() == 0
        await recorder.close()
    finally:
        await broken.dispose()
    assert any("could not record 1 pulls" in r.getMessage() for r in caplog.records)


async def test_refused_pushes_and_deletes_record_their_failure(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """A push or delete a policy refuses (here: tag immutability) leaves one failed event."""
    project = _uid("refuse")
    created = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert created.status_code == 201, created.text
    rule = await admin.post(
        f"/api/v2.0/projects/{project}/immutabletagrules",
        headers={"X-Is-Resource-Name": "true"},
        json={
            "action": "immutable",
            "template": "immutable_template",
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v1"}],
        },
    )
    assert rule.status_code == 201, rule.text
    repository = f"{project}/app"
    await push_image(admin, repository, "v1", seed=b"first")
    moved = await admin.put(
        f"/v2/{repository}/manifests/v1",
        content=(
            await admin.get(f"/v2/{repository}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        ).content.replace(b'"schemaVersion": 2', b'"schemaVersion":2'),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert moved.status_code == 403, moved.text
    deleted = await admin.delete(f"/v2/{repository}/manifests/v1")
    assert deleted.status_code == 403, deleted.text
    await _audit_hook(state).flush()

    failed = await _events(state, resource=f"{repository}:v1", operation_result=False)
    assert sorted((r.operation, r.resource_type) for r in failed) == [
        ("create", "artifact"),
        ("delete", "tag"),
    ]
    assert all("immutable" in r.operation_description for r in failed)
    assert all(r.username == "admin" and r.client_ip == CLIENT_IP for r in failed)


async def test_refused_api_writes_record_one_failure(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    """A signed-in caller's refused write (403 here, 409 for a duplicate) is one failed event."""
    project = _uid("apirefuse")
    assert (
        await admin.post("/api/v2.0/projects", json={"project_name": project})
    ).status_code == 201
    name, _ = await _user(state)
    async with make_client(app, (name, PASSWORD)) as outsider:
        denied = await outsider.post("/api/v2.0/labels", json={"name": _uid("l"), "scope": "g"})
    assert denied.status_code == 403
    duplicate = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert duplicate.status_code == 409
    await _audit_hook(state).flush()

    failed = await _events(state, operation_result=False, username=name)
    assert [(r.operation, r.resource_type, r.resource) for r in failed] == [
        ("create", "label", "/labels")
    ]
    assert "refused" in failed[0].operation_description
    refused = await _events(state, resource="/projects", operation_result=False, username="admin")
    mine = [r for r in refused if project in r.operation_description]
    assert [(r.operation, r.resource_type) for r in mine] == [("create", "project")]


async def test_refused_registry_access_is_recorded_but_a_credentials_challenge_is_not(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    """An anonymous token without pull on a private repository, and a signed-in user
    without the permission, are refusals; the 401 that asks a client for a token is not."""
    project = _uid("private")
    assert (await admin.post(f"{API}/projects", json={"project_name": project})).status_code == 201
    repository = f"{project}/app"
    await push_image(admin, repository, "v1", seed=b"private")
    outsider, _ = await _user(state)
    async with make_client(app) as client:
        challenged = await client.get(f"/v2/{repository}/manifests/v1")
        assert challenged.status_code == 401
        token = await client.get(
            "/service/token",
            params={"service": "dockyard", "scope": f"repository:{repository}:pull"},
        )
        assert token.status_code == 200
        bearer = {"Authorization": f"Bearer {token.json()['token']}"}
        anonymous = await client.get(f"/v2/{repository}/manifests/v1", headers=bearer)
        assert anonymous.status_code == 401
        denied = await client.delete(f"/v2/{repository}/manifests/v1", auth=(outsider, PASSWORD))
        assert denied.status_code in (401, 403)
    await _audit_hook(state).flush()
    refused = await _events(state, resource=repository, operation_result=False)
    assert [(r.operation, r.resource_type, r.username) for r in refused] == [
        ("pull", "artifact", "anonymous"),
        ("delete", "artifact", outsider),
    ]
    assert "does not grant pull" in refused[0].operation_description
    assert refused[1].operation_description.startswith(f"refused: {outsider} may not")
    assert all(r.client_ip == CLIENT_IP for r in refused)
    assert {r.project_id for r in refused} == {await _project_id(state, project)}
