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
from tests.integration.registry_helpers import push_image
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
