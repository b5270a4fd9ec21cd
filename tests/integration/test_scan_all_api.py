"""Scan all through the app, on SQLite and PostgreSQL: a manual run scans every image once
(indexes, non-images and projects without a scanner left out), its metrics, one run at a
time, stop, the schedule (set, replace, remove, fired), RBAC and bad input, each answer
checked against Harbor's swagger.

The module runs its own app on its own database (scan all walks every artifact there).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from tests.integration.conftest import make_client, serving
from tests.integration.registry_helpers import push_image
from tests.integration.test_scanners import (
    Misbehaving,
    _artifact_url,
    _member,
    _overview,
    _project,
    _register,
    _use_scanner,
    _user,
    misbehaving,
)
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.http.state import AppState
from dockyard.iam.policy import Role
from dockyard.jobs import schedules
from dockyard.jobs.models import Execution, Schedule, Task
from dockyard.registry.models import Artifact
from dockyard.scan import scanall
from dockyard.scan.models import ScannerRegistration, ScanReport
from dockyard.settings import Settings

API = "/api/v2.0"
ADMIN = ("admin", "Harbor12345")
PASSWORD = "Passw0rdPassw0rd"
SCHEDULE = f"{API}/system/scanAll/schedule"
METRICS = f"{API}/scans/all/metrics"
REPORT = {
    "generated_at": "2026-01-01T00:00:00Z",
    "scanner": {"name": "Stub", "vendor": "Tests", "version": "1"},
    "severity": "High",
    "vulnerabilities": [
        {"id": "CVE-2026-1", "package": "openssl", "version": "1.0", "severity": "High"}
    ],
}


@pytest.fixture(scope="module")
async def scan_all_app(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    with contextlib.ExitStack() as stack:
        if settings.effective_database_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path_factory.mktemp('scanall-db') / 'dockyard.db'}"
        else:
            url = stack.enter_context(temporary_database(postgres_admin_url()))
        configured = settings.model_copy(
            update={
                "database_url": url,
                "data_dir": tmp_path_factory.mktemp("scanall-data"),
                "outbound_timeout_seconds": 2.0,
                "scan_timeout_seconds": 30.0,
            }
        )
        async with serving(configured) as application:
            yield application


@pytest.fixture(scope="module")
def state(scan_all_app: Starlette) -> AppState:
    result: AppState = scan_all_app.state.dockyard
    return result


@pytest.fixture
async def admin(scan_all_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(scan_all_app, ADMIN) as client:
        yield client


@pytest.fixture(scope="module")
def adapter() -> Iterator[Misbehaving]:
    """One stub adapter for the module (scan all scans every project's images): it
    answers ``REPORT`` unless a test switches ``report``."""
    with misbehaving(report=(200, REPORT)) as stub:
        yield stub


@pytest.fixture(scope="module")
async def scanner(scan_all_app: Starlette, adapter: Misbehaving) -> str:
    """The stub's registration (the first, so the default)."""
    async with make_client(scan_all_app, ADMIN) as client:
        return await _register(client, adapter.url)


async def _metrics(admin: httpx.AsyncClient, url: str = METRICS) -> dict[str, Any]:
    response = await admin.get(url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _wait_done(admin: httpx.AsyncClient, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        stats = await _metrics(admin)
        if not stats["ongoing"]:
            return stats
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.2)


async def _images(state: AppState) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Artifact)
            .where(Artifact.type == "IMAGE", Artifact.manifest_media_type.not_like("%index%"))
        )
    return int(count or 0)


async def test_metrics_before_any_run_and_no_scanner_is_412(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    assert await _metrics(admin) == {"total": 0, "completed": 0, "metrics": {}, "ongoing": False}
    assert (await admin.get(SCHEDULE)).json() == {"schedule": {"type": "None"}}
    # No scanner registered yet: neither a run nor a schedule can scan anything.
    for body in ({"schedule": {"type": "Manual"}}, {"schedule": {"type": "Daily"}}):
        response = await admin.post(SCHEDULE, json=body)
        assert response.status_code == 412, response.text
        assert response.json()["errors"][0]["code"] == "PRECONDITION_FAILED"
    stop = await admin.post(f"{API}/system/scanAll/stop")
    assert stop.status_code == 400 and "no scan all is running" in stop.text


async def test_scan_all_scans_every_image_once(
    admin: httpx.AsyncClient, state: AppState, adapter: Misbehaving, scanner: str
) -> None:
    adapter.bodies.clear()  # the stub serves the module on both databases
    scanned = await _project(state)  # uses the default scanner
    digests = [
        (await push_image(admin, f"{scanned}/app{i}", "v1", seed=f"s{i}".encode()))[0]
        for i in range(3)
    ]
    # A project whose chosen scanner is disabled is left out.
    off = await _project(state)
    other = await _register(admin, adapter.url)
    await _use_scanner(admin, off, other)
    response = await admin.put(
        f"{API}/scanners/{other}",
        json={"name": f"off-{other[:8]}", "url": adapter.url, "disabled": True},
    )
    assert response.status_code == 200, response.text
    skipped, _ = await push_image(admin, f"{off}/app", "v1", seed=b"off")

    response = await admin.post(SCHEDULE, json={"schedule": {"type": "Manual"}})
    assert response.status_code == 201, response.text
    stats = await _wait_done(admin)
    expected = await _images(state) - 1
    assert stats == {
        "total": expected,
        "completed": expected,
        "metrics": {"Success": expected},
        "ongoing": False,
        "trigger": "Manual",
    }
    for digest in digests:
        summary = await _overview(
            admin, _artifact_url(scanned, f"app{digests.index(digest)}", digest)
        )
        assert summary["scan_status"] == "Success", summary
        assert summary["summary"]["summary"] == {"High": 1}
    assert await _overview(admin, _artifact_url(off, "app", skipped)) == {}
    posted = [body["artifact"]["digest"] for body in adapter.bodies]
    assert sorted(set(posted)) == sorted(posted)  # each image sent once
    assert set(digests) <= set(posted) and skipped not in posted


async def test_one_run_at_a_time_and_stop(
    admin: httpx.AsyncClient, state: AppState, adapter: Misbehaving, scanner: str
) -> None:
    adapter.report = (302, None)  # the reports never come
    adapter.seen.clear()
    try:
        project = await _project(state)
        digest, _ = await push_image(admin, f"{project}/slow", "v1", seed=b"slow")
        response = await admin.post(SCHEDULE, json={"schedule": {"type": "Manual"}})
        assert response.status_code == 201, response.text
        again = await admin.post(SCHEDULE, json={"schedule": {"type": "Manual"}})
        assert again.status_code == 409, again.text
        assert again.json()["errors"][0]["code"] == "CONFLICT"
        # Wait until the slow artifact is being polled, then stop the run.
        deadline = time.monotonic() + 30
        while not any(path.startswith("/scan/") for _, path, _ in adapter.seen):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        stats = await _metrics(admin)
        assert stats["ongoing"] is True and stats["trigger"] == "Manual"
        stop = await admin.post(f"{API}/system/scanAll/stop")
        assert stop.status_code == 202, stop.text
        stats = await _wait_done(admin)
        assert stats["metrics"].get("Stopped", 0) >= 1, stats
        assert stats["completed"] == stats["total"]
        summary = await _overview(admin, _artifact_url(project, "slow", digest))
        assert summary["scan_status"] == "Stopped"
        again = await admin.post(f"{API}/system/scanAll/stop")
        assert again.status_code == 400
    finally:
        adapter.report = (200, REPORT)


async def test_the_schedule(admin: httpx.AsyncClient, state: AppState, scanner: str) -> None:
    response = await admin.post(SCHEDULE, json={"schedule": {"type": "Daily"}})
    assert response.status_code == 201, response.text
    shown = (await admin.get(SCHEDULE)).json()
    assert shown["schedule"]["type"] == "Daily"
    assert shown["schedule"]["cron"] == "0 0 0 * * *"
    assert shown["schedule"]["next_scheduled_time"]
    assert shown["parameters"] == {}
    conflict = await admin.post(SCHEDULE, json={"schedule": {"type": "Weekly"}})
    assert conflict.status_code == 409
    custom = {"schedule": {"type": "Custom", "cron": "0 30 2 * * *"}}
    assert (await admin.put(SCHEDULE, json=custom)).status_code == 200
    shown = (await admin.get(SCHEDULE)).json()
    assert shown["schedule"]["type"] == "Custom"
    assert shown["schedule"]["cron"] == "0 30 2 * * *"
    # The portal's empty update changes nothing.
    assert (await admin.put(SCHEDULE, json={"schedule": {"cron": ""}})).status_code == 200
    assert (await admin.get(SCHEDULE)).json()["schedule"]["cron"] == "0 30 2 * * *"

    # The schedule fires (as the workers' scheduler does when it is due).
    async with state.db.read() as session:
        row = await session.scalar(select(Schedule).where(Schedule.vendor_type == "SCAN_ALL"))
        assert row is not None
        due = row.next_fire
    fired = await schedules.fire_due(
        state.db, {scanall.JOB_TYPE: scanall.launch_scheduled}, now=due
    )
    assert fired == 1
    await _wait_done(admin)
    scheduled = await _metrics(admin, f"{API}/scans/schedule/metrics")
    assert scheduled["trigger"] == "Schedule" and scheduled["ongoing"] is False
    assert scheduled == await _metrics(admin)

    assert (await admin.put(SCHEDULE, json={"schedule": {"type": "None"}})).status_code == 200
    assert (await admin.get(SCHEDULE)).json() == {"schedule": {"type": "None"}}


@pytest.mark.parametrize(
    ("method", "body", "words"),
    [
        ("post", {"schedule": {"type": "Sometimes"}}, "schedule.type must be one of"),
        ("put", {"schedule": {"type": "Custom", "cron": "* * *"}}, "invalid cron"),
        ("put", {"schedule": {"type": "Custom"}}, "needs a cron"),
        ("post", {"schedule": {"type": "Daily"}, "parameters": {"x": 1}}, "no parameters"),
        ("post", {}, "schedule is required"),
        ("post", [1, 2], ""),
        ("put", {"schedule": "daily"}, ""),
    ],
)
async def test_bad_schedules_are_400s(
    admin: httpx.AsyncClient, method: str, body: Any, words: str
) -> None:
    response = await getattr(admin, method)(SCHEDULE, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert words in response.json()["errors"][0]["message"]


async def test_rbac(scan_all_app: Starlette, state: AppState, admin: httpx.AsyncClient) -> None:
    username = await _user(state)
    project = await _project(state)
    await _member(state, project, username, Role.PROJECT_ADMIN)
    calls = [
        ("get", SCHEDULE, None),
        ("post", SCHEDULE, {"schedule": {"type": "Manual"}}),
        ("put", SCHEDULE, {"schedule": {"type": "None"}}),
        ("post", f"{API}/system/scanAll/stop", None),
        ("get", METRICS, None),
        ("get", f"{API}/scans/schedule/metrics", None),
    ]
    async with make_client(scan_all_app, (username, PASSWORD)) as user:
        for method, url, body in calls:
            kwargs = {"json": body} if body is not None else {}
            response = await getattr(user, method)(url, **kwargs)
            assert response.status_code == 403, (method, url, response.text)
            assert response.json()["errors"][0]["code"] == "FORBIDDEN"
    async with make_client(scan_all_app, None) as anonymous:
        for method, url, body in calls:
            kwargs = {"json": body} if body is not None else {}
            response = await getattr(anonymous, method)(url, **kwargs)
            assert response.status_code == 401, (method, url, response.text)


async def test_planner_batches_and_resumes(state: AppState, admin: httpx.AsyncClient) -> None:
    """The planner commits its place with each batch: rows it wrote and its progress agree,
    and the number of statements does not grow with the artifacts (one batch per BATCH)."""
    async with state.db.read() as session:
        run = await session.scalar(
            select(Execution)
            .where(Execution.vendor_type == "SCAN_ALL")
            .order_by(Execution.id.desc())
            .limit(1)
        )
        assert run is not None
        planner = await session.scalar(
            select(Task).where(Task.execution_id == run.id).order_by(Task.id).limit(1)
        )
        assert planner is not None
        progress = planner.progress or ""
        reports = await session.scalar(
            select(func.count()).select_from(ScanReport).where(ScanReport.execution_id == run.id)
        )
        scans = await session.scalar(
            select(func.count()).select_from(Task).where(Task.execution_id == run.id)
        )
    assert '"after"' in progress and f'"planned":{int(reports or 0)}' in progress
    assert int(scans or 0) == int(reports or 0) + 1
    # The default scanner gone: a project without a chosen scanner is then left out too.
    async with state.db.write() as session:
        await session.execute(update(ScannerRegistration).values(is_default=False))
    response = await admin.post(SCHEDULE, json={"schedule": {"type": "Manual"}})
    assert response.status_code == 412
