"""``/api/v2.0/system/gc`` on SQLite and PostgreSQL: run now, schedules (presets and
Custom cron), history, one run, its log, stop, validation and access.

These run on the session's shared app, so every run here is a dry run (GC is global
and must not delete other tests' blobs).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password

pytestmark = pytest.mark.asyncio(loop_scope="session")
GC = "/api/v2.0/system/gc"
PASSWORD = "Gc-Passw0rd"


@pytest.fixture
async def user(app: Starlette, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    name = f"gc{uuid.uuid4().hex[:8]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    async with make_client(app, (name, PASSWORD)) as client:
        yield client


async def _wait(admin: httpx.AsyncClient, gc_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found: dict[str, Any] = (await admin.get(f"{GC}/{gc_id}")).json()
        if found["job_status"] in ("Success", "Error", "Stopped"):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def _run_now(admin: httpx.AsyncClient, **parameters: Any) -> int:
    body = {"schedule": {"type": "Manual"}, "parameters": {"dry_run": True, **parameters}}
    for _ in range(100):  # another test's run may still be going: one run at a time
        response = await admin.post(f"{GC}/schedule", json=body)
        if response.status_code != 409:
            break
        await asyncio.sleep(0.1)
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.startswith(f"{GC}/")
    return int(location.rsplit("/", 1)[1])


async def test_run_now_then_history_get_and_log(admin: httpx.AsyncClient) -> None:
    gc_id = await _run_now(admin, delete_untagged=True, workers=4, time_window=3)
    run = await _wait(admin, gc_id)
    assert run["job_status"] == "Success"
    assert run["job_kind"] == "MANUAL"
    assert run["job_name"] == "GARBAGE_COLLECTION"
    params = json.loads(run["job_parameters"])
    assert params["dry_run"] is True and params["workers"] == 4 and params["time_window"] == 3
    assert params["delete_untagged"] is True
    for key in ("freed_space", "purged_blobs", "purged_manifests"):
        assert isinstance(params[key], int)

    history = await admin.get(GC, params={"page": 1, "page_size": 5})
    assert history.status_code == 200
    assert int(history.headers["X-Total-Count"]) >= 1
    assert history.json()[0]["id"] == gc_id  # newest first
    by_status = await admin.get(GC, params={"q": "job_status=Success", "sort": "-creation_time"})
    assert gc_id in [h["id"] for h in by_status.json()]
    # Harbor answers an unknown q or sort key with 400, which its swagger leaves undeclared.
    skip = {"X-Dockyard-Contract": "skip"}
    assert (await admin.get(GC, params={"q": "nope=1"}, headers=skip)).status_code == 400
    assert (await admin.get(GC, params={"sort": "nope"}, headers=skip)).status_code == 400

    log = await admin.get(f"{GC}/{gc_id}/log")
    assert log.status_code == 200
    assert log.headers["content-type"].startswith("text/plain")
    assert "dry run: nothing deleted" in log.text

    assert (await admin.get(f"{GC}/999999999")).status_code == 404
    assert (await admin.get(f"{GC}/999999999/log")).status_code == 404
    assert (await admin.put(f"{GC}/999999999")).status_code == 404
    assert (await admin.put(f"{GC}/{gc_id}")).status_code == 200  # finished: nothing to stop


async def test_put_manual_runs_now_and_put_without_type_changes_nothing(
    admin: httpx.AsyncClient,
) -> None:
    """Harbor answers both with 200: ``Manual`` runs now, no type (``{"cron": ""}``) is a no-op."""
    weekly = {"schedule": {"type": "Weekly"}}
    assert (await admin.put(f"{GC}/schedule", json=weekly)).status_code == 200
    try:
        for body in ({"schedule": {"cron": ""}}, {"schedule": {"type": "", "cron": ""}}):
            assert (await admin.put(f"{GC}/schedule", json=body)).status_code == 200
            kept = (await admin.get(f"{GC}/schedule")).json()
            assert kept["schedule"]["type"] == "Weekly", kept
        before = (await admin.get(GC, params={"page_size": 1})).json()
        manual = {"schedule": {"type": "Manual"}, "parameters": {"dry_run": True}}
        for _ in range(100):  # another test's run may still be going: one run at a time
            response = await admin.put(f"{GC}/schedule", json=manual)
            if response.status_code != 409:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 200, response.text
        newest = (await admin.get(GC, params={"page_size": 1})).json()[0]
        assert not before or newest["id"] > before[0]["id"]
        assert newest["job_kind"] == "MANUAL"
        assert (await _wait(admin, newest["id"]))["job_status"] == "Success"
        assert (await admin.get(f"{GC}/schedule")).json()["schedule"]["type"] == "Weekly"
    finally:
        await admin.put(f"{GC}/schedule", json={"schedule": {"type": "None"}})


async def test_schedule_presets_custom_and_none(admin: httpx.AsyncClient) -> None:
    await admin.put(f"{GC}/schedule", json={"schedule": {"type": "None"}})
    empty = (await admin.get(f"{GC}/schedule")).json()
    assert empty["schedule"]["type"] == "None"

    daily = {"schedule": {"type": "Daily"}, "parameters": {"delete_untagged": True, "workers": 2}}
    assert (await admin.post(f"{GC}/schedule", json=daily)).status_code == 201
    assert (await admin.post(f"{GC}/schedule", json=daily)).status_code == 409
    got = (await admin.get(f"{GC}/schedule")).json()
    assert got["schedule"]["type"] == "Daily"
    assert got["schedule"]["cron"] == "0 0 0 * * *"
    assert got["schedule"]["next_scheduled_time"]
    assert json.loads(got["job_parameters"])["workers"] == 2

    custom = {
        "schedule": {"type": "Custom", "cron": "0 30 3 * * 1"},
        "parameters": {"dry_run": True, "time_window": 0},
    }
    assert (await admin.put(f"{GC}/schedule", json=custom)).status_code == 200
    got = (await admin.get(f"{GC}/schedule")).json()
    assert got["schedule"]["type"] == "Custom"
    assert got["schedule"]["cron"] == "0 30 3 * * 1"
    assert json.loads(got["job_parameters"])["time_window"] == 0

    weekly = {"schedule": {"type": "Weekly"}}
    assert (await admin.put(f"{GC}/schedule", json=weekly)).status_code == 200
    assert (await admin.get(f"{GC}/schedule")).json()["schedule"]["type"] == "Weekly"

    assert (await admin.put(f"{GC}/schedule", json={"schedule": {"type": "None"}})).status_code == (
        200
    )
    assert (await admin.get(f"{GC}/schedule")).json()["schedule"]["type"] == "None"


@pytest.mark.parametrize(
    "body",
    [
        {"schedule": {"type": "Manual"}, "parameters": {"workers": 0}},
        {"schedule": {"type": "Manual"}, "parameters": {"workers": 11}},
        {"schedule": {"type": "Manual"}, "parameters": {"workers": "3"}},
        {"schedule": {"type": "Manual"}, "parameters": {"time_window": -1}},
        {"schedule": {"type": "Manual"}, "parameters": {"dry_run": "yes"}},
        {"schedule": {"type": "Manual"}, "parameters": {"bogus": 1}},
        {"schedule": {"type": "Custom", "cron": "not a cron"}},
        {"schedule": {"type": "Custom"}},
        {"schedule": {"type": "Sometimes"}},
        {"parameters": {"workers": 1}},
    ],
)
async def test_bad_requests_are_400(admin: httpx.AsyncClient, body: dict[str, Any]) -> None:
    created = await admin.post(f"{GC}/schedule", json=body)
    assert created.status_code == 400, created.text
    assert created.json()["errors"][0]["code"] == "BAD_REQUEST"
    updated = await admin.put(f"{GC}/schedule", json=body)
    assert updated.status_code == 400, updated.text


async def test_only_administrators(
    anon: httpx.AsyncClient, user: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    gc_id = await _run_now(admin)
    await _wait(admin, gc_id)
    manual = {"schedule": {"type": "Manual"}, "parameters": {"dry_run": True}}
    calls = [
        ("GET", GC, None),
        ("GET", f"{GC}/{gc_id}", None),
        ("PUT", f"{GC}/{gc_id}", None),
        ("GET", f"{GC}/{gc_id}/log", None),
        ("GET", f"{GC}/schedule", None),
        ("POST", f"{GC}/schedule", manual),
        ("PUT", f"{GC}/schedule", {"schedule": {"type": "Daily"}}),
    ]
    for method, url, body in calls:
        assert (await anon.request(method, url, json=body)).status_code == 401, (method, url)
        refused = await user.request(method, url, json=body)
        assert refused.status_code == 403, (method, url)
        assert refused.json()["errors"][0]["code"] == "FORBIDDEN"


async def test_a_system_robot_with_the_grant_may_run_it(admin: httpx.AsyncClient) -> None:
    access = [
        {"resource": "garbage-collection", "action": a}
        for a in ("read", "create", "list", "update", "stop")
    ]
    body = {
        "name": f"gc{uuid.uuid4().hex[:8]}",
        "level": "system",
        "duration": -1,
        "permissions": [{"kind": "system", "namespace": "/", "access": access}],
    }
    created = await admin.post("/api/v2.0/robots", json=body)
    assert created.status_code == 201, created.text
    robot = created.json()
    transport = admin._transport
    async with httpx.AsyncClient(
        transport=transport, base_url=str(admin.base_url), auth=(robot["name"], robot["secret"])
    ) as client:
        assert (await client.get(GC)).status_code == 200
        assert (await client.get(f"{GC}/schedule")).status_code == 200
