"""Sixteen clients pull one uncached 256 MiB layer through a proxy cache project of a
running server at once (issue 20): the upstream (a real ``docker-registry``) serves that
blob once, every client gets the right bytes, and a client that disconnects mid-stream
does not break the others."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Iterator

import httpx
import pytest
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry
from tests.support.server import DockyardServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not available(), reason="docker-registry is not installed"),
]

MiB = 1 << 20
LAYER_SIZE = 256 * MiB
CLIENTS = 16
SOURCE = "fanout/big"


def _layer() -> bytes:
    """256 deterministic MiB: one random MiB, each copy stamped with its index (no two
    MiB alike, so a reader served the wrong range fails the digest)."""
    base = random.Random(20).randbytes(MiB)
    return b"".join(i.to_bytes(8, "big") + base[8:] for i in range(LAYER_SIZE // MiB))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("fanout-upstream")) as registry:
        yield registry


@pytest.fixture(scope="module")
def layer_digest(upstream: DockerRegistry) -> str:
    """The layer pushed upstream (a monolithic upload); its digest."""
    data = _layer()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=upstream.url, timeout=300) as remote:
        started = remote.post(f"/v2/{SOURCE}/blobs/uploads/")
        assert started.status_code == 202, started.text
        target = httpx.URL(started.headers["location"]).copy_merge_params({"digest": digest})
        done = remote.put(target, content=data)
        assert done.status_code == 201, done.text
    return digest


@pytest.fixture(scope="module")
def proxy_server() -> Iterator[DockyardServer]:
    with DockyardServer(env={"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true"}) as running:
        yield running


def _proxy_project(server: DockyardServer, upstream: DockerRegistry) -> str:
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as client:
        created = client.post(
            "/api/v2.0/registries",
            json={
                "name": f"fan{uuid.uuid4().hex[:8]}",
                "type": "docker-registry",
                "url": upstream.url,
            },
        )
        assert created.status_code == 201, created.text
        registry_id = int(created.headers["location"].rsplit("/", 1)[1])
        name = f"fan{uuid.uuid4().hex[:8]}"
        made = client.post(
            "/api/v2.0/projects", json={"project_name": name, "registry_id": registry_id}
        )
        assert made.status_code == 201, made.text
    return name


def _blob_gets(upstream: DockerRegistry, digest: str) -> int:
    lines = upstream.log_path.read_text(errors="replace").splitlines()
    request = f"GET /v2/{SOURCE}/blobs/{digest} "
    return sum(1 for line in lines if request in line)


async def test_sixteen_clients_one_upstream_fetch(
    proxy_server: DockyardServer, upstream: DockerRegistry, layer_digest: str
) -> None:
    name = _proxy_project(proxy_server, upstream)
    path = f"/v2/{name}/{SOURCE}/blobs/{layer_digest}"
    assert _blob_gets(upstream, layer_digest) == 0
    started = asyncio.Event()  # the quitter has its first bytes: the fill is running

    async def pull() -> str:
        async with (
            httpx.AsyncClient(
                base_url=proxy_server.url, auth=proxy_server.admin_auth, timeout=300
            ) as client,
            client.stream("GET", path) as response,
        ):
            assert response.status_code == 200, await response.aread()
            hasher = hashlib.sha256()
            async for chunk in response.aiter_raw():
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()

    async def quit_midway() -> int:
        read = 0
        async with (
            httpx.AsyncClient(
                base_url=proxy_server.url, auth=proxy_server.admin_auth, timeout=300
            ) as client,
            client.stream("GET", path) as response,
        ):
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                read += len(chunk)
                started.set()
                if read >= 16 * MiB:
                    break  # leaving the block closes the connection mid-body
        return read

    quitter = asyncio.create_task(quit_midway())
    pullers = [asyncio.create_task(pull()) for _ in range(CLIENTS)]
    await asyncio.wait_for(started.wait(), 300)
    digests = await asyncio.gather(*pullers)
    assert await quitter < LAYER_SIZE
    assert digests == [layer_digest] * CLIENTS
    assert _blob_gets(upstream, layer_digest) == 1

    # Stored once: a later pull is served from the cache, the upstream not asked again.
    assert await pull() == layer_digest
    assert _blob_gets(upstream, layer_digest) == 1
