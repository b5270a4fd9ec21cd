"""/api/v2.0/retentions: tag retention policies run on real repositories.

Each template on a seeded repository (dry run first, then the real run, which must
agree), selectors (include/exclude, untagged), immutable tags, audit events, body
checks, who may do what, the schedule firing, and stopping an execution.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
)

from dockyard.audit.events import Actor
from dockyard.audit.models import AuditLog
from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Schedule, Task
from dockyard.jobs.runner import JobEnvironment
from dockyard.projects.models import ProjectMetadata
from dockyard.registry.models import Artifact, Repository, Tag
from dockyard.registry.repository import find_repository_ref
from dockyard.retention.repository import candidates
from dockyard.retention.rules import Decision, Rule, evaluate, parse_rule
from dockyard.retention.service import VENDOR_TYPE, apply_decision

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
SKIP = {"X-Dockyard-Contract": "skip"}
ROLES = {"admin": 1, "developer": 2, "guest": 3}


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def rule(
    template: str = "always",
    value: int | None = None,
    *,
    repo: str = "**",
    tag: str = "**",
    repo_decoration: str = "repoMatches",
    tag_decoration: str = "matches",
    untagged: bool = False,
) -> dict[str, Any]:
    """A rule as Harbor's console sends it."""
    return {
        "disabled": False,
        "action": "retain",
        "template": template,
        "params": {template: value} if value is not None else {},
        "tag_selectors": [
            {
                "kind": "doublestar",
                "decoration": tag_decoration,
                "pattern": tag,
                "extras": f'{{"untagged":{str(untagged).lower()}}}',
            }
        ],
        "scope_selectors": {
            "repository": [{"kind": "doublestar", "decoration": repo_decoration, "pattern": repo}]
        },
    }


def policy(project_id: int, *rules: dict[str, Any], cron: str = "") -> dict[str, Any]:
    return {
        "algorithm": "or",
        "rules": list(rules),
        "trigger": {"kind": "Schedule", "settings": {"cron": cron}},
        "scope": {"level": "project", "ref": project_id},
    }


async def new_project(admin: httpx.AsyncClient) -> tuple[str, int]:
    name = _name("ret")
    response = await admin.post(
        f"{API}/projects", json={"project_name": name, "metadata": {"public": "false"}}
    )
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


async def create_policy(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await client.post(f"{API}/retentions", json=body)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{API}/retentions/")
    return int(location.rsplit("/", 1)[1])


async def run(
    client: httpx.AsyncClient, state: AppState, policy_id: int, *, dry_run: bool
) -> Execution:
    response = await client.post(
        f"{API}/retentions/{policy_id}/executions", json={"dry_run": dry_run}
    )
    assert response.status_code == 201, response.text
    execution_id = int(response.headers["location"].rsplit("/", 1)[1])
    return await wait_final(state, execution_id)


async def wait_final(state: AppState, execution_id: int, within: float = 30) -> Execution:
    deadline = time.monotonic() + within
    while True:
        async with state.db.read() as session:
            execution = await jobs.get_execution(session, execution_id)
        if execution.status in jobs.FINAL_STATUSES:
            return execution
        assert time.monotonic() < deadline, f"execution {execution_id} still {execution.status}"
        await asyncio.sleep(0.1)


async def tasks_of(
    client: httpx.AsyncClient, policy_id: int, execution_id: int
) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/retentions/{policy_id}/executions/{execution_id}/tasks")
    assert response.status_code == 200, response.text
    assert response.headers["x-total-count"] == str(len(response.json()))
    items: list[dict[str, Any]] = response.json()
    return items


async def task_log(
    client: httpx.AsyncClient, policy_id: int, execution_id: int, task_id: int
) -> str:
    response = await client.get(
        f"{API}/retentions/{policy_id}/executions/{execution_id}/tasks/{task_id}"
    )
    assert response.status_code == 200, response.text
    return response.text


async def tags_in(state: AppState, repository: str) -> set[str]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(Tag.name)
            .join(Repository, Repository.repository_id == Tag.repository_id)
            .where(Repository.name == repository)
        )
        return set(rows)


async def artifacts_in(state: AppState, repository: str) -> set[str]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(Artifact.digest).where(Artifact.repository_name == repository)
        )
        return set(rows)


async def age(
    state: AppState,
    repository: str,
    digest: str,
    *,
    pushed_days: float,
    pulled_days: float | None = None,
) -> None:
    """Make an artifact (and its tags) look pushed and pulled that many days ago."""
    now = utcnow()
    pushed = now - timedelta(days=pushed_days)
    pulled = now - timedelta(days=pulled_days) if pulled_days is not None else None
    async with state.db.write() as session:
        artifact_id = await session.scalar(
            select(Artifact.id).where(
                Artifact.repository_name == repository, Artifact.digest == digest
            )
        )
        assert artifact_id is not None
        await session.execute(
            update(Artifact)
            .where(Artifact.id == artifact_id)
            .values(push_time=pushed, pull_time=pulled)
        )
        await session.execute(
            update(Tag)
            .where(Tag.artifact_id == artifact_id)
            .values(push_time=pushed, pull_time=None)
        )


async def push_variants(
    client: httpx.AsyncClient, repository: str, tags: list[str]
) -> dict[str, str]:
    """One image per tag, cheaply: the same two blobs, manifests told apart by an
    annotation. Returns tag -> digest."""
    config_bytes = b'{"architecture":"amd64","os":"linux"}'
    layer_bytes = f"layer of {repository}".encode()
    config = await push_blob(client, repository, config_bytes)
    layer = await push_blob(client, repository, layer_bytes)
    found = {}
    for tag in tags:
        manifest = image_manifest(
            (config, len(config_bytes)),
            [(layer, len(layer_bytes))],
            annotations={"variant": tag},
        )
        response = await client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text
        found[tag] = digest_of(manifest)
    return found


async def push(client: httpx.AsyncClient, repository: str, tag: str | None, seed: str) -> str:
    digest, _ = await push_image(client, repository, tag, layers=1, seed=seed.encode())
    return digest


# --- each template, dry run equal to the real run ------------------------------------------

# In every repository t1..t5 are pushed 10, 8, 6, 4, 2 days ago; t1 is pulled 1 day
# ago, t3 4.5 and t4 9.5 days ago.
SEED = [("t1", 10, 1.0), ("t2", 8, None), ("t3", 6, 4.5), ("t4", 4, 9.5), ("t5", 2, None)]
TEMPLATE_CASES: list[tuple[str, int | None, set[str]]] = [
    ("always", None, {"t1", "t2", "t3", "t4", "t5"}),
    ("latestPushedK", 2, {"t4", "t5"}),
    ("latestPulledN", 3, {"t1", "t3", "t4"}),
    ("latestActiveK", 3, {"t1", "t4", "t5"}),
    ("nDaysSinceLastPush", 5, {"t4", "t5"}),
    ("nDaysSinceLastPull", 5, {"t1", "t3"}),
]


async def test_each_template_on_its_repository_dry_run_then_real(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """One policy, one rule per template, each scoped to a repository of its own: one
    execution judges all six repositories (one task each)."""
    project, project_id = await new_project(admin)
    digests: dict[str, dict[str, str]] = {}
    for template, _, _ in TEMPLATE_CASES:
        repository = f"{project}/{template.lower()}"
        digests[repository] = await push_variants(admin, repository, [t for t, _, _ in SEED])
        for tag, pushed, pulled in SEED:
            digest = digests[repository][tag]
            await age(state, repository, digest, pushed_days=pushed, pulled_days=pulled)
    policy_id = await create_policy(
        admin,
        policy(
            project_id,
            *(rule(t, value, repo=t.lower()) for t, value, _ in TEMPLATE_CASES),
        ),
    )
    everything = {t for t, _, _ in SEED}

    dry = await run(admin, state, policy_id, dry_run=True)
    assert dry.status == jobs.SUCCESS and dry.trigger == jobs.MANUAL
    dry_tasks = {t["repository"]: t for t in await tasks_of(admin, policy_id, dry.id)}
    assert set(dry_tasks) == set(digests)
    for position, (template, _, kept) in enumerate(TEMPLATE_CASES, start=1):
        repository = f"{project}/{template.lower()}"
        task = dry_tasks[repository]
        assert await tags_in(state, repository) == everything, template  # nothing removed
        assert (task["total"], task["retained"]) == (5, len(kept)), template
        log = await task_log(admin, policy_id, dry.id, task["id"])
        for tag in everything - kept:
            assert f"tag {tag}: no rule keeps it; would remove the artifact" in log, template
        for tag in kept:
            assert f"tag {tag}: kept by rule {position}" in log, template

    real = await run(admin, state, policy_id, dry_run=False)
    assert real.status == jobs.SUCCESS
    real_tasks = {t["repository"]: t for t in await tasks_of(admin, policy_id, real.id)}
    for template, _, kept in TEMPLATE_CASES:
        repository = f"{project}/{template.lower()}"
        done, judged = real_tasks[repository], dry_tasks[repository]
        assert (done["total"], done["retained"]) == (judged["total"], judged["retained"])
        assert done["status"] == "Success"
        assert await tags_in(state, repository) == kept, template
        assert await artifacts_in(state, repository) == {digests[repository][t] for t in kept}, (
            template
        )

    listed = await admin.get(f"{API}/retentions/{policy_id}/executions")
    assert listed.status_code == 200
    assert [(e["id"], e["dry_run"]) for e in listed.json()] == [(real.id, False), (dry.id, True)]
    assert listed.json()[0]["policy_id"] == policy_id
    assert listed.json()[0]["status"] == "Success"
    paged = await admin.get(
        f"{API}/retentions/{policy_id}/executions/{real.id}/tasks", params={"page_size": 4}
    )
    assert len(paged.json()) == 4 and paged.headers["x-total-count"] == "6"
    assert 'rel="next"' in paged.headers["link"]


# --- selectors -----------------------------------------------------------------------------


async def test_selectors_include_exclude_and_untagged(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    app, scratch = f"{project}/app", f"{project}/tmp/x"
    v1 = await push(admin, app, "v1", "sel-v1")
    v2 = await push(admin, app, "v2", "sel-v2")
    await age(state, app, v1, pushed_days=3)
    # "latest" is a second tag of v2's artifact.
    manifest = await admin.get(f"/v2/{app}/manifests/v2", headers={"Accept": OCI_MANIFEST})
    tagged = await admin.put(
        f"/v2/{app}/manifests/latest",
        content=manifest.content,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert tagged.status_code == 201
    dev = await push(admin, app, "dev", "sel-dev")
    bare = await push(admin, app, None, "sel-bare")
    kept_elsewhere = await push(admin, scratch, "v0", "sel-scratch")

    hook = await admin.post(
        f"{API}/projects/{project}/webhook/policies",
        json={
            "name": "retention",
            "enabled": True,
            "event_types": ["TAG_RETENTION"],
            "targets": [{"type": "http", "address": "http://127.0.0.1:9/hook"}],
        },
    )
    assert hook.status_code == 201, hook.text
    hook_id = int(hook.headers["location"].rsplit("/", 1)[1])
    policy_id = await create_policy(
        admin,
        policy(
            project_id,
            # the newest v* artifact, in every repository but tmp/**
            rule("latestPushedK", 1, repo="tmp/**", repo_decoration="repoExcludes", tag="v*"),
            # every untagged artifact (no tag passes excludes **) in app and other
            rule("always", repo="{app,other}", tag="**", tag_decoration="excludes", untagged=True),
        ),
    )
    await run(admin, state, policy_id, dry_run=True)
    assert await _announcements(state, hook_id) == []  # a dry run tells nobody
    execution = await run(admin, state, policy_id, dry_run=False)
    assert execution.status == jobs.SUCCESS
    tasks = await tasks_of(admin, policy_id, execution.id)
    assert [t["repository"] for t in tasks] == [app]  # tmp/x is no rule's
    [event] = await _announcements(state, hook_id)
    assert event["operator"] == "admin"
    told = event["data"]["retention"]
    assert (told["total"], told["retained"]) == (4, 2)
    assert (told["project_name"], told["retention_policy_id"]) == (project, policy_id)
    assert told["status"] == "SUCCESS"
    assert sorted(d["name_tag"] for d in told["deleted_artifacts"]) == [
        f"{app}:dev",
        f"{app}:latest",
        f"{app}:v1",
    ]
    assert (tasks[0]["total"], tasks[0]["retained"]) == (4, 2)
    assert tasks[0]["status"] == "Success" and tasks[0]["job_id"] == str(tasks[0]["id"])

    assert await tags_in(state, app) == {"v2"}  # latest: its artifact stays, the tag goes
    assert await artifacts_in(state, app) == {v2, bare}
    assert dev not in await artifacts_in(state, app)
    assert await artifacts_in(state, scratch) == {kept_elsewhere}
    log = await task_log(admin, policy_id, execution.id, tasks[0]["id"])
    assert f"{bare} " in log and "<untagged>: kept by rule 2" in log
    assert "tag latest: no rule keeps it; remove the tag" in log


async def _announcements(state: AppState, hook_id: int) -> list[dict[str, Any]]:
    """The ``TAG_RETENTION`` events enqueued for a webhook policy."""
    async with state.db.read() as session:
        rows = await session.execute(
            select(Task.params)
            .join(Execution, Execution.id == Task.execution_id)
            .where(Execution.vendor_type == "WEBHOOK", Execution.vendor_id == hook_id)
        )
        events = [jobs.loads(params)["event"] for (params,) in rows]
    return [e for e in events if e["type"] == "TAG_RETENTION"]


async def protect(client: httpx.AsyncClient, project: str, tags: str) -> None:
    """An immutable tag rule protecting ``tags`` in every repository of the project."""
    response = await client.post(
        f"{API}/projects/{project}/immutabletagrules",
        json={
            "action": "immutable",
            "template": "immutable_template",
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tags}],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
        },
    )
    assert response.status_code == 201, response.text


# --- immutability and audit ----------------------------------------------------------------


async def test_immutable_tags_are_kept_and_removals_are_audited(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    repository = f"{project}/app"
    released = await push(admin, repository, "release-1", "imm-rel")
    old = await push(admin, repository, "old", "imm-old")
    new = await push(admin, repository, "new", "imm-new")
    await age(state, repository, released, pushed_days=9)
    await age(state, repository, old, pushed_days=8)
    await protect(admin, project, "release-*")
    policy_id = await create_policy(admin, policy(project_id, rule("latestPushedK", 1)))

    dry = await run(admin, state, policy_id, dry_run=True)
    real = await run(admin, state, policy_id, dry_run=False)
    assert real.status == jobs.SUCCESS
    [dry_task] = await tasks_of(admin, policy_id, dry.id)
    [task] = await tasks_of(admin, policy_id, real.id)
    assert (task["total"], task["retained"]) == (dry_task["total"], dry_task["retained"]) == (3, 2)
    assert await tags_in(state, repository) == {"release-1", "new"}
    assert await artifacts_in(state, repository) == {released, new}
    log = await task_log(admin, policy_id, real.id, task["id"])
    assert "tag release-1: an immutable tag rule protects it" in log

    async with state.db.read() as session:
        rows = list(
            await session.scalars(
                select(AuditLog).where(AuditLog.project_id == project_id).order_by(AuditLog.id)
            )
        )
    retention_events = [(r.operation, r.resource_type, r.username) for r in rows]
    assert ("create", "retention", "admin") in retention_events
    deleted = [r for r in rows if r.operation == "delete" and r.resource_type == "artifact"]
    assert [r.resource for r in deleted] == [f"{repository}@{old}"]
    assert deleted[0].username == "admin"  # who ran it
    assert not any(r.resource.endswith(released) for r in deleted)


# --- policy management ----------------------------------------------------------------------


async def test_policy_crud_metadata_and_schedule(admin: httpx.AsyncClient, state: AppState) -> None:
    _, project_id = await new_project(admin)
    body = policy(project_id, rule("latestPushedK", 3, tag="v*"), cron="0 0 3 * * *")
    policy_id = await create_policy(admin, body)

    got = await admin.get(f"{API}/retentions/{policy_id}")
    assert got.status_code == 200
    shown = got.json()
    assert shown["id"] == policy_id and shown["algorithm"] == "or"
    assert shown["scope"] == {"level": "project", "ref": project_id}
    assert shown["trigger"]["settings"] == {"cron": "0 0 3 * * *"}
    assert shown["rules"][0]["params"] == {"latestPushedK": 3}
    assert shown["rules"][0]["tag_selectors"][0]["pattern"] == "v*"
    meta = await admin.get(f"{API}/projects/{project_id}")
    assert meta.json()["metadata"]["retention_id"] == str(policy_id)
    one = await admin.get(f"{API}/projects/{project_id}/metadatas/retention_id")
    assert one.json() == {"retention_id": str(policy_id)}
    async with state.db.read() as session:
        schedule = await session.scalar(
            select(Schedule).where(
                Schedule.vendor_type == VENDOR_TYPE, Schedule.vendor_id == policy_id
            )
        )
    assert schedule is not None and schedule.cron == "0 0 3 * * *"
    assert (await run(admin, state, policy_id, dry_run=True)).status == jobs.SUCCESS

    again = await admin.post(f"{API}/retentions", json=body)
    assert again.status_code == 400
    assert f"already has retention policy {policy_id}" in again.text

    body["trigger"]["settings"]["cron"] = ""
    body["rules"].append(rule("always", tag="release-*"))
    updated = await admin.put(f"{API}/retentions/{policy_id}", json=body)
    assert updated.status_code == 200, updated.text
    shown = (await admin.get(f"{API}/retentions/{policy_id}")).json()
    assert [r["template"] for r in shown["rules"]] == ["latestPushedK", "always"]
    assert [r["id"] for r in shown["rules"]] == [1, 2]
    async with state.db.read() as session:
        assert (
            await session.scalar(
                select(Schedule).where(
                    Schedule.vendor_type == VENDOR_TYPE, Schedule.vendor_id == policy_id
                )
            )
        ) is None

    moved = await admin.put(
        f"{API}/retentions/{policy_id}",
        json={**body, "scope": {"level": "project", "ref": 1}},
        headers=SKIP,
    )
    assert moved.status_code == 400

    deleted = await admin.delete(f"{API}/retentions/{policy_id}")
    assert deleted.status_code == 200
    gone = await admin.get(f"{API}/retentions/{policy_id}", headers=SKIP)
    assert gone.status_code == 404
    async with state.db.read() as session:
        left = await session.scalar(
            select(ProjectMetadata.value).where(
                ProjectMetadata.project_id == project_id, ProjectMetadata.name == "retention_id"
            )
        )
    assert left is None
    # The project may have a policy again; it starts with no history.
    fresh = await create_policy(admin, policy(project_id))
    executions = await admin.get(f"{API}/retentions/{fresh}/executions")
    assert executions.json() == []


async def test_metadata_lists_templates_and_selectors(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    response = await admin.get(f"{API}/retentions/metadatas")
    assert response.status_code == 200
    found = response.json()
    templates = {t["rule_template"]: t for t in found["templates"]}
    assert set(templates) == {
        "latestPushedK",
        "latestPulledN",
        "latestActiveK",
        "nDaysSinceLastPush",
        "nDaysSinceLastPull",
        "always",
    }
    assert templates["latestPushedK"]["params"] == [
        {"type": "int", "unit": "COUNT", "required": True}
    ]
    assert templates["always"]["params"] == []
    assert found["scope_selectors"][0]["decorations"] == ["repoMatches", "repoExcludes"]
    assert found["tag_selectors"][0]["decorations"] == ["matches", "excludes"]
    assert (await anon.get(f"{API}/retentions/metadatas")).status_code == 401


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rules": [{**rule(), "template": "keepEverything"}]}, "template must be one of"),
        ({"rules": [rule("latestPushedK", n) for n in range(16)]}, "at most 15 rules"),
        ({"trigger": {"kind": "Schedule", "settings": {"cron": "every day"}}}, "invalid cron"),
        ({"trigger": {"kind": "Schedule", "settings": {"cron": "0 0 * * *"}}}, "invalid cron"),
        ({"trigger": {"kind": "Event"}}, "trigger.kind"),
        ({"rules": [rule(tag="{unclosed")]}, "pattern"),
        ({"rules": [rule(tag="{a,b}" * 5)]}, "more than 16 alternatives"),
        ({"rules": [rule(tag_decoration="repoMatches")]}, "decoration"),
        ({"rules": [{**rule(), "tag_selectors": []}]}, "at least one selector"),
        ({"rules": [rule("latestPushedK", -1)]}, "between 0 and"),
        ({"rules": [rule(), rule()]}, "says the same"),
        ({"algorithm": "and"}, "algorithm"),
        ({"scope": None}, "scope is required"),
        ({"scope": {"level": "system", "ref": 1}}, "scope.level"),
        ({"rules": "all"}, ""),
    ],
)
async def test_bad_policies_are_refused(
    admin: httpx.AsyncClient, state: AppState, change: dict[str, Any], message: str
) -> None:
    _, project_id = await new_project(admin)
    body = {**policy(project_id, rule("latestPushedK", 2)), **change}
    response = await admin.post(f"{API}/retentions", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]["message"]
    async with state.db.read() as session:
        assert (
            await session.scalar(
                select(ProjectMetadata.value).where(
                    ProjectMetadata.project_id == project_id, ProjectMetadata.name == "retention_id"
                )
            )
        ) is None


# --- who may do what -----------------------------------------------------------------------


async def _user(state: AppState) -> str:
    username = _name("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


async def test_who_may_manage_and_run_policies(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    users = {}
    for role, role_id in ROLES.items():
        users[role] = await _user(state)
        response = await admin.post(
            f"{API}/projects/{project}/members",
            json={"role_id": role_id, "member_user": {"username": users[role]}},
        )
        assert response.status_code == 201
    users["outsider"] = await _user(state)
    body = policy(project_id, rule("latestPushedK", 5))

    async def as_(role: str) -> httpx.AsyncClient:
        return make_client(app, (users[role], PASSWORD))

    async with await as_("guest") as guest, await as_("outsider") as outsider:
        assert (await guest.post(f"{API}/retentions", json=body)).status_code == 403
        refused = await outsider.post(f"{API}/retentions", json=body, headers=SKIP)
        assert refused.status_code == 404
        assert (await anon.post(f"{API}/retentions", json=body)).status_code == 401

    async with await as_("admin") as project_admin:
        policy_id = await create_policy(project_admin, body)
        assert (await project_admin.get(f"{API}/retentions/{policy_id}")).status_code == 200
        started = await project_admin.post(
            f"{API}/retentions/{policy_id}/executions", json={"dry_run": True}
        )
        assert started.status_code == 201

    # Harbor's role table gives developers the tag-retention permissions too.
    async with await as_("developer") as developer:
        assert (await developer.get(f"{API}/retentions/{policy_id}")).status_code == 200
        updated = await developer.put(f"{API}/retentions/{policy_id}", json=body)
        assert updated.status_code == 200
        listed = await developer.get(f"{API}/retentions/{policy_id}/executions")
        assert listed.status_code == 200 and len(listed.json()) == 1

    async with await as_("guest") as guest, await as_("outsider") as outsider:
        for client, status in ((guest, 403), (outsider, 404), (anon, 401)):
            headers = SKIP if status == 404 else {}
            for method, path, payload in (
                ("GET", f"/retentions/{policy_id}", None),
                ("PUT", f"/retentions/{policy_id}", body),
                ("DELETE", f"/retentions/{policy_id}", None),
                ("POST", f"/retentions/{policy_id}/executions", {"dry_run": True}),
                ("GET", f"/retentions/{policy_id}/executions", None),
            ):
                expected = status
                if status == 404 and method == "POST":
                    expected = 400  # Harbor's answer for a policy the trigger cannot find
                response = await client.request(method, API + path, json=payload, headers=headers)
                assert response.status_code == expected, (method, path, response.text)
    async with state.db.read() as session:
        runs = await session.scalars(
            select(Execution.id).where(
                Execution.vendor_type == VENDOR_TYPE, Execution.vendor_id == policy_id
            )
        )
        assert len(list(runs)) == 1  # only the project admin's
    assert (await admin.get(f"{API}/retentions/{policy_id}")).status_code == 200


# --- the schedule, and stopping ------------------------------------------------------------


async def fire_schedule(state: AppState, policy_id: int) -> Execution:
    """Make the policy's schedule due now and wait for the workers' heartbeat to fire it
    (through the job type's launcher); returns the execution it started."""
    async with state.db.write() as session:
        await session.execute(
            update(Schedule)
            .where(Schedule.vendor_type == VENDOR_TYPE, Schedule.vendor_id == policy_id)
            .values(next_fire=utcnow() - timedelta(seconds=1))
        )
    deadline = time.monotonic() + 20
    while True:
        async with state.db.read() as session:
            fired = await jobs.latest_execution(session, VENDOR_TYPE, policy_id)
        if fired is not None:
            return fired
        assert time.monotonic() < deadline, "the schedule never fired"
        await asyncio.sleep(0.1)


async def test_the_schedule_fires_an_execution(admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await new_project(admin)
    repository = f"{project}/app"
    old = await push(admin, repository, "old", "sched-old")
    await push(admin, repository, "new", "sched-new")
    await age(state, repository, old, pushed_days=2)
    policy_id = await create_policy(
        admin, policy(project_id, rule("latestPushedK", 1), cron="0 0 0 1 1 *")
    )
    fired = await fire_schedule(state, policy_id)
    execution = await wait_final(state, fired.id)
    assert (execution.trigger, execution.status) == (jobs.SCHEDULE, jobs.SUCCESS)
    assert jobs.loads(execution.extra_attrs)["dry_run"] is False
    assert await tags_in(state, repository) == {"new"}
    async with state.db.read() as session:
        schedule = await session.scalar(
            select(Schedule).where(
                Schedule.vendor_type == VENDOR_TYPE, Schedule.vendor_id == policy_id
            )
        )
    assert schedule is not None and schedule.next_fire > utcnow()  # moved to the next year


async def test_an_execution_stops_on_patch(admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await new_project(admin)
    for name in ("a", "b"):
        await push(admin, f"{project}/{name}", "v1", f"stop-{name}")
    policy_id = await create_policy(admin, policy(project_id, rule("latestPushedK", 0)))
    async with state.db.write() as session:
        await jobs.set_paused(session, VENDOR_TYPE, True)
    try:
        started = await admin.post(
            f"{API}/retentions/{policy_id}/executions", json={"dry_run": False}
        )
        execution_id = int(started.headers["location"].rsplit("/", 1)[1])
        path = f"{API}/retentions/{policy_id}/executions/{execution_id}"
        odd = await admin.patch(path, json={"action": "pause"}, headers=SKIP)
        assert odd.status_code == 400
        stopped = await admin.patch(path, json={"action": "stop"})
        assert stopped.status_code == 200
    finally:
        async with state.db.write() as session:
            await jobs.set_paused(session, VENDOR_TYPE, False)
    execution = await wait_final(state, execution_id)
    assert execution.status == jobs.STOPPED
    tasks = await tasks_of(admin, policy_id, execution_id)
    assert [t["status"] for t in tasks] == ["Stopped", "Stopped"]
    assert all(t["status_code"] == 3 for t in tasks)
    await asyncio.sleep(0.5)  # unpaused workers must not pick the stopped tasks up
    assert await tags_in(state, f"{project}/a") == {"v1"}
    # Stopping a finished execution changes nothing and is no error (as Harbor).
    again = await admin.patch(
        f"{API}/retentions/{policy_id}/executions/{execution_id}", json={"action": "stop"}
    )
    assert again.status_code == 200
    listed = await admin.get(f"{API}/retentions/{policy_id}/executions")
    assert listed.json()[0]["status"] == "Stopped"
    other = await admin.get(
        f"{API}/retentions/{policy_id + 10_000}/executions/{execution_id}/tasks", headers=SKIP
    )
    assert other.status_code == 404


# --- accessories ---------------------------------------------------------------------------


async def _attach(client: httpx.AsyncClient, repository: str, subject: str, size: int) -> str:
    """An untagged accessory (an SBOM-like artifact) whose subject is ``subject``."""
    config = await push_blob(client, repository, b"{}")
    layer = f"sbom of {subject}".encode()
    layer_digest = await push_blob(client, repository, layer)
    manifest = image_manifest(
        (config, 2),
        [(layer_digest, len(layer))],
        subject=(subject, size),
        artifact_type="application/vnd.example.sbom",
    )
    digest = digest_of(manifest)
    response = await client.put(
        f"/v2/{repository}/manifests/{digest}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest


async def test_accessories_follow_their_subject(admin: httpx.AsyncClient, state: AppState) -> None:
    project, project_id = await new_project(admin)
    repository = f"{project}/app"
    old, old_manifest = await push_image(admin, repository, "old", layers=1, seed=b"acc-old")
    new, new_manifest = await push_image(admin, repository, "new", layers=1, seed=b"acc-new")
    await age(state, repository, old, pushed_days=3)
    old_sbom = await _attach(admin, repository, old, len(old_manifest))
    new_sbom = await _attach(admin, repository, new, len(new_manifest))
    # Untagged artifacts go unless a rule keeps them, but accessories are not candidates:
    # they stay with a kept subject and go with a removed one.
    policy_id = await create_policy(admin, policy(project_id, rule("latestPushedK", 1)))
    execution = await run(admin, state, policy_id, dry_run=False)
    assert execution.status == jobs.SUCCESS
    [task] = await tasks_of(admin, policy_id, execution.id)
    assert (task["total"], task["retained"]) == (2, 1)
    assert await artifacts_in(state, repository) == {new, new_sbom}
    assert old_sbom not in await artifacts_in(state, repository)


# --- changes between judging and removing --------------------------------------------------


class _Context:
    """What ``apply_decision`` uses of a task's context: the environment and the log."""

    def __init__(self, state: AppState) -> None:
        self.env = JobEnvironment(state.settings, state.db, state.storage, state.registry)
        self.lines: list[str] = []

    def log(self, line: str) -> None:
        self.lines.append(line)


async def _judge(state: AppState, repository: str, rules: list[Rule]) -> dict[str, Decision]:
    async with state.db.read() as session:
        ref = await find_repository_ref(session, repository)
        assert ref is not None
        found = await candidates(session, ref.repository_id)
    decisions = evaluate(rules, "app", found, utcnow())
    return {d.candidate.digest: d for d in decisions}


async def test_what_changed_since_it_was_judged_stays(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, _ = await new_project(admin)
    repository = f"{project}/app"
    doomed = await push(admin, repository, "doomed", "chg-doomed")
    kept = await push(admin, repository, "v1", "chg-kept")
    # v1's artifact also carries "moving"; only v* tags are kept.
    manifest = await admin.get(f"/v2/{repository}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    for tag in ("moving", "frozen"):
        response = await admin.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest.content,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201
    decisions = await _judge(state, repository, [parse_rule(rule("always", tag="v*"), 1)])
    assert not decisions[doomed].keep_artifact
    assert sorted(decisions[kept].removed_tags) == ["frozen", "moving"]

    # Meanwhile: the doomed artifact is tagged anew, "moving" moves to it, and an
    # immutable rule starts protecting "frozen".
    doomed_manifest = await admin.get(
        f"/v2/{repository}/manifests/doomed", headers={"Accept": OCI_MANIFEST}
    )
    for tag in ("rescued", "moving"):
        response = await admin.put(
            f"/v2/{repository}/manifests/{tag}",
            content=doomed_manifest.content,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201
    await protect(admin, project, "frozen")

    ctx = _Context(state)
    actor = Actor("admin")
    assert await apply_decision(ctx, repository, decisions[doomed], actor) is False  # type: ignore[arg-type]
    assert await apply_decision(ctx, repository, decisions[kept], actor) is True  # type: ignore[arg-type]
    assert await artifacts_in(state, repository) == {doomed, kept}
    assert await tags_in(state, repository) == {"doomed", "rescued", "moving", "v1", "frozen"}
    text = "\n".join(ctx.lines)
    assert "tagged anew since it was judged" in text
    assert "tag moving: moved to" in text
    assert "REFUSED" in text and "frozen" in text


async def test_a_schedule_outliving_its_project_ends_itself(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    policy_id = await create_policy(
        admin, policy(project_id, rule("latestPushedK", 1), cron="0 0 0 1 1 *")
    )
    assert (await admin.delete(f"{API}/projects/{project}")).status_code == 200
    fired = await wait_final(state, (await fire_schedule(state, policy_id)).id)
    async with state.db.read() as session:
        schedule = await session.scalar(
            select(Schedule).where(
                Schedule.vendor_type == VENDOR_TYPE, Schedule.vendor_id == policy_id
            )
        )
    assert fired.status == jobs.SUCCESS and fired.trigger == jobs.SCHEDULE  # nothing to do
    assert schedule is None
    assert (await admin.get(f"{API}/retentions/{policy_id}", headers=SKIP)).status_code == 404


async def test_running_an_unknown_policy_is_a_bad_request(admin: httpx.AsyncClient) -> None:
    """Harbor answers 400 (its swagger declares no 404 here); reading it stays a 404."""
    started = await admin.post(
        f"{API}/retentions/88888888/executions", json={"dry_run": True}, headers=SKIP
    )
    assert started.status_code == 400, started.text
    assert started.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert "88888888" in started.json()["errors"][0]["message"]
    assert (await admin.get(f"{API}/retentions/88888888", headers=SKIP)).status_code == 404
