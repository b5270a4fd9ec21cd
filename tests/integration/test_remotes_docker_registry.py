"""The ``docker-registry`` adapter against Debian's ``docker-registry``, three ways (no auth,
htpasswd Basic, the Docker token flow with a token server the tests run), one registry at a
time: ping, wrong credentials, list, copy a multi-arch index between repositories through
the adapter interface (chunked and monolithic), mount, delete, and a chunked upload that
resumes after the connection drops."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.support.docker_registry import (
    DockerRegistry,
    RecordingSource,
    available,
    drop_once,
    start_docker_registry,
)
from tests.support.oci_layout import IndexInfo, make_index_layout
from tests.support.server import free_port
from tests.support.skopeo import Skopeo
from tests.support.tcp_proxy import TcpProxy

from dockyard.http.egress import EgressPolicy
from dockyard.remotes.adapter import Adapter
from dockyard.remotes.client import (
    Credential,
    Endpoint,
    RemoteAuthError,
    RemoteError,
    RemoteNotFound,
    RemoteUnreachable,
    RemoteUnsupported,
)
from dockyard.remotes.copy import copy_artifact
from dockyard.remotes.kinds import open_adapter

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

LOOPBACK = EgressPolicy(allow_loopback=True)
SOURCE = "src/app"


@pytest.fixture(scope="module", params=["none", "basic", "token"])
def remote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp(request.param), auth=request.param) as reg:
        yield reg


@pytest.fixture(scope="module")
def seeded(remote: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> IndexInfo:
    """A two-platform index pushed to ``src/app:1`` by skopeo (not by the code under test)."""
    work = tmp_path_factory.mktemp("seed")
    index = make_index_layout(work / "layout", layers=2, layer_size=96 * 1024, tag="1")
    skopeo = Skopeo("skopeo", work)
    creds = ["--dest-creds", f"{remote.username}:{remote.password}"] if remote.credentials else []
    skopeo.run(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        *creds,
        f"oci:{work / 'layout'}:1",
        f"docker://{remote.address}/{SOURCE}:1",
    )
    return index


def _credential(remote: DockerRegistry, password: str | None = None) -> Credential | None:
    if remote.credentials is None:
        return None
    return Credential("basic", remote.username, password or remote.password)


def _adapter(url: str, credential: Credential | None, retries: int = 3) -> Adapter:
    return open_adapter(
        "docker-registry", Endpoint(url, credential), LOOPBACK, timeout=5, retries=retries
    )


@pytest.fixture
async def adapter(remote: DockerRegistry) -> AsyncIterator[Adapter]:
    opened = _adapter(remote.url, _credential(remote))
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_ping(adapter: Adapter, remote: DockerRegistry) -> None:
    await adapter.ping()
    if remote.credentials is None:
        return
    wrong = _adapter(remote.url, _credential(remote, "not-the-password"))
    anonymous = _adapter(remote.url, None)
    try:
        with pytest.raises(RemoteAuthError):
            await wrong.ping()
        if remote.auth == "basic":
            with pytest.raises(RemoteAuthError):
                await anonymous.ping()
    finally:
        await wrong.aclose()
        await anonymous.aclose()


async def test_down_is_a_clear_error() -> None:
    down = _adapter(f"http://127.0.0.1:{free_port()}", None, retries=1)
    try:
        with pytest.raises(RemoteUnreachable, match=r"127\.0\.0\.1"):
            await down.ping()
    finally:
        await down.aclose()


async def test_egress_policy_applies(remote: DockerRegistry) -> None:
    refused = open_adapter(
        "docker-registry", Endpoint(remote.url), EgressPolicy(), timeout=5, retries=0
    )
    try:
        with pytest.raises(RemoteUnreachable, match="egress"):
            await refused.ping()
    finally:
        await refused.aclose()


async def test_list(adapter: Adapter, seeded: IndexInfo) -> None:
    assert SOURCE in await adapter.list_repositories()
    assert SOURCE in await adapter.list_repositories("src")
    assert await adapter.list_repositories("elsewhere") == []
    assert await adapter.list_tags(SOURCE) == ["1"]
    with pytest.raises(RemoteUnsupported):
        await adapter.list_namespaces()
    with pytest.raises(RemoteNotFound):
        await adapter.list_tags("no/such")
    head = await adapter.head_manifest(SOURCE, "1")
    assert head is not None
    assert head.digest == seeded.index_digest
    assert await adapter.head_manifest(SOURCE, "missing") is None


@pytest.mark.parametrize("chunk_size", [None, 40_000])
async def test_copy_an_index_between_repositories(
    remote: DockerRegistry, seeded: IndexInfo, chunk_size: int | None
) -> None:
    source = _adapter(remote.url, _credential(remote))
    destination = _adapter(remote.url, _credential(remote))
    target = f"dst/app-{chunk_size or 'whole'}"
    try:
        report = await copy_artifact(
            source, SOURCE, destination, target, "1", chunk_size=chunk_size
        )
        assert report.manifests[-1] == seeded.index_digest
        assert set(report.manifests[:-1]) == {i.manifest_digest for i in seeded.images}
        blobs = {d for image in seeded.images for d in image.blob_digests}
        assert set(report.blobs_sent) | set(report.blobs_skipped) == blobs
        head = await destination.head_manifest(target, "1")
        assert head is not None
        assert head.digest == seeded.index_digest
        for image in seeded.images:
            for digest in image.blob_digests:
                assert await destination.blob_exists(target, digest) is not None
            layer = image.layer_digests[0]
            async with destination.open_blob(target, layer) as stream:
                data = b"".join([chunk async for chunk in stream.chunks])
            assert "sha256:" + hashlib.sha256(data).hexdigest() == layer

        # A second copy sends nothing: every blob is there already.
        again = await copy_artifact(source, SOURCE, destination, target, "1")
        assert again.blobs_sent == []
        assert again.bytes_sent == 0

        # Deletes: a tag alone is refused by distribution 2.8 (it would take the manifest's
        # other tags too); the manifest by digest goes.
        with pytest.raises(RemoteUnsupported):
            await destination.delete_tag(target, "1")
        await destination.delete_manifest(target, seeded.index_digest)
        assert await destination.head_manifest(target, seeded.index_digest) is None
        with pytest.raises(RemoteNotFound):
            await destination.delete_manifest(target, seeded.index_digest)
    finally:
        await source.aclose()
        await destination.aclose()
    if remote.token_server is not None:
        # One token per scope, fetched once and reused for every request of that scope.
        issued = remote.token_server.issued
        assert issued.count(f"repository:{target}:pull,push") == 1


async def test_mount(adapter: Adapter, seeded: IndexInfo) -> None:
    layer = seeded.images[0].layer_digests[0]
    assert await adapter.mount_blob("mounted/app", layer, SOURCE) is True
    assert await adapter.blob_exists("mounted/app", layer) is not None
    unknown = "sha256:" + "0" * 64
    assert await adapter.mount_blob("mounted/app", unknown, SOURCE) is False


async def test_chunked_upload_resumes_after_a_dropped_connection(
    remote: DockerRegistry,
) -> None:
    source = RecordingSource(3 * 1024 * 1024)
    with TcpProxy(("127.0.0.1", remote.port)) as proxy:
        adapter = _adapter(proxy.url, _credential(remote))
        try:
            await adapter.ping()
            drop_once(proxy, 1_300_000)
            await adapter.push_blob(
                "resumed/app", source.digest, source.size, source, chunk_size=512 * 1024
            )
            assert await adapter.blob_exists("resumed/app", source.digest) == source.size
        finally:
            await adapter.aclose()
    # The piece that was cut is sent again: distribution 2.8 keeps the cut piece's bytes and
    # then refuses the upload's state, so the upload starts over (a registry that cuts a failed
    # piece back, as Dockyard does, resumes where it was: test_remotes_harbor.py).
    assert source.reads[0] == 0
    assert len(source.reads) >= 2


def test_registry_log_counts_requests(remote: DockerRegistry, seeded: IndexInfo) -> None:
    """The support code's request counter reads the registry's access log."""
    assert remote.requests(f"/v2/{SOURCE}/manifests/1") >= 1
    assert isinstance(remote.root, Path)


async def test_docker_hub_adapter_names(remote: DockerRegistry, seeded: IndexInfo) -> None:
    """The docker-hub adapter pointed at this registry: an official image's name gains
    ``library/``, names the Hub cannot hold are refused before anything is sent."""
    hub = open_adapter("docker-hub", Endpoint(remote.url, _credential(remote)), LOOPBACK, timeout=5)
    plain = _adapter(remote.url, _credential(remote))
    try:
        await hub.ping()
        await copy_artifact(plain, SOURCE, hub, "hello", "1")
        head = await plain.head_manifest("library/hello", "1")
        assert head is not None
        assert head.digest == seeded.index_digest
        assert await hub.list_tags("hello") == ["1"]
        assert await hub.list_tags("library/hello") == ["1"]
        with pytest.raises(RemoteError, match="not deeper paths"):
            await hub.head_manifest("a/b/c", "1")
        with pytest.raises(RemoteUnsupported):
            await hub.list_repositories()
    finally:
        await hub.aclose()
        await plain.aclose()
