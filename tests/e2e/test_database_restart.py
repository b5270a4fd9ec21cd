"""PostgreSQL restarted under load: a real server on a private throwaway cluster (never the
shared one), pushes and API reads going on while the cluster stops and starts again.
While it is down clients get ``503`` with ``Retry-After`` and the registry's error bodies,
never a ``500``; every acknowledged push is whole afterwards; and the same server process
serves again once the database is back, without a restart."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.support.postgres import ThrowawayCluster, start_throwaway_cluster
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "library/restart"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    running = start_throwaway_cluster()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(cluster: ThrowawayCluster) -> Iterator[DockyardServer]:
    with DockyardServer(database_url=cluster.url) as running:
        yield running


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push(client: httpx.Client, tag: str) -> tuple[int, bytes]:
    """Push a one-layer image monolithically; returns (status of the last step that
    answered, the manifest)."""
    layer = os.urandom(2048)
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    for blob in (layer, config):
        answer = client.post(
            f"/v2/{REPO}/blobs/uploads/", params={"digest": _digest(blob)}, content=blob
        )
        if answer.status_code != 201:
            return answer.status_code, b""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    answer = client.put(
        f"/v2/{REPO}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    return answer.status_code, manifest


def _check_unavailable(answer: httpx.Response, harbor: bool) -> None:
    assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text)
    assert int(answer.headers["retry-after"]) > 0
    error = answer.json()["errors"][0]
    assert error["code"] == ("SERVICE_UNAVAILABLE" if harbor else "UNAVAILABLE")
    assert "database is unavailable" in error["message"]


def test_postgresql_restarted_under_load(server: DockyardServer, cluster: ThrowawayCluster) -> None:
    statuses: Counter[int] = Counter()
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()
    failures: list[str] = []

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as client:
            n = 0
            while not stop.is_set():
                n += 1
                tag = f"w{worker}-{n}"
                try:
                    status, manifest = _push(client, tag)
                    listed = client.get("/api/v2.0/projects")
                except httpx.TransportError as exc:  # the server must keep answering
                    failures.append(f"{tag}: {exc!r}")
                    return
                statuses[status] += 1
                statuses[listed.status_code] += 1
                if status == 201:
                    acknowledged[tag] = manifest
                if listed.status_code >= 500 and listed.status_code != 503:
                    failures.append(f"projects: {listed.status_code}")
                if status >= 500 and status != 503:
                    failures.append(f"push {tag}: {status}")

    workers = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for worker in workers:
        worker.start()
    try:
        _wait(lambda: len(acknowledged) >= 3)
        cluster.pause()
        with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as client:
            # down: a clear 503 on both faces, whatever the pool held
            for _ in range(3):
                _check_unavailable(client.get("/api/v2.0/projects"), harbor=True)
                _check_unavailable(client.get(f"/v2/{REPO}/tags/list"), harbor=False)
        before_restart = len(acknowledged)
        cluster.resume()
        # back: the same process serves again, pushes included
        _wait(lambda: len(acknowledged) >= before_restart + 3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not failures, failures
    assert statuses[503] > 0, statuses  # the outage was seen, and answered 503

    # nothing half-done: every acknowledged push pulls back whole
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as client:
        # and the job workers came back too: a collection runs to the end
        started = client.post(
            "/api/v2.0/system/gc/schedule",
            json={"schedule": {"type": "Manual"}, "parameters": {"dry_run": True}},
        )
        assert started.status_code == 201, started.text
        gc = "/api/v2.0/system/gc/" + started.headers["Location"].rsplit("/", 1)[1]
        _wait(lambda: client.get(gc).json()["job_status"] in ("Success", "Error"))
        assert client.get(gc).json()["job_status"] == "Success"
        for tag, manifest in acknowledged.items():
            answer = client.get(f"/v2/{REPO}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert answer.status_code == 200, tag
            assert answer.content == manifest
            for descriptor in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
                blob = client.get(f"/v2/{REPO}/blobs/{descriptor['digest']}")
                assert blob.status_code == 200
                assert _digest(blob.content) == descriptor["digest"]


def _wait(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")
