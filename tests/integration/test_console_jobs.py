"""The console's job pages through the ASGI app on SQLite and PostgreSQL: garbage collection,
the job service dashboard, audit log purge and forwarding, tag retention and webhooks.

Jobs run in the app's embedded workers (poll 0.2 s); what the console changes is read
back through the REST API, so both faces are seen to agree."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import push_image
from tests.integration.test_console_pages import flash, follow

from dockyard.console.routes import post_routes
from dockyard.http.state import AppState
from dockyard.jobs import service as jobs

PASSWORD = "Passw0rd!x"
FINAL = ("Success", "Error", "Stopped")
MY_POSTS = [
    p for p in post_routes() if any(k in p for k in ("/gc/", "job-service", "audit-log-settings"))
] + [p for p in post_routes() if "/retention" in p or "/webhooks" in p]


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def project(admin: httpx.AsyncClient) -> str:
    name = f"j{uuid.uuid4().hex[:10]}"
    response = await admin.post("/api/v2.0/projects", json={"project_name": name})
    assert response.status_code == 201
    return name


async def new_user(admin: httpx.AsyncClient) -> str:
    name = f"u{uuid.uuid4().hex[:10]}"
    response = await admin.post(
        "/api/v2.0/users",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "realname": name,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 201, response.text
    return name


async def add_member(admin: httpx.AsyncClient, project: str, user: str, role: int) -> None:
    response = await admin.post(
        f"/api/v2.0/projects/{project}/members",
        json={"role_id": role, "member_user": {"username": user}},
    )
    assert response.status_code == 201, response.text


async def wait_for(check: Any, what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


# --- pages and languages -------------------------------------------------------------------


async def test_the_job_pages_answer_in_both_languages(
    console: tuple[httpx.AsyncClient, str], project: str
) -> None:
    client, _ = console
    pages = {
        "/harbor/admin/gc": "Garbage collection",
        "/harbor/admin/job-service": "Worker pools",
        "/harbor/admin/audit-log-settings": "Purge old audit events",
        f"/harbor/projects/{project}/retention": "No retention rules",
        f"/harbor/projects/{project}/webhooks": "No webhooks yet",
    }
    for path, english in pages.items():
        client.cookies.set("dy_lang", "en")
        response = await client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code}"
        assert english in response.text, path
        client.cookies.set("dy_lang", "zh-CN")
        chinese = await client.get(path)
        assert chinese.status_code == 200, path
        assert english not in chinese.text, path
    client.cookies.set("dy_lang", "en")
    # The navigation offers them: the administration sections and the project tabs.
    listing = await client.get("/harbor/projects")
    for path in (
        "/harbor/admin/gc",
        "/harbor/admin/job-service",
        "/harbor/admin/audit-log-settings",
    ):
        assert f'href="{path}"' in listing.text, path
    summary = await client.get(f"/harbor/projects/{project}")
    assert 'data-tab="retention"' in summary.text
    assert 'data-tab="webhooks"' in summary.text


# --- garbage collection --------------------------------------------------------------------


async def test_gc_schedule_then_a_dry_run_shows_in_history_with_its_log(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    saved = await client.post(
        "/harbor/admin/gc/schedule",
        data={
            "_csrf": csrf,
            "schedule_type": "Custom",
            "cron": "0 30 2 * * 1",
            "workers": "3",
            "delete_untagged": "on",
        },
    )
    assert flash(await follow(client, saved)) == "The garbage collection schedule was saved."
    schedule = (await admin.get("/api/v2.0/system/gc/schedule")).json()
    assert schedule["schedule"]["type"] == "Custom"
    assert schedule["schedule"]["cron"] == "0 30 2 * * 1"
    assert '"workers": 3' in schedule["job_parameters"]
    assert '"delete_untagged": true' in schedule["job_parameters"]
    page = await client.get("/harbor/admin/gc")
    assert 'value="0 30 2 * * 1"' in page.text
    # A bad cron or worker count is refused with the service's reason; nothing changes.
    for bad in (
        {"schedule_type": "Custom", "cron": "every day"},
        {"schedule_type": "Daily", "workers": "99"},
    ):
        refused = await follow(
            client, await client.post("/harbor/admin/gc/schedule", data={"_csrf": csrf, **bad})
        )
        assert "invalid cron" in flash(refused) or "workers must be" in flash(refused)
    assert (await admin.get("/api/v2.0/system/gc/schedule")).json()["schedule"][
        "cron"
    ] == "0 30 2 * * 1"
    removed = await client.post(
        "/harbor/admin/gc/schedule", data={"_csrf": csrf, "schedule_type": "None"}
    )
    assert removed.status_code == 303
    assert (await admin.get("/api/v2.0/system/gc/schedule")).json()["schedule"]["type"] == "None"

    async def start() -> int | None:  # another test's run may still be going: one at a time
        response = await client.post(
            "/harbor/admin/gc/run", data={"_csrf": csrf, "dry_run": "true"}
        )
        message = flash(await follow(client, response))
        found = re.fullmatch(r"Garbage collection (\d+) was started\.", message)
        return int(found.group(1)) if found else None

    async def idle() -> bool:  # another test's run must not wait behind the paused queue
        latest = (await admin.get("/api/v2.0/system/gc", params={"page_size": 1})).json()
        return not latest or latest[0]["job_status"] in FINAL

    await wait_for(idle, "other garbage collections to finish")
    queues = "/harbor/admin/job-service/queues"
    pause = {"_csrf": csrf, "job_type": "GARBAGE_COLLECTION", "action": "pause"}
    await client.post(queues, data=pause)
    try:
        run_id = await wait_for(start, "a GC dry run to start")
        waiting = await client.get("/harbor/admin/gc")  # the queue is paused: it waits
        assert 'id="gc-history" hx-get="/harbor/admin/gc" hx-trigger="every 2s"' in waiting.text
    finally:
        await client.post(queues, data={**pause, "action": "resume"})

    async def finished() -> dict[str, Any] | None:
        found: dict[str, Any] = (await admin.get(f"/api/v2.0/system/gc/{run_id}")).json()
        return found if found["job_status"] in FINAL else None

    run = await wait_for(finished, "the dry run to finish")
    assert run["job_status"] == "Success"
    assert '"dry_run": true' in run["job_parameters"]
    history = await client.get("/harbor/admin/gc")
    assert 'data-live="true"' not in history.text  # nothing runs: it stops refreshing
    row = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', history.text, re.S)
    assert row is not None
    assert 'data-status="Success"' in row.group(1)
    assert "<td>Yes</td>" in row.group(1)  # dry run
    log_url = f"/harbor/admin/gc/{run_id}/log"
    assert f'hx-get="{log_url}"' in row.group(1)
    log = await client.get(log_url)
    assert log.status_code == 200
    assert "dry run: nothing deleted" in log.text
    assert "<html" in log.text
    fragment = await client.get(log_url, headers={"HX-Request": "true", "HX-Target": "log-panel"})
    assert "dry run: nothing deleted" in fragment.text
    assert "<html" not in fragment.text
    # Stopping a finished run changes nothing; another kind's id is no GC run.
    stopped = await client.post(
        "/harbor/admin/gc/stop", data={"_csrf": csrf, "execution": str(run_id)}
    )
    assert stopped.status_code == 303
    assert (await admin.get(f"/api/v2.0/system/gc/{run_id}")).json()["job_status"] == "Success"
    assert (await client.get("/harbor/admin/gc/999999999/log")).status_code == 404


# --- the job service dashboard -------------------------------------------------------------


async def test_pause_and_resume_a_queue_from_the_dashboard(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    dashboard = await client.get("/harbor/admin/job-service")
    assert 'data-queue="GARBAGE_COLLECTION"' in dashboard.text
    assert "<code>" in re.search(
        r'<table data-testid="pools">(.*?)</table>', dashboard.text, re.S
    ).group(1)  # type: ignore[union-attr]

    async def paused(job_type: str) -> bool:
        queues = (await admin.get("/api/v2.0/jobservice/queues")).json()
        return next(q for q in queues if q["job_type"] == job_type)["paused"]

    response = await client.post(
        "/harbor/admin/job-service/queues",
        data={"_csrf": csrf, "job_type": "TEST_STEPS", "action": "pause"},
    )
    page = await follow(client, response)
    assert flash(page) == "The TEST_STEPS queue was paused."
    assert await paused("TEST_STEPS")
    row = re.search(r'<tr data-queue="TEST_STEPS">(.*?)</tr>', page.text, re.S)
    assert row is not None and 'data-paused="true"' in row.group(1)
    response = await client.post(
        "/harbor/admin/job-service/queues",
        data={"_csrf": csrf, "job_type": "TEST_STEPS", "action": "resume"},
    )
    assert flash(await follow(client, response)) == "The TEST_STEPS queue was resumed."
    assert not await paused("TEST_STEPS")
    refused = await client.post(
        "/harbor/admin/job-service/queues",
        data={"_csrf": csrf, "job_type": "NOPE", "action": "pause"},
    )
    assert "no job type" in flash(await follow(client, refused))
    bad = await client.post(
        "/harbor/admin/job-service/queues",
        data={"_csrf": csrf, "job_type": "TEST_STEPS", "action": "explode"},
    )
    assert "action must be" in flash(await follow(client, bad))
    missing = await client.post(
        "/harbor/admin/job-service/stop-job", data={"_csrf": csrf, "task": "999999999"}
    )
    assert missing.status_code == 404


async def test_the_dashboard_stops_pending_and_running_jobs_and_shows_their_logs(
    console: tuple[httpx.AsyncClient, str], state: AppState
) -> None:
    client, csrf = console
    queues = "/harbor/admin/job-service/queues"
    await client.post(queues, data={"_csrf": csrf, "job_type": "TEST_STEPS", "action": "pause"})
    try:
        async with state.db.write() as session:
            waiting = await jobs.enqueue(session, "TEST_STEPS", extra_attrs={"steps": 1})
        page = await client.get("/harbor/admin/job-service")
        row = re.search(r'<tr data-queue="TEST_STEPS">(.*?)</tr>', page.text, re.S)
        assert row is not None and '<td class="num">1</td>' in row.group(1)
        stop = {"_csrf": csrf, "job_type": "TEST_STEPS", "action": "stop"}
        stopped = await client.post(queues, data=stop)
        assert (
            flash(await follow(client, stopped)) == "The pending jobs of TEST_STEPS were stopped."
        )
        async with state.db.read() as session:
            assert (await jobs.get_execution(session, waiting.id)).status == "Stopped"
    finally:
        await client.post(
            queues, data={"_csrf": csrf, "job_type": "TEST_STEPS", "action": "resume"}
        )

    async with state.db.write() as session:
        long = await jobs.enqueue(session, "TEST_STEPS", extra_attrs={"steps": 400, "sleep": 0.05})
    async with state.db.read() as session:
        (task,), _ = await jobs.list_tasks(session, long.id)

    async def running() -> bool:
        page = await client.get("/harbor/admin/job-service")
        return f"<code>TEST_STEPS</code> #{task.id}" in page.text

    await wait_for(running, "a worker to show the running job")
    response = await client.post(
        "/harbor/admin/job-service/stop-job", data={"_csrf": csrf, "task": str(task.id)}
    )
    assert flash(await follow(client, response)) == f"Job {task.id} was asked to stop."

    async def ended() -> bool:
        async with state.db.read() as session:
            return (await jobs.get_task(session, task.id)).status == "Stopped"

    await wait_for(ended, "the running job to stop")
    log = await client.get(f"/harbor/admin/job-service/jobs/{task.id}/log")
    assert "step 1" in log.text


# --- audit log purge and forwarding --------------------------------------------------------


async def test_audit_purge_dry_run_schedule_and_forwarding(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient
) -> None:
    client, csrf = console
    saved = await client.post(
        "/harbor/admin/audit-log-settings/purge-schedule",
        data={
            "_csrf": csrf,
            "schedule_type": "Weekly",
            "retention_hours": "48",
            "event_type": ["pull_artifact", "login_user"],
        },
    )
    assert flash(await follow(client, saved)) == "The audit log purge schedule was saved."
    schedule = (await admin.get("/api/v2.0/system/purgeaudit/schedule")).json()
    assert schedule["schedule"]["type"] == "Weekly"
    assert '"audit_retention_hour": 48' in schedule["job_parameters"]
    assert "login_user,pull_artifact" in schedule["job_parameters"]
    page = await client.get("/harbor/admin/audit-log-settings")
    assert 'value="pull_artifact" checked' in page.text
    assert 'value="create_project" checked' not in page.text

    response = await client.post(
        "/harbor/admin/audit-log-settings/purge",
        data={
            "_csrf": csrf,
            "dry_run": "true",
            "retention_hours": "1",
            "event_type": "pull_artifact",
        },
    )
    message = flash(await follow(client, response))
    run_id = int(re.fullmatch(r"Audit log purge (\d+) was started\.", message).group(1))  # type: ignore[union-attr]

    async def finished() -> dict[str, Any] | None:
        found: dict[str, Any] = (await admin.get(f"/api/v2.0/system/purgeaudit/{run_id}")).json()
        return found if found["job_status"] in FINAL else None

    assert (await wait_for(finished, "the purge dry run"))["job_status"] == "Success"
    page = await client.get("/harbor/admin/audit-log-settings")
    row = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', page.text, re.S)
    assert row is not None and "<td>Yes</td>" in row.group(1)
    log = await client.get(f"/harbor/admin/audit-log-settings/purges/{run_id}/log")
    assert log.status_code == 200 and "dry run" in log.text.lower()
    refused = await client.post(
        "/harbor/admin/audit-log-settings/purge", data={"_csrf": csrf, "retention_hours": "0"}
    )
    assert "audit_retention_hour" in flash(await follow(client, refused))
    await client.post(
        "/harbor/admin/audit-log-settings/purge-schedule",
        data={"_csrf": csrf, "schedule_type": "None"},
    )
    assert (await admin.get("/api/v2.0/system/purgeaudit/schedule")).json()["schedule"][
        "type"
    ] == "None"

    # Forwarding: skipping the database needs an endpoint; both are configuration items.
    lonely = await client.post(
        "/harbor/admin/audit-log-settings/forwarding",
        data={"_csrf": csrf, "endpoint": "", "skip_database": "on"},
    )
    assert "needs an" in flash(await follow(client, lonely))
    saved = await client.post(
        "/harbor/admin/audit-log-settings/forwarding",
        data={"_csrf": csrf, "endpoint": "udp://127.0.0.1:5140", "skip_database": ""},
    )
    assert flash(await follow(client, saved)) == "The configuration was saved."
    items = (await admin.get("/api/v2.0/configurations")).json()
    assert items["audit_log_forward_endpoint"]["value"] == "udp://127.0.0.1:5140"
    assert items["skip_audit_log_database"]["value"] is False
    await client.post(
        "/harbor/admin/audit-log-settings/forwarding", data={"_csrf": csrf, "endpoint": ""}
    )
    items = (await admin.get("/api/v2.0/configurations")).json()
    assert items["audit_log_forward_endpoint"]["value"] == ""


# --- tag retention -------------------------------------------------------------------------


async def test_retention_rules_and_a_dry_run_with_task_logs(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, project: str
) -> None:
    client, csrf = console
    for tag in ("v1", "v2", "v3"):
        await push_image(admin, f"{project}/app", tag, seed=tag.encode())
    base = f"/harbor/projects/{project}/retention"
    rule = {
        "template": "latestPushedK",
        "value": "1",
        "repo_decoration": "repoMatches",
        "repo_pattern": "**",
        "tag_decoration": "matches",
        "tag_pattern": "v*",
    }
    created = await client.post(f"{base}/rules", data={"_csrf": csrf, **rule})
    page = await follow(client, created)
    assert flash(page) == "The retention rule was saved."
    assert "retain the most recently pushed artifact" in page.text
    policy_id = int(
        (await admin.get(f"/api/v2.0/projects/{project}")).json()["metadata"]["retention_id"]
    )
    policy = (await admin.get(f"/api/v2.0/retentions/{policy_id}")).json()
    assert [r["params"] for r in policy["rules"]] == [{"latestPushedK": 1}]
    # Edit it in place (2 newest), add an "always" rule for other tags, then drop that one.
    edited = await client.post(
        f"{base}/rules", data={"_csrf": csrf, **rule, "value": "2", "rule": "1"}
    )
    assert edited.status_code == 303
    added = await client.post(
        f"{base}/rules", data={"_csrf": csrf, **rule, "template": "always", "tag_pattern": "latest"}
    )
    assert added.status_code == 303
    rules = (await admin.get(f"/api/v2.0/retentions/{policy_id}")).json()["rules"]
    assert [r["template"] for r in rules] == ["latestPushedK", "always"]
    assert rules[0]["params"] == {"latestPushedK": 2}
    edit_page = await client.get(f"{base}/rules/2/edit")
    assert edit_page.status_code == 200
    assert 'name="rule" value="2"' in edit_page.text and 'value="latest"' in edit_page.text
    assert (await client.get(f"{base}/rules/3/edit")).status_code == 404
    dropped = await client.post(f"{base}/rules/delete", data={"_csrf": csrf, "rule": "2"})
    assert flash(await follow(client, dropped)) == "The retention rule was deleted."
    assert len((await admin.get(f"/api/v2.0/retentions/{policy_id}")).json()["rules"]) == 1
    gone = await client.post(f"{base}/rules/delete", data={"_csrf": csrf, "rule": "7"})
    assert "no such rule" in flash(await follow(client, gone))
    # A schedule, then none.
    scheduled = await client.post(
        f"{base}/schedule", data={"_csrf": csrf, "schedule_type": "Daily"}
    )
    assert scheduled.status_code == 303
    trigger = (await admin.get(f"/api/v2.0/retentions/{policy_id}")).json()["trigger"]
    assert trigger["settings"]["cron"] == "0 0 0 * * *"
    await client.post(f"{base}/schedule", data={"_csrf": csrf, "schedule_type": "None"})
    assert (await admin.get(f"/api/v2.0/retentions/{policy_id}")).json()["trigger"]["settings"][
        "cron"
    ] == ""

    started = await client.post(f"{base}/run", data={"_csrf": csrf, "dry_run": "true"})
    message = flash(await follow(client, started))
    run_id = int(
        re.fullmatch(r"Dry run (\d+) was started; nothing will be deleted\.", message).group(1)
    )  # type: ignore[union-attr]

    async def finished() -> bool:
        runs = (await admin.get(f"/api/v2.0/retentions/{policy_id}/executions")).json()
        return any(r["id"] == run_id and r["status"] in FINAL for r in runs)

    await wait_for(finished, "the retention dry run")
    detail = await client.get(f"{base}/executions/{run_id}")
    assert detail.status_code == 200
    task = re.search(r'<tr data-task="(\d+)">(.*?)</tr>', detail.text, re.S)
    assert task is not None
    assert f"{project}/app" in task.group(2)
    assert '<td class="num">2</td><td class="num">3</td>' in task.group(2)  # retained of total
    log = await client.get(f"{base}/executions/{run_id}/tasks/{task.group(1)}/log")
    assert log.status_code == 200
    assert "RETAIN" in log.text and "DELETE" in log.text
    # Nothing was deleted: it was a dry run.
    tags = (await admin.get(f"/api/v2.0/projects/{project}/repositories/app/artifacts")).json()
    assert len(tags) == 3
    listing = await client.get(base)
    assert f'<tr data-run="{run_id}">' in listing.text


# --- webhooks ------------------------------------------------------------------------------


async def test_webhook_policy_lifecycle_and_a_test_delivery(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, project: str
) -> None:
    client, csrf = console
    base = f"/harbor/projects/{project}/webhooks"
    form = {
        "name": "ci",
        "description": "tell CI",
        "event_type": ["PUSH_ARTIFACT", "DELETE_ARTIFACT"],
        "type": "http",
        "address": "http://127.0.0.1:9/hook",
        "auth_header": "Bearer s3cret",
        "payload_format": "CloudEvents",
    }
    created = await client.post(base, data={"_csrf": csrf, **form})
    page = await follow(client, created)
    assert flash(page) == "Webhook ci was created."
    policies = (await admin.get(f"/api/v2.0/projects/{project}/webhook/policies")).json()
    assert len(policies) == 1
    policy = policies[0]
    assert policy["event_types"] == ["PUSH_ARTIFACT", "DELETE_ARTIFACT"]
    assert policy["targets"][0]["payload_format"] == "CloudEvents"
    assert policy["targets"][0]["auth_header"] == "Bearer s3cret"
    duplicate = await client.post(base, data={"_csrf": csrf, **form})
    assert "already exists" in flash(await follow(client, duplicate))
    bad = await client.post(
        base, data={"_csrf": csrf, **form, "name": "x", "address": "ftp://nope"}
    )
    assert "http:// or https://" in flash(await follow(client, bad))
    metadata = {"name": "x", "address": "http://169.254.169.254/latest/"}
    refused = await client.post(base, data={"_csrf": csrf, **form, **metadata})
    assert "refused by the egress policy" in flash(await follow(client, refused))

    edit_page = await client.get(f"{base}/{policy['id']}/edit")
    assert edit_page.status_code == 200
    assert 'value="http://127.0.0.1:9/hook"' in edit_page.text
    assert 'value="CloudEvents" selected' in edit_page.text
    updated = await client.post(
        f"{base}/update",
        data={
            "_csrf": csrf,
            **form,
            "policy": str(policy["id"]),
            "event_type": "PULL_ARTIFACT",
            "skip_cert_verify": "on",
        },
    )
    assert flash(await follow(client, updated)) == "The webhook was saved."
    policy = (
        await admin.get(f"/api/v2.0/projects/{project}/webhook/policies/{policy['id']}")
    ).json()
    assert policy["event_types"] == ["PULL_ARTIFACT"]
    assert policy["targets"][0]["skip_cert_verify"] is True
    off = await client.post(
        f"{base}/toggle", data={"_csrf": csrf, "policy": str(policy["id"]), "enabled": "false"}
    )
    assert flash(await follow(client, off)) == "The webhook was disabled."
    assert (
        await admin.get(f"/api/v2.0/projects/{project}/webhook/policies/{policy['id']}")
    ).json()["enabled"] is False

    # The test button sends a PUSH_ARTIFACT-shaped event to the target (even while disabled);
    # nothing listens on port 9, so the delivery ends in Error with its attempts logged.
    tested = await client.post(f"{base}/test", data={"_csrf": csrf, "policy": str(policy["id"])})
    assert tested.status_code == 303
    history_url = tested.headers["location"]
    assert history_url.startswith(f"{base}/{policy['id']}?execution=")
    execution_id = int(history_url.rsplit("=", 1)[1])
    executions = (
        await admin.get(f"/api/v2.0/projects/{project}/webhook/policies/{policy['id']}/executions")
    ).json()
    assert [
        (e["id"], e["extra_attrs"]["event_type"], e["extra_attrs"]["test"]) for e in executions
    ] == [(execution_id, "PUSH_ARTIFACT", True)]
    policy_api = f"/api/v2.0/projects/{project}/webhook/policies/{policy['id']}"
    tasks_api = f"{policy_api}/executions/{execution_id}/tasks"

    async def attempted() -> list[dict[str, Any]] | None:
        tasks: list[dict[str, Any]] = (await admin.get(tasks_api)).json()
        return (
            tasks
            if tasks and tasks[0]["run_count"] >= 1 and tasks[0]["status"] != "Running"
            else None
        )

    task = (await wait_for(attempted, "the test delivery's first attempt"))[0]
    history = await client.get(history_url)
    assert history.status_code == 200
    assert f'<tr data-task="{task["id"]}">' in history.text
    assert "http://127.0.0.1:9/hook" in history.text
    log = await client.get(
        f"{base}/{policy['id']}/executions/{execution_id}/tasks/{task['id']}/log"
    )
    assert "attempt 1: POST http://127.0.0.1:9/hook (PUSH_ARTIFACT" in log.text
    assert "s3cret" not in log.text
    tab = await client.get(base)
    assert 'data-testid="webhook-triggers"' in tab.text

    deleted = await client.post(f"{base}/delete", data={"_csrf": csrf, "policy": str(policy["id"])})
    assert flash(await follow(client, deleted)) == "The webhook was deleted."
    assert (await admin.get(f"/api/v2.0/projects/{project}/webhook/policies")).json() == []


# --- who may do what -----------------------------------------------------------------------


async def test_every_job_action_refuses_a_missing_or_wrong_csrf_token(
    console: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = console
    assert len(MY_POSTS) == 19
    for path in MY_POSTS:
        concrete = path.replace("{project}", "library")
        assert (
            await client.post(concrete, data={"policy": "1", "execution": "1"})
        ).status_code == 403, path
        wrong = await client.post(concrete, data={"_csrf": "forged", "dry_run": "true"})
        assert wrong.status_code == 403, path


async def test_non_administrators_neither_see_nor_use_the_administration_pages(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    name = await new_user(admin)
    before = (await admin.get("/api/v2.0/system/gc", params={"page_size": 1})).headers[
        "X-Total-Count"
    ]
    async with make_client(app) as client:
        csrf = await sign_in(client, name, PASSWORD)
        listing = await client.get("/harbor/projects")
        assert "/harbor/admin/gc" not in listing.text
        assert "/harbor/admin/job-service" not in listing.text
        for path in (
            "/harbor/admin/gc",
            "/harbor/admin/job-service",
            "/harbor/admin/audit-log-settings",
            "/harbor/admin/gc/1/log",
        ):
            assert (await client.get(path)).status_code == 403, path
        for path in MY_POSTS:
            if path.startswith("/harbor/admin/"):
                response = await client.post(
                    path,
                    data={
                        "_csrf": csrf,
                        "dry_run": "true",
                        "job_type": "TEST_STEPS",
                        "action": "pause",
                        "schedule_type": "Daily",
                        "endpoint": "udp://127.0.0.1:1",
                    },
                )
                assert response.status_code == 403, path
    after = (await admin.get("/api/v2.0/system/gc", params={"page_size": 1})).headers[
        "X-Total-Count"
    ]
    assert after == before
    queues = (await admin.get("/api/v2.0/jobservice/queues")).json()
    assert not next(q for q in queues if q["job_type"] == "TEST_STEPS")["paused"]
    assert (await admin.get("/api/v2.0/configurations")).json()["audit_log_forward_endpoint"][
        "value"
    ] == ""


async def test_project_roles_decide_the_retention_and_webhook_tabs(
    app: Starlette, admin: httpx.AsyncClient, project: str
) -> None:
    guest, maintainer, outsider = (
        await new_user(admin),
        await new_user(admin),
        await new_user(admin),
    )
    await add_member(admin, project, guest, 3)
    await add_member(admin, project, maintainer, 4)
    base = f"/harbor/projects/{project}"
    rule = {"template": "always", "repo_pattern": "**", "tag_pattern": "**"}
    webhook = {"name": "w", "event_type": "PUSH_ARTIFACT", "address": "http://127.0.0.1:9/"}

    async with make_client(app) as client:
        csrf = await sign_in(client, guest, PASSWORD)
        summary = await client.get(base)
        assert 'data-tab="retention"' not in summary.text
        assert 'data-tab="webhooks"' not in summary.text
        assert (await client.get(f"{base}/retention")).status_code == 403
        assert (await client.get(f"{base}/retention/rules/1/edit")).status_code == 403
        assert (await client.get(f"{base}/webhooks")).status_code == 403
        for path, data in [
            (f"{base}/retention/rules", rule),
            (f"{base}/retention/run", {}),
            (f"{base}/webhooks", webhook),
        ]:
            assert (await client.post(path, data={"_csrf": csrf, **data})).status_code == 403, path

    async with make_client(app) as client:
        csrf = await sign_in(client, maintainer, PASSWORD)
        summary = await client.get(base)
        assert 'data-tab="retention"' in summary.text and 'data-tab="webhooks"' in summary.text
        hooks = await client.get(f"{base}/webhooks")
        assert hooks.status_code == 200
        assert (await client.get(f"{base}/webhooks/1/edit")).status_code == 403
        assert 'data-testid="new-webhook"' not in hooks.text  # maintainers only read policies
        assert (
            await client.post(f"{base}/webhooks", data={"_csrf": csrf, **webhook})
        ).status_code == 403
        # Maintainers manage tag retention.
        saved = await client.post(f"{base}/retention/rules", data={"_csrf": csrf, **rule})
        assert saved.status_code == 303
        assert 'data-testid="new-rule"' in (await client.get(f"{base}/retention")).text

    async with make_client(app) as client:
        await sign_in(client, outsider, PASSWORD)
        assert (await client.get(f"{base}/retention")).status_code == 404
        assert (await client.get(f"{base}/webhooks")).status_code == 404
    assert (await admin.get(f"/api/v2.0/projects/{project}/webhook/policies")).json() == []


async def test_the_webhook_switch_is_on_the_configuration_page(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, project: str
) -> None:
    client, csrf = console
    page = await client.get("/harbor/admin/configuration")
    assert 'name="notification_enable" checked' in page.text
    items = {k: v["value"] for k, v in (await admin.get("/api/v2.0/configurations")).json().items()}
    form = {
        "_csrf": csrf,
        "project_creation_restriction": items["project_creation_restriction"],
        "robot_token_duration": str(items["robot_token_duration"]),
        "storage_per_project": str(items["storage_per_project"]),
        "banner_message": items["banner_message"],
        "disabled_audit_log_event_types": items["disabled_audit_log_event_types"],
        "token_expiration": str(items["token_expiration"]),
        "session_timeout": str(items["session_timeout"]),
        "quota_per_project_enable": "on",
        **({"self_registration": "on"} if items["self_registration"] else {}),
    }
    try:
        assert (await client.post("/harbor/admin/configuration", data=form)).status_code == 303
        configured = (await admin.get("/api/v2.0/configurations")).json()
        assert configured["notification_enable"]["value"] is False
        tab = await client.get(f"/harbor/projects/{project}/webhooks")
        assert 'data-testid="webhooks-off"' in tab.text
    finally:
        on = await client.post(
            "/harbor/admin/configuration", data={**form, "notification_enable": "on"}
        )
        assert on.status_code == 303
    configured = (await admin.get("/api/v2.0/configurations")).json()
    assert configured["notification_enable"]["value"] is True
    assert (
        'data-testid="webhooks-off"'
        not in (await client.get(f"/harbor/projects/{project}/webhooks")).text
    )


async def test_editing_a_rule_keeps_the_selectors_the_form_does_not_show(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, project: str
) -> None:
    client, csrf = console
    project_id = (await admin.get(f"/api/v2.0/projects/{project}")).json()["project_id"]
    selector = {"kind": "doublestar", "decoration": "matches", "extras": '{"untagged":false}'}
    rule = {
        "template": "always",
        "priority": 7,
        "scope_selectors": {
            "repository": [
                {"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"},
                {"kind": "doublestar", "decoration": "repoExcludes", "pattern": "tmp/**"},
            ]
        },
        "tag_selectors": [{**selector, "pattern": "**"}, {**selector, "pattern": "v*"}],
    }
    created = await admin.post(
        "/api/v2.0/retentions",
        json={"algorithm": "or", "rules": [rule], "scope": {"level": "project", "ref": project_id}},
    )
    assert created.status_code == 201, created.text
    policy_id = int(created.headers["Location"].rsplit("/", 1)[1])
    tab = await client.get(f"/harbor/projects/{project}/retention")
    assert "more selectors set through the API" in tab.text
    edited = await client.post(
        f"/harbor/projects/{project}/retention/rules",
        data={
            "_csrf": csrf,
            "rule": "1",
            "template": "nDaysSinceLastPush",
            "value": "30",
            "repo_decoration": "repoMatches",
            "repo_pattern": "app*",
            "tag_decoration": "excludes",
            "tag_pattern": "dev-*",
            "untagged": "on",
        },
    )
    assert edited.status_code == 303
    (saved,) = (await admin.get(f"/api/v2.0/retentions/{policy_id}")).json()["rules"]
    assert saved["template"] == "nDaysSinceLastPush" and saved["params"] == {
        "nDaysSinceLastPush": 30
    }
    assert saved["priority"] == 7
    assert [(s["decoration"], s["pattern"]) for s in saved["scope_selectors"]["repository"]] == [
        ("repoMatches", "app*"),
        ("repoExcludes", "tmp/**"),
    ]
    assert [(s["decoration"], s["pattern"]) for s in saved["tag_selectors"]] == [
        ("excludes", "dev-*"),
        ("matches", "v*"),
    ]
    assert '"untagged":true' in saved["tag_selectors"][0]["extras"].replace(" ", "")


async def test_hostile_input_is_escaped_or_refused_without_a_server_error(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, project: str
) -> None:
    client, csrf = console
    hostile = "<script>alert(1)</script>"
    base = f"/harbor/projects/{project}"
    created = await client.post(
        f"{base}/webhooks",
        data={
            "_csrf": csrf,
            "name": hostile,
            "description": hostile,
            "event_type": "PUSH_ARTIFACT",
            "address": "http://127.0.0.1:9/?q=<b>",
        },
    )
    assert created.status_code == 303
    rule = {"template": "always", "repo_pattern": "**", "tag_pattern": "<img src=x>"}
    assert (
        await client.post(f"{base}/retention/rules", data={"_csrf": csrf, **rule})
    ).status_code == 303
    for path in (f"{base}/webhooks", f"{base}/retention", f"{base}/retention/rules/1/edit"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert(1)" not in page.text and "<img src=x>" not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (await client.get(f"{base}/webhooks")).text
    # Ids that are no numbers, or too large, name nothing.
    for path in (
        "/harbor/admin/gc/abc/log",
        "/harbor/admin/gc/99999999999999999999/log",
        "/harbor/admin/job-service/jobs/-1/log",
        "/harbor/admin/audit-log-settings/purges/0x10/log",
        f"{base}/retention/executions/1%20OR%201/tasks/1/log",
        f"{base}/webhooks/abc",
        f"{base}/retention/rules/abc/edit",
    ):
        assert (await client.get(path)).status_code == 404, path
    # Form values that are no numbers or out of range come back with the reason.
    for path, data in [
        ("/harbor/admin/gc/run", {"workers": "many"}),
        ("/harbor/admin/gc/stop", {"execution": "-5"}),
        ("/harbor/admin/job-service/stop-job", {"task": "1e9"}),
        ("/harbor/admin/audit-log-settings/purge", {"retention_hours": "x" * 300}),
        (f"{base}/retention/rules", {**rule, "template": "keepEverything"}),
        (f"{base}/retention/rules", {**rule, "template": "latestPushedK", "value": ""}),
        (f"{base}/retention/schedule", {"schedule_type": "Manual"}),
        (f"{base}/retention/stop", {"execution": "abc"}),
        (f"{base}/webhooks/toggle", {"policy": "0"}),
    ]:
        back = await follow(client, await client.post(path, data={"_csrf": csrf, **data}))
        assert back.status_code == 200, path
        assert 'class="flash flash-error"' in back.text, path
