"""A chunk's claim left by a dead process is taken over at once (issue 12, item 7), on
SQLite and PostgreSQL; a claim whose holder may be alive still refuses a racing chunk.

The e2e test (tests/e2e/test_upload_crash.py) kills a real server; this one plants the
claims a crash would leave, to pin the compare-and-set in the database cheaply.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import httpx
from sqlalchemy import update

from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.registry import claims
from dockyard.registry.models import BlobUpload

CHUNK = b"x" * 1000


async def _started(client: httpx.AsyncClient, repo: str) -> tuple[str, str]:
    started = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    first = await client.patch(
        started.headers["Location"], content=CHUNK, headers={"Content-Range": "0-999"}
    )
    assert first.status_code == 202, first.text
    return started.headers["Docker-Upload-UUID"], first.headers["Location"]


async def _plant_claim(state: AppState, upload_id: str, holder: str) -> None:
    async with state.db.write() as session:
        await session.execute(
            update(BlobUpload)
            .where(BlobUpload.id == upload_id)
            .values(busy_until=utcnow() + timedelta(minutes=10), holder=holder)
        )


def _dead_holder() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    place, _, started = claims.this_process().split("/")
    return f"{place}/{child.pid}/{started}"


async def _next_chunk(client: httpx.AsyncClient, location: str) -> httpx.Response:
    return await client.patch(location, content=CHUNK, headers={"Content-Range": "1000-1999"})


async def test_a_dead_holders_claim_is_taken_over(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    upload_id, location = await _started(admin, unique_repo)
    await _plant_claim(state, upload_id, _dead_holder())
    resumed = await _next_chunk(admin, location)
    assert resumed.status_code == 202, resumed.text
    assert resumed.headers["Range"] == "0-1999"
    async with state.db.read() as session:
        upload = await session.get(BlobUpload, upload_id)
    assert upload is not None
    assert upload.busy_until is None  # released again after the chunk
    assert upload.holder is None


async def test_a_claim_whose_holder_may_live_still_refuses(
    admin: httpx.AsyncClient, state: AppState, unique_repo: str
) -> None:
    upload_id, location = await _started(admin, unique_repo)
    for holder in (claims.this_process(), "0123456789abcdef/1/1"):
        await _plant_claim(state, upload_id, holder)
        refused = await _next_chunk(admin, location)
        assert refused.status_code == 416, refused.text
        assert refused.headers["Range"] == "0-999"
