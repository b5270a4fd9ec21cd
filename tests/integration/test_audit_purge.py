"""Purging old audit events (``/system/purgeaudit``) on SQLite and PostgreSQL.

Each test seeds its own events with a unique resource name, some older than the
retention and some newer, and checks which of them a purge leaves. Purges are
global, so counts are checked against what the database held before the run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import and_, func, or_, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.app import start_workers
from dockyard.audit import jobs as audit_jobs
from dockyard.audit import purge
from dockyard.audit.models import AuditLog
from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution
from dockyard.jobs.runner import JobEnvironment, JobRunner

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "/api/v2.0/system/purgeaudit"
SCHEDULE = f"{URL}/schedule"
PASSWORD = "Purge-Passw0rd1"


async def _seed(state: AppState, resource: str, kinds: list[tuple[str, str, float]]) -> None:
    """Events on ``resource``: (operation, resource type, age in hours) each."""
    now = utcnow()
    async with state.db.write() as session:
        session.add_all(
            AuditLog(
                operation=operation,
                resource_type=resource_type,
                resource=resource,
                username="seed",
                op_time=now - timedelta(hours=hours),
            )
            for operation, resource_type, hours in kinds
        )


async def _left(state: AppState, resource: str) -> list[tuple[str, str, float]]:
    """What is left of ``resource``'s events: (operation, type, age rounded to hours)."""
    now = utcnow()
    async with state.db.read() as session:
        rows = await session.scalars(select(AuditLog).where(AuditLog.resource == resource))
        return sorted(
            (r.operation, r.resource_type, round((now - r.op_time).total_seconds() / 3600))
            for r in rows
        )


async def _matching(state: AppState, hours: int, kinds: list[tuple[str, str]]) -> int:
    """How many events in the whole log a purge of ``kinds`` older than ``hours`` takes."""
    before = utcnow() - timedelta(hours=hours)
    which = or_(*(and_(AuditLog.operation == o, AuditLog.resource_type == t) for o, t in kinds))
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.op_time < before, which)
        )
    return int(count or 0)


async def _run(admin: httpx.AsyncClient, **parameters: Any) -> int:
    response = await admin.post(
        SCHEDULE, json={"schedule": {"type": "Manual"}, "parameters": parameters}
    )
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.startswith(f"{URL}/")
    return int(location.rsplit("/", 1)[1])


async def _wait(admin: httpx.AsyncClient, purge_id: int, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await admin.get(f"{URL}/{purge_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["job_status"] in jobs.FINAL_STATUSES:
            return body
        assert time.monotonic() < deadline, f"purge {purge_id} still {body['job_status']}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def no_schedule(admin: httpx.AsyncClient) -> AsyncIterator[None]:
    yield
    response = await admin.put(SCHEDULE, json={"schedule": {"type": "None"}})
    assert response.status_code == 200, response.text


async def test_purge_keeps_recent_and_unlisted_events_and_dry_run_counts_first(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    marker = f"purge-{uuid.uuid4().hex[:10]}"
    await _seed(
        state,
        marker,
        [
            ("create", "project", 100),
            ("create", "project", 80),
            ("create", "project", 50),
            ("delete", "artifact", 200),
            ("delete", "artifact", 60),
            ("pull", "artifact", 100),
            ("update", "configuration", 90),
            ("create", "project", 40),  # younger than the retention
            ("delete", "artifact", 1),
        ],
    )
    kinds = [("create", "project"), ("delete", "artifact"), ("update", "configuration")]
    expected = await _matching(state, 48, kinds)
    assert expected >= 6

    dry = await _wait(
        admin,
        await _run(
            admin,
            audit_retention_hour=48,
            include_event_types="create_project, DELETE_ARTIFACT,update_configure",
            dry_run=True,
        ),
    )
    assert dry["job_status"] == "Success"
    assert dry["job_kind"] == "MANUAL" and dry["job_name"] == purge.VENDOR_TYPE
    dry_attrs = json.loads(dry["job_parameters"])
    assert dry_attrs["dry_run"] is True
    assert dry_attrs["purged_count"] == expected
    assert len(await _left(state, marker)) == 9  # a dry run deletes nothing

    real_id = await _run(
        admin,
        audit_retention_hour=48,
        include_event_types="create_project,delete_artifact,update_configure",
    )
    real = await _wait(admin, real_id)
    assert real["job_status"] == "Success"
    attrs = json.loads(real["job_parameters"])
    assert attrs == {
        "audit_retention_hour": 48,
        "include_event_types": "create_project,delete_artifact,update_configure",
        "dry_run": False,
        "purged_count": expected,
    }
    assert await _left(state, marker) == [
        ("create", "project", 40),
        ("delete", "artifact", 1),
        ("pull", "artifact", 100),
    ]
    assert await _matching(state, 48, kinds) == 0

    log = await admin.get(f"{URL}/{real_id}/log")
    assert log.status_code == 200
    assert log.headers["content-type"].startswith("text/plain")
    assert "older than 48 hours" in log.text
    assert f"done: {expected} events purged" in log.text
    # Harbor's wording, which clients grep.
    assert log.text.splitlines()[0].endswith("Purge audit job start")
    assert f"Purged {expected} rows of audit logs" in log.text
    dry_log = (await admin.get(f"{URL}/{dry['id']}/log")).text
    assert f"{expected} rows of audit logs" in dry_log

    history = await admin.get(URL, params={"page_size": 100})
    assert history.status_code == 200
    ids = [h["id"] for h in history.json()]
    assert real_id in ids and ids == sorted(ids, reverse=True)
    assert int(history.headers["X-Total-Count"]) >= 2
    succeeded = await admin.get(URL, params={"q": "job_status=Success", "sort": "id"})
    assert [h["job_status"] for h in succeeded.json()] == ["Success"] * len(succeeded.json())
    assert [h["id"] for h in succeeded.json()] == sorted(h["id"] for h in succeeded.json())


async def test_harbor_include_operations_and_an_empty_list(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    marker = f"purge-{uuid.uuid4().hex[:10]}"
    await _seed(
        state, marker, [("pull", "artifact", 30), ("pull", "artifact", 2), ("create", "user", 30)]
    )
    nothing = await _wait(admin, await _run(admin, audit_retention_hour=10))
    assert json.loads(nothing["job_parameters"])["purged_count"] == 0
    assert len(await _left(state, marker)) == 3  # nothing listed, nothing purged (as Harbor)

    pulls = await _wait(
        admin, await _run(admin, audit_retention_hour=10, include_operations="pull")
    )
    assert json.loads(pulls["job_parameters"])["purged_count"] >= 1
    assert await _left(state, marker) == [("create", "user", 30), ("pull", "artifact", 2)]


async def test_schedule_create_update_get_and_fire(
    admin: httpx.AsyncClient, state: AppState, no_schedule: None
) -> None:
    empty = await admin.get(SCHEDULE)
    assert empty.status_code == 200
    assert empty.json() == {"schedule": {"type": "None"}}

    parameters = {
        "audit_retention_hour": 720,
        "include_event_types": "pull_artifact",
        "dry_run": True,
    }
    created = await admin.post(
        SCHEDULE, json={"schedule": {"type": "Daily"}, "parameters": parameters}
    )
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == SCHEDULE
    view = (await admin.get(SCHEDULE)).json()
    assert view["schedule"]["type"] == "Daily"
    assert view["schedule"]["cron"] == "0 0 0 * * *"
    assert view["schedule"]["next_scheduled_time"] > utcnow().isoformat()[:10]
    assert json.loads(view["job_parameters"]) == parameters

    updated = await admin.put(
        SCHEDULE,
        json={
            "schedule": {"type": "Custom", "cron": "0 30 2 * * 1"},
            "parameters": {**parameters, "audit_retention_hour": 24},
        },
    )
    assert updated.status_code == 200, updated.text
    view = (await admin.get(SCHEDULE)).json()
    assert view["id"] and view["schedule"]["type"] == "Custom"
    assert view["schedule"]["cron"] == "0 30 2 * * 1"
    assert json.loads(view["job_parameters"])["audit_retention_hour"] == 24

    # When it comes due, one purge runs with its parameters, shown with its schedule.
    async with state.db.read() as session:
        row = await schedules.find_schedule(session, purge.VENDOR_TYPE)
    assert row is not None
    launchers = {name: job.launcher for name, job in state.job_types.items() if job.launcher}
    assert await schedules.fire_due(state.db, launchers, now=row.next_fire) >= 1
    async with state.db.read() as session:
        fired = await jobs.latest_execution(session, purge.VENDOR_TYPE)
    assert fired is not None and fired.trigger == jobs.SCHEDULE
    run = await _wait(admin, fired.id)
    assert run["job_kind"] == "SCHEDULE"
    assert run["schedule"]["type"] == "Custom"
    assert json.loads(run["job_parameters"])["audit_retention_hour"] == 24

    removed = await admin.put(SCHEDULE, json={"schedule": {"type": "None"}})
    assert removed.status_code == 200
    assert (await admin.get(SCHEDULE)).json() == {"schedule": {"type": "None"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"schedule": {"type": "Manual"}, "parameters": {"audit_retention_hour": -1}}, "between"),
        ({"schedule": {"type": "Manual"}, "parameters": {"audit_retention_hour": 0}}, "between"),
        ({"schedule": {"type": "Manual"}, "parameters": {"audit_retention_hour": "x"}}, "integer"),
        (
            {"schedule": {"type": "Manual"}, "parameters": {"audit_retention_hour": "--5"}},
            "integer",
        ),
        ({"schedule": {"type": "Manual"}, "parameters": {"audit_retention_hour": True}}, "integer"),
        ({"schedule": {"type": "Manual"}, "parameters": {}}, "required"),
        ({"schedule": {"type": "Manual"}}, "required"),
        ({"parameters": {"audit_retention_hour": 1}}, "schedule is required"),
        ({"schedule": {"type": "Sometimes"}, "parameters": {"audit_retention_hour": 1}}, "one of"),
        (
            {
                "schedule": {"type": "Custom", "cron": "* * *"},
                "parameters": {"audit_retention_hour": 1},
            },
            "cron",
        ),
        ({"schedule": {"type": "Custom"}, "parameters": {"audit_retention_hour": 1}}, "cron"),
        (
            {
                "schedule": {"type": "Manual"},
                "parameters": {"audit_retention_hour": 1, "include_event_types": "create_projcet"},
            },
            "unknown event type",
        ),
        (
            {
                "schedule": {"type": "Manual"},
                "parameters": {"audit_retention_hour": 1, "include_event_types": "drop table"},
            },
            "list of names",
        ),
        (
            {
                "schedule": {"type": "Manual"},
                "parameters": {"audit_retention_hour": 1, "include_operations": "create,erase"},
            },
            "unknown operation",
        ),
        (
            {
                "schedule": {"type": "Manual"},
                "parameters": {"audit_retention_hour": 1, "dry_run": 3},
            },
            "dry_run",
        ),
    ],
)
async def test_bad_requests_are_400s_that_start_nothing(
    admin: httpx.AsyncClient, state: AppState, body: dict[str, Any], message: str
) -> None:
    async with state.db.read() as session:
        before = await session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.vendor_type == purge.VENDOR_TYPE)
        )
    as_schedule = dict(body)  # PUT sets a schedule: the same parameters on a Daily one
    if body.get("schedule", {}).get("type") == "Manual":
        as_schedule["schedule"] = {"type": "Daily"}
    for method, sent in (("POST", body), ("PUT", as_schedule)):
        response = await admin.request(method, SCHEDULE, json=sent)
        assert response.status_code == 400, (method, response.text)
        assert message in response.json()["errors"][0]["message"], response.text
    async with state.db.read() as session:
        after = await session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.vendor_type == purge.VENDOR_TYPE)
        )
        assert await schedules.find_schedule(session, purge.VENDOR_TYPE) is None
    assert after == before


async def test_put_manual_purges_now_and_put_without_type_changes_nothing(
    admin: httpx.AsyncClient, state: AppState, no_schedule: None
) -> None:
    """Harbor answers both with 200: ``Manual`` runs now, no type (``{"cron": ""}``) is a no-op."""
    daily = {"schedule": {"type": "Daily"}, "parameters": {"audit_retention_hour": 24}}
    assert (await admin.put(SCHEDULE, json=daily)).status_code == 200
    for body in ({"schedule": {"cron": ""}}, {"schedule": {"type": "", "cron": ""}}):
        assert (await admin.put(SCHEDULE, json=body)).status_code == 200
        kept = (await admin.get(SCHEDULE)).json()
        assert kept["schedule"]["type"] == "Daily", kept
    before = (await admin.get(URL, params={"page_size": 1})).json()
    manual = await admin.put(
        SCHEDULE,
        json={
            "schedule": {"type": "Manual"},
            "parameters": {"audit_retention_hour": 50000, "dry_run": True},
        },
    )
    assert manual.status_code == 200, manual.text
    newest = (await admin.get(URL, params={"page_size": 1})).json()[0]
    assert not before or newest["id"] > before[0]["id"]
    assert newest["job_kind"] == "MANUAL"
    assert (await _wait(admin, newest["id"]))["job_status"] == "Success"
    assert (await admin.get(SCHEDULE)).json()["schedule"]["type"] == "Daily"


async def test_unknown_runs_are_404(admin: httpx.AsyncClient, state: AppState) -> None:
    async with state.db.write() as session:
        other = await jobs.enqueue(session, "TEST_STEPS", extra_attrs={"steps": 1})
    for missing in (999_999_999, other.id):  # another job type's execution is not a purge
        assert (await admin.get(f"{URL}/{missing}")).status_code == 404
        assert (await admin.get(f"{URL}/{missing}/log")).status_code == 404
        assert (await admin.put(f"{URL}/{missing}")).status_code == 404
    assert (await admin.get(f"{URL}/abc")).status_code == 404
    assert (await admin.put(f"{URL}/-1")).status_code == 404


async def test_stop_a_pending_and_a_running_purge(
    admin: httpx.AsyncClient, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pending: the queue is paused, so nothing picks the purge up before the stop.
    async with state.db.write() as session:
        await jobs.set_paused(session, purge.VENDOR_TYPE, True)
    try:
        pending_id = await _run(admin, audit_retention_hour=5, include_event_types="create_user")
        assert (await admin.put(f"{URL}/{pending_id}")).status_code == 200
        assert (await _wait(admin, pending_id))["job_status"] == "Stopped"
    finally:
        async with state.db.write() as session:
            await jobs.set_paused(session, purge.VENDOR_TYPE, False)

    # Running: small, slow batches; the stop lands between two of them.
    marker = f"purge-{uuid.uuid4().hex[:10]}"
    await _seed(state, marker, [("delete", "member", 1000)] * 30)
    slow_delete: Callable[..., Awaitable[int]] = audit_jobs.repo.delete_events

    async def delete_slowly(*args: Any) -> int:
        await asyncio.sleep(0.15)
        return await slow_delete(*args)

    monkeypatch.setattr(audit_jobs, "PURGE_BATCH", 2)
    monkeypatch.setattr(audit_jobs.repo, "delete_events", delete_slowly)
    running_id = await _run(admin, audit_retention_hour=500, include_event_types="delete_member")
    deadline = time.monotonic() + 20
    while len(await _left(state, marker)) == 30:
        assert time.monotonic() < deadline, "the purge never started"
        await asyncio.sleep(0.05)
    assert (await admin.put(f"{URL}/{running_id}")).status_code == 200
    stopped = await _wait(admin, running_id)
    assert stopped["job_status"] == "Stopped"
    left = len(await _left(state, marker))
    assert 0 < left < 30
    purged = json.loads(stopped["job_parameters"])["purged_count"]
    assert purged >= 30 - left  # the count commits with each batch
    assert (await admin.put(f"{URL}/{running_id}")).status_code == 200  # ended: nothing to do
    monkeypatch.undo()
    finished = await _wait(
        admin, await _run(admin, audit_retention_hour=500, include_event_types="delete_member")
    )
    assert finished["job_status"] == "Success"
    assert await _left(state, marker) == []


@pytest.fixture
async def someone(app: Starlette, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    name = f"purger{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    async with make_client(app, (name, PASSWORD)) as client:
        yield client


async def test_only_administrators_purge(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, someone: httpx.AsyncClient
) -> None:
    purge_id = await _run(admin, audit_retention_hour=100000, include_event_types="create_user")
    await _wait(admin, purge_id)
    body = {"schedule": {"type": "Manual"}, "parameters": {"audit_retention_hour": 1}}
    calls = [
        ("GET", URL, None),
        ("GET", f"{URL}/{purge_id}", None),
        ("PUT", f"{URL}/{purge_id}", None),
        ("GET", f"{URL}/{purge_id}/log", None),
        ("GET", SCHEDULE, None),
        ("POST", SCHEDULE, body),
        (
            "PUT",
            SCHEDULE,
            {"schedule": {"type": "Daily"}, "parameters": {"audit_retention_hour": 1}},
        ),
    ]
    for client, status in ((anon, 401), (someone, 403)):
        for method, url, json_body in calls:
            response = await client.request(method, url, json=json_body)
            assert response.status_code == status, (method, url, response.text)
            assert response.json()["errors"][0]["code"]
    assert (await admin.get(SCHEDULE)).json() == {"schedule": {"type": "None"}}


async def test_a_purge_taken_over_resumes_with_its_cut_off_and_count(
    admin: httpx.AsyncClient, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stops mid-purge hands it back; the next run keeps the cut-off
    time and the count, so ``purged_count`` is exact."""
    marker = f"purge-{uuid.uuid4().hex[:10]}"
    await _seed(state, marker, [("update", "robot", 1000)] * 40)
    expected = await _matching(state, 500, [("update", "robot")])
    real_delete: Callable[..., Awaitable[int]] = audit_jobs.repo.delete_events

    async def delete_slowly(*args: Any) -> int:
        await asyncio.sleep(0.05)
        return await real_delete(*args)

    monkeypatch.setattr(audit_jobs, "PURGE_BATCH", 3)
    monkeypatch.setattr(audit_jobs.repo, "delete_events", delete_slowly)
    assert state.jobs is not None
    await state.jobs.close()  # the app's own workers step aside for this test
    env = JobEnvironment(
        state.settings.model_copy(update={"job_workers": 1}),
        state.db,
        state.storage,
        state.registry,
    )
    try:
        first = JobRunner(env, state.job_types, run_scheduler=False)
        await first.start()
        purge_id = await _run(admin, audit_retention_hour=500, include_event_types="update_robot")
        deadline = time.monotonic() + 20
        while len(await _left(state, marker)) > 30:
            assert time.monotonic() < deadline, "the purge never started"
            await asyncio.sleep(0.02)
        await first.close()
        assert 0 < len(await _left(state, marker)) < 40
        second = JobRunner(env, state.job_types, run_scheduler=False)
        await second.start()
        try:
            done = await _wait(admin, purge_id)
        finally:
            await second.close()
    finally:
        await start_workers(state)  # the app's workers, as the app starts them
    assert done["job_status"] == "Success"
    assert json.loads(done["job_parameters"])["purged_count"] == expected
    assert await _left(state, marker) == []
    log = (await admin.get(f"{URL}/{purge_id}/log")).text
    assert "resuming after" in log
    cutoffs = {
        line.split("(before ", 1)[1].split(")")[0]
        for line in log.splitlines()
        if "(before " in line
    }
    assert len(cutoffs) == 1, log
