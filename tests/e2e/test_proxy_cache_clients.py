"""skopeo and podman pull through a proxy cache project of a running server, from a real
``docker-registry`` upstream seeded by skopeo: the first pull fills the cache, the second
asks the upstream one manifest HEAD, and with the upstream stopped the cached image still
pulls (one SQLite server: the integration tests cover both databases)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.oci_layout import ImageInfo, make_image_layout
from tests.support.podman import Podman
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not available(), reason="docker-registry is not installed"),
]

SOURCE = "team/app"
TLS = "--tls-verify=false"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("e2e-upstream")) as registry:
        yield registry


@pytest.fixture(scope="module")
def image(upstream: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    work = tmp_path_factory.mktemp("e2e-seed")
    info = make_image_layout(work / "layout", layers=2, layer_size=256 * 1024, tag="1")
    Skopeo("skopeo", work).run(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{work / 'layout'}:1",
        f"docker://{upstream.address}/{SOURCE}:1",
    )
    return info


@pytest.fixture(scope="module")
def proxy_server() -> Iterator[DockyardServer]:
    with DockyardServer(env={"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true"}) as running:
        yield running


def _proxy_project(server: DockyardServer, upstream: DockerRegistry) -> str:
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as client:
        created = client.post(
            "/api/v2.0/registries",
            json={
                "name": f"e2e{uuid.uuid4().hex[:8]}",
                "type": "docker-registry",
                "url": upstream.url,
            },
        )
        assert created.status_code == 201, created.text
        registry_id = int(created.headers["location"].rsplit("/", 1)[1])
        name = f"hub{uuid.uuid4().hex[:8]}"
        made = client.post(
            "/api/v2.0/projects",
            json={"project_name": name, "registry_id": registry_id, "metadata": {"public": "true"}},
        )
        assert made.status_code == 201, made.text
    return name


def _wait_cached(server: DockyardServer, name: str, tag: str) -> None:
    """Until the image the first pull fetched is stored in the proxy project under ``tag``:
    it is stored behind the first answer, which takes longer on S3 than on the filesystem."""
    path = f"/api/v2.0/projects/{name}/repositories/{SOURCE.replace('/', '%252F')}/artifacts"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=30) as client:
        while True:
            listed = client.get(path)
            tags = listed.json() if listed.status_code == 200 else []
            if tag in [t["name"] for a in tags for t in a.get("tags") or []]:
                return
            assert time.monotonic() < deadline, (listed.status_code, listed.text)
            time.sleep(0.2)


def _upstream_calls(upstream: DockerRegistry) -> list[str]:
    lines = upstream.log_path.read_text(errors="replace").splitlines()
    return [line.split('"')[1] for line in lines if f" /v2/{SOURCE}/" in line and '"' in line]


def test_skopeo_and_podman_pull_through(
    proxy_server: DockyardServer,
    upstream: DockerRegistry,
    image: ImageInfo,
    skopeo: Skopeo,
    podman: Podman,
    tmp_path: Path,
) -> None:
    name = _proxy_project(proxy_server, upstream)
    reference = f"docker://{proxy_server.registry}/{name}/{SOURCE}:1"
    creds = ["--src-creds", proxy_server.admin_creds, "--src-tls-verify=false"]

    skopeo.run("copy", *creds, reference, f"oci:{tmp_path / 'first'}:1")
    inspected = skopeo.json(
        "inspect", "--raw", "--tls-verify=false", "--creds", proxy_server.admin_creds, reference
    )
    assert inspected["config"]["digest"] == image.config_digest
    _wait_cached(proxy_server, name, "1")

    before = len(_upstream_calls(upstream))
    skopeo.run("copy", *creds, reference, f"oci:{tmp_path / 'second'}:1")
    assert _upstream_calls(upstream)[before:] == [f"HEAD /v2/{SOURCE}/manifests/1 HTTP/1.1"]

    # podman (anonymous: the project is public), and again with the upstream stopped.
    pulled = podman.pull(f"{proxy_server.registry}/{name}/{SOURCE}:1", TLS)
    assert pulled.removeprefix("sha256:") == image.config_digest.removeprefix("sha256:")
    upstream.stop()
    try:
        podman.run("rmi", "-a", "-f")
        again = podman.pull(f"{proxy_server.registry}/{name}/{SOURCE}:1", TLS)
        assert again == pulled
        skopeo.run("copy", *creds, reference, f"oci:{tmp_path / 'offline'}:1")
    finally:
        upstream.start()
    assert "serving the cached" in proxy_server.output()
