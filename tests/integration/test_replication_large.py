"""Replication's heavy paths against one Debian ``docker-registry`` per module (no auth),
on both databases: cross-repository mounts at the destination (and the fallback when the
destination opens an upload instead), a 256 MiB layer in push and pull mode with the
worker's memory watched, and the remote stopped while that layer is in flight."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.registry_helpers import digest_of, image_manifest, push_blob
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

API = "/api/v2.0"
POLICIES = f"{API}/replication/policies"
EXECUTIONS = f"{API}/replication/executions"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MIB = 1024 * 1024
BIG = 256 * MIB


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("large")) as registry:
        yield registry


def _uid() -> str:
    return uuid.uuid4().hex[:10]


async def _endpoint(admin: httpx.AsyncClient, url: str) -> int:
    response = await admin.post(
        f"{API}/registries", json={"name": f"r{_uid()}", "type": "docker-registry", "url": url}
    )
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _policy(admin: httpx.AsyncClient, **body: Any) -> int:
    body.setdefault("name", f"p{_uid()}")
    response = await admin.post(POLICIES, json=body)
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _run(admin: httpx.AsyncClient, policy_id: int, within: float = 120) -> dict[str, Any]:
    response = await admin.post(EXECUTIONS, json={"policy_id": policy_id})
    assert response.status_code == 201, response.text
    return await _wait(admin, int(response.headers["location"].rsplit("/", 1)[1]), within)


async def _wait(admin: httpx.AsyncClient, execution_id: int, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        got = await admin.get(f"{EXECUTIONS}/{execution_id}")
        assert got.status_code == 200, got.text
        execution: dict[str, Any] = got.json()
        if execution["status"] != "InProgress":
            return execution
        assert time.monotonic() < deadline, f"execution {execution_id} still in progress"
        await asyncio.sleep(0.2)


async def _copy_logs(admin: httpx.AsyncClient, execution_id: int) -> list[tuple[str, str]]:
    """(status, log) of each copy task of the execution."""
    got = await admin.get(f"{EXECUTIONS}/{execution_id}/tasks")
    assert got.status_code == 200, got.text
    found = []
    for task in got.json():
        if task["operation"] == "copy":
            log = await admin.get(f"{EXECUTIONS}/{execution_id}/tasks/{task['id']}/log")
            found.append((task["status"], log.text))
    return found


async def _push_shared(admin: httpx.AsyncClient, repo: str, seed: bytes) -> str:
    """An image whose config and layers depend on ``seed`` only, so that two repositories
    pushed with one seed hold the same blobs; returns the manifest's digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
    layers = [seed * 3000 + bytes([i]) for i in range(3)]
    config_digest = await push_blob(admin, repo, config)
    pushed = [(await push_blob(admin, repo, data), len(data)) for data in layers]
    manifest = image_manifest((config_digest, len(config)), pushed)
    response = await admin.put(
        f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return digest_of(manifest)


def _at(remote: DockerRegistry) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=remote.url, timeout=60)


async def _remote_digest(remote: DockerRegistry, repository: str, tag: str) -> str | None:
    async with _at(remote) as client:
        response = await client.head(
            f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
        )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.headers["docker-content-digest"]


async def test_blobs_at_the_destination_are_mounted_not_sent(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    uid = _uid()
    first = await _push_shared(admin, f"library/mnta{uid}", uid.encode())
    second = await _push_shared(admin, f"library/mntb{uid}", uid.encode())
    assert first == second
    registry_id = await _endpoint(admin, remote.url)
    for name in (f"library/mnta{uid}", f"library/mntb{uid}"):
        policy_id = await _policy(
            admin, dest_registry={"id": registry_id}, filters=[{"type": "name", "value": name}]
        )
        execution = await _run(admin, policy_id)
        assert execution["status"] == "Succeed", execution
        assert await _remote_digest(remote, name, "v1") == first
    # The first repository's four blobs were uploaded; the second's mounted from it.
    assert remote.requests(f'"PUT /v2/library/mnta{uid}/blobs/uploads/') == 4
    assert remote.requests(f'"PUT /v2/library/mntb{uid}/blobs/uploads/') == 0
    assert remote.requests(f'"POST /v2/library/mntb{uid}/blobs/uploads/?') == 4
    ((status, log),) = await _copy_logs(admin, execution["id"])
    assert status == "Success"
    assert "0 blobs sent (0 bytes), 4 mounted from another repository there" in log


async def test_a_destination_that_opens_an_upload_instead_gets_the_blob_sent(
    admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    uid = _uid()
    digest = await _push_shared(admin, f"library/fba{uid}", uid.encode())
    await _push_shared(admin, f"library/fbb{uid}", uid.encode())
    # Through a proxy: an endpoint (URL) no earlier copy taught where blobs are.
    with TcpProxy(("127.0.0.1", remote.port)) as proxy:
        registry_id = await _endpoint(admin, proxy.url)
        first = await _policy(
            admin,
            dest_registry={"id": registry_id},
            filters=[{"type": "name", "value": f"library/fba{uid}"}],
        )
        assert (await _run(admin, first))["status"] == "Succeed"
        # The remote forgets the first repository's blobs: a mount from there opens an
        # upload (202) instead, and the copy sends them.
        async with _at(remote) as client:
            got = await client.get(
                f"/v2/library/fba{uid}/manifests/v1", headers={"Accept": OCI_MANIFEST}
            )
            manifest = got.json()
            for blob in [manifest["config"], *manifest["layers"]]:
                gone = await client.delete(f"/v2/library/fba{uid}/blobs/{blob['digest']}")
                assert gone.status_code == 202, gone.text
        second = await _policy(
            admin,
            dest_registry={"id": registry_id},
            filters=[{"type": "name", "value": f"library/fbb{uid}"}],
        )
        execution = await _run(admin, second)
    assert execution["status"] == "Succeed", execution
    assert await _remote_digest(remote, f"library/fbb{uid}", "v1") == digest
    # One mount was tried and refused; the destination is not asked again for each blob.
    assert remote.requests(f'"POST /v2/library/fbb{uid}/blobs/uploads/?') == 1
    assert remote.requests(f'"PUT /v2/library/fbb{uid}/blobs/uploads/') == 4
    ((status, log),) = await _copy_logs(admin, execution["id"])
    assert status == "Success" and "4 blobs sent" in log and "0 mounted" in log
