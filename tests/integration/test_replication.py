"""Replication policies and executions (``/replication/…``) against a real remote: Debian's
``docker-registry`` with htpasswd Basic auth (one per module), on both databases.

Push mode (a small image, a multi-arch index), event triggers (a push appears, a delete
goes), pull mode into a local project, filters, wrong credentials and a remote that is
down (the task fails with a clear message, a rerun finishes), and bad policy input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import (
    OCI_INDEX,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
)
from tests.integration.test_webhooks import Receiver
from tests.integration.test_webhooks import _serve as serve_receiver
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.server import free_port

from dockyard.http.state import AppState
from dockyard.jobs import schedules
from dockyard.replication import service
from dockyard.replication.models import ReplicationPolicy

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

API = "/api/v2.0"
POLICIES = f"{API}/replication/policies"
EXECUTIONS = f"{API}/replication/executions"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("replica"), auth="basic") as registry:
        yield registry


def _uid() -> str:
    return uuid.uuid4().hex[:10]


async def _endpoint(
    admin: httpx.AsyncClient,
    remote: DockerRegistry,
    *,
    password: str | None = None,
    url: str | None = None,
) -> int:
    response = await admin.post(
        f"{API}/registries",
        json={
            "name": f"r{_uid()}",
            "type": "docker-registry",
            "url": url or remote.url,
            "credential": {
                "type": "basic",
                "access_key": remote.username,
                "access_secret": password or remote.password,
            },
        },
    )
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _policy(admin: httpx.AsyncClient, **body: Any) -> int:
    body.setdefault("name", f"p{_uid()}")
    response = await admin.post(POLICIES, json=body)
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _run(admin: httpx.AsyncClient, policy_id: int) -> dict[str, Any]:
    response = await admin.post(EXECUTIONS, json={"policy_id": policy_id})
    assert response.status_code == 201, response.text
    return await _wait(admin, int(response.headers["location"].rsplit("/", 1)[1]))


async def _wait(admin: httpx.AsyncClient, execution_id: int, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        got = await admin.get(f"{EXECUTIONS}/{execution_id}")
        assert got.status_code == 200, got.text
        execution: dict[str, Any] = got.json()
        if execution["status"] != "InProgress":
            return execution
        assert time.monotonic() < deadline, f"execution {execution_id} still in progress"
        await asyncio.sleep(0.1)


async def _tasks(admin: httpx.AsyncClient, execution_id: int) -> list[dict[str, Any]]:
    got = await admin.get(f"{EXECUTIONS}/{execution_id}/tasks")
    assert got.status_code == 200, got.text
    tasks: list[dict[str, Any]] = got.json()
    return tasks


async def _log(admin: httpx.AsyncClient, execution_id: int, task_id: int) -> str:
    got = await admin.get(f"{EXECUTIONS}/{execution_id}/tasks/{task_id}/log")
    assert got.status_code == 200, got.text
    return got.text


def _remote_client(remote: DockerRegistry) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=remote.url, auth=remote.credentials, timeout=30)


async def _remote_digest(remote: DockerRegistry, repository: str, tag: str) -> str | None:
    async with _remote_client(remote) as client:
        response = await client.head(
            f"/v2/{repository}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, " + OCI_INDEX},
        )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.headers["docker-content-digest"]


async def _push_index(admin: httpx.AsyncClient, repo: str, tag: str) -> str:
    children = []
    for arch in ("amd64", "arm64"):
        digest, body = await push_image(admin, repo, None, seed=f"{arch}{repo}".encode())
        children.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": len(body),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    response = await admin.put(
        f"/v2/{repo}/manifests/{tag}", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert response.status_code == 201, response.text
    return digest_of(index)


async def test_push_mode_copies_an_image_and_an_index(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    repo = f"library/push{_uid()}"
    image, _ = await push_image(admin, repo, "v1.0.0", seed=b"one")
    index = await _push_index(admin, repo, "multi")
    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        dest_namespace="mirror",
        dest_namespace_replace_count=1,
        filters=[{"type": "name", "value": repo}],
    )
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Succeed", execution
    assert execution["trigger"] == "manual"
    name = "mirror/" + repo.split("/", 1)[1]
    assert await _remote_digest(remote, name, "v1.0.0") == image
    assert await _remote_digest(remote, name, "multi") == index
    tasks = await _tasks(admin, execution["id"])
    copies = [t for t in tasks if t["operation"] == "copy"]
    assert len(copies) == 2 and all(t["status"] == "Success" for t in copies)
    assert {t["dst_resource"] for t in copies} == {f"{name}:[v1.0.0]", f"{name}:[multi]"}
    log = await _log(admin, execution["id"], copies[0]["id"])
    assert "copied" in log and "blobs sent" in log

    # A rerun with nothing changed copies nothing.
    again = await _run(admin, policy_id)
    assert again["status"] == "Succeed"
    (plan,) = await _tasks(admin, again["id"])
    assert plan["operation"] == "plan"
    assert "2 artifacts are at the destination already" in await _log(
        admin, again["id"], plan["id"]
    )

    listed = await admin.get(EXECUTIONS, params={"policy_id": policy_id})
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()] == [again["id"], execution["id"]]


async def test_a_plan_batches_artifacts_and_fails_them_one_by_one(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    """Ten artifacts go in copy tasks of two (spread over at least eight tasks); the one
    whose name cannot be flattened fails alone, in its task's log, and the artifact beside
    it in the same task is copied."""
    base = f"library/bat{_uid()}"
    names = [base] + [f"{base}/r{i}" for i in range(9)]
    digests = {}
    for name in names:
        digests[name], _ = await push_image(admin, name, "v1", seed=name.encode())
    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        dest_namespace="m" + base.rsplit("/", 1)[1],
        dest_namespace_replace_count=2,
        filters=[{"type": "name", "value": f"{{{base},{base}/**}}"}],
    )
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Failed", execution
    assert (execution["total"], execution["succeed"], execution["failed"]) == (6, 5, 1)
    copies = [t for t in await _tasks(admin, execution["id"]) if t["operation"] == "copy"]
    assert len(copies) == 5
    (failed,) = [t for t in copies if t["status"] == "Error"]
    assert failed["src_resource"] == f"{base}:[v1] {base}/r0:[v1]"
    log = await _log(admin, execution["id"], failed["id"])
    assert f"failed: {base}:[v1]: {base} has 1 components" in log
    assert f"copied {base}/r0:v1 to " in log
    namespace = "m" + base.rsplit("/", 1)[1]
    for i in range(9):
        assert await _remote_digest(remote, f"{namespace}/r{i}", "v1") == digests[f"{base}/r{i}"]

    # The rerun plans the failed one only.
    again = await _run(admin, policy_id)
    assert again["status"] == "Failed"
    plan = next(t for t in await _tasks(admin, again["id"]) if t["operation"] == "plan")
    plan_log = await _log(admin, again["id"], plan["id"])
    assert "9 artifacts are at the destination already" in plan_log
    assert "planned 1 artifact copies from" in plan_log
    assert (await admin.delete(f"{POLICIES}/{policy_id}")).status_code == 200


async def test_event_trigger_pushes_and_replicates_deletion(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    repo = f"library/evt{_uid()}"
    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        trigger={"type": "event_based"},
        replicate_deletion=True,
        filters=[
            {"type": "name", "value": "library/evt*"},
            {"type": "tag", "value": "semver:>=1.2 <2"},
        ],
    )
    digest, _ = await push_image(admin, repo, "1.4.0", seed=b"evt")
    await push_image(admin, repo, "2.0.0", seed=b"evt2")
    executions = await _executions_of(admin, policy_id, 1)
    finished = await _wait(admin, executions[0]["id"])
    assert finished["status"] == "Succeed" and finished["trigger"] == "event"
    assert await _remote_digest(remote, repo, "1.4.0") == digest
    assert await _remote_digest(remote, repo, "2.0.0") is None  # outside the range

    deleted = await admin.delete(
        f"{API}/projects/library/repositories/{repo.split('/', 1)[1]}/artifacts/{digest}"
    )
    assert deleted.status_code == 200, deleted.text
    executions = await _executions_of(admin, policy_id, 2)
    finished = await _wait(admin, executions[0]["id"])
    assert finished["status"] == "Succeed", await _tasks(admin, executions[0]["id"])
    assert await _remote_digest(remote, repo, "1.4.0") is None


async def _executions_of(
    admin: httpx.AsyncClient, policy_id: int, count: int
) -> list[dict[str, Any]]:
    listed = await admin.get(EXECUTIONS, params={"policy_id": policy_id})
    assert listed.status_code == 200
    executions: list[dict[str, Any]] = listed.json()
    assert len(executions) == count, executions
    return executions


async def test_pull_mode_into_a_local_project(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    source = f"library/push{_uid()}"
    digest, _ = await push_image(admin, source, "keep", seed=b"pull")
    await push_image(admin, source, "skip", seed=b"pull2")
    registry_id = await _endpoint(admin, remote)
    pushed = await _run(
        admin,
        await _policy(
            admin, dest_registry={"id": registry_id}, filters=[{"type": "name", "value": source}]
        ),
    )
    assert pushed["status"] == "Succeed"

    project = f"pull{_uid()}"  # made by the replication (private), as Harbor does
    policy_id = await _policy(
        admin,
        src_registry={"id": registry_id},
        dest_namespace=project,
        dest_namespace_replace_count=1,
        filters=[
            {"type": "name", "value": source},
            {"type": "tag", "value": "regex:sk.*", "decoration": "excludes"},
        ],
    )
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Succeed", await _tasks(admin, execution["id"])
    local = f"{project}/{source.split('/', 1)[1]}"
    got = await admin.get(
        f"/v2/{local}/manifests/keep",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert got.status_code == 200
    assert got.headers["docker-content-digest"] == digest
    assert (await admin.get(f"/v2/{local}/manifests/skip")).status_code == 404
    made = await admin.get(f"{API}/projects/{project}")
    assert made.status_code == 200 and made.json()["metadata"]["public"] == "false"


async def test_wrong_credentials_and_a_remote_down_fail_clearly_then_a_rerun_finishes(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    repo = f"library/bad{_uid()}"
    digest, _ = await push_image(admin, repo, "latest", seed=b"bad")
    registry_id = await _endpoint(admin, remote, password="not-the-password")
    policy_id = await _policy(
        admin, dest_registry={"id": registry_id}, filters=[{"type": "name", "value": repo}]
    )
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Failed"
    tasks = await _tasks(admin, execution["id"])
    assert any(t["status"] == "Error" for t in tasks)
    failed = next(t for t in tasks if t["status"] == "Error")
    assert "credentials" in (
        await _log(admin, execution["id"], failed["id"])
    ).lower() or "401" in await _log(admin, execution["id"], failed["id"])

    # Down: nothing listens on the endpoint's port.
    down_id = await _endpoint(admin, remote, url=f"http://127.0.0.1:{free_port()}")
    down_policy = await _policy(
        admin, dest_registry={"id": down_id}, filters=[{"type": "name", "value": repo}]
    )
    down = await _run(admin, down_policy)
    assert down["status"] == "Failed"
    down_task = next(t for t in await _tasks(admin, down["id"]) if t["status"] == "Error")
    assert "127.0.0.1" in await _log(admin, down["id"], down_task["id"])

    # Fixed credentials: the rerun finishes.
    fixed = await admin.put(
        f"{API}/registries/{registry_id}", json={"access_secret": remote.password}
    )
    assert fixed.status_code == 200, fixed.text
    rerun = await _run(admin, policy_id)
    assert rerun["status"] == "Succeed", await _tasks(admin, rerun["id"])
    assert await _remote_digest(remote, repo, "latest") == digest


async def _policy_count(state: AppState) -> int:
    async with state.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ReplicationPolicy)) or 0)


async def test_policy_lifecycle_and_bad_input(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    registry_id = await _endpoint(admin, remote)
    name = f"p{_uid()}"
    policy_id = await _policy(
        admin,
        name=name,
        dest_registry={"id": registry_id},
        trigger={"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * *"}},
        speed=512,
        filters=[{"type": "tag", "value": "{v1,v2}.**"}],
    )
    got = (await admin.get(f"{POLICIES}/{policy_id}")).json()
    assert got["name"] == name and got["dest_registry"]["id"] == registry_id
    assert got["src_registry"]["id"] == 0
    assert got["trigger"] == {"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * *"}}
    assert got["speed"] == 512 and got["override"] is True and got["enabled"] is True
    listed = await admin.get(POLICIES, params={"q": f"name={name}"})
    assert listed.headers["x-total-count"] == "1"
    updated = await admin.put(
        f"{POLICIES}/{policy_id}", json={**got, "enabled": False, "description": "off"}
    )
    assert updated.status_code == 200, updated.text
    assert (await admin.get(f"{POLICIES}/{policy_id}")).json()["enabled"] is False
    refused = await admin.post(EXECUTIONS, json={"policy_id": policy_id})
    assert refused.status_code == 400

    before = await _policy_count(state)
    bad_bodies: list[dict[str, Any]] = [
        {
            "name": "x",
            "dest_registry": {"id": registry_id},
            "trigger": {"type": "scheduled", "trigger_settings": {"cron": "* * *"}},
        },
        {"name": "x", "dest_registry": {"id": 999999}},
        {"name": "x", "src_registry": {"id": registry_id}, "dest_registry": {"id": registry_id}},
        {"name": "x"},
        {
            "name": "x",
            "dest_registry": {"id": registry_id},
            "filters": [{"type": "tag", "value": "regex:("}],
        },
        {
            "name": "x",
            "dest_registry": {"id": registry_id},
            "filters": [{"type": "tag", "value": "semver:>>1"}],
        },
        {
            "name": "x",
            "dest_registry": {"id": registry_id},
            "filters": [{"type": "colour", "value": "red"}],
        },
        {
            "name": "x",
            "dest_registry": {"id": registry_id},
            "filters": [{"type": "name", "value": "a", "decoration": "maybe"}],
        },
        {"name": "x", "dest_registry": {"id": registry_id}, "dest_namespace_replace_count": 99},
        {"name": "x", "dest_registry": {"id": registry_id}, "speed": -5},
        {"name": "", "dest_registry": {"id": registry_id}},
        {"name": "x", "dest_registry": {"id": registry_id}, "dest_namespace": "Bad Name"},
    ]
    for body in bad_bodies:
        response = await admin.post(POLICIES, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert (
        await admin.post(POLICIES, json={"name": name, "dest_registry": {"id": registry_id}})
    ).status_code == 409
    assert (await admin.post(EXECUTIONS, json={"policy_id": 987654})).status_code == 400
    assert (await anon.get(POLICIES)).status_code == 401
    assert (await anon.post(POLICIES, json={"name": "y"})).status_code == 401
    assert await _policy_count(state) == before

    assert (await admin.delete(f"{POLICIES}/{policy_id}")).status_code == 200
    # Harbor answers 404 here too, though its swagger declares none for this operation.
    gone = await admin.get(f"{POLICIES}/{policy_id}", headers={"X-Dockyard-Contract": "skip"})
    assert gone.status_code == 404
    assert (await admin.get(f"{EXECUTIONS}/99999999")).status_code == 404


async def test_endpoint_in_use_is_kept_and_label_filter_and_schedule(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    repo = f"library/lbl{_uid()}"
    short = repo.split("/", 1)[1]
    labelled, _ = await push_image(admin, repo, "a", seed=b"lbl-a")
    await push_image(admin, repo, "b", seed=b"lbl-b")
    label = f"l{_uid()}"
    created = await admin.post(f"{API}/labels", json={"name": label, "scope": "g"})
    assert created.status_code == 201, created.text
    label_id = int(created.headers["location"].rsplit("/", 1)[1])
    attached = await admin.post(
        f"{API}/projects/library/repositories/{short}/artifacts/{labelled}/labels",
        json={"id": label_id},
    )
    assert attached.status_code == 200, attached.text

    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        dest_namespace="labelled",
        dest_namespace_replace_count=0,
        trigger={"type": "scheduled", "trigger_settings": {"cron": "0 0 0 1 1 *"}},
        filters=[{"type": "name", "value": repo}, {"type": "label", "value": [label]}],
    )
    # The endpoint a policy uses cannot be deleted.
    refused = await admin.delete(f"{API}/registries/{registry_id}")
    assert refused.status_code == 412, refused.text
    assert "used by replication policies" in refused.text

    # The schedule fires through the scheduler (at its planned time, made due here).
    async with state.db.read() as session:
        row = await schedules.find_schedule(session, service.JOB_TYPE, policy_id)
    assert row is not None
    launchers = {name: job.launcher for name, job in state.job_types.items() if job.launcher}
    assert await schedules.fire_due(state.db, launchers, now=row.next_fire) >= 1
    executions = await _executions_of(admin, policy_id, 1)
    assert executions[0]["trigger"] == "schedule"
    finished = await _wait(admin, executions[0]["id"])
    assert finished["status"] == "Succeed", await _tasks(admin, finished["id"])
    assert await _remote_digest(remote, f"labelled/{repo}", "a") == labelled
    assert await _remote_digest(remote, f"labelled/{repo}", "b") is None  # no label

    # A pull-based policy cannot filter by label (remotes list none).
    pull_label = await admin.post(
        POLICIES,
        json={
            "name": f"p{_uid()}",
            "src_registry": {"id": registry_id},
            "filters": [{"type": "label", "value": [label]}],
        },
    )
    assert pull_label.status_code == 400

    assert (await admin.delete(f"{POLICIES}/{policy_id}")).status_code == 200
    assert (await admin.delete(f"{API}/registries/{registry_id}")).status_code == 200


async def test_event_deletions_by_v2_tag_and_retention_travel(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    project = f"ev{_uid()}"
    made = await admin.post(f"{API}/projects", json={"project_name": project})
    assert made.status_code == 201, made.text
    project_id = int(made.headers["location"].rsplit("/", 1)[1])
    repo = f"{project}/app"
    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        trigger={"type": "event_based"},
        replicate_deletion=True,
        filters=[
            {"type": "name", "value": f"{project}/**"},
            {"type": "tag", "value": r"regex:r\d+"},
        ],
    )
    pushed = {}
    for tag in ("r1", "r2", "r3"):
        pushed[tag], _ = await push_image(admin, repo, tag, seed=f"ev-{tag}".encode())
    for execution in await _executions_of(admin, policy_id, 3):
        assert (await _wait(admin, execution["id"]))["status"] == "Succeed"
    assert all([await _remote_digest(remote, repo, t) == d for t, d in pushed.items()])

    # /v2/ DELETE by digest: the artifact goes at the destination too.
    deleted = await admin.delete(f"/v2/{repo}/manifests/{pushed['r1']}")
    assert deleted.status_code == 202, deleted.text
    # A tag deleted by the API: distribution deletes manifests only, and no other tag
    # there names it, so its manifest goes.
    untagged = await admin.delete(f"{API}/projects/{project}/repositories/app/artifacts/r2/tags/r2")
    assert untagged.status_code == 200, untagged.text
    for execution in (await _executions_of(admin, policy_id, 5))[:2]:
        done = await _wait(admin, execution["id"])
        assert done["status"] == "Succeed", await _tasks(admin, execution["id"])
    assert await _remote_digest(remote, repo, "r1") is None
    assert await _remote_digest(remote, repo, "r2") is None

    # Retention keeping nothing of r* removes r3: the deletion travels as well.
    retention = await admin.post(
        f"{API}/retentions",
        json={
            "algorithm": "or",
            "rules": [
                {
                    "disabled": False,
                    "action": "retain",
                    "template": "always",
                    "params": {},
                    "tag_selectors": [
                        {"kind": "doublestar", "decoration": "matches", "pattern": "keep-*"}
                    ],
                    "scope_selectors": {
                        "repository": [
                            {"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}
                        ]
                    },
                }
            ],
            "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
            "scope": {"level": "project", "ref": project_id},
        },
    )
    assert retention.status_code == 201, retention.text
    retention_id = int(retention.headers["location"].rsplit("/", 1)[1])
    ran = await admin.post(f"{API}/retentions/{retention_id}/executions", json={"dry_run": False})
    assert ran.status_code == 201, ran.text
    deadline = time.monotonic() + 60
    while await _remote_digest(remote, repo, "r3") is not None:
        assert time.monotonic() < deadline, "retention's deletion did not reach the destination"
        await asyncio.sleep(0.2)


async def test_a_throttled_copy_is_stopped(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    repo = f"library/slow{_uid()}"
    await push_image(admin, repo, "big", layers=1, seed=b"s" * 64 * 1024)
    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin, dest_registry={"id": registry_id}, speed=4, filters=[{"type": "name", "value": repo}]
    )
    started = await admin.post(EXECUTIONS, json={"policy_id": policy_id})
    assert started.status_code == 201
    execution_id = int(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    while not any(
        t["operation"] == "copy" and t["status"] == "Running"
        for t in await _tasks(admin, execution_id)
    ):
        assert time.monotonic() < deadline, "the copy task never ran"
        await asyncio.sleep(0.1)
    stopped = await admin.put(f"{EXECUTIONS}/{execution_id}")
    assert stopped.status_code == 200, stopped.text
    finished = await _wait(admin, execution_id, within=20)
    assert finished["status"] == "Stopped", await _tasks(admin, execution_id)
    assert await _remote_digest(remote, repo, "big") is None


async def test_signatures_and_referrers_travel_with_their_subject(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    repo = f"library/sig{_uid()}"
    subject, body = await push_image(admin, repo, "v1", seed=b"subject")
    config = await push_blob(admin, repo, b"{}")
    layer = await push_blob(admin, repo, b"signature-of-" + subject.encode())
    signature = image_manifest((config, 2), [(layer, len(b"signature-of-" + subject.encode()))])
    sig_tag = subject.replace(":", "-") + ".sig"
    put = await admin.put(
        f"/v2/{repo}/manifests/{sig_tag}",
        content=signature,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201, put.text
    sbom = image_manifest(
        (config, 2),
        [(layer, len(b"signature-of-" + subject.encode()))],
        subject=(subject, len(body)),
        artifact_type="application/spdx+json",
    )
    put = await admin.put(
        f"/v2/{repo}/manifests/{digest_of(sbom)}",
        content=sbom,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201, put.text

    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        filters=[{"type": "name", "value": repo}, {"type": "tag", "value": "v*"}],
    )
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Succeed", await _tasks(admin, execution["id"])
    assert await _remote_digest(remote, repo, "v1") == subject
    assert await _remote_digest(remote, repo, sig_tag) == digest_of(signature)
    assert await _remote_digest(remote, repo, digest_of(sbom)) == digest_of(sbom)
    # distribution 2.8 has no referrers API: the fallback tag lists the referrer there.
    async with _remote_client(remote) as client:
        fallback = await client.get(
            f"/v2/{repo}/manifests/{subject.replace(':', '-')}", headers={"Accept": OCI_INDEX}
        )
    assert fallback.status_code == 200, fallback.text
    assert [d["digest"] for d in fallback.json()["manifests"]] == [digest_of(sbom)]
    assert fallback.json()["manifests"][0]["artifactType"] == "application/spdx+json"


async def _upload(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    """A blob pushed to distribution 2.8 (a POST, then a PUT with the bytes)."""
    started = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    digest = digest_of(data)
    # The location keeps its own query (``_state``): the digest is added to it.
    target = httpx.URL(started.headers["location"]).copy_merge_params({"digest": digest})
    done = await client.put(target, content=data)
    assert done.status_code == 201, done.text
    return digest


async def test_pull_brings_referrers_listed_by_the_fallback_tag(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    """A source without the referrers API (distribution 2.8) lists a subject's referrers
    in the fallback tag ``sha256-<hex>``; a pull brings them, whatever the tag filters."""
    uid = _uid()
    repo = f"src{uid}/app"
    async with _remote_client(remote) as client:
        config = await _upload(client, repo, b'{"architecture":"amd64","os":"linux"}')
        layer = await _upload(client, repo, b"layer " + uid.encode())
        image = image_manifest((config, 37), [(layer, len(b"layer " + uid.encode()))])
        put = await client.put(
            f"/v2/{repo}/manifests/v1",
            content=image,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert put.status_code == 201, put.text
        subject = digest_of(image)
        empty = await _upload(client, repo, b"{}")
        sbom = image_manifest(
            (empty, 2),
            [(layer, len(b"layer " + uid.encode()))],
            subject=(subject, len(image)),
            artifact_type="application/spdx+json",
            config_type="application/vnd.oci.empty.v1+json",
        )
        put = await client.put(
            f"/v2/{repo}/manifests/{digest_of(sbom)}",
            content=sbom,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert put.status_code == 201, put.text
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest_of(sbom),
                        "size": len(sbom),
                        "artifactType": "application/spdx+json",
                    }
                ],
            }
        ).encode()
        put = await client.put(
            f"/v2/{repo}/manifests/{subject.replace(':', '-')}",
            content=index,
            headers={"Content-Type": OCI_INDEX},
        )
        assert put.status_code == 201, put.text
        assert (await client.get(f"/v2/{repo}/referrers/{subject}")).status_code == 404

    registry_id = await _endpoint(admin, remote)
    policy_id = await _policy(
        admin,
        src_registry={"id": registry_id},
        dest_namespace=f"pulled{uid}",
        filters=[{"type": "name", "value": repo}, {"type": "tag", "value": "v1"}],
    )
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Succeed", await _tasks(admin, execution["id"])
    local = f"pulled{uid}/app"
    referrers = await admin.get(f"/v2/{local}/referrers/{subject}")
    assert referrers.status_code == 200, referrers.text
    assert [d["digest"] for d in referrers.json()["manifests"]] == [digest_of(sbom)]
    assert referrers.json()["manifests"][0]["artifactType"] == "application/spdx+json"


async def test_robots_granted_replication_may_and_others_may_not(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    def robot(*pairs: str) -> dict[str, Any]:
        access = [{"resource": p.split(":")[0], "action": p.split(":")[1]} for p in pairs]
        return {
            "name": f"s{_uid()}",
            "level": "system",
            "duration": -1,
            "permissions": [{"kind": "system", "namespace": "/", "access": access}],
        }

    made = await admin.post(
        f"{API}/robots", json=robot("replication-policy:list", "replication:list")
    )
    assert made.status_code == 201, made.text
    reader = (made.json()["name"], made.json()["secret"])
    async with make_client(app, reader) as client:
        assert (await client.get(POLICIES)).status_code == 200
        assert (await client.get(EXECUTIONS)).status_code == 200
        assert (await client.post(POLICIES, json={"name": "no"})).status_code == 403
        assert (await client.post(EXECUTIONS, json={"policy_id": 1})).status_code == 403
    other = await admin.post(f"{API}/robots", json=robot("registry:list"))
    assert other.status_code == 201, other.text
    async with make_client(app, (other.json()["name"], other.json()["secret"])) as client:
        assert (await client.get(POLICIES)).status_code == 403


async def test_override_off_leaves_a_changed_tag_alone(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    repo = f"library/ovr{_uid()}"
    first, _ = await push_image(admin, repo, "t", seed=b"first")
    registry_id = await _endpoint(admin, remote)
    keep = await _policy(
        admin,
        dest_registry={"id": registry_id},
        override=False,
        filters=[{"type": "name", "value": repo}],
    )
    assert (await _run(admin, keep))["status"] == "Succeed"
    assert await _remote_digest(remote, repo, "t") == first
    second, _ = await push_image(admin, repo, "t", seed=b"second")
    execution = await _run(admin, keep)
    assert execution["status"] == "Succeed"
    assert await _remote_digest(remote, repo, "t") == first
    copy = next(t for t in await _tasks(admin, execution["id"]) if t["operation"] == "copy")
    assert "override is off" in await _log(admin, execution["id"], copy["id"])
    # With override on, the tag moves.
    body = (await admin.get(f"{POLICIES}/{keep}")).json()
    assert (
        await admin.put(f"{POLICIES}/{keep}", json={**body, "override": True})
    ).status_code == 200
    assert (await _run(admin, keep))["status"] == "Succeed"
    assert await _remote_digest(remote, repo, "t") == second


@pytest.fixture(scope="module")
def hook_receiver() -> Iterator[Receiver]:
    """One webhook receiver on 127.0.0.1 for the module (``test_webhooks``'s)."""
    with contextlib.contextmanager(serve_receiver)(None) as receiver:
        yield receiver


async def test_an_execution_end_is_the_replication_webhook_event(
    admin: httpx.AsyncClient, state: AppState, remote: DockerRegistry, hook_receiver: Receiver
) -> None:
    """``REPLICATION`` goes to the policies of the replicated (source) project once the
    execution ends, listing each artifact by outcome; a project not replicated hears nothing."""
    project = f"rw{_uid()}"
    made = await admin.post(f"{API}/projects", json={"project_name": project})
    assert made.status_code == 201, made.text
    other = f"rw{_uid()}"
    assert (await admin.post(f"{API}/projects", json={"project_name": other})).status_code == 201
    for name, path in ((project, f"/{project}"), (other, f"/{other}")):
        hook = {
            "name": f"h{_uid()}",
            "enabled": True,
            "event_types": ["REPLICATION"],
            "targets": [{"type": "http", "address": hook_receiver.url + path}],
        }
        answer = await admin.post(f"{API}/projects/{name}/webhook/policies", json=hook)
        assert answer.status_code == 201, answer.text
    await push_image(admin, f"{project}/app", "v1", seed=b"hooked")
    registry_id = await _endpoint(admin, remote)
    endpoint = (await admin.get(f"{API}/registries/{registry_id}")).json()
    policy_id = await _policy(
        admin,
        dest_registry={"id": registry_id},
        dest_namespace="hooked",
        filters=[{"type": "name", "value": f"{project}/**"}],
    )
    before = int(time.time())
    execution = await _run(admin, policy_id)
    assert execution["status"] == "Succeed", execution
    (delivered,) = await hook_receiver.wait_for(f"/{project}", 1)
    body = delivered.json()
    assert before - 1 <= body.pop("occur_at") <= time.time() + 1
    replication = body["event_data"]["replication"]
    assert before - 1 <= replication.pop("execution_timestamp") <= time.time() + 1
    assert body == {
        "type": "REPLICATION",
        "operator": "MANUAL",
        "event_data": {
            "replication": {
                "harbor_hostname": urlsplit(state.settings.public_url).netloc,
                "job_status": "Success",
                "description": "",
                "artifact_type": "image",
                "override_mode": True,
                "trigger_type": "MANUAL",
                "src_resource": {
                    "registry_name": "Local",
                    "registry_type": "harbor",
                    "endpoint": state.settings.public_url,
                    "namespace": project,
                },
                "dest_resource": {
                    "registry_name": endpoint["name"],
                    "registry_type": "docker-registry",
                    "endpoint": remote.url,
                    "namespace": "hooked",
                },
                "successful_artifact": [
                    {"type": "image", "status": "Success", "name_tag": f"{project}/app:[v1]"}
                ],
                "failed_artifact": [],
            }
        },
    }
    assert hook_receiver.wanted(f"/{other}") == []

    # A pull tells the destination (local) project, naming the remote as the source.
    into = f"rw{_uid()}"
    assert (await admin.post(f"{API}/projects", json={"project_name": into})).status_code == 201
    hook = {
        "name": f"h{_uid()}",
        "enabled": True,
        "event_types": ["REPLICATION"],
        "targets": [{"type": "http", "address": f"{hook_receiver.url}/{into}"}],
    }
    answer = await admin.post(f"{API}/projects/{into}/webhook/policies", json=hook)
    assert answer.status_code == 201, answer.text
    pull_id = await _policy(
        admin,
        src_registry={"id": registry_id},
        dest_namespace=into,
        filters=[{"type": "name", "value": "hooked/app"}],
    )
    pulled = await _run(admin, pull_id)
    assert pulled["status"] == "Succeed", pulled
    (heard,) = await hook_receiver.wait_for(f"/{into}", 1)
    event = heard.json()["event_data"]["replication"]
    assert event["src_resource"] == {
        "registry_name": endpoint["name"],
        "registry_type": "docker-registry",
        "endpoint": remote.url,
        "namespace": "hooked",
    }
    assert event["dest_resource"]["namespace"] == into
    assert event["dest_resource"]["registry_name"] == "Local"
    assert event["successful_artifact"] == [
        {"type": "image", "status": "Success", "name_tag": "hooked/app:[v1]"}
    ]
    assert len(hook_receiver.wanted(f"/{project}")) == 1
