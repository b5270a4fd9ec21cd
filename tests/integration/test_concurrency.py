"""Real concurrency: many pushers sharing layers, and two chunks racing on one upload."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import digest_of, image_manifest

from dockyard.http.state import AppState
from dockyard.registry.models import Blob
from dockyard.storage import blob_key


async def test_twenty_pushers_share_one_copy_of_each_layer(app: Starlette, state: AppState) -> None:
    layers = [os.urandom(256 * 1024) for _ in range(3)]
    layer_digests = [digest_of(data) for data in layers]
    config = b'{"architecture":"amd64","os":"linux"}'
    manifest = image_manifest(
        (digest_of(config), len(config)),
        [(d, len(x)) for d, x in zip(layer_digests, layers, strict=True)],
    )
    run = uuid.uuid4().hex[:8]

    async def push(i: int) -> None:
        repo = f"library/race{run}-{i}"
        async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
            for data in [config, *layers]:
                start = await client.post(f"/v2/{repo}/blobs/uploads/")
                assert start.status_code == 202, start.text
                done = await client.put(
                    start.headers["location"], params={"digest": digest_of(data)}, content=data
                )
                assert done.status_code == 201, done.text
            put = await client.put(
                f"/v2/{repo}/manifests/v1",
                content=manifest,
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert put.status_code == 201, put.text

    await asyncio.gather(*(push(i) for i in range(20)))

    async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
        for i in range(20):
            repo = f"library/race{run}-{i}"
            got = await client.get(f"/v2/{repo}/manifests/v1")
            assert got.status_code == 200 and got.content == manifest
            for digest, data in zip(layer_digests, layers, strict=True):
                blob = await client.get(f"/v2/{repo}/blobs/{digest}")
                assert blob.content == data
    async with state.db.read() as session:
        rows = await session.scalar(
            select(func.count()).select_from(Blob).where(Blob.digest.in_(layer_digests))
        )
    assert rows == 3
    for digest in layer_digests:  # through the driver: also right with DOCKYARD_TEST_STORAGE=s3
        info = await state.storage.stat(blob_key(digest))
        assert info is not None and info.size == 256 * 1024
    leftovers = [key.removeprefix("uploads/") async for key in state.storage.list("uploads/")]
    assert not [name for name in leftovers if name.startswith(run)]


async def test_racing_chunks_on_one_upload(app: Starlette, unique_repo: str) -> None:
    first_half, second_half = os.urandom(64 * 1024), os.urandom(64 * 1024)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield first_half[:1024]
        entered.set()
        await release.wait()
        yield first_half[1024:]

    async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
        start = await client.post(f"/v2/{unique_repo}/blobs/uploads/")
        location = start.headers["location"]
        end = len(first_half) - 1
        slow = asyncio.create_task(
            client.patch(
                location,
                content=slow_body(),
                headers={"Content-Range": f"0-{end}", "Content-Type": "application/octet-stream"},
            )
        )
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.sleep(0.2)  # let the slow request get its body under way
        racer = await client.patch(
            location,
            content=second_half,
            headers={"Content-Range": f"0-{len(second_half) - 1}"},
        )
        release.set()
        slow_done = await slow
        # Exactly one of two chunks for offset 0 wins. A racer meeting a claim is refused at
        # once; an empty upload's first chunk is written to a file of its own and the first
        # to finish takes the upload by one compare-and-set (docs/architecture.md), so here
        # the racer may win and the slow chunk be refused once its body is in.
        assert sorted([racer.status_code, slow_done.status_code]) == [202, 416], (
            racer.text,
            slow_done.text,
        )
        if racer.status_code == 416:
            won, lost_body = slow_done, second_half
            assert racer.headers["range"] == "0-0"
            whole = first_half + second_half
        else:
            won, lost_body = racer, first_half
            whole = second_half + first_half
        assert won.headers["range"] == f"0-{end}"
        # The loser may continue from where the winner left off.
        follow = await client.patch(
            location,
            content=lost_body,
            headers={"Content-Range": f"{end + 1}-{end + len(lost_body)}"},
        )
        assert follow.status_code == 202
        done = await client.put(location, params={"digest": digest_of(whole)})
        assert done.status_code == 201, done.text
        blob = await client.get(f"/v2/{unique_repo}/blobs/{digest_of(whole)}")
        assert blob.content == whole


async def test_client_disconnect_mid_chunk_loses_nothing(app: Starlette, unique_repo: str) -> None:
    data = os.urandom(200 * 1024)

    class Cut(Exception):
        pass

    async def broken_body() -> AsyncIterator[bytes]:
        yield data[:50_000]
        raise Cut

    async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
        start = await client.post(f"/v2/{unique_repo}/blobs/uploads/")
        location = start.headers["location"]
        first = await client.patch(location, content=data[:100_000])
        assert first.status_code == 202
        # In process, the body's failure surfaces inside the app as an unknown
        # error (a real server reports a disconnect); only what is kept matters.
        client.event_hooks["response"] = []
        with contextlib.suppress(Cut, httpx.HTTPError):
            await client.patch(
                location, content=broken_body(), headers={"Content-Range": "100000-199999"}
            )
        status = await client.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == "0-99999"
        rest = await client.patch(
            location, content=data[100_000:], headers={"Content-Range": f"100000-{len(data) - 1}"}
        )
        assert rest.status_code == 202
        done = await client.put(location, params={"digest": digest_of(data)})
        assert done.status_code == 201
        assert (await client.get(f"/v2/{unique_repo}/blobs/{digest_of(data)}")).content == data
