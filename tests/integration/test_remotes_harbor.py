"""The ``harbor`` adapter against a second Dockyard (a real ``dockyard serve`` process), with
Debian's ``docker-registry`` behind the Docker token flow as the other remote: copy a
multi-arch index both ways through the adapter interface, projects, repositories, labels,
tag and manifest deletes, and a chunked upload that resumes after the connection drops."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from tests.support.docker_registry import (
    DockerRegistry,
    RecordingSource,
    available,
    drop_once,
    start_docker_registry,
)
from tests.support.oci_layout import IndexInfo, make_index_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo
from tests.support.tcp_proxy import TcpProxy

from dockyard.http.egress import EgressPolicy
from dockyard.remotes.adapter import Adapter
from dockyard.remotes.client import Credential, Endpoint, RemoteAuthError
from dockyard.remotes.copy import copy_artifact
from dockyard.remotes.harbor import HarborAdapter
from dockyard.remotes.kinds import open_adapter

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

LOOPBACK = EgressPolicy(allow_loopback=True)


@pytest.fixture(scope="module")
def dockyard() -> Iterator[DockyardServer]:
    with DockyardServer() as server:
        yield server


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("token"), auth="token") as reg:
        yield reg


@pytest.fixture(scope="module")
def seeded(registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> IndexInfo:
    work = tmp_path_factory.mktemp("seed")
    index = make_index_layout(work / "layout", layers=2, layer_size=80 * 1024, tag="1")
    Skopeo("skopeo", work).run(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{registry.username}:{registry.password}",
        f"oci:{work / 'layout'}:1",
        f"docker://{registry.address}/src/app:1",
    )
    return index


def _harbor(server: DockyardServer, password: str | None = None, url: str | None = None) -> Adapter:
    credential = Credential("basic", "admin", password or server.admin_password)
    return open_adapter("harbor", Endpoint(url or server.url, credential), LOOPBACK, timeout=10)


def _registry(reg: DockerRegistry) -> Adapter:
    credential = Credential("basic", reg.username, reg.password)
    return open_adapter("docker-registry", Endpoint(reg.url, credential), LOOPBACK, timeout=10)


@pytest.fixture
async def harbor(dockyard: DockyardServer) -> AsyncIterator[Adapter]:
    adapter = _harbor(dockyard)
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def test_ping(harbor: Adapter, dockyard: DockyardServer) -> None:
    await harbor.ping()
    wrong = _harbor(dockyard, "not-the-password")
    try:
        with pytest.raises(RemoteAuthError):
            await wrong.ping()
        with pytest.raises(RemoteAuthError):
            await wrong.list_namespaces()
    finally:
        await wrong.aclose()


async def test_copy_both_ways_labels_and_deletes(
    harbor: Adapter, dockyard: DockyardServer, registry: DockerRegistry, seeded: IndexInfo
) -> None:
    project = f"mirror{uuid.uuid4().hex[:6]}"
    target = f"{project}/app"
    source = _registry(registry)
    try:
        # registry -> Dockyard, chunked; the project is made on the way.
        await harbor.ensure_namespace(project)
        await harbor.ensure_namespace(project)  # already there: nothing to do
        report = await copy_artifact(source, "src/app", harbor, target, "1", chunk_size=50_000)
        assert report.manifests[-1] == seeded.index_digest
        assert project in await harbor.list_namespaces()
        assert await harbor.list_repositories(project) == [target]
        assert target in await harbor.list_repositories()
        assert await harbor.list_tags(target) == ["1"]
        head = await harbor.head_manifest(target, "1")
        assert head is not None
        assert head.digest == seeded.index_digest

        # Dockyard -> registry, whole blobs.
        back = await copy_artifact(harbor, target, source, "back/app", "1")
        assert back.manifests[-1] == seeded.index_digest
        again = await source.head_manifest("back/app", "1")
        assert again is not None
        assert again.digest == seeded.index_digest
    finally:
        await source.aclose()

    # Labels: one made and put on the index through Harbor's API is seen by the adapter.
    assert isinstance(harbor, HarborAdapter)
    assert await harbor.labels_of(target, "1") == []
    label = f"l{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(
        base_url=dockyard.url, auth=dockyard.admin_auth, timeout=30
    ) as api:
        made = await api.post("/api/v2.0/labels", json={"name": label, "scope": "g"})
        assert made.status_code == 201, made.text
        label_id = int(made.headers["location"].rsplit("/", 1)[1])
        put = await api.post(
            f"/api/v2.0/projects/{project}/repositories/app/artifacts/1/labels",
            json={"id": label_id},
        )
        assert put.status_code == 200, put.text
    assert await harbor.labels_of(target, "1") == [label]

    # Deletes: a second tag goes alone (Harbor's API); the index by digest takes the rest.
    index = await harbor.get_manifest(target, "1")
    await harbor.put_manifest(target, "2", index)
    assert sorted(await harbor.list_tags(target)) == ["1", "2"]
    await harbor.delete_tag(target, "2")
    assert await harbor.list_tags(target) == ["1"]
    await harbor.delete_manifest(target, seeded.index_digest)
    assert await harbor.head_manifest(target, "1") is None


async def test_chunked_upload_resumes_where_dockyard_has_it(dockyard: DockyardServer) -> None:
    project = f"resume{uuid.uuid4().hex[:6]}"
    source = RecordingSource(3 * 1024 * 1024)
    with TcpProxy(("127.0.0.1", dockyard.port)) as proxy:
        adapter = _harbor(dockyard, url=proxy.url)
        try:
            await adapter.ensure_namespace(project)
            await adapter.ping()
            drop_once(proxy, 1_300_000)
            await adapter.push_blob(
                f"{project}/app", source.digest, source.size, source, chunk_size=512 * 1024
            )
            assert await adapter.blob_exists(f"{project}/app", source.digest) == source.size
        finally:
            await adapter.aclose()
    # Dockyard cuts a failed piece back, so the upload went on from the last whole piece.
    # (A piece sent while Dockyard still finishes the cut one is refused and asked again,
    # from the same place: never from 0.)
    assert source.reads[0] == 0
    assert len(source.reads) >= 2
    assert all(0 < offset < source.size for offset in source.reads[1:])
    assert all(offset % (512 * 1024) == 0 for offset in source.reads[1:])
