"""An object store that goes away mid-upload or mid-pull (a TCP proxy in front of SeaweedFS
is cut: connections reset, new ones refused) and comes back: clients get ``503`` with
``Retry-After`` and the registry's error bodies, nothing is half-visible, and the client's
retry succeeds once the store is back, with no restart of Dockyard."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import serving
from tests.integration.registry_helpers import digest_of, image_manifest, push_blob
from tests.support.seaweedfs import SeaweedFS, s3_settings
from tests.support.tcp_proxy import TcpProxy

from dockyard.app import open_storage
from dockyard.errors import ConfigurationError
from dockyard.settings import Settings

ADMIN = ("admin", "Harbor12345")
REPO = "library/faults"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Rig:
    app: Starlette
    proxy: TcpProxy


@pytest.fixture(scope="module")
def proxy(seaweedfs: SeaweedFS) -> Iterator[TcpProxy]:
    url = httpx.URL(seaweedfs.endpoint)
    assert url.port is not None
    with TcpProxy((url.host, url.port)) as running:
        yield running


@pytest.fixture(scope="module")
async def rig(
    seaweedfs: SeaweedFS, proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    storage = s3_settings(seaweedfs, seaweedfs.new_bucket())
    storage["storage_s3_endpoint"] = proxy.url
    async with _serving(storage, tmp_path_factory.mktemp("faults")) as application:
        yield Rig(application, proxy)


@asynccontextmanager
async def _serving(storage: dict[str, Any], data_dir: Path) -> AsyncIterator[Starlette]:
    """An app on ``storage`` (``Settings`` fields), its database in ``data_dir``, started."""
    settings = Settings(
        **storage,
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'dockyard.db'}",
        admin_password=ADMIN[1],
        login_failure_limit=1000,
    )
    async with serving(settings) as application:
        yield application


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    rig.proxy.resume()
    transport = httpx.ASGITransport(app=rig.app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", auth=ADMIN, timeout=60
    ) as http:
        yield http
    rig.proxy.resume()


def _assert_unavailable(response: httpx.Response, harbor: bool = False) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    if response.request.method == "HEAD":
        return
    error = response.json()["errors"][0]
    assert error["code"] == ("SERVICE_UNAVAILABLE" if harbor else "UNAVAILABLE")
    assert "object store is unavailable" in error["message"]


async def _status(client: httpx.AsyncClient, location: str) -> str:
    response = await client.get(location)
    assert response.status_code == 204, response.text
    return response.headers["range"]


async def test_chunk_refused_while_the_store_is_away_then_resumed(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    first, second = os.urandom(300_000), os.urandom(200_000)
    started = await client.post(f"/v2/{REPO}/blobs/uploads/")
    assert started.status_code == 202
    location = httpx.URL(started.headers["location"]).path
    patched = await client.patch(
        location,
        content=first,
        headers={
            "Content-Range": f"0-{len(first) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert patched.status_code == 202, patched.text

    rig.proxy.cut()
    refused = await client.patch(
        location,
        content=second,
        headers={
            "Content-Range": f"{len(first)}-{len(first) + len(second) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    _assert_unavailable(refused)
    rig.proxy.resume()

    # the refused chunk left nothing: the upload is where it was, and goes on
    assert await _status(client, location) == f"0-{len(first) - 1}"
    retried = await client.patch(
        location,
        content=second,
        headers={
            "Content-Range": f"{len(first)}-{len(first) + len(second) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert retried.status_code == 202, retried.text
    digest = digest_of(first + second)
    done = await client.put(location, params={"digest": digest})
    assert done.status_code == 201, done.text
    pulled = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert pulled.status_code == 200
    assert hashlib.sha256(pulled.content).hexdigest() == digest[7:]


async def test_store_cut_in_the_middle_of_a_large_chunk(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    """A body of several parts (a multipart upload into the store) cut while it streams:
    the chunk is refused, the upload stays where it was, the retry completes it."""
    data = os.urandom(12 << 20)
    started = await client.post(f"/v2/{REPO}/blobs/uploads/")
    location = httpx.URL(started.headers["location"]).path
    rig.proxy.cut_after_upstream(6 << 20)
    refused = await client.patch(
        location,
        content=data,
        headers={"Content-Range": f"0-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert rig.proxy.cut_done.is_set()
    _assert_unavailable(refused)
    rig.proxy.resume()
    assert await _status(client, location) == "0-0"  # empty, as before the chunk
    retried = await client.patch(
        location,
        content=data,
        headers={"Content-Range": f"0-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert retried.status_code == 202, retried.text
    digest = digest_of(data)
    done = await client.put(location, params={"digest": digest})
    assert done.status_code == 201, done.text
    pulled = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert pulled.content == data


async def test_pull_while_the_store_is_away_then_retried(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    data = os.urandom(100_000)
    digest = await push_blob(client, REPO, data)
    rig.proxy.cut()
    _assert_unavailable(await client.get(f"/v2/{REPO}/blobs/{digest}"))
    rig.proxy.resume()
    pulled = await client.get(f"/v2/{REPO}/blobs/{digest}")
    assert pulled.status_code == 200
    assert pulled.content == data


async def test_manifest_push_while_the_store_is_away_leaves_nothing(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    config_digest = await push_blob(client, REPO, config.encode())
    layer = os.urandom(1000)
    layer_digest = await push_blob(client, REPO, layer)
    manifest = image_manifest((config_digest, len(config)), [(layer_digest, len(layer))])
    rig.proxy.cut()
    refused = await client.put(
        f"/v2/{REPO}/manifests/away", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    _assert_unavailable(refused)
    rig.proxy.resume()
    assert (await client.get(f"/v2/{REPO}/manifests/away")).status_code == 404
    assert (await client.get(f"/v2/{REPO}/manifests/{digest_of(manifest)}")).status_code == 404
    pushed = await client.put(
        f"/v2/{REPO}/manifests/away", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert pushed.status_code == 201, pushed.text
    fetched = await client.get(f"/v2/{REPO}/manifests/away", headers={"Accept": OCI_MANIFEST})
    assert fetched.content == manifest

    # the Harbor API face: an addition read from the store
    rig.proxy.cut()
    path = (
        f"/api/v2.0/projects/library/repositories/faults/artifacts/{digest_of(manifest)}"
        "/additions/build_history"
    )
    _assert_unavailable(await client.get(path), harbor=True)
    rig.proxy.resume()
    assert (await client.get(path)).status_code == 200


async def test_a_store_away_at_start_stops_it_with_one_line(
    seaweedfs: SeaweedFS, proxy: TcpProxy, tmp_path: Path
) -> None:
    storage = s3_settings(seaweedfs, seaweedfs.new_bucket())
    storage["storage_s3_endpoint"] = proxy.url
    settings = Settings(**storage, data_dir=tmp_path)
    proxy.cut()
    try:
        with pytest.raises(ConfigurationError, match="object store is unavailable"):
            await open_storage(settings)
    finally:
        proxy.resume()
    await open_storage(settings)  # and starts once it is back


async def test_a_bucket_gone_while_serving_is_a_503_naming_it(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """The store answers, but the bucket was removed under the registry: every request
    that needs it says so with a 503 (the registry cannot serve until it is mended)."""
    bucket = seaweedfs.new_bucket()
    async with _serving(s3_settings(seaweedfs, bucket), tmp_path) as application:
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://registry.test", auth=ADMIN, timeout=60
        ) as http:
            digest = await push_blob(http, REPO, os.urandom(5000))
            with seaweedfs.client() as filer:
                filer.delete(f"/buckets/{bucket}/", params={"recursive": "true"})
            # (A write would succeed: SeaweedFS makes the bucket again on a PUT.)
            answer = await http.get(f"/v2/{REPO}/blobs/{digest}")
            assert answer.status_code == 503, (answer.status_code, answer.text)
            assert int(answer.headers["retry-after"]) > 0
            error = answer.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE"
            assert "bucket does not exist" in error["message"]
