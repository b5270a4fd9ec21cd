"""A full disk (issue 12, items 5 and 6), on a small filesystem of its own.

Pushes stop with a clear "storage is full" (403 DENIED) before the disk is full; a failed
upload leaves no session or partial file behind; with the disk then filled to the last byte
by another program, deleting a manifest and a manual garbage collection still work through
the API, the space comes back, and nothing else is lost.

The data directory (with the SQLite database in it; with PostgreSQL, a private cluster's
data directory beside it) is a small tmpfs mounted for the test, which needs root;
elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.support.postgres import start_throwaway_cluster, temporary_database
from tests.support.small_fs import small_filesystem

from dockyard.app import create_app
from dockyard.db.engine import Database
from dockyard.settings import Settings
from dockyard.storage.space import RESERVE_NAME
from dockyard.system.bootstrap import prepare

pytestmark = pytest.mark.asyncio(loop_scope="session")

MIB = 1024 * 1024
FS_SIZE = 32 * MIB
MIN_FREE = 4 * MIB
RESERVE = 2 * MIB
REPO = "library/full"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The data directory on a small filesystem; on PostgreSQL the database's own data
    directory (a private cluster) is on it too."""
    common: dict[str, Any] = {
        "admin_password": ADMIN_PASSWORD,
        "min_free_bytes": MIN_FREE,
        "disk_reserve_bytes": RESERVE,
        "job_poll_seconds": 0.2,
        "job_retry_base_seconds": 0.2,
    }
    if request.param == "sqlite":
        with small_filesystem(FS_SIZE) as where:
            (where / "data").mkdir()
            yield Settings(data_dir=where / "data", **common)
        return
    # A fresh cluster takes about 40 MiB (its first WAL segment included).
    with small_filesystem(FS_SIZE + 64 * MIB) as where:
        (where / "data").mkdir()
        cluster = start_throwaway_cluster(parent=where)
        try:
            with temporary_database(cluster.url) as url:
                yield Settings(data_dir=where / "data", database_url=url, **common)
        finally:
            cluster.stop()


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    database = Database(settings.effective_database_url)
    try:
        await prepare(settings, database)
    finally:
        await database.dispose()
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def admin(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
        yield client


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path: Path) -> Path:
    """Take every free byte of ``path``'s filesystem, as another program would."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (MIB, 64 * 1024, 4096, 512, 1):
            block = b"\0" * size
            while True:
                try:
                    if os.write(fd, block) < size:
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def _assert_full_refusal(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "DENIED"
    assert error["message"].startswith("storage is full")


async def _push_image(client: httpx.AsyncClient, tag: str, layer: bytes) -> tuple[str, str]:
    config = f'{{"architecture":"amd64","os":"linux","tag":"{tag}"}}'.encode()
    pushed = []
    for blob in (config, layer):
        response = await client.post(
            f"/v2/{REPO}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
        )
        assert response.status_code == 201, response.text
        pushed.append((digest_of(blob), len(blob)))
    manifest = image_manifest(pushed[0], [pushed[1]])
    response = await client.put(
        f"/v2/{REPO}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return digest_of(manifest), pushed[1][0]


async def _gc(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "schedule": {"type": "Manual"},
        "parameters": {"delete_untagged": True, "dry_run": False, "time_window": 0},
    }
    response = await client.post("/api/v2.0/system/gc/schedule", json=body)
    assert response.status_code == 201, response.text
    gc_id = response.headers["Location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    while True:
        found: dict[str, Any] = (await client.get(f"/api/v2.0/system/gc/{gc_id}")).json()
        if found["job_status"] in ("Success", "Error", "Stopped"):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def test_a_full_disk_refuses_pushes_clearly_and_recovers_through_the_api(
    admin: httpx.AsyncClient, settings: Settings
) -> None:
    data_dir = settings.data_dir
    uploads = settings.effective_storage_root / "uploads"
    assert (data_dir / RESERVE_NAME).stat().st_size == RESERVE

    # Two images; the first will be deleted to make room, the second must survive.
    doomed_layer, kept_layer = os.urandom(6 * MIB), os.urandom(3 * MIB)
    doomed, doomed_blob = await _push_image(admin, "doomed", doomed_layer)
    kept, kept_blob = await _push_image(admin, "kept", kept_layer)

    # An upload in progress when the disk fills.
    started = await admin.post(f"/v2/{REPO}/blobs/uploads/")
    assert started.status_code == 202
    session = started.headers["Location"]
    first = await admin.patch(
        session, content=os.urandom(MIB), headers={"Content-Range": f"0-{MIB - 1}"}
    )
    assert first.status_code == 202, first.text

    # Pushes stop short of the floor: a chunk bigger than what is left over it is refused
    # before the disk is full, and its session is gone with its partial file.
    room = _free(data_dir) - MIN_FREE
    assert room > 0
    big = await admin.patch(
        session,
        content=os.urandom(room + MIB),
        headers={"Content-Range": f"{MIB}-{MIB + room + MIB - 1}"},
    )
    _assert_full_refusal(big)
    assert (await admin.get(session)).status_code == 404
    assert list(uploads.iterdir()) == []
    assert _free(data_dir) >= MIN_FREE

    # Another program takes the rest, to the last byte.
    filler = _fill(data_dir)
    assert _free(data_dir) < 4096
    _assert_full_refusal(await admin.post(f"/v2/{REPO}/blobs/uploads/"))
    blob = os.urandom(1000)
    refused = await admin.post(
        f"/v2/{REPO}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
    )
    _assert_full_refusal(refused)
    assert list(uploads.iterdir()) == []

    # Recovery through the product: delete a manifest, run GC.
    deleted = await admin.delete(f"/v2/{REPO}/manifests/{doomed}")
    assert deleted.status_code == 202, deleted.text
    assert not (data_dir / RESERVE_NAME).exists()  # released to let the delete write
    before_gc = _free(data_dir)
    result = await _gc(admin)
    assert result["job_status"] == "Success", result
    # The layer's bytes came back (less what GC's own records took in the database); the
    # reserve may already have been made again from them.
    reserve = data_dir / RESERVE_NAME
    made_again = reserve.stat().st_size if reserve.exists() else 0
    assert _free(data_dir) + made_again >= before_gc + len(doomed_layer) - MIB
    gone = await admin.get(f"/v2/{REPO}/blobs/{doomed_blob}")
    assert gone.status_code == 404

    # Nothing else was lost.
    manifest = await admin.get(f"/v2/{REPO}/manifests/kept")
    assert manifest.status_code == 200
    assert digest_of(manifest.content) == kept
    layer = await admin.get(f"/v2/{REPO}/blobs/{kept_blob}")
    assert layer.status_code == 200
    assert hashlib.sha256(layer.content).digest() == hashlib.sha256(kept_layer).digest()

    # With the filler gone, pushes work again and the reserve is made again.
    filler.unlink()
    await _push_image(admin, "again", os.urandom(MIB))
    assert reserve.stat().st_size == RESERVE
