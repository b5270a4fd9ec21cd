"""GC's orphan phase racing pushes that re-send the orphans' content (issue 12, items 1
and 9), on SQLite and PostgreSQL.

A crash between bytes and rows leaves blob files no row names. A push of the same
content may adopt such a file (an upload completion keeps the file already at the
blob's path; a manifest push skips writing a file that exists), so GC must never
delete one a push is adopting: every blob and manifest acknowledged with 201 while the
sweep runs must come back byte for byte afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD
from tests.integration.registry_helpers import OCI_MANIFEST, digest_of, image_manifest, push_blob
from tests.integration.test_gc import (  # noqa: F401  (module-scoped app of its own)
    client,
    counts,
    gc_app,
    gc_settings,
    gc_state,
    wait_gc,
)

from dockyard.db.base import utcnow
from dockyard.gc import repository as gc_repo
from dockyard.http.state import AppState
from dockyard.registry import repository as registry_repo
from dockyard.registry.models import Blob
from dockyard.storage import blob_key

pytestmark = pytest.mark.asyncio(loop_scope="session")
GC = "/api/v2.0/system/gc"
# The figures on PostgreSQL; half on SQLite, where the sweep shares one writer
# with the pushes and takes several times as long (the test stays under ~30 s).
ORPHAN_BLOBS = {"postgresql": 3000, "sqlite": 1500}
ORPHAN_MANIFESTS = {"postgresql": 2000, "sqlite": 1000}
PUSHERS = 8
ORPHAN_UPLOADS = 300
SESSIONS = 40
HOUR_AGO = 3600


@pytest.fixture
async def raw(gc_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """A client that lets a 500 through: the test counts them instead of stopping."""
    transport = httpx.ASGITransport(
        app=gc_app, client=("127.0.0.1", 40001), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://127.0.0.1",
        auth=("admin", ADMIN_PASSWORD),
        timeout=60,
    ) as c:
        yield c


def _plant(root: Path, key: str, data: bytes, age: float = HOUR_AGO) -> None:
    """A file left by a crash: at its key, ``age`` seconds old, with no row."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))


async def _pulls(raw: httpx.AsyncClient, url: str, expected: bytes) -> bool:
    """GET answers 200 with ``expected``; a file gone under a row fails mid-response."""
    try:
        got = await raw.get(url, headers={"Accept": OCI_MANIFEST})
    except Exception:  # the body's stream broke: the bytes are gone
        return False
    return got.status_code == 200 and got.content == expected


async def _start_gc(client: httpx.AsyncClient) -> int:  # noqa: F811
    """Start a run with a window of 0 and return once its cut-off is fixed (the run has
    begun counting), so everything pushed from then on is younger than the cut-off."""
    body = {"schedule": {"type": "Manual"}, "parameters": {"time_window": 0}}
    response = await client.post(f"{GC}/schedule", json=body)
    assert response.status_code == 201, response.text
    gc_id = int(response.headers["Location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    while True:
        found = (await client.get(f"{GC}/{gc_id}")).json()
        if "purged_orphans" in json.loads(found["job_parameters"]):
            return gc_id
        assert found["job_status"] in ("Pending", "Running"), found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.01)


async def _race(
    client: httpx.AsyncClient,  # noqa: F811
    jobs: list[Any],
    push_one: Callable[[Any], Awaitable[None]],
    *,
    while_gc_runs: bool = True,
) -> tuple[list[Any], dict[str, Any]]:
    """Run GC while ``PUSHERS`` tasks push ``jobs`` in random order: while the run goes
    on (``while_gc_runs``; pushes after it race nothing) or all of them. Returns the
    jobs pushed (every push must be acknowledged) and the run's history."""
    gc_id = await _start_gc(client)
    queue = random.sample(jobs, len(jobs))
    pushed: list[Any] = []
    finished = asyncio.Event()

    async def watch() -> None:
        deadline = time.monotonic() + 120
        while (await client.get(f"{GC}/{gc_id}")).json()["job_status"] in ("Pending", "Running"):
            assert time.monotonic() < deadline, "the collection did not finish"
            await asyncio.sleep(0.05)
        finished.set()

    async def pusher() -> None:
        while queue and not (while_gc_runs and finished.is_set()):
            job = queue.pop()
            await push_one(job)
            pushed.append(job)

    await asyncio.gather(watch(), *(pusher() for _ in range(PUSHERS)))
    history = await wait_gc(client, gc_id)
    assert history["job_status"] == "Success", history
    return pushed, history


async def test_orphan_blob_files_adopted_by_uploads_are_never_lost(
    client: httpx.AsyncClient,  # noqa: F811
    raw: httpx.AsyncClient,
    gc_state: AppState,  # noqa: F811
) -> None:
    root = Path(gc_state.settings.effective_storage_root)
    repo = "library/orphan-race-blobs"
    blobs = [os.urandom(1024) for _ in range(ORPHAN_BLOBS[gc_state.db.dialect])]
    for data in blobs:
        _plant(root, blob_key(digest_of(data)), data)

    async def upload(data: bytes) -> None:
        response = await raw.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(data)}, content=data
        )
        assert response.status_code == 201, response.text

    pushed, history = await _race(client, blobs, upload)
    losses = [d for d in pushed if not await _pulls(raw, f"/v2/{repo}/blobs/{digest_of(d)}", d)]
    print(
        f"\norphan blobs: {len(blobs)} files, {len(pushed)} uploads acknowledged while GC "
        f"ran, {len(losses)} lost; gc {counts(history)}"
    )
    assert pushed and counts(history)["purged_orphans"], "the pushes raced the sweep"
    assert not losses, f"{len(losses)} of {len(pushed)} acknowledged blobs lost"


async def test_orphan_manifest_files_adopted_by_pushes_are_never_lost(
    client: httpx.AsyncClient,  # noqa: F811
    raw: httpx.AsyncClient,
    gc_state: AppState,  # noqa: F811
) -> None:
    root = Path(gc_state.settings.effective_storage_root)
    repo = "library/orphan-race-manifests"
    config = b'{"os": "linux"}'
    layer = b"a layer every orphan manifest names"
    base = ((await push_blob(client, repo, config), len(config)),)
    layers = [(await push_blob(client, repo, layer), len(layer))]
    # A tagged image holds the config and the layer, so the sweep keeps them.
    tagged = image_manifest(base[0], layers)
    put = await client.put(
        f"/v2/{repo}/manifests/keep", content=tagged, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    manifests = [
        image_manifest(base[0], layers, annotations={"n": str(i)})
        for i in range(ORPHAN_MANIFESTS[gc_state.db.dialect])
    ]
    for body in manifests:
        _plant(root, blob_key(digest_of(body)), body)

    async def push(body: bytes) -> None:
        response = await raw.put(
            f"/v2/{repo}/manifests/{digest_of(body)}",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert response.status_code == 201, response.text

    pushed, history = await _race(client, manifests, push)
    losses = [b for b in pushed if not await _pulls(raw, f"/v2/{repo}/manifests/{digest_of(b)}", b)]
    print(
        f"\norphan manifests: {len(manifests)} files, {len(pushed)} pushes acknowledged "
        f"while GC ran, {len(losses)} lost; gc {counts(history)}"
    )
    assert pushed and counts(history)["purged_orphans"], "the pushes raced the sweep"
    assert not losses, f"{len(losses)} of {len(pushed)} acknowledged manifests lost"


async def test_a_claimed_orphan_makes_a_push_wait_then_install_its_own_bytes(
    raw: httpx.AsyncClient,
    gc_state: AppState,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sweep's claim first: an upload of the same content waits for the claim to go
    (the file first, then the row) and then installs its own bytes."""
    root = Path(gc_state.settings.effective_storage_root)
    data = os.urandom(1024)
    digest = digest_of(data)
    _plant(root, blob_key(digest), data)
    async with gc_state.db.write() as session:
        ((claim_id, _),) = await gc_repo.claim_orphans(session, [(digest, len(data))], utcnow())
    tried = asyncio.Event()
    hold_blob = registry_repo.hold_blob

    async def watched(*args: Any) -> bool:
        held = await hold_blob(*args)
        tried.set()
        return held

    monkeypatch.setattr(registry_repo, "hold_blob", watched)
    upload = asyncio.ensure_future(
        raw.post(
            "/v2/library/orphan-claimed/blobs/uploads/", params={"digest": digest}, content=data
        )
    )
    await asyncio.wait_for(tried.wait(), 30)
    assert not upload.done(), "the push went on while the sweep held the digest"
    (root / blob_key(digest)).unlink()  # the sweep deletes the bytes, then its claim
    async with gc_state.db.write() as session:
        assert await gc_repo.release_orphans(session, [claim_id]) == 1
    response = await asyncio.wait_for(upload, 30)
    assert response.status_code == 201, response.text
    assert await _pulls(raw, f"/v2/library/orphan-claimed/blobs/{digest}", data)


async def test_an_orphan_a_push_holds_is_not_claimed(gc_state: AppState) -> None:  # noqa: F811
    """The push first: once it holds a row for the file it adopts, the claim skips it."""
    root = Path(gc_state.settings.effective_storage_root)
    data = os.urandom(1024)
    digest = digest_of(data)
    _plant(root, blob_key(digest), data)
    assert await gc_state.registry._protect_existing_blob(digest, len(data))
    async with gc_state.db.write() as session:
        assert await gc_repo.claim_orphans(session, [(digest, len(data))], utcnow()) == []
    assert (root / blob_key(digest)).read_bytes() == data


async def test_a_run_killed_between_claim_and_release_finishes_its_claims(
    client: httpx.AsyncClient,  # noqa: F811
    raw: httpx.AsyncClient,
    gc_state: AppState,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claims a killed attempt left are finished when the retry resumes in the orphans
    phase: no ``deleting`` row outlives the run to hold pushes of that content off."""
    root = Path(gc_state.settings.effective_storage_root)
    blobs = [os.urandom(1024) for _ in range(20)]
    for data in blobs:
        _plant(root, blob_key(digest_of(data)), data)
    real_release = gc_repo.release_orphans
    calls = {"n": 0}

    async def dying_release(session: Any, ids: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # the worker "dies" with its claims made and their bytes gone
            raise RuntimeError("killed")
        return await real_release(session, ids)

    monkeypatch.setattr(gc_repo, "release_orphans", dying_release)
    gc_id = await _start_gc(client)
    history = await wait_gc(client, gc_id)
    log = (await client.get(f"{GC}/{gc_id}/log")).text
    assert history["job_status"] == "Success", (history, log)
    assert "resumed at orphans" in log, log
    async with gc_state.db.read() as session:
        left = await session.scalar(
            select(func.count()).select_from(Blob).where(Blob.status == "deleting")
        )
    assert left == 0, log
    assert not any((root / blob_key(digest_of(d))).exists() for d in blobs)
    data = blobs[0]
    response = await raw.post(
        "/v2/library/orphan-resumed/blobs/uploads/",
        params={"digest": digest_of(data)},
        content=data,
    )
    assert response.status_code == 201, response.text
    assert await _pulls(raw, f"/v2/library/orphan-resumed/blobs/{digest_of(data)}", data)


# --- partial uploads no session names (item 9) -------------------------------------------


async def test_partial_uploads_no_session_names_are_collected_and_sessions_keep_theirs(
    client: httpx.AsyncClient,  # noqa: F811
    raw: httpx.AsyncClient,
    gc_state: AppState,  # noqa: F811
) -> None:
    """Old nameless partial uploads go; young ones stay (a session may be starting); and
    sessions with rows keep their files however old, while they go on racing the run."""
    root = Path(gc_state.settings.effective_storage_root)
    repo = "library/orphan-race-uploads"
    old_orphans = [f"uploads/{os.urandom(16).hex()}" for _ in range(ORPHAN_UPLOADS)]
    for key in old_orphans:
        _plant(root, key, os.urandom(512))
    young = f"uploads/{os.urandom(16).hex()}"
    _plant(root, young, b"a session starting right now", age=60)
    # Sessions whose last chunk came an hour ago: their files are old, their rows live.
    sessions: list[tuple[str, bytes]] = []
    for _ in range(SESSIONS):
        first, rest = os.urandom(700), os.urandom(300)
        started = await client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        patched = await client.patch(
            location, content=first, headers={"Content-Type": "application/octet-stream"}
        )
        assert patched.status_code == 202, patched.text
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        then = time.time() - HOUR_AGO
        # The first chunk went into an object of its own (``uploads/<id>--<nonce>``,
        # storage/layout.py ``attempt_id``), which the session's row now names.
        (partial,) = (root / "uploads").glob(f"{upload_id}*")
        os.utime(partial, (then, then))
        sessions.append((patched.headers["Location"], first + rest))

    async def finish(session: tuple[str, bytes]) -> None:
        location, data = session
        done = await raw.put(location, params={"digest": digest_of(data)}, content=data[700:])
        assert done.status_code == 201, done.text

    pushed, history = await _race(client, sessions, finish, while_gc_runs=False)
    assert len(pushed) == SESSIONS
    for _, data in sessions:
        assert await _pulls(raw, f"/v2/{repo}/blobs/{digest_of(data)}", data)
    assert not any((root / key).exists() for key in old_orphans)
    assert (root / young).exists(), "a young partial upload may be a session being created"
    assert counts(history)["purged_orphans"] >= ORPHAN_UPLOADS


async def test_an_upload_start_too_slow_for_gc_is_rolled_back(
    client: httpx.AsyncClient,  # noqa: F811
    gc_state: AppState,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row may be recorded only for a young partial upload: a start slower than the
    limit leaves neither a row nor a file (the client starts again)."""
    from dockyard.registry import service as registry_service

    root = Path(gc_state.settings.effective_storage_root)
    before = set(os.listdir(root / "uploads"))
    monkeypatch.setattr(registry_service, "UPLOAD_START_LIMIT", -1.0)
    refused = await client.post("/v2/library/orphan-race-slow/blobs/uploads/")
    assert refused.status_code == 400, refused.text
    assert set(os.listdir(root / "uploads")) == before
    monkeypatch.undo()
    started = await client.post("/v2/library/orphan-race-slow/blobs/uploads/")
    assert started.status_code == 202, started.text
