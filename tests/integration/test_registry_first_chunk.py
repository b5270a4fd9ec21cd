"""An empty upload's first chunk is written without a claim (issue 16): into an object of
its own, which one compare-and-set makes the upload's. On SQLite and PostgreSQL: of two
first chunks racing, one is recorded and the other refused, the upload holds exactly the
winner's bytes, and no object of the loser (or of the upload's empty start) is left.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from tests.integration.registry_helpers import digest_of

from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.registry import claims
from dockyard.registry.models import BlobUpload

# Fresh bytes per run: a blob already stored takes GC's protecting write (more SQL).
WINNER = os.urandom(3000)
LOSER = os.urandom(2000)


def _objects(state: AppState, upload_id: str) -> list[Path]:
    root = Path(state.settings.effective_storage_root) / "uploads"
    return sorted(root.glob(f"{upload_id}*"))


async def _start(client: httpx.AsyncClient, repo: str) -> tuple[str, str]:
    started = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    return started.headers["Docker-Upload-UUID"], started.headers["Location"]


async def _held_until(released: asyncio.Event) -> AsyncIterator[bytes]:
    """The loser's body: half of it, then the rest once the winner has been answered."""
    yield LOSER[:1000]
    await released.wait()
    yield LOSER[1000:]


async def test_of_two_first_chunks_one_is_recorded(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    upload_id, location = await _start(admin, unique_repo)
    released = asyncio.Event()
    # Both say they start at byte 0 (an unranged chunk that loses appends at the end
    # instead, as if it had come second: test_unranged_chunks_alternating_nodes_…).
    slow = asyncio.create_task(
        admin.patch(
            location,
            content=_held_until(released),
            headers={"Content-Range": f"0-{len(LOSER) - 1}"},
        )
    )
    await asyncio.sleep(0.2)  # the loser is streaming into its own object now
    assert len(_objects(state, upload_id)) == 2, "the loser writes an object of its own"
    won = await admin.patch(
        location, content=WINNER, headers={"Content-Range": f"0-{len(WINNER) - 1}"}
    )
    released.set()
    lost = await slow
    assert won.status_code == 202, won.text
    assert won.headers["Range"] == f"0-{len(WINNER) - 1}"
    assert lost.status_code == 416, lost.text
    assert lost.json()["errors"][0]["code"] == "RANGE_INVALID"  # as a refused claim
    assert lost.headers["Range"] == f"0-{len(WINNER) - 1}"
    left = _objects(state, upload_id)
    assert len(left) == 1 and left[0].read_bytes() == WINNER, left

    done = await admin.put(won.headers["Location"], params={"digest": digest_of(WINNER)})
    assert done.status_code == 201, done.text
    pulled = await admin.get(f"/v2/{unique_repo}/blobs/{digest_of(WINNER)}")
    assert pulled.content == WINNER
    assert _objects(state, upload_id) == []


async def test_a_first_chunk_into_a_cancelled_upload_is_refused(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    upload_id, location = await _start(admin, unique_repo)
    released = asyncio.Event()
    slow = asyncio.create_task(admin.patch(location, content=_held_until(released)))
    await asyncio.sleep(0.2)
    cancelled = await admin.delete(location)
    assert cancelled.status_code == 204, cancelled.text
    released.set()
    refused = await slow
    assert refused.status_code == 404, refused.text
    assert refused.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert _objects(state, upload_id) == []


async def test_a_first_chunk_waits_for_a_live_claim(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    """A claim held by a request that may still be writing: the chunk takes the claim
    path and is refused, and writes nothing."""
    upload_id, location = await _start(admin, unique_repo)
    async with state.db.write() as session:
        await session.execute(
            update(BlobUpload)
            .where(BlobUpload.id == upload_id)
            .values(busy_until=utcnow() + timedelta(minutes=10), holder=claims.this_process())
        )
    refused = await admin.patch(location, content=WINNER)
    assert refused.status_code == 416, refused.text
    assert [p.name for p in _objects(state, upload_id)] == [upload_id]


async def test_a_small_put_that_a_chunk_overtakes_takes_the_claim_path(
    admin: httpx.AsyncClient,
    state: AppState,
    unique_repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bodiless ``PUT`` of a small upload reads its bytes without a claim; a chunk that
    lands before the ``PUT`` records the blob makes its compare-and-set fail, and the claim
    path answers as it always did: the upload now holds other bytes (digest invalid), and
    no blob is linked."""
    data, more_data = os.urandom(4000), os.urandom(1000)  # never stored before
    _, location = await _start(admin, unique_repo)
    first = await admin.patch(location, content=data)
    assert first.status_code == 202, first.text
    storage = state.registry.storage
    write_bytes = storage.write_bytes

    async def overtaken(key: str, data: bytes) -> None:
        more = await admin.patch(
            first.headers["Location"],
            content=more_data,
            headers={"Content-Range": f"{len(data)}-{len(data) + len(more_data) - 1}"},
        )
        assert more.status_code == 202, more.text
        await write_bytes(key, data)

    monkeypatch.setattr(storage, "write_bytes", overtaken)
    done = await admin.put(first.headers["Location"], params={"digest": digest_of(data)})
    assert done.status_code == 400, done.text
    assert done.json()["errors"][0]["code"] == "DIGEST_INVALID"
    head = await admin.head(f"/v2/{unique_repo}/blobs/{digest_of(data)}")
    assert head.status_code == 404


async def test_a_small_put_completes_without_a_claim(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    """The usual push: ``POST``, one ``PATCH``, a bodiless ``PUT``: one write transaction
    each, no claim taken, and nothing of the upload left in storage."""
    data = os.urandom(5000)
    upload_id, location = await _start(admin, unique_repo)
    counters = state.db.count_sql()
    before = counters.read()
    patched = await admin.patch(location, content=data)
    done = await admin.put(patched.headers["Location"], params={"digest": digest_of(data)})
    assert done.status_code == 201, done.text
    spent = counters.read() - before
    registry_transactions = [
        site
        for site, n in spent.sites.items()
        for _ in range(n)
        if site.startswith("dockyard.registry.") and site.endswith("(transaction)")
    ]
    assert len(registry_transactions) == 2, spent.describe()
    assert not any("claim_upload" in site for site in spent.sites), spent.describe()
    assert _objects(state, upload_id) == []
    pulled = await admin.get(f"/v2/{unique_repo}/blobs/{digest_of(data)}")
    assert pulled.content == data
