"""Replication's heavy paths against one Debian ``docker-registry`` per module (no auth),
on both databases: cross-repository mounts at the destination (and the fallback when the
destination opens an upload instead), a 256 MiB layer in push and pull mode with the
worker's memory watched, and the remote stopped while that layer is in flight."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from tests.integration.registry_helpers import digest_of, image_manifest, push_blob
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.tcp_proxy import TcpProxy

from dockyard.http.state import AppState

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


# --- a 256 MiB layer -----------------------------------------------------------------------


def _block(seed: bytes, index: int) -> bytes:
    """The ``index``-th MiB of a big layer: the same bytes for the same seed, every run."""
    return random.Random(seed + index.to_bytes(4, "big")).randbytes(MIB)


async def _big_chunks(seed: bytes) -> AsyncIterator[bytes]:
    for index in range(BIG // MIB):
        yield _block(seed, index)


def _big_digest(seed: bytes) -> str:
    hasher = hashlib.sha256()
    for index in range(BIG // MIB):
        hasher.update(_block(seed, index))
    return "sha256:" + hasher.hexdigest()


async def _big_image(admin: httpx.AsyncClient, state: AppState, name: str) -> tuple[str, str, str]:
    """A local image with one 256 MiB layer whose bytes follow from ``name`` and the
    database (so that no copy finds them at a destination already and mounts them):
    its repository, manifest digest and layer digest. The layer goes up in 16 MiB pieces."""
    uid = _uid()
    repo = f"library/{name}{uid}"
    seed = f"dockyard-256-{name}-{state.settings.effective_database_url}".encode()
    layer = _big_digest(seed)
    started = await admin.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    offset = 0
    piece = bytearray()
    async for chunk in _big_chunks(seed):
        piece += chunk
        if len(piece) >= 16 * MIB:
            sent = await admin.patch(
                location,
                content=bytes(piece),
                headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
            )
            assert sent.status_code == 202, sent.text
            location = sent.headers["location"]
            offset += len(piece)
            piece.clear()
    done = await admin.put(location, params={"digest": layer})
    assert done.status_code == 201, done.text
    config = json.dumps({"architecture": "amd64", "os": "linux", "big": uid}).encode()
    config_digest = await push_blob(admin, repo, config)
    manifest = image_manifest((config_digest, len(config)), [(layer, BIG)])
    put = await admin.put(
        f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    return repo, digest_of(manifest), layer


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def _peak_growth() -> Iterator[list[int]]:
    """The most this process's resident memory grew above where it started, sampled
    every 20 ms while the block runs (``[growth]`` once it ends)."""
    start = _rss()
    peak = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result: list[int] = []
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result.append(peak[0] - start)


async def _remote_blob_digest(remote: DockerRegistry, repository: str, digest: str) -> str:
    """The digest of the blob's bytes as the remote serves them (streamed)."""
    hasher = hashlib.sha256()
    async with (
        _at(remote) as client,
        client.stream("GET", f"/v2/{repository}/blobs/{digest}") as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


async def test_a_256_mib_layer_pushed_and_pulled_in_bounded_memory(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    repo, digest, layer = await _big_image(admin, state, "big")
    uid = _uid()
    registry_id = await _endpoint(admin, remote.url)
    push = await _policy(
        admin,
        dest_registry={"id": registry_id},
        dest_namespace=f"bigpush{uid}",
        filters=[{"type": "name", "value": repo}],
    )
    with _peak_growth() as growth:
        execution = await _run(admin, push)
    assert execution["status"] == "Succeed", execution
    # Streamed: the worker never held the layer (256 MiB) in memory.
    assert growth[0] < 96 * MIB, f"memory grew by {growth[0] // MIB} MiB during the push"
    target = f"bigpush{uid}/{repo.split('/', 1)[1]}"
    assert await _remote_digest(remote, target, "v1") == digest
    assert await _remote_blob_digest(remote, target, layer) == layer

    pull = await _policy(
        admin,
        src_registry={"id": registry_id},
        dest_namespace=f"bigpull{uid}",
        filters=[{"type": "name", "value": target}],
    )
    with _peak_growth() as growth:
        execution = await _run(admin, pull)
    assert execution["status"] == "Succeed", execution
    assert growth[0] < 96 * MIB, f"memory grew by {growth[0] // MIB} MiB during the pull"
    local = f"bigpull{uid}/{repo.split('/', 1)[1]}"
    head = await admin.head(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert head.headers["docker-content-digest"] == digest
    blob = await admin.head(f"/v2/{local}/blobs/{layer}")
    assert blob.status_code == 200 and int(blob.headers["content-length"]) == BIG


# --- the remote stopped mid-copy -----------------------------------------------------------


def _kill(remote: DockerRegistry) -> None:
    """Stop the remote the hard way (a crash, not a drain)."""
    assert remote.process is not None
    remote.process.kill()
    remote.process.wait(10)
    remote.process = None


def _uploaded(remote: DockerRegistry, repository: str) -> int:
    """Bytes the remote holds in unfinished uploads to ``repository``."""
    uploads = remote.root / "data/docker/registry/v2/repositories" / repository / "_uploads"
    return sum(path.stat().st_size for path in uploads.glob("*/data"))


async def _start(admin: httpx.AsyncClient, policy_id: int) -> int:
    response = await admin.post(EXECUTIONS, json={"policy_id": policy_id})
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _copy_running(admin: httpx.AsyncClient, execution_id: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        got = await admin.get(f"{EXECUTIONS}/{execution_id}/tasks")
        if any(t["operation"] == "copy" and t["status"] == "Running" for t in got.json()):
            return
        assert time.monotonic() < deadline, "the copy did not start"
        await asyncio.sleep(0.1)


async def _unthrottle(admin: httpx.AsyncClient, policy_id: int) -> None:
    body = (await admin.get(f"{POLICIES}/{policy_id}")).json()
    body["speed"] = -1
    changed = await admin.put(f"{POLICIES}/{policy_id}", json=body)
    assert changed.status_code == 200, changed.text


async def test_the_remote_stopped_mid_copy_leaves_nothing_half_written(
    admin: httpx.AsyncClient, remote: DockerRegistry, state: AppState
) -> None:
    repo, digest, layer = await _big_image(admin, state, "fault")
    uid = _uid()
    registry_id = await _endpoint(admin, remote.url)
    target = f"fault{uid}/{repo.split('/', 1)[1]}"
    # 16 MiB/s: the 256 MiB layer is in flight for 16 s, long enough to stop the remote.
    push = await _policy(
        admin,
        dest_registry={"id": registry_id},
        dest_namespace=f"fault{uid}",
        speed=16 * 1024,
        filters=[{"type": "name", "value": repo}],
    )
    try:
        execution_id = await _start(admin, push)
        deadline = time.monotonic() + 60
        while _uploaded(remote, target) < 32 * MIB:
            assert time.monotonic() < deadline, "the layer never went up"
            await asyncio.sleep(0.05)
        _kill(remote)
        execution = await _wait(admin, execution_id, 60)
        assert execution["status"] == "Failed", execution
        ((status, log),) = await _copy_logs(admin, execution_id)
        assert status == "Error"
        assert "remote error" in log and remote.address in log, log
    finally:
        if remote.process is None:
            remote.start()
    # Nothing half-written shows: no manifest, no blob (the partial upload is not one).
    assert await _remote_digest(remote, target, "v1") is None
    async with _at(remote) as client:
        assert (await client.head(f"/v2/{target}/blobs/{layer}")).status_code == 404
    await _unthrottle(admin, push)
    assert (await _run(admin, push))["status"] == "Succeed"
    assert await _remote_digest(remote, target, "v1") == digest
    assert await _remote_blob_digest(remote, target, layer) == layer

    # Dockyard as the destination: a pull whose source stops mid-layer.
    pull = await _policy(
        admin,
        src_registry={"id": registry_id},
        dest_namespace=f"faultpull{uid}",
        speed=16 * 1024,
        filters=[{"type": "name", "value": target}],
    )
    local = f"faultpull{uid}/{repo.split('/', 1)[1]}"
    try:
        execution_id = await _start(admin, pull)
        await _copy_running(admin, execution_id)
        await asyncio.sleep(4)  # at 16 MiB/s, some 64 MiB of the 256 are written
        _kill(remote)
        execution = await _wait(admin, execution_id, 60)
        assert execution["status"] == "Failed", execution
        ((status, log),) = await _copy_logs(admin, execution_id)
        assert status == "Error" and "remote error" in log and remote.address in log, log
    finally:
        if remote.process is None:
            remote.start()
    manifest = await admin.head(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 404
    assert (await admin.head(f"/v2/{local}/blobs/{layer}")).status_code == 404
    await _unthrottle(admin, pull)
    assert (await _run(admin, pull))["status"] == "Succeed"
    manifest = await admin.head(f"/v2/{local}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert manifest.headers["docker-content-digest"] == digest
    blob = await admin.head(f"/v2/{local}/blobs/{layer}")
    assert blob.status_code == 200 and int(blob.headers["content-length"]) == BIG
