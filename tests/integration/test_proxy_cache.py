"""Proxy cache projects against a real upstream: Debian's ``docker-registry`` without auth
(one per module), on both databases.

A project created with ``registry_id`` pulls through: the first pull fills the cache, the
next makes one manifest ``HEAD`` upstream, a moved tag is picked up, a tag deleted
upstream and an upstream that is down are served from the cache (unless the project
turns that off), an uncached image fails clearly while the upstream is down, pushes are
refused, quotas and the default retention policy apply, and ``proxy_speed_kb`` limits
the upstream's bandwidth."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import unchecked_client
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
)
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry

from dockyard.proxy.cache import STALE_SERVED, PullThroughCache

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

API = "/api/v2.0"
ACCEPT = {"Accept": f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("upstream")) as registry:
        yield registry


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _remote(upstream: DockerRegistry) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=upstream.url, timeout=30)


async def _endpoint(admin: httpx.AsyncClient, url: str) -> int:
    response = await admin.post(
        f"{API}/registries", json={"name": f"up{_uid()}", "type": "docker-registry", "url": url}
    )
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def _proxy_project(
    admin: httpx.AsyncClient, registry_id: int, **metadata: str
) -> tuple[str, int]:
    name = f"px{_uid()}"
    response = await admin.post(
        f"{API}/projects",
        json={"project_name": name, "registry_id": registry_id, "metadata": metadata},
    )
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


async def _upload(remote: httpx.AsyncClient, repo: str, data: bytes) -> str:
    """A blob into distribution (which opens a session for a ``POST`` with a digest)."""
    digest = digest_of(data)
    started = await remote.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    target = httpx.URL(started.headers["location"]).copy_merge_params({"digest": digest})
    done = await remote.put(target, content=data)
    assert done.status_code == 201, done.text
    return digest


async def _seed(upstream: DockerRegistry, repo: str, tag: str, seed: bytes) -> str:
    """A small image (config and two layers) under ``tag`` upstream; its digest."""
    async with _remote(upstream) as remote:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "seed": seed.hex(), "repo": repo}
        ).encode()
        layers = [seed + f"-layer-{i}-{repo}".encode() for i in range(2)]
        config_digest = await _upload(remote, repo, config)
        pushed = [(await _upload(remote, repo, data), len(data)) for data in layers]
        manifest = image_manifest((config_digest, len(config)), pushed)
        put = await remote.put(
            f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201, put.text
    return digest_of(manifest)


async def _pull(client: httpx.AsyncClient, repo: str, reference: str) -> str:
    """Pull as a client does: the manifest, then every blob; the manifest's digest. What
    the proxy stores behind its answers is stored when this returns."""
    response = await client.get(f"/v2/{repo}/manifests/{reference}", headers=ACCEPT)
    assert response.status_code == 200, response.text
    assert digest_of(response.content) == response.headers["docker-content-digest"]
    manifest = json.loads(response.content)
    for blob in [manifest["config"], *manifest["layers"]]:
        got = await client.get(f"/v2/{repo}/blobs/{blob['digest']}")
        assert got.status_code == 200, got.text
        assert digest_of(got.content) == blob["digest"]
    await _settled(client)
    return str(response.headers["docker-content-digest"])


async def _settled(client: httpx.AsyncClient) -> None:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    cache = transport.app.state.dockyard.registry.pull_through  # type: ignore[attr-defined]
    assert isinstance(cache, PullThroughCache)
    await cache.settled()


def _upstream_calls(upstream: DockerRegistry, repo: str) -> list[str]:
    text = upstream.log_path.read_text(errors="replace")
    return [
        line.split('"')[1]
        for line in text.splitlines()
        if f" /v2/{repo}/" in line and '"' in line and "HTTP/" in line
    ]


async def test_create_proxy_project_as_harbor(
    admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    missing = await admin.post(
        f"{API}/projects", json={"project_name": f"px{_uid()}", "registry_id": 999999}
    )
    assert missing.status_code == 400 and "does not exist" in missing.text
    registry_id = await _endpoint(admin, upstream.url)
    bad_speed = await admin.post(
        f"{API}/projects",
        json={
            "project_name": f"px{_uid()}",
            "registry_id": registry_id,
            "metadata": {"proxy_speed_kb": "fast"},
        },
    )
    assert bad_speed.status_code == 400 and "proxy_speed_kb" in bad_speed.text
    name, project_id = await _proxy_project(
        admin, registry_id, proxy_speed_kb="2048", proxy_cache_local_on_not_found="false"
    )
    shown = (await admin.get(f"{API}/projects/{project_id}")).json()
    assert shown["registry_id"] == registry_id
    assert shown["metadata"]["proxy_speed_kb"] == "2048"
    assert shown["metadata"]["proxy_cache_local_on_not_found"] == "false"
    # Harbor's default retention for a proxy: keep what was pulled within 7 days, editable.
    policy_id = shown["metadata"]["retention_id"]
    policy = (await admin.get(f"{API}/retentions/{policy_id}")).json()
    assert [(r["template"], r["params"]) for r in policy["rules"]] == [
        ("nDaysSinceLastPull", {"nDaysSinceLastPull": 7})
    ]
    policy["rules"][0]["params"] = {"nDaysSinceLastPull": 30}
    edited = await admin.put(f"{API}/retentions/{policy_id}", json=policy)
    assert edited.status_code == 200, edited.text
    # An ordinary project ignores the proxy keys, as Harbor does.
    plain = f"pl{_uid()}"
    created = await admin.post(
        f"{API}/projects", json={"project_name": plain, "metadata": {"proxy_speed_kb": "5"}}
    )
    assert created.status_code == 201
    shown = (await admin.get(f"{API}/projects/{plain}")).json()
    assert shown["registry_id"] in (0, None) and "proxy_speed_kb" not in shown["metadata"]
    # The switch of serving from cache is a proxy project's metadata, checked.
    switch = await admin.put(
        f"{API}/projects/{project_id}/metadatas/proxy_cache_local_on_not_found",
        json={"proxy_cache_local_on_not_found": "maybe"},
    )
    assert switch.status_code == 400
    # The endpoint a proxy project uses cannot go.
    refused = await admin.delete(f"{API}/registries/{registry_id}")
    assert refused.status_code == 412 and name in refused.text


async def test_proxy_keys_not_built_are_refused_unless_off(
    admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    """Harbor's connection limit, referrers switch and cache filters are not built: a proxy
    project refuses a value that asks for them (rather than dropping it), and takes the
    values that ask for nothing, which Harbor's clients send by default."""
    registry_id = await _endpoint(admin, upstream.url)
    for key, value in [
        ("max_upstream_conn", "5"),
        ("proxy_referrer_api", "true"),
        ("proxy_cache_filter_pattern", "library/**"),
    ]:
        refused = await admin.post(
            f"{API}/projects",
            json={
                "project_name": f"px{_uid()}",
                "registry_id": registry_id,
                "metadata": {key: value},
            },
        )
        assert refused.status_code == 400, (key, refused.text)
        assert key in refused.text and "not supported" in refused.text
    name, _ = await _proxy_project(
        admin, registry_id, max_upstream_conn="-1", proxy_referrer_api="false"
    )
    shown = (await admin.get(f"{API}/projects/{name}")).json()
    assert "max_upstream_conn" not in shown["metadata"]
    updated = await admin.put(
        f"{API}/projects/{name}", json={"metadata": {"max_upstream_conn": "10"}}
    )
    assert updated.status_code == 400, updated.text


async def test_pull_through_fills_once_then_heads(
    admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    repo = f"team/app{_uid()}"
    first = await _seed(upstream, repo, "v1", b"one")
    name, _ = await _proxy_project(admin, await _endpoint(admin, upstream.url))
    local = f"{name}/{repo}"

    # As docker pulls: HEAD the tag, then GET the manifest by the digest it said.
    head = await admin.head(f"/v2/{local}/manifests/v1", headers=ACCEPT)
    assert head.status_code == 200 and head.headers["docker-content-digest"] == first
    assert await _pull(admin, local, first) == first
    calls = _upstream_calls(upstream, repo)
    # The manifest once (the GET by digest is answered from what is being stored).
    assert len([c for c in calls if c.startswith("GET") and "/manifests/" in c]) == 1, calls
    # One upstream GET per blob: the client's GET and the store behind the manifest share it.
    assert len([c for c in calls if c.startswith("GET") and "/blobs/" in c]) == 3, calls
    artifacts = await admin.get(
        f"{API}/projects/{name}/repositories/{repo.replace('/', '%252F')}/artifacts"
    )
    assert [a["digest"] for a in artifacts.json()] == [first]
    # Dated by the pull that filled it, so the default retention (pulled within 7 days)
    # keeps it.
    pulled = artifacts.json()[0].get("pull_time") or ""
    assert pulled and not pulled.startswith("0001"), artifacts.json()[0]

    before = len(_upstream_calls(upstream, repo))
    assert await _pull(admin, local, "v1") == first
    again = _upstream_calls(upstream, repo)[before:]
    assert again == [f"HEAD /v2/{repo}/manifests/v1 HTTP/1.1"], again

    # By digest: immutable, no upstream call at all.
    before = len(_upstream_calls(upstream, repo))
    assert await _pull(admin, local, first) == first
    assert _upstream_calls(upstream, repo)[before:] == []

    # The tag moves upstream: the next pull follows it.
    second = await _seed(upstream, repo, "v1", b"two")
    assert await _pull(admin, local, "v1") == second
    # ...and back to an image the cache holds: only the tag moves.
    async with _remote(upstream) as remote:
        old = await remote.get(f"/v2/{repo}/manifests/{first}", headers=ACCEPT)
        moved = await remote.put(
            f"/v2/{repo}/manifests/v1", content=old.content, headers={"Content-Type": OCI_MANIFEST}
        )
        assert moved.status_code == 201
    assert await _pull(admin, local, "v1") == first

    # Pushes into a proxy project are refused as Harbor refuses them.
    upload = await admin.post(f"/v2/{local}/blobs/uploads/")
    assert upload.status_code == 403 and error_code(upload) == "DENIED"
    assert "proxy" in upload.text
    config = await push_blob(admin, "library/proxy-src", b"{}")
    manifest = image_manifest((config, 2), [])
    put = await admin.put(
        f"/v2/{local}/manifests/mine", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 403 and error_code(put) == "DENIED"
    # Harbor's API: no tagging in, nor copying into, a proxy cache project (405)...
    artifacts_path = f"{API}/projects/{name}/repositories/{repo.replace('/', '%252F')}/artifacts"
    tagged = await admin.post(f"{artifacts_path}/{first}/tags", json={"name": "mine"})
    assert tagged.status_code == 405, tagged.text
    assert "proxy cache project" in tagged.text
    copied = await admin.post(artifacts_path, params={"from": f"{local}@{first}"})
    assert copied.status_code == 405, copied.text
    # ...but deleting a tag and an artifact is allowed, as in Harbor (eviction).
    untagged = await admin.delete(f"{artifacts_path}/{first}/tags/v1")
    assert untagged.status_code == 200, untagged.text
    deleted = await admin.delete(f"{artifacts_path}/{second}")
    assert deleted.status_code == 200, deleted.text


async def test_tag_deleted_upstream_still_served(
    admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    repo = f"team/gone{_uid()}"
    digest = await _seed(upstream, repo, "v1", b"gone")
    registry_id = await _endpoint(admin, upstream.url)
    name, _ = await _proxy_project(admin, registry_id)
    strict, _ = await _proxy_project(admin, registry_id, proxy_cache_local_on_not_found="false")
    assert await _pull(admin, f"{name}/{repo}", "v1") == digest
    assert await _pull(admin, f"{strict}/{repo}", "v1") == digest
    async with _remote(upstream) as remote:
        assert (await remote.delete(f"/v2/{repo}/manifests/{digest}")).status_code == 202
    stale = STALE_SERVED.labels("not_found")._value.get()
    assert await _pull(admin, f"{name}/{repo}", "v1") == digest
    assert STALE_SERVED.labels("not_found")._value.get() == stale + 1
    # Harbor's stricter behaviour, by the project's switch.
    refused = await admin.get(f"/v2/{strict}/{repo}/manifests/v1", headers=ACCEPT)
    assert refused.status_code == 404 and error_code(refused) == "MANIFEST_UNKNOWN"


async def test_upstream_down_served_from_cache(
    app: Starlette, admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    repo = f"team/down{_uid()}"
    digest = await _seed(upstream, repo, "v1", b"down")
    await _seed(upstream, repo, "never-pulled", b"other")
    registry_id = await _endpoint(admin, upstream.url)
    name, _ = await _proxy_project(admin, registry_id)
    strict, _ = await _proxy_project(admin, registry_id, proxy_cache_local_on_not_found="false")
    assert await _pull(admin, f"{name}/{repo}", "v1") == digest
    assert await _pull(admin, f"{strict}/{repo}", "v1") == digest
    upstream.stop()
    try:
        stale = STALE_SERVED.labels("unreachable")._value.get()
        assert await _pull(admin, f"{name}/{repo}", "v1") == digest
        assert await _pull(admin, f"{name}/{repo}", digest) == digest
        assert STALE_SERVED.labels("unreachable")._value.get() == stale + 1  # digests: no call
        async with unchecked_client(app, ("admin", "Harbor12345")) as client:
            uncached = await client.get(f"/v2/{name}/{repo}/manifests/never-pulled")
            assert uncached.status_code == 503, uncached.text
            assert error_code(uncached) == "UNAVAILABLE"
            assert "cannot be pulled through proxy cache project" in uncached.text
            off = await client.get(f"/v2/{strict}/{repo}/manifests/v1", headers=ACCEPT)
            assert off.status_code == 503 and "turned off" in off.text
            blob = await client.get(f"/v2/{name}/{repo}/blobs/{digest_of(b'nothing')}")
            assert blob.status_code == 503 and error_code(blob) == "UNAVAILABLE"
    finally:
        upstream.start()


async def test_quota_counts_cached_content(
    admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    repo = f"team/big{_uid()}"
    async with _remote(upstream) as remote:
        config = await _upload(remote, repo, b'{"os":"linux"}')
        layer = await _upload(remote, repo, b"x" * 4096)
        manifest = image_manifest((config, 14), [(layer, 4096)])
        put = await remote.put(
            f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201
    registry_id = await _endpoint(admin, upstream.url)
    name = f"px{_uid()}"
    created = await admin.post(
        f"{API}/projects",
        json={"project_name": name, "registry_id": registry_id, "storage_limit": 1024},
    )
    assert created.status_code == 201, created.text
    served = await admin.get(f"/v2/{name}/{repo}/manifests/v1", headers=ACCEPT)
    assert served.status_code == 200, served.text
    refused = await admin.get(f"/v2/{name}/{repo}/blobs/{layer}")
    assert refused.status_code == 403 and error_code(refused) == "DENIED", refused.text
    assert "quota exceeded" in refused.text
    await _settled(admin)
    artifacts = await admin.get(
        f"{API}/projects/{name}/repositories/{repo.replace('/', '%252F')}/artifacts"
    )
    assert artifacts.status_code == 404 or artifacts.json() == []
    # Room made: the pull fills the cache and the quota counts it.
    quotas = (
        await admin.get(
            f"{API}/quotas", params={"reference_id": created.headers["location"].rsplit("/", 1)[1]}
        )
    ).json()
    quota_id = quotas[0]["id"]
    grown = await admin.put(f"{API}/quotas/{quota_id}", json={"hard": {"storage": 1 << 20}})
    assert grown.status_code == 200, grown.text
    await _pull(admin, f"{name}/{repo}", "v1")
    used = (await admin.get(f"{API}/quotas/{quota_id}")).json()["used"]["storage"]
    assert used >= 4096 + 14 + len(manifest)


async def test_bandwidth_limit(admin: httpx.AsyncClient, upstream: DockerRegistry) -> None:
    repo = f"team/slow{_uid()}"
    size = 1 << 20
    async with _remote(upstream) as remote:
        blob = await _upload(remote, repo, b"s" * size)
    registry_id = await _endpoint(admin, upstream.url)
    name, _ = await _proxy_project(admin, registry_id, proxy_speed_kb="512")
    start = time.monotonic()
    got = await admin.get(f"/v2/{name}/{repo}/blobs/{blob}")
    elapsed = time.monotonic() - start
    assert got.status_code == 200 and len(got.content) == size
    expected = size / (512 * 1024)
    assert expected * 0.8 <= elapsed <= expected * 1.2, elapsed


async def test_docker_hub_official_images_get_library(
    admin: httpx.AsyncClient, upstream: DockerRegistry
) -> None:
    """A ``docker-hub`` endpoint (here at a local registry's URL, which it uses as given):
    ``<project>/solo`` is ``library/solo`` upstream, as Docker Hub's official images are."""
    solo = f"solo{_uid()}"
    digest = await _seed(upstream, f"library/{solo}", "v1", b"official")
    created = await admin.post(
        f"{API}/registries",
        json={"name": f"hub{_uid()}", "type": "docker-hub", "url": upstream.url},
    )
    assert created.status_code == 201, created.text
    name, _ = await _proxy_project(admin, int(created.headers["location"].rsplit("/", 1)[1]))
    assert await _pull(admin, f"{name}/{solo}", "v1") == digest
    assert await _pull(admin, f"{name}/library/{solo}", "v1") == digest
    assert _upstream_calls(upstream, solo) == []  # never asked without library/
