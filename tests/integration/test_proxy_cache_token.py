"""A proxy cache project whose upstream is a ``docker-registry`` behind the Docker token
flow, seeded by skopeo with a two-platform index: pulled with the endpoint's credentials
and anonymously (the token server grants anonymous pulls). The index is stored with both
platforms (children are fetched eagerly behind the answer), so the whole index is served
from the cache afterwards; a second pull asks the upstream one manifest HEAD."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from tests.integration.registry_helpers import OCI_INDEX, OCI_MANIFEST, digest_of
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.oci_layout import IndexInfo, make_index_layout
from tests.support.skopeo import Skopeo

from dockyard.http.state import AppState
from dockyard.proxy.cache import PullThroughCache

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

API = "/api/v2.0"
SOURCE = "src/multi"
ACCEPT = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("tokenup"), auth="token") as registry:
        yield registry


@pytest.fixture(scope="module")
def seeded(upstream: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> IndexInfo:
    work = tmp_path_factory.mktemp("seed")
    index = make_index_layout(work / "layout", layers=2, layer_size=64 * 1024, tag="1")
    Skopeo("skopeo", work).run(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{upstream.username}:{upstream.password}",
        f"oci:{work / 'layout'}:1",
        f"docker://{upstream.address}/{SOURCE}:1",
    )
    return index


async def _project(admin: httpx.AsyncClient, upstream: DockerRegistry, creds: bool) -> str:
    body: dict[str, object] = {
        "name": f"tok{uuid.uuid4().hex[:8]}",
        "type": "docker-registry",
        "url": upstream.url,
    }
    if creds:
        body["credential"] = {
            "type": "basic",
            "access_key": upstream.username,
            "access_secret": upstream.password,
        }
    created = await admin.post(f"{API}/registries", json=body)
    assert created.status_code == 201, created.text
    registry_id = int(created.headers["location"].rsplit("/", 1)[1])
    name = f"tx{uuid.uuid4().hex[:8]}"
    made = await admin.post(
        f"{API}/projects", json={"project_name": name, "registry_id": registry_id}
    )
    assert made.status_code == 201, made.text
    return name


@pytest.mark.parametrize("creds", [True, False], ids=["credentials", "anonymous"])
async def test_index_through_token_upstream(
    admin: httpx.AsyncClient,
    state: AppState,
    upstream: DockerRegistry,
    seeded: IndexInfo,
    creds: bool,
) -> None:
    name = await _project(admin, upstream, creds)
    local = f"{name}/{SOURCE}"
    index = await admin.get(f"/v2/{local}/manifests/1", headers=ACCEPT)
    assert index.status_code == 200, index.text
    assert index.headers["docker-content-digest"] == seeded.index_digest
    # A client pulls its platform: the child by digest, then its blobs.
    child = json.loads(index.content)["manifests"][0]["digest"]
    image = await admin.get(f"/v2/{local}/manifests/{child}", headers=ACCEPT)
    assert image.status_code == 200, image.text
    for blob in [json.loads(image.content)["config"], *json.loads(image.content)["layers"]]:
        got = await admin.get(f"/v2/{local}/blobs/{blob['digest']}")
        assert got.status_code == 200 and digest_of(got.content) == blob["digest"]
    cache = state.registry.pull_through
    assert isinstance(cache, PullThroughCache)
    await cache.settled()

    listed = await admin.get(
        f"{API}/projects/{name}/repositories/src%252Fmulti/artifacts",
        params={"with_tag": "true"},
    )
    assert listed.status_code == 200, listed.text
    stored = {a["digest"]: a for a in listed.json()}
    assert seeded.index_digest in stored
    assert [t["name"] for t in stored[seeded.index_digest]["tags"] or []] == ["1"]
    for image in seeded.images:  # both platforms, though the client pulled one
        child_row = await admin.get(
            f"{API}/projects/{name}/repositories/src%252Fmulti/artifacts/{image.manifest_digest}"
        )
        assert child_row.status_code == 200, child_row.text

    before = upstream.requests(f" /v2/{SOURCE}/")
    again = await admin.get(f"/v2/{local}/manifests/1", headers=ACCEPT)
    assert again.status_code == 200
    other = seeded.images[1].manifest_digest
    assert (await admin.get(f"/v2/{local}/manifests/{other}", headers=ACCEPT)).status_code == 200
    log = upstream.log_path.read_text().splitlines()
    calls = [line for line in log if f" /v2/{SOURCE}/" in line][before:]
    assert len(calls) == 1 and f'"HEAD /v2/{SOURCE}/manifests/1 ' in calls[0], calls
