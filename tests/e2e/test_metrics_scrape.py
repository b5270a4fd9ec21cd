"""Prometheus metrics from a real ``dockyard serve``: scraped with httpx, parsed with
``prometheus_client.parser``.

- with ``--workers 2`` and a metrics port of its own: counts from both workers add up, and
  the business gauges follow project creation, pushes and pulls;
- on the main port: a bearer token is required;
- off (the default): ``/metrics`` is not there.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.server import DockyardServer, free_port

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FLUSH_SECONDS = 1.0
"""How often each worker flushes its request tallies (``metrics.routes.flush_every``)."""
TOKEN = "scrape-token-0123456789"


@pytest.fixture(scope="module")
def multiproc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prom")


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def metrics_url(metrics_port: int) -> str:
    return f"http://127.0.0.1:{metrics_port}/metrics"


@pytest.fixture(scope="module")
def metrics_server(multiproc_dir: Path, metrics_port: int) -> Iterator[DockyardServer]:
    """Two workers; metrics on their own port; the directory named by the operator (so the
    test can see each worker's files); no cache, so each scrape reads the database."""
    env = {
        "DOCKYARD_METRICS_ENABLED": "true",
        "DOCKYARD_METRICS_PORT": str(metrics_port),
        "DOCKYARD_METRICS_CACHE_SECONDS": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
    }
    (multiproc_dir / "counter_1.db").write_bytes(b"left by an earlier run")
    with DockyardServer(env=env, extra_args=("--workers", "2")) as running:
        yield running


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(url, timeout=30, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(url: str, check: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``check`` holds: the workers flush their tallies every second, and pull
    counts reach the database in the background."""
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"{what} never showed: {samples}"
        time.sleep(0.2)


def test_request_counts_from_both_workers_add_up(
    metrics_server: DockyardServer, metrics_url: str, multiproc_dir: Path
) -> None:
    url = metrics_url
    assert not (multiproc_dir / "counter_1.db").exists(), "serve empties the directory first"
    # Each worker flushes its tallies once a second: the server's own start-up probes
    # (GET /v2/, answered 401) may not be in a scrape taken at once, so wait one flush.
    time.sleep(FLUSH_SECONDS + 0.3)
    before = scrape(url)
    base = {"handler": "base", "method": "GET", "code": "401"}
    requests = 40
    # A new connection per request: the kernel spreads them over both workers' sockets.
    for _ in range(requests):
        with httpx.Client(base_url=metrics_server.url) as client:
            assert client.get("/v2/").status_code == 401
            assert client.get("/api/v2.0/systeminfo").status_code == 200
    expected = value(before, "registry_http_requests_total", **base) + requests
    core = {"method": "GET", "operation": "getSystemInfo", "code": "200"}
    expected_core = value(before, "harbor_core_http_request_total", **core) + requests
    after = wait_for(
        url,
        lambda s: (
            value(s, "registry_http_requests_total", **base) >= expected
            and value(s, "harbor_core_http_request_total", **core) >= expected_core
        ),
        "the requests' counts",
    )
    assert value(after, "registry_http_requests_total", **base) == expected
    assert value(after, "harbor_core_http_request_total", **core) == expected_core
    count = value(
        after, "registry_http_request_duration_seconds_count", handler="base", method="GET"
    )
    assert count >= requests
    # both workers counted some: each keeps its own file
    workers = {p.name.split("_")[-1] for p in multiproc_dir.glob("counter_*.db")}
    assert len(workers) >= 2, sorted(multiproc_dir.iterdir())
    # no label holds a raw path
    paths = [labels for (name, labels) in after if name.startswith("harbor_core_http")]
    assert all("/api/v2.0/systeminfo" not in dict(labels).values() for labels in paths)


def _push(client: httpx.Client, repo: str, tag: str) -> None:
    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = client.put(started.headers["location"], params={"digest": digest}, content=data)
        assert done.status_code == 201, done.text
        return digest, len(data)

    config = blob(json.dumps({"architecture": "amd64", "os": "linux"}).encode())
    layer = blob(uuid.uuid4().bytes * 64)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config[0],
                "size": config[1],
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer[0],
                    "size": layer[1],
                }
            ],
        }
    ).encode()
    response = client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert response.status_code == 201, response.text


def test_business_gauges_follow_projects_pushes_and_pulls(
    metrics_server: DockyardServer, metrics_url: str
) -> None:
    url = metrics_url
    project = "metrics-" + uuid.uuid4().hex[:8]
    before = scrape(url)
    assert value(before, "harbor_up", component="database") == 1
    assert value(before, "harbor_health") == 1
    private = value(before, "harbor_project_total", public="false")

    metrics_server.create_project(project)
    created = scrape(url)
    assert value(created, "harbor_project_total", public="false") == private + 1
    assert value(created, "harbor_project_repo_total", project_name=project, public="false") == 0
    assert value(created, "harbor_project_quota_usage_byte", project_name=project) == 0

    with metrics_server.client() as client:
        _push(client, f"{project}/app", "v1")
        pushed = scrape(url)
        repos = value(pushed, "harbor_project_repo_total", project_name=project, public="false")
        assert repos == 1
        assert value(pushed, "harbor_project_quota_usage_byte", project_name=project) > 0
        for _ in range(3):
            pulled = client.get(
                f"/v2/{project}/app/manifests/v1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert pulled.status_code == 200
    wait_for(
        url,
        lambda s: value(s, "harbor_artifact_pulled", project_name=project) == 3,
        "three pulls",
    )
    after = wait_for(
        url,
        lambda s: (
            value(s, "registry_http_requests_total", code="201", handler="manifest", method="PUT")
            >= 1
        ),
        "the manifest push",
    )
    assert (
        value(after, "registry_http_requests_total", code="200", handler="manifest", method="GET")
        >= 3
    )
    assert (
        value(
            after,
            "registry_http_request_duration_seconds_count",
            handler="blob_upload_chunk",
            method="PUT",
        )
        >= 2
    )


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_metrics_port_answers_only_its_path(
    metrics_server: DockyardServer, metrics_url: str, metrics_port: int
) -> None:
    url, port = metrics_url, metrics_port
    base = url.removesuffix("/metrics")
    assert httpx.get(base + "/other").status_code == 404
    assert httpx.post(url).status_code == 405
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert _raw(port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _raw(port, b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 4000 + b"\r\n").startswith(
        b"HTTP/1.1 431 "
    )
    # and the main port does not serve them
    main = httpx.get(metrics_server.url + "/metrics")
    assert main.status_code == 404


@pytest.fixture(scope="module")
def token_server() -> Iterator[DockyardServer]:
    env = {"DOCKYARD_METRICS_ENABLED": "true", "DOCKYARD_METRICS_TOKEN": TOKEN}
    with DockyardServer(env=env) as running:
        yield running


def test_metrics_on_the_main_port_need_the_token(token_server: DockyardServer) -> None:
    url = token_server.url + "/metrics"
    refused = httpx.get(url)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "harbor_" not in refused.text
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    admin = httpx.get(url, auth=token_server.admin_auth)  # a login is not the scrape token
    assert admin.status_code == 401
    samples = scrape(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert value(samples, "harbor_project_repo_total", project_name="library", public="true") >= 0
    assert ("harbor_project_total", frozenset({("public", "true")})) in samples


def test_metrics_are_off_by_default(server: DockyardServer) -> None:
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 404
    assert "harbor_" not in response.text
