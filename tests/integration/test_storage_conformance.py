"""The storage-driver contract, run against every driver.

Each test takes the ``driver`` fixture, which is parametrized over
``DRIVER_FACTORIES``; a new driver joins by adding its factory there and must
pass every test unchanged. Only the contract of ``dockyard.storage.base`` is
used here, except in :func:`residue`, which asks each driver for its leftovers.
The ``s3`` driver runs against a real SeaweedFS started on loopback for the session
(``tests/support/seaweedfs.py``), a fresh bucket per test; driver-specific tests
follow the shared ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from obstore.store import S3Store
from tests.support.seaweedfs import SeaweedFS, s3_storage

from dockyard.app import open_storage
from dockyard.errors import (
    BlobUploadInvalidError,
    ConfigurationError,
    ObjectNotFoundError,
    SizeInvalidError,
    StorageFullError,
)
from dockyard.http.state import AppState
from dockyard.settings import Settings
from dockyard.storage import FilesystemStorage, Storage, blob_key
from dockyard.storage.s3 import S3Storage

MiB = 1 << 20


@asynccontextmanager
async def filesystem_driver(tmp_path: Path) -> AsyncIterator[Storage]:
    yield FilesystemStorage(tmp_path / "storage")


@asynccontextmanager
async def s3_driver(tmp_path: Path, server: SeaweedFS) -> AsyncIterator[Storage]:
    """The S3 driver on a fresh bucket of the session's SeaweedFS (small parts, so
    that a few MiB already make multipart uploads)."""
    storage = s3_storage(server, server.new_bucket(), part_bytes=5 * MiB)
    _SERVERS[storage.name] = server
    yield storage


DriverFactory = Callable[..., AbstractAsyncContextManager[Storage]]

DRIVER_FACTORIES: list[Any] = [
    pytest.param(filesystem_driver, id="filesystem"),
    pytest.param(s3_driver, id="s3"),
]
_SERVERS: dict[str, SeaweedFS] = {}


@pytest.fixture(params=DRIVER_FACTORIES)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    factory: DriverFactory = request.param
    extra = [request.getfixturevalue("seaweedfs")] if factory is s3_driver else []
    async with factory(tmp_path, *extra) as storage:
        yield storage


def residue(driver: Storage) -> list[str]:
    """What a driver keeps besides its objects: temporary files, pending parts."""
    if isinstance(driver, FilesystemStorage):
        return sorted(os.listdir(driver.root / "_tmp"))
    if isinstance(driver, S3Storage):
        # Multipart uploads begun and never completed nor aborted.
        return _SERVERS[driver.name].pending_multipart(driver.name)
    raise NotImplementedError(f"no residue check for {driver!r}")


# --- helpers ---------------------------------------------------------------------


class Boom(Exception):
    """The stream's own failure, which must pass through the driver unchanged."""


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def ragged(data: bytes, seed: int = 0) -> AsyncIterator[bytes]:
    """``data`` in chunks of random sizes, some empty."""
    rng = random.Random(seed)
    start = 0
    while start < len(data):
        size = rng.choice([0, 1, 7, 4096, 65536, 300_000, MiB + 3])
        yield data[start : start + size]
        start += size


async def failing(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    async for part in stream(data, chunk):
        yield part
    raise Boom


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([part async for part in chunks])


async def keys(driver: Storage, prefix: str) -> list[str]:
    return sorted([key async for key in driver.list(prefix)])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- the health check ----------------------------------------------------------------


async def test_check_passes_and_leaves_nothing(driver: Storage) -> None:
    """``check()`` is what health and readiness ask (``system/health.py``)."""
    await driver.check()
    await driver.check()
    assert residue(driver) == []
    assert await keys(driver, "") == []


# --- plain objects -------------------------------------------------------------------


async def test_write_then_read_stat(driver: Storage) -> None:
    data = blob(3 * MiB + 5, 1)
    key = blob_key(digest_of(data))
    before = datetime.now(UTC) - timedelta(seconds=5)

    assert await driver.write(key, ragged(data)) == len(data)

    info = await driver.stat(key)
    assert info is not None
    assert (info.key, info.size) == (key, len(data))
    assert info.modified.tzinfo is not None
    assert info.modified.utcoffset() == timedelta(0)
    assert before <= info.modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert await collect(driver.read(key)) == data
    assert await driver.read_bytes(key) == data
    assert residue(driver) == []


async def test_empty_object(driver: Storage) -> None:
    assert await driver.write("blobs/empty", stream(b"")) == 0
    info = await driver.stat("blobs/empty")
    assert info is not None
    assert info.size == 0
    assert await collect(driver.read("blobs/empty")) == b""


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, None),
        (0, 0),
        (1, None),
        (MiB - 1, 2),  # across a read chunk
        (MiB, MiB),
        (10, 2 * MiB + 10),
        (2 * MiB, None),
        (2 * MiB + 9, 100),  # runs past the end
        (2 * MiB + 10, None),  # at the end
        (5 * MiB, None),  # beyond the end
        (5 * MiB, 7),
    ],
)
async def test_read_range(driver: Storage, offset: int, length: int | None) -> None:
    data = blob(2 * MiB + 10, 2)
    await driver.write_bytes("blobs/range", data)
    end = None if length is None else offset + length
    assert await collect(driver.read("blobs/range", offset, length)) == data[offset:end]


async def test_read_refuses_negative_range(driver: Storage) -> None:
    await driver.write_bytes("blobs/x", b"abc")
    with pytest.raises(ValueError, match="range"):
        await collect(driver.read("blobs/x", -1))
    with pytest.raises(ValueError, match="range"):
        await collect(driver.read("blobs/x", 0, -1))


async def test_a_reader_keeps_its_object_while_it_is_replaced(driver: Storage) -> None:
    old, new = blob(3 * MiB, 20), blob(3 * MiB, 21)
    await driver.write_bytes("blobs/moving", old)
    reader = driver.read("blobs/moving")
    first = await anext(reader)
    await driver.write_bytes("blobs/moving", new)
    assert first + await collect(reader) == old
    assert await driver.read_bytes("blobs/moving") == new


async def test_missing_object(driver: Storage) -> None:
    assert await driver.stat("blobs/missing") is None
    with pytest.raises(ObjectNotFoundError):
        await collect(driver.read("blobs/missing"))
    with pytest.raises(ObjectNotFoundError):
        await driver.read_bytes("blobs/missing")
    assert driver.local_path("blobs/missing") is None


async def test_a_key_prefix_is_not_an_object(driver: Storage) -> None:
    await driver.write_bytes("blobs/dir/leaf", b"leaf")
    assert await driver.stat("blobs/dir") is None
    with pytest.raises(ObjectNotFoundError):
        await driver.read_bytes("blobs/dir")
    assert await driver.delete("blobs/dir") is False
    assert await driver.read_bytes("blobs/dir/leaf") == b"leaf"


async def test_write_bytes_replaces(driver: Storage) -> None:
    await driver.write_bytes("manifests/m", b"first")
    await driver.write_bytes("manifests/m", b"second, longer")
    assert await driver.read_bytes("manifests/m") == b"second, longer"
    assert residue(driver) == []


async def test_delete_is_idempotent(driver: Storage) -> None:
    await driver.write_bytes("blobs/d", b"x")
    assert await driver.delete("blobs/d") is True
    assert await driver.delete("blobs/d") is False
    assert await driver.stat("blobs/d") is None


async def test_move(driver: Storage) -> None:
    await driver.write_bytes("a/src", b"moved")
    await driver.write_bytes("b/dst", b"old")
    await driver.move("a/src", "b/dst")
    assert await driver.stat("a/src") is None
    assert await driver.read_bytes("b/dst") == b"moved"
    await driver.move("b/dst", "c/d/e")  # into a new "directory"
    assert await driver.read_bytes("c/d/e") == b"moved"
    with pytest.raises(ObjectNotFoundError):
        await driver.move("a/src", "b/other")
    assert await driver.stat("b/other") is None


async def test_list_by_prefix(driver: Storage) -> None:
    written = [
        "blobs/sha256/ab/abc",
        "blobs/sha256/ab/abd",
        "blobs/sha256/cd/cde",
        "blobs/sha512/ab/ab1",
        "blobsx/other",
        "manifests/m",
    ]
    for key in written:
        await driver.write_bytes(key, key.encode())

    assert await keys(driver, "") == sorted(written)
    assert await keys(driver, "blobs/") == written[:4]
    assert await keys(driver, "blobs") == written[:5]
    assert await keys(driver, "blobs/sha256/") == written[:3]
    assert await keys(driver, "blobs/sha256/a") == written[:2]
    assert await keys(driver, "blobs/sha256/ab/abd") == ["blobs/sha256/ab/abd"]
    assert await keys(driver, "nothing/") == []
    assert await keys(driver, "blobs/sha256/ab/abc/") == []


async def test_list_many(driver: Storage) -> None:
    written = sorted(f"blobs/k/{i:05d}" for i in range(600))  # several pages
    await asyncio.gather(*(driver.write_bytes(key, b"") for key in written))
    assert await keys(driver, "blobs/k/") == written


async def test_failed_write_leaves_nothing(driver: Storage) -> None:
    with pytest.raises(Boom):
        await driver.write("blobs/partial", failing(blob(5 * MiB, 3)))
    assert await driver.stat("blobs/partial") is None
    assert await keys(driver, "") == []
    assert residue(driver) == []


async def test_failed_write_keeps_the_old_object(driver: Storage) -> None:
    await driver.write_bytes("blobs/kept", b"old")
    with pytest.raises(Boom):
        await driver.write("blobs/kept", failing(blob(3 * MiB, 4)))
    assert await driver.read_bytes("blobs/kept") == b"old"
    assert residue(driver) == []


async def test_cancelled_write_leaves_nothing(driver: Storage) -> None:
    with anyio.CancelScope() as scope:

        async def cut() -> AsyncIterator[bytes]:
            yield blob(3 * MiB, 5)
            scope.cancel()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

        await driver.write("blobs/cut", cut())
    assert scope.cancelled_caught
    assert await driver.stat("blobs/cut") is None
    assert residue(driver) == []


async def test_local_path_and_redirect(driver: Storage) -> None:
    await driver.write_bytes("blobs/p", b"payload")
    path = driver.local_path("blobs/p")
    if path is not None:
        assert path.read_bytes() == b"payload"
    url = await driver.redirect_url("blobs/p", 60)
    assert url is None or url.startswith(("http://", "https://"))


# --- uploads ----------------------------------------------------------------------


async def test_upload_in_chunks(driver: Storage) -> None:
    data = blob(5 * MiB + 123, 6)
    pieces = [data[: 2 * MiB], data[2 * MiB : 2 * MiB + 1], data[2 * MiB + 1 :]]

    state = await driver.begin("u1")
    assert await driver.upload_size(state) == 0
    size = 0
    for piece in pieces:
        state, size = await driver.append(state, size, ragged(piece, size))
        assert await driver.upload_size(state) == size
    assert size == len(data)

    assert await collect(driver.read_upload(state)) == data
    assert await collect(driver.read_upload(state, MiB, 10)) == data[MiB : MiB + 10]

    key = blob_key(digest_of(data))
    await driver.complete(state, key, len(data))
    assert await collect(driver.read(key)) == data
    with pytest.raises(ObjectNotFoundError):
        await driver.upload_size(state)
    assert await keys(driver, "uploads/") == []
    assert residue(driver) == []


async def test_upload_state_is_json(driver: Storage) -> None:
    import json

    state = await driver.begin("json-state")
    state, _ = await driver.append(state, 0, stream(b"abc"))
    state = json.loads(json.dumps(state))
    assert await driver.upload_size(state) == 3
    await driver.abort(state)


async def test_empty_upload(driver: Storage) -> None:
    state = await driver.begin("empty")
    state, size = await driver.append(state, 0, stream(b""))
    assert size == 0
    key = blob_key(digest_of(b""))
    await driver.complete(state, key)
    assert await driver.read_bytes(key) == b""


async def test_abort_is_idempotent(driver: Storage) -> None:
    state = await driver.begin("gone")
    state, _ = await driver.append(state, 0, stream(b"data"))
    await driver.abort(state)
    await driver.abort(state)
    with pytest.raises(ObjectNotFoundError):
        await driver.upload_size(state)
    with pytest.raises(ObjectNotFoundError):
        await driver.append(state, 0, stream(b"more"))
    with pytest.raises(ObjectNotFoundError):
        await driver.complete(state, "blobs/never")
    assert await driver.stat("blobs/never") is None


async def test_append_failure_leaves_size_unchanged(driver: Storage) -> None:
    head = blob(MiB + 1, 7)
    state = await driver.begin("fails")
    state, size = await driver.append(state, 0, stream(head))

    with pytest.raises(Boom):
        await driver.append(state, size, failing(blob(5 * MiB, 8)))
    assert await driver.upload_size(state) == size
    assert await collect(driver.read_upload(state)) == head


async def test_append_at_stale_offset_overwrites(driver: Storage) -> None:
    """An append the caller never committed (say, a node died before its DB
    commit) leaves bytes past the committed offset; the next append overwrites
    them and the object ends where that append ends."""
    head, lost, tail = blob(3 * MiB, 9), blob(5 * MiB, 10), blob(MiB + 7, 11)
    state = await driver.begin("stale")
    state, committed = await driver.append(state, 0, stream(head))
    await driver.append(state, committed, stream(lost))  # never committed

    state, size = await driver.append(state, committed, ragged(tail))
    assert size == len(head) + len(tail)
    assert await driver.upload_size(state) == size
    assert await collect(driver.read_upload(state)) == head + tail


async def test_append_past_the_end_is_refused(driver: Storage) -> None:
    state = await driver.begin("gap")
    state, size = await driver.append(state, 0, stream(b"abc"))
    with pytest.raises(BlobUploadInvalidError):
        await driver.append(state, size + 1, stream(b"def"))
    assert await collect(driver.read_upload(state)) == b"abc"


async def test_cancelled_append_leaves_size_unchanged(driver: Storage) -> None:
    state = await driver.begin("cancelled")
    state, size = await driver.append(state, 0, stream(b"kept"))
    with anyio.CancelScope() as scope:

        async def cut() -> AsyncIterator[bytes]:
            yield blob(3 * MiB, 12)
            scope.cancel()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

        await driver.append(state, size, cut())
    assert scope.cancelled_caught
    assert await collect(driver.read_upload(state)) == b"kept"


@pytest.mark.parametrize("sent", [0, 1, 3 * MiB])
async def test_append_limit(driver: Storage, sent: int) -> None:
    limit = 2 * MiB
    state = await driver.begin("limited")
    state, size = await driver.append(state, 0, stream(b"xyz"))

    state, size = await driver.append(state, size, stream(blob(limit, 13)), limit=limit)
    assert size == 3 + limit  # exactly the limit is fine

    with pytest.raises(SizeInvalidError):
        await driver.append(state, size, stream(blob(limit + 1 + sent, 14)), limit=limit)
    assert await driver.upload_size(state) == size


async def test_observe_sees_every_byte_in_order(driver: Storage) -> None:
    data = blob(7 * MiB + 11, 15)
    hasher = hashlib.sha256()
    seen: list[bytes] = []
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def observe(buffer: bytes) -> None:
        hasher.update(buffer)
        seen.append(bytes(buffer))
        threads.add(threading.get_ident())

    state = await driver.begin("observed")
    state, size = await driver.append(state, 0, ragged(data[:MiB], 1), observe)
    state, size = await driver.append(state, size, ragged(data[MiB:], 2), observe)

    assert b"".join(seen) == data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert loop_thread not in threads  # hashing happens off the event loop


async def test_observe_failure_leaves_size_unchanged(driver: Storage) -> None:
    state = await driver.begin("observe-fails")
    state, size = await driver.append(state, 0, stream(b"kept"))

    def observe(buffer: bytes) -> None:
        raise Boom

    with pytest.raises(Boom):
        await driver.append(state, size, stream(blob(5 * MiB, 18)), observe)
    assert await collect(driver.read_upload(state)) == b"kept"


async def test_complete_truncates_to_expected_size(driver: Storage) -> None:
    state = await driver.begin("trunc")
    state, _ = await driver.append(state, 0, stream(b"0123456789"))
    await driver.complete(state, "blobs/trunc", 4)
    assert await driver.read_bytes("blobs/trunc") == b"0123"


async def test_complete_refuses_a_short_upload(driver: Storage) -> None:
    state = await driver.begin("short")
    state, _ = await driver.append(state, 0, stream(b"0123"))
    with pytest.raises(BlobUploadInvalidError):
        await driver.complete(state, "blobs/short", 5)
    assert await driver.stat("blobs/short") is None


async def test_complete_onto_existing_key(driver: Storage) -> None:
    data = blob(MiB, 16)
    key = blob_key(digest_of(data))
    await driver.write_bytes(key, data)

    state = await driver.begin("dup")
    state, size = await driver.append(state, 0, stream(data))
    await driver.complete(state, key, size)

    assert await driver.read_bytes(key) == data
    assert await keys(driver, "uploads/") == []


async def test_concurrent_completes_to_one_key(driver: Storage) -> None:
    data = blob(MiB + 17, 17)
    key = blob_key(digest_of(data))
    states = []
    for i in range(20):
        state = await driver.begin(f"race-{i}")
        state, _ = await driver.append(state, 0, stream(data))
        states.append(state)

    await asyncio.gather(*(driver.complete(state, key, len(data)) for state in states))

    assert await keys(driver, "") == [key]
    assert await driver.read_bytes(key) == data
    assert residue(driver) == []


async def test_large_streamed_upload_hashes_correctly(driver: Storage) -> None:
    data = os.urandom(64 * MiB)
    hasher = hashlib.sha256()
    state = await driver.begin("big")
    half = 40 * MiB + 1
    state, size = await driver.append(state, 0, stream(data[:half]), hasher.update)
    state, size = await driver.append(state, size, stream(data[half:]), hasher.update)
    assert size == len(data)
    digest = "sha256:" + hasher.hexdigest()
    assert digest == digest_of(data)

    key = blob_key(digest)
    await driver.complete(state, key, size)
    reread = hashlib.sha256()
    async for part in driver.read(key):
        reread.update(part)
    assert reread.hexdigest() == hasher.hexdigest()


# --- keys that must never reach storage ---------------------------------------------

HOSTILE_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "blobs/../../outside",
    "blobs/..",
    "blobs/./x",
    ".",
    "blobs//x",
    "blobs/",
    "blobs\\..\\x",
    "blobs/x\0y",
    "_tmp/x",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_hostile_keys_are_refused(driver: Storage, key: str) -> None:
    await driver.write_bytes("blobs/ok", b"ok")
    state = await driver.begin("hostile")

    calls: Iterable[Callable[[], Any]] = [
        lambda: driver.stat(key),
        lambda: driver.read_bytes(key),
        lambda: collect(driver.read(key)),
        lambda: driver.write(key, stream(b"x")),
        lambda: driver.write_bytes(key, b"x"),
        lambda: driver.delete(key),
        lambda: driver.move("blobs/ok", key),
        lambda: driver.move(key, "blobs/ok2"),
        lambda: driver.redirect_url(key, 60),
        lambda: driver.complete(state, key),
        lambda: driver.upload_size({"key": key}),
        lambda: driver.append({"key": key}, 0, stream(b"x")),
        lambda: driver.abort({"key": key}),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"(?i)invalid|reserved|upload state"):
            await call()
    with pytest.raises(ValueError, match=r"invalid|reserved"):
        driver.local_path(key)

    assert await driver.read_bytes("blobs/ok") == b"ok"
    assert await driver.upload_size(state) == 0
    assert await keys(driver, "") == ["blobs/ok", "uploads/hostile"]


@pytest.mark.parametrize("prefix", ["/", "/etc", "../", "blobs/../", "a//", "a\\b", "_tmp/"])
async def test_hostile_prefixes_are_refused(driver: Storage, prefix: str) -> None:
    with pytest.raises(ValueError, match=r"invalid|reserved"):
        await keys(driver, prefix)


@pytest.mark.parametrize("upload_id", ["", "../x", "a/b", "a.b", "a b", "x" * 129])
async def test_hostile_upload_ids_are_refused(driver: Storage, upload_id: str) -> None:
    with pytest.raises(ValueError, match="upload id"):
        await driver.begin(upload_id)


# --- the filesystem driver's own promises --------------------------------------------


def test_filesystem_keys_map_under_the_root(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path / "new" / "root")  # created when missing
    assert (tmp_path / "new" / "root").is_dir()
    assert storage.local_path("blobs/x") is None


async def test_filesystem_local_path(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    await storage.write_bytes("blobs/sha256/ab/abc", b"bytes")
    assert storage.local_path("blobs/sha256/ab/abc") == tmp_path / "blobs/sha256/ab/abc"
    assert storage.local_path("blobs/sha256/ab") is None  # a directory is not an object
    assert await storage.redirect_url("blobs/sha256/ab/abc", 60) is None


async def test_filesystem_complete_dates_the_object_now(tmp_path: Path) -> None:
    """A completed object is new, however long ago its last chunk came: garbage
    collection takes only old files no row names (docs/gc.md)."""
    storage = FilesystemStorage(tmp_path)
    state = await storage.begin("slow")
    state, size = await storage.append(state, 0, stream(b"last chunk long ago"))
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(tmp_path / "uploads" / "slow", (long_ago, long_ago))
    before = datetime.now(UTC) - timedelta(seconds=1)
    await storage.complete(state, "blobs/slow", size)
    info = await storage.stat("blobs/slow")
    assert info is not None and info.modified >= before


async def test_filesystem_stat_many(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    await storage.write_bytes("blobs/sha256/ab/abc", b"bytes")
    found = await storage.stat_many(["blobs/sha256/ab/abc", "blobs/sha256/ab", "uploads/none"])
    assert [None if f is None else (f.key, f.size) for f in found] == [
        ("blobs/sha256/ab/abc", 5),
        None,  # a directory is not an object
        None,
    ]
    assert found[0] == await storage.stat("blobs/sha256/ab/abc")


async def test_filesystem_disk_errors_become_storage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FilesystemStorage(tmp_path)
    state = await storage.begin("full")
    state, size = await storage.append(state, 0, stream(b"kept"))

    def disk_full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwritev", disk_full)
    # ENOSPC is the client's "storage is full" (docs/disk-space.md), not a server fault
    with pytest.raises(StorageFullError, match="storage is full"):
        await storage.append(state, size, stream(blob(3 * MiB, 19)))
    with pytest.raises(StorageFullError, match="storage is full"):
        await storage.write("blobs/full", stream(blob(3 * MiB, 19)))
    monkeypatch.undo()

    assert await collect(storage.read_upload(state)) == b"kept"
    assert await storage.stat("blobs/full") is None
    assert residue(storage) == []


async def test_filesystem_writes_and_observes_at_once_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a batch and observing (hashing) one overlap: the first buffer's
    observer waits for the second batch to be written, which only a writer that goes
    on meanwhile can do; and the observer still sees every byte, in order."""
    storage = FilesystemStorage(tmp_path)
    data = blob(9 * MiB, 22)
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    writes = 0
    second_write = threading.Event()
    pwritev = os.pwritev

    def recording_pwritev(fd: int, buffers: list[bytes], offset: int) -> int:
        nonlocal writes
        threads.add(threading.get_ident())
        done = pwritev(fd, buffers, offset)
        writes += 1
        if writes == 2:
            second_write.set()
        return done

    observed: list[bytes] = []
    overlapped: list[bool] = []

    def observe(buffer: bytes) -> None:
        threads.add(threading.get_ident())
        if not overlapped:
            overlapped.append(second_write.wait(60))  # False: the writer waited for us
        observed.append(bytes(buffer))

    monkeypatch.setattr(os, "pwritev", recording_pwritev)
    state = await storage.begin("threads")
    await storage.append(state, 0, stream(data), observe)

    assert overlapped == [True]
    assert writes > 1
    assert b"".join(observed) == data
    assert loop_thread not in threads
    assert await collect(storage.read_upload(state)) == data


# --- the S3 driver's own ---------------------------------------------------------------


def _s3_settings(server: SeaweedFS, tmp_path: Path, **changes: Any) -> Settings:
    from tests.support.seaweedfs import s3_settings

    return Settings(**{"data_dir": tmp_path, **s3_settings(server, "unused"), **changes})


async def test_s3_upload_continues_on_another_node(seaweedfs: SeaweedFS) -> None:
    """The state is all a node needs: a second driver (another node, or this one after a
    restart) finishes an upload the first began, from the JSON the database row keeps."""
    import json

    bucket = seaweedfs.new_bucket()
    node_a, node_b = (s3_storage(seaweedfs, bucket, part_bytes=5 * MiB) for _ in range(2))
    data = blob(11 * MiB + 3, 30)
    state = await node_a.begin("moved")
    state, size = await node_a.append(state, 0, ragged(data[: 6 * MiB]))
    state = json.loads(json.dumps(state))
    state, size = await node_b.append(state, size, ragged(data[6 * MiB :]))
    key = blob_key(digest_of(data))
    await node_b.complete(state, key, size)
    assert await node_a.read_bytes(key) == data
    assert await keys(node_a, "uploads/") == []
    assert seaweedfs.pending_multipart(bucket) == []


async def test_s3_missing_bucket_stops_the_start(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    settings = _s3_settings(seaweedfs, tmp_path, storage_s3_bucket="no-such-bucket-here")
    with pytest.raises(ConfigurationError, match="bucket does not exist"):
        await open_storage(settings)


async def test_s3_refused_credentials_stop_the_start(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    settings = _s3_settings(
        seaweedfs,
        tmp_path,
        storage_s3_bucket=seaweedfs.new_bucket(),
        storage_s3_secret_access_key="not-the-secret",
    )
    with pytest.raises(ConfigurationError, match="refused the credentials"):
        await open_storage(settings)


async def test_s3_starts_with_good_settings(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    bucket = seaweedfs.new_bucket()
    settings = _s3_settings(seaweedfs, tmp_path, storage_s3_bucket=bucket, storage_s3_prefix="r1")
    storage = await open_storage(settings)
    assert isinstance(storage, S3Storage)
    await storage.write_bytes("blobs/x", b"under the prefix")
    # The prefix is a path in the bucket: a driver without it sees the object below it.
    assert await s3_storage(seaweedfs, bucket).read_bytes("r1/blobs/x") == b"under the prefix"


async def test_s3_redirect_is_a_working_presigned_url(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket()
    off = s3_storage(seaweedfs, bucket)
    on = s3_storage(seaweedfs, bucket, redirect=True)
    await on.write_bytes("blobs/signed", b"signed bytes")
    assert await off.redirect_url("blobs/signed", 60) is None
    url = await on.redirect_url("blobs/signed", 60)
    assert url is not None and url.startswith(seaweedfs.endpoint)
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"signed bytes"
        # Unsigned, the same object is refused: the store checks signatures.
        assert (await http.get(url.split("?")[0])).status_code == 403


def test_s3_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage_s3_bucket is required"):
        Settings(data_dir=tmp_path, storage_driver="s3")
    with pytest.raises(ValueError, match="needs storage_s3_access_key_id"):
        Settings(
            data_dir=tmp_path,
            storage_driver="s3",
            storage_s3_bucket="b",
            storage_s3_credentials="static",
        )
    with pytest.raises(ValueError, match="at least"):
        S3Storage(S3Store("b"), part_bytes=MiB)


async def test_s3_blob_get_redirects_when_enabled(
    seaweedfs: SeaweedFS, state: AppState, admin: httpx.AsyncClient, unique_repo: str
) -> None:
    """``storage_redirect``: a blob GET answers 307 to a presigned URL of the store, which
    serves the blob; HEAD is still answered by the registry."""
    from tests.integration.registry_helpers import push_blob

    data = blob(3 * MiB + 1, 40)
    digest = await push_blob(admin, unique_repo, data)
    signing = s3_storage(seaweedfs, seaweedfs.new_bucket(), redirect=True)
    # The app's own driver keeps serving writes; its blob reads go to the S3 one here.
    await signing.write_bytes(blob_key(digest), await state.storage.read_bytes(blob_key(digest)))
    kept = state.registry.storage
    state.registry.storage = signing
    try:
        answer = await admin.get(f"/v2/{unique_repo}/blobs/{digest}")
        head = await admin.head(f"/v2/{unique_repo}/blobs/{digest}")
    finally:
        state.registry.storage = kept
    assert answer.status_code == 307, answer.text
    location = answer.headers["location"]
    assert location.startswith(seaweedfs.endpoint)
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == digest
    async with httpx.AsyncClient() as http:
        fetched = await http.get(location)
    assert fetched.status_code == 200
    assert fetched.content == data


@pytest.mark.parametrize("how", ["fails", "cancelled"])
async def test_s3_append_stopped_mid_multipart_leaves_no_parts(
    seaweedfs: SeaweedFS, how: str
) -> None:
    """An append of several parts streams into a multipart upload; when its body fails
    or the request is cancelled half-way, the multipart upload is aborted and the
    upload keeps exactly what it had."""
    bucket = seaweedfs.new_bucket()
    driver = s3_storage(seaweedfs, bucket, part_bytes=5 * MiB)
    state = await driver.begin("stopped")
    state, size = await driver.append(state, 0, stream(b"kept"))
    seen_pending: list[str] = []

    with anyio.CancelScope() as scope:

        async def body() -> AsyncIterator[bytes]:
            yield blob(16 * MiB, 50)
            # Parts of the multipart upload are in the store by now (or soon).
            with anyio.fail_after(20):
                while not seen_pending:
                    seen_pending.extend(
                        await anyio.to_thread.run_sync(seaweedfs.pending_multipart, bucket)
                    )
                    await anyio.sleep(0.05)
            if how == "fails":
                raise Boom
            scope.cancel()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

        with pytest.raises(Boom) if how == "fails" else contextlib.nullcontext():
            await driver.append(state, size, body())
    assert seen_pending  # the multipart upload was under way
    # Aborted: obstore sends the abort as the upload fails; a part still in flight then
    # may land a moment later, so allow the store a few seconds to settle.
    for _ in range(100):
        left = await anyio.to_thread.run_sync(seaweedfs.pending_multipart, bucket)
        if not left:
            break
        await anyio.sleep(0.1)
    assert left == []
    assert await driver.upload_size(state) == size
    assert await collect(driver.read_upload(state)) == b"kept"
    assert await keys(driver, "uploads/") == ["uploads/stopped", state["segments"][0]["k"]]


async def test_s3_monolithic_upload_is_copied_inside_the_store(seaweedfs: SeaweedFS) -> None:
    """One append of many parts is one segment, made the blob by a server-side copy."""
    bucket = seaweedfs.new_bucket()
    driver = s3_storage(seaweedfs, bucket, part_bytes=5 * MiB)
    data = blob(17 * MiB + 5, 51)
    state = await driver.begin("mono")
    state, size = await driver.append(state, 0, ragged(data))
    assert [s["n"] for s in state["segments"]] == [len(data)]
    key = blob_key(digest_of(data))
    await driver.complete(state, key, size)
    assert await driver.read_bytes(key) == data
    assert await keys(driver, "") == [key]
    assert seaweedfs.pending_multipart(bucket) == []


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    ("change", "hint"),
    [
        ({"DOCKYARD_STORAGE_S3_BUCKET": "no-such-bucket-here"}, "bucket does not exist"),
        ({"DOCKYARD_STORAGE_S3_SECRET_ACCESS_KEY": "wrong"}, "refused the credentials"),
    ],
)
def test_s3_store_refusing_stops_the_command_with_one_line(
    seaweedfs: SeaweedFS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    change: dict[str, str],
    hint: str,
) -> None:
    from click.testing import CliRunner
    from tests.support.seaweedfs import s3_settings

    from dockyard.cli import main

    for name in ("DOCKYARD_ADMIN_PASSWORD", "DOCKYARD_DATABASE_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    env = {
        f"DOCKYARD_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in s3_settings(seaweedfs, seaweedfs.new_bucket()).items()
    }
    args = [command, "--data-dir", str(tmp_path)]
    if command == "serve":  # a port nothing listens on, so only the store can refuse
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args += ["--port", str(probe.getsockname()[1])]
    result = CliRunner().invoke(main, args, env={**env, **change})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert hint in lines[0]
    assert "wrong" not in lines[0]


async def test_s3_store_not_answering_stops_the_start_soon(tmp_path: Path) -> None:
    """Nothing listens at the endpoint: a clear error within seconds, not after minutes
    of retries."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path,
        storage_driver="s3",
        storage_s3_bucket="b",
        storage_s3_endpoint=f"http://127.0.0.1:{port}",
        storage_s3_path_style=True,
        storage_s3_credentials="static",
        storage_s3_access_key_id="k",
        storage_s3_secret_access_key="s",
    )
    started = anyio.current_time()
    with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}"):
        await open_storage(settings)
    assert anyio.current_time() - started < 30


def test_s3_free_space_checks_watch_only_local_disks(tmp_path: Path) -> None:
    """With S3 there is no storage root on this machine: free-space checks watch the
    database's folder alone (the store manages its own space)."""
    from dockyard.app import disk_space
    from dockyard.db.engine import Database

    common = {"data_dir": tmp_path, "storage_root": tmp_path / "blobs-here"}
    s3 = Settings(
        **common,
        storage_driver="s3",
        storage_s3_bucket="b",
    )
    files = Settings(**common)
    for settings, expected in ((files, 2), (s3, 1)):
        db = Database(settings.effective_database_url)
        paths = disk_space(settings, db).paths
        assert len(paths) == expected
        assert (tmp_path / "blobs-here" in paths) is (settings is files)
