"""Replication to a Harbor-compatible remote: a second Dockyard (a real ``dockyard serve``
process, one per module) as a ``harbor`` endpoint, on both databases of this side. A
push-based event policy makes the remote project, copies a push and replicates a tag
deletion, which Harbor's API can do alone (distribution cannot)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from tests.integration.registry_helpers import digest_of, image_manifest, push_blob, push_image
from tests.support.server import DockyardServer

API = "/api/v2.0"


@pytest.fixture(scope="module")
def harbor() -> Iterator[DockyardServer]:
    with DockyardServer() as server:
        yield server


async def _digest_at(server: DockyardServer, repository: str, tag: str) -> str | None:
    async with httpx.AsyncClient(
        base_url=server.url, auth=("admin", server.admin_password), timeout=30
    ) as client:
        response = await client.head(
            f"/v2/{repository}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.headers["docker-content-digest"]


async def _until(check: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the replication did not reach the remote"
        await asyncio.sleep(0.2)


async def test_event_policy_to_a_harbor_remote(
    admin: httpx.AsyncClient, harbor: DockyardServer
) -> None:
    uid = uuid.uuid4().hex[:10]
    made = await admin.post(
        f"{API}/registries",
        json={
            "name": f"h{uid}",
            "type": "harbor",
            "url": harbor.url,
            "credential": {
                "type": "basic",
                "access_key": "admin",
                "access_secret": harbor.admin_password,
            },
        },
    )
    assert made.status_code == 201, made.text
    registry_id = int(made.headers["location"].rsplit("/", 1)[1])
    repo = f"library/h{uid}"
    policy = await admin.post(
        f"{API}/replication/policies",
        json={
            "name": f"p{uid}",
            "dest_registry": {"id": registry_id},
            "dest_namespace": f"dr{uid}",
            "dest_namespace_replace_count": 1,
            "trigger": {"type": "event_based"},
            "replicate_deletion": True,
            "filters": [{"type": "name", "value": repo}],
        },
    )
    assert policy.status_code == 201, policy.text
    digest, _ = await push_image(admin, repo, "v1", seed=b"harbor")
    await push_image(admin, repo, "v2", seed=b"harbor")  # v1 stays, by another tag
    target = f"dr{uid}/h{uid}"

    async def copied() -> bool:
        return await _digest_at(harbor, target, "v1") == digest

    await _until(copied)

    deleted = await admin.delete(f"{API}/projects/library/repositories/h{uid}/artifacts/v1/tags/v1")
    assert deleted.status_code == 200, deleted.text

    async def gone() -> bool:
        return await _digest_at(harbor, target, "v1") is None

    await _until(gone)
    assert await _digest_at(harbor, target, "v2") is not None


async def _harbor_endpoint(admin: httpx.AsyncClient, harbor: DockyardServer, uid: str) -> int:
    made = await admin.post(
        f"{API}/registries",
        json={
            "name": f"h{uid}",
            "type": "harbor",
            "url": harbor.url,
            "credential": {
                "type": "basic",
                "access_key": "admin",
                "access_secret": harbor.admin_password,
            },
        },
    )
    assert made.status_code == 201, made.text
    return int(made.headers["location"].rsplit("/", 1)[1])


async def _run(admin: httpx.AsyncClient, body: dict[str, object]) -> dict[str, object]:
    policy = await admin.post(f"{API}/replication/policies", json=body)
    assert policy.status_code == 201, policy.text
    policy_id = int(policy.headers["location"].rsplit("/", 1)[1])
    started = await admin.post(f"{API}/replication/executions", json={"policy_id": policy_id})
    assert started.status_code == 201, started.text
    execution_id = started.headers["location"].rsplit("/", 1)[1]
    result: dict[str, object] = {}

    async def finished() -> bool:
        got = await admin.get(f"{API}/replication/executions/{execution_id}")
        result.update(got.json())
        return got.json()["status"] != "InProgress"

    await _until(finished)
    return result


async def test_pull_brings_referrers_listed_by_the_remote_api_and_push_brings_labels(
    admin: httpx.AsyncClient, harbor: DockyardServer
) -> None:
    uid = uuid.uuid4().hex[:10]
    registry_id = await _harbor_endpoint(admin, harbor, uid)
    repo = f"library/ref{uid}"
    async with httpx.AsyncClient(
        base_url=harbor.url, auth=("admin", harbor.admin_password), timeout=30
    ) as remote:
        subject, body = await push_image(remote, repo, "v1", seed=b"referred")
        empty = await push_blob(remote, repo, b"{}")
        sbom = image_manifest(
            (empty, 2),
            [(empty, 2)],
            subject=(subject, len(body)),
            artifact_type="application/spdx+json",
            config_type="application/vnd.oci.empty.v1+json",
        )
        put = await remote.put(
            f"/v2/{repo}/manifests/{digest_of(sbom)}",
            content=sbom,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert put.status_code == 201, put.text
    pulled = await _run(
        admin,
        {
            "name": f"pull{uid}",
            "src_registry": {"id": registry_id},
            "dest_namespace": f"pulled{uid}",
            "filters": [{"type": "name", "value": repo}, {"type": "tag", "value": "v1"}],
        },
    )
    assert pulled["status"] == "Succeed", pulled
    referrers = await admin.get(f"/v2/pulled{uid}/ref{uid}/referrers/{subject}")
    assert referrers.status_code == 200, referrers.text
    assert [d["digest"] for d in referrers.json()["manifests"]] == [digest_of(sbom)]

    # Push mode: the artifact's labels go with it, made at the remote where missing.
    local = f"library/lab{uid}"
    digest, _ = await push_image(admin, local, "v1", seed=b"labelled")
    label = await admin.post(f"{API}/labels", json={"name": f"prod{uid}", "scope": "g"})
    assert label.status_code == 201, label.text
    label_id = int(label.headers["location"].rsplit("/", 1)[1])
    added = await admin.post(
        f"{API}/projects/library/repositories/lab{uid}/artifacts/v1/labels", json={"id": label_id}
    )
    assert added.status_code == 200, added.text
    pushed = await _run(
        admin,
        {
            "name": f"push{uid}",
            "dest_registry": {"id": registry_id},
            "dest_namespace": f"dr{uid}",
            "filters": [{"type": "name", "value": local}],
        },
    )
    assert pushed["status"] == "Succeed", pushed
    async with httpx.AsyncClient(
        base_url=harbor.url, auth=("admin", harbor.admin_password), timeout=30
    ) as remote:
        artifact = await remote.get(
            f"{API}/projects/dr{uid}/repositories/lab{uid}/artifacts/{digest}",
            params={"with_label": "true"},
        )
    assert artifact.status_code == 200, artifact.text
    assert [label["name"] for label in artifact.json()["labels"]] == [f"prod{uid}"]

    # A rerun finds the artifact there with its label: it plans nothing.
    started = await admin.post(
        f"{API}/replication/executions", json={"policy_id": pushed["policy_id"]}
    )
    assert started.status_code == 201, started.text
    rerun = started.headers["location"].rsplit("/", 1)[1]

    status: list[str] = []

    async def rerun_finished() -> bool:
        got = await admin.get(f"{API}/replication/executions/{rerun}")
        status.append(got.json()["status"])
        return status[-1] != "InProgress"

    await _until(rerun_finished)
    assert status[-1] == "Succeed", status
    tasks = (await admin.get(f"{API}/replication/executions/{rerun}/tasks")).json()
    assert [t["operation"] for t in tasks] == ["plan"], tasks
    log = await admin.get(f"{API}/replication/executions/{rerun}/tasks/{tasks[0]['id']}/log")
    assert "1 artifacts are at the destination already" in log.text, log.text
