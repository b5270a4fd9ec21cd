"""The proxy cache's blob fills (``dockyard.proxy.fill``) on the real storage drivers.

A fake upstream (``Upstream``) streams a deterministic blob, counts its fetches and can
be held mid-body or made to fail. The 256 MiB run is on the filesystem driver; the
failure cases run on the filesystem and on S3 (SeaweedFS), where nothing may be left
behind: no blob, no partial upload, no spool file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.seaweedfs import SeaweedFS, s3_storage

from dockyard.errors import AppError, BlobUnknownError
from dockyard.proxy.fill import BATCH_BYTES, RECENT_BATCHES, BlobFills, Fill, FillFailedError
from dockyard.storage import FilesystemStorage, Storage, blob_key

MiB = 1 << 20
KiB = 1 << 10


def make_blob(size: int, seed: int = 20) -> bytes:
    """``size`` deterministic bytes: a random MiB, each copy stamped with its index."""
    base = random.Random(seed).randbytes(MiB)
    blocks = [i.to_bytes(8, "big") + base[8:] for i in range(size // MiB + 1)]
    return b"".join(blocks)[:size]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Upstream:
    """A fake upstream: ``fetch`` answers (size, body) for one blob, counting calls.

    ``hold_at``: the body stops at that offset until ``release`` is set. ``fail_at``: the
    body raises there. ``body``: the bytes sent (default: the blob). ``announce``: the
    size announced (default: the body's). ``piece``: bytes per yielded piece."""

    def __init__(
        self,
        blob: bytes,
        *,
        body: bytes | None = None,
        announce: int | str | None = "body",
        piece: int = 64 * KiB,
        hold_at: int | None = None,
        fail_at: int | None = None,
        refuse: Exception | None = None,
        delay: float = 0.0,
    ) -> None:
        self.blob = blob
        self.body = blob if body is None else body
        self.announce = len(self.body) if announce == "body" else announce
        self.piece = piece
        self.hold_at = hold_at
        self.fail_at = fail_at
        self.refuse = refuse
        self.delay = delay
        self.calls = 0
        self.sent = 0
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self.closed = False

    async def fetch(self) -> tuple[int | None, AsyncIterator[bytes]]:
        self.calls += 1
        if self.refuse is not None:
            raise self.refuse
        size = self.announce if isinstance(self.announce, int) else None
        return size, self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        view = memoryview(self.body)
        try:
            for start in range(0, len(view), self.piece):
                if self.hold_at is not None and start >= self.hold_at and not self.release.is_set():
                    self.held.set()
                    await self.release.wait()
                if self.fail_at is not None and start >= self.fail_at:
                    raise ConnectionResetError("the upstream closed the connection")
                if self.delay:
                    await asyncio.sleep(self.delay)
                chunk = bytes(view[start : start + self.piece])
                self.sent += len(chunk)
                yield chunk
        finally:
            self.closed = True


async def read_all(fill: Fill, offset: int = 0) -> bytes:
    return b"".join([chunk async for chunk in fill.reader(offset)])


async def residue(storage: Storage, spool: Path, digest: str) -> list[str]:
    """What a failed fill might have left: the blob, partial uploads, spool files."""
    left = [key async for key in storage.list("uploads/")]
    if await storage.stat(blob_key(digest)) is not None:
        left.append(blob_key(digest))
    names = await asyncio.to_thread(lambda: os.listdir(spool) if spool.exists() else [])
    return left + [f"spool/{name}" for name in names]


# --- the drivers -----------------------------------------------------------------------------


def filesystem(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    return FilesystemStorage(tmp_path / "storage")


def s3(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    return s3_storage(server, server.new_bucket(), part_bytes=5 * MiB)


DRIVERS = [pytest.param(filesystem, id="filesystem"), pytest.param(s3, id="s3")]


@pytest.fixture(params=DRIVERS)
async def fills(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobFills]:
    make: Callable[[Path, pytest.FixtureRequest], Storage] = request.param
    engine = BlobFills(make(tmp_path, request), tmp_path / "spool")
    yield engine
    await engine.close()


@pytest.fixture
async def fs_fills(tmp_path: Path) -> AsyncIterator[BlobFills]:
    engine = BlobFills(FilesystemStorage(tmp_path / "storage"), tmp_path / "spool")
    yield engine
    await engine.close()


# --- one fetch, many readers -------------------------------------------------------------------


async def test_sixteen_readers_share_one_fetch_of_a_256_mib_blob(fs_fills: BlobFills) -> None:
    blob = make_blob(256 * MiB)
    digest = sha256(blob)
    # The upstream stops at 128 MiB until every reader has bytes: readers that were
    # served only once the download ended would never get any, and the test would time out.
    upstream = Upstream(blob, hold_at=128 * MiB)
    stored: list[tuple[str, int]] = []

    async def on_stored(d: str, size: int) -> None:
        stored.append((d, size))

    got = [0] * 16
    everyone_started = asyncio.Event()

    async def client(index: int) -> str:
        fill = await fs_fills.open(digest, upstream.fetch, size=len(blob), on_stored=on_stored)
        assert await fill.ready() == len(blob)
        hasher = hashlib.sha256() if index == 0 else None
        async for chunk in fill.reader():
            start = got[index]
            # Every byte is compared with the source (cheaper than 16 hashes on 2 cores);
            # one reader hashes what it got as well.
            # (A bytes slice and memcmp: a memoryview compares byte by byte, 20x slower.)
            assert blob[start : start + len(chunk)] == chunk, f"reader {index} at {start}"
            if hasher is not None:
                hasher.update(chunk)
            got[index] += len(chunk)
            if all(got):
                everyone_started.set()
            if index == 15 and got[index] >= 8 * MiB:
                return "left"  # a client that disconnects mid-way
        return "sha256:" + hasher.hexdigest() if hasher is not None else "compared"

    async def release_when_all_started() -> None:
        await asyncio.wait_for(everyone_started.wait(), 60)
        assert upstream.held.is_set() or upstream.sent < len(blob)
        upstream.release.set()

    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(release_when_all_started(), *(client(i) for i in range(16))), 120
    )
    elapsed = time.monotonic() - started
    # Readers end once the digest is checked; storing may take a moment more.
    assert await (await fs_fills.open(digest, upstream.fetch)).stored() == len(blob)

    assert upstream.calls == 1
    assert results[1] == digest
    assert results[2:16] == ["compared"] * 14
    assert results[16] == "left"
    assert got[:15] == [len(blob)] * 15
    assert stored == [(digest, len(blob))] * 16  # every opener's record, once
    info = await fs_fills.storage.stat(blob_key(digest))
    assert info is not None and info.size == len(blob)
    assert fs_fills.running() == 0
    assert [key async for key in fs_fills.storage.list("uploads/")] == []
    print(f"16 readers of 256 MiB in {elapsed:.1f} s")


async def test_a_second_open_serves_from_storage_without_fetching(fills: BlobFills) -> None:
    blob = make_blob(6 * MiB + 123)
    digest = sha256(blob)
    upstream = Upstream(blob)
    first = await fills.open(digest, upstream.fetch)
    assert first.fetched
    assert await read_all(first) == blob
    assert await first.stored() == len(blob)

    recorded: list[tuple[str, int]] = []

    async def on_stored(d: str, size: int) -> None:
        recorded.append((d, size))

    again = await fills.open(digest, upstream.fetch, on_stored=on_stored)
    assert not again.fetched
    assert upstream.calls == 1
    assert recorded == [(digest, len(blob))]  # recorded before open returned
    assert await again.ready() == len(blob)
    assert await read_all(again) == blob
    assert await read_all(again, 5 * MiB) == blob[5 * MiB :]
    # The first fill's object is over: its readers read from storage now.
    assert await read_all(first, 100) == blob[100:]


async def test_readers_get_bytes_before_the_download_ends(fills: BlobFills) -> None:
    blob = make_blob(4 * MiB)
    digest = sha256(blob)
    upstream = Upstream(blob, hold_at=3 * MiB)
    fill = await fills.open(digest, upstream.fetch)
    reader = fill.reader()
    first = await asyncio.wait_for(anext(reader), 10)
    assert blob.startswith(first)
    await asyncio.wait_for(upstream.held.wait(), 10)
    assert await fills.storage.stat(blob_key(digest)) is None  # not verified yet: not visible
    upstream.release.set()
    rest = b"".join([chunk async for chunk in reader])
    assert first + rest == blob
    assert await fill.stored() == len(blob)


async def test_the_stored_blob_is_the_bytes_sent_when_writes_end_early(
    fills: BlobFills,
) -> None:
    """Every batch lands at its own offset in the spool, also when its write ends while
    the next batch is gathered. The digest is hashed in write order whatever the offsets,
    so only the stored bytes show a batch written over another (the race this guards
    against is timing-dependent: tests/e2e/test_proxy_cache_fanout.py caught it)."""
    blob = make_blob(6 * BATCH_BYTES + 12345)
    digest = sha256(blob)

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(blob), 256 * KiB):
            # Each piece comes back from a worker thread, as the spool's writes do: a
            # write's end and a piece's arrival are often handled in one loop iteration.
            await asyncio.to_thread(lambda: None)
            yield blob[start : start + 256 * KiB]

    async def fetch() -> tuple[int | None, AsyncIterator[bytes]]:
        return len(blob), body()

    fill = await fills.open(digest, fetch)
    assert await read_all(fill) == blob
    assert await fill.stored() == len(blob)
    stored = b"".join([chunk async for chunk in fills.storage.read(blob_key(digest))])
    assert stored == blob


async def test_a_reader_keeping_up_takes_the_bytes_from_memory(
    fs_fills: BlobFills, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader at the head of the fill is given each batch as it was written (no pread
    of the spool); one that starts after the recent batches reads the spool."""
    preads: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, count: int, offset: int) -> bytes:
        preads.append(offset)
        return real_pread(fd, count, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    # Held once the start of the blob has left the batches kept in memory.
    blob = make_blob((RECENT_BATCHES + 3) * BATCH_BYTES)
    upstream = Upstream(blob, hold_at=len(blob) - BATCH_BYTES // 2)
    fill = await fs_fills.open(sha256(blob), upstream.fetch)
    head = asyncio.create_task(read_all(fill))
    await asyncio.wait_for(upstream.held.wait(), 10)
    late = fill.reader()
    first = await asyncio.wait_for(anext(late), 10)
    assert preads == [0]  # the late reader's first read; the head reader read none
    upstream.release.set()
    assert first + b"".join([chunk async for chunk in late]) == blob
    assert await asyncio.wait_for(head, 10) == blob
    assert preads[0] == 0
    assert max(preads) < 4 * MiB  # from there on the late reader caught up with memory


async def test_opens_of_one_blob_for_one_repository_share_one_link(
    fs_fills: BlobFills,
) -> None:
    """The client's GET and the manifest's store behind it open the same blob for the
    same repository: one fill, one link (a write transaction) per repository."""
    from typing import cast

    from dockyard.audit.events import Actor
    from dockyard.proxy.blobs import ProxyBlobs
    from dockyard.registry.service import RegistryService
    from dockyard.remotes.adapter import Adapter, BlobStream

    blob = make_blob(2 * MiB)
    upstream = Upstream(blob, hold_at=MiB)
    linked: list[str] = []

    class FakeRegistry:
        async def link_stored_blob(
            self, repository: str, digest: str, size: int, actor: Actor
        ) -> None:
            linked.append(repository)

    class FakeAdapter:
        @contextlib.asynccontextmanager
        async def open_blob(self, repository: str, digest: str) -> AsyncIterator[BlobStream]:
            size, body = await upstream.fetch()
            yield BlobStream(size if size is not None else -1, 0, body)

    proxy = ProxyBlobs(cast(RegistryService, FakeRegistry()), fs_fills)

    async def open_for(repository: str) -> Fill:
        return await proxy.open(
            cast(Adapter, FakeAdapter()),
            repository,
            "app",
            sha256(blob),
            kib_per_second=0,
            actor=cast(Actor, None),
        )

    # Two at once (each waits on storage before the fill exists), then one more.
    first, second = await asyncio.gather(open_for("cache/app"), open_for("cache/app"))
    other = await open_for("cache/b")
    assert first is second and other is not first
    await asyncio.wait_for(upstream.held.wait(), 10)
    upstream.release.set()
    for fill in (first, second, other):
        assert await asyncio.wait_for(fill.stored(), 10) == len(blob)
    assert sorted(linked) == ["cache/app", "cache/b"]
    assert upstream.calls == 1
    # Once linked, a new open is answered from storage and links again (idempotent).
    assert (await open_for("cache/app")).fetched is False
    assert sorted(linked) == ["cache/app", "cache/app", "cache/b"]


async def test_a_reader_may_start_at_an_offset_and_read_a_range(fs_fills: BlobFills) -> None:
    blob = make_blob(3 * MiB)
    upstream = Upstream(blob, delay=0.001)
    fill = await fs_fills.open(sha256(blob), upstream.fetch)
    part = b"".join([c async for c in fill.reader(MiB + 7, 1000)])
    assert part == blob[MiB + 7 : MiB + 1007]
    assert await read_all(fill, 2 * MiB) == blob[2 * MiB :]
    with pytest.raises(ValueError, match="invalid range"):
        fill.reader(-1)


async def test_a_sha512_blob_is_verified_with_sha512(fs_fills: BlobFills) -> None:
    blob = make_blob(2 * MiB + 5)
    digest = "sha512:" + hashlib.sha512(blob).hexdigest()
    fill = await fs_fills.open(digest, Upstream(blob).fetch)
    assert await read_all(fill) == blob
    assert await fill.stored() == len(blob)
    wrong = "sha512:" + hashlib.sha512(blob + b"x").hexdigest()
    bad = await fs_fills.open(wrong, Upstream(blob).fetch)
    with pytest.raises(FillFailedError, match="digest"):
        await read_all(bad)


# --- failures leave nothing and every reader raises ------------------------------------------


def _failing(blob: bytes, case: str) -> tuple[Upstream, int | None]:
    """An upstream that fails in ``case`` way, and the size the caller expects."""
    if case == "upstream-error":
        return Upstream(blob, fail_at=5 * MiB), None
    if case == "truncated":
        return Upstream(blob, body=blob[: 5 * MiB], announce=len(blob)), None
    if case == "truncated-unannounced":
        return Upstream(blob, body=blob[: 5 * MiB], announce=None), len(blob)
    if case == "wrong-digest":
        return Upstream(blob, body=blob[:-1] + b"!"), None
    if case == "wrong-digest-no-size":
        return Upstream(blob, body=blob + b"tail", announce=None), None
    if case == "too-long":
        return Upstream(blob, body=blob + b"more", announce=None), len(blob)
    if case == "size-mismatch":
        return Upstream(blob), len(blob) + 1
    raise AssertionError(case)


FAILURES = [
    "upstream-error",
    "truncated",
    "truncated-unannounced",
    "wrong-digest",
    "wrong-digest-no-size",
    "too-long",
    "size-mismatch",
]


@pytest.mark.parametrize("case", FAILURES)
async def test_a_failed_fill_leaves_nothing_and_every_reader_raises(
    fills: BlobFills, tmp_path: Path, case: str
) -> None:
    blob = make_blob(12 * MiB)
    digest = sha256(blob)
    upstream, expected = _failing(blob, case)
    opened = [await fills.open(digest, upstream.fetch, size=expected) for _ in range(4)]
    assert all(fill._blob is opened[0]._blob for fill in opened)  # one shared fill

    async def reader() -> int:
        received = 0
        async for chunk in opened[0].reader():
            received += len(chunk)
        return received

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(reader() for _ in range(4)), return_exceptions=True), 30
    )
    assert all(isinstance(o, FillFailedError) for o in outcomes), outcomes
    assert upstream.calls == 1
    with pytest.raises(FillFailedError):
        await opened[0].stored()
    assert opened[0].failed
    assert fills.running() == 0
    assert await residue(fills.storage, tmp_path / "spool", digest) == []
    # The upstream's body was closed (or never read), and a later pull fetches again.
    assert upstream.closed or upstream.sent == 0
    good = Upstream(blob)
    retry = await fills.open(digest, good.fetch)
    assert retry is not opened[0]
    assert await read_all(retry) == blob
    assert good.calls == 1


async def test_a_refused_fetch_is_raised_by_ready_as_it_is(
    fills: BlobFills, tmp_path: Path
) -> None:
    blob = make_blob(MiB)
    digest = sha256(blob)
    refused = BlobUnknownError("blob unknown to the upstream")
    upstream = Upstream(blob, refuse=refused)
    fill = await fills.open(digest, upstream.fetch)
    with pytest.raises(BlobUnknownError) as caught:
        await fill.ready()
    assert caught.value is refused
    with pytest.raises(FillFailedError, match="blob unknown to the upstream"):
        await read_all(fill)
    assert await residue(fills.storage, tmp_path / "spool", digest) == []


async def test_a_reader_that_leaves_does_not_stop_the_fill(fills: BlobFills) -> None:
    blob = make_blob(10 * MiB)
    digest = sha256(blob)
    upstream = Upstream(blob, delay=0.0005)
    fill = await fills.open(digest, upstream.fetch)

    async def leave_after(count: int) -> None:
        got = 0
        async for chunk in fill.reader():
            got += len(chunk)
            if got >= count:
                raise asyncio.CancelledError  # as a disconnected client's task is

    leaving = asyncio.ensure_future(leave_after(MiB))
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await read_all(fill) == blob
    assert await fill.stored() == len(blob)
    assert upstream.calls == 1


async def test_close_stops_running_fills_and_their_readers_raise(
    fills: BlobFills, tmp_path: Path
) -> None:
    blob = make_blob(6 * MiB)
    digest = sha256(blob)
    upstream = Upstream(blob, hold_at=2 * MiB)
    fill = await fills.open(digest, upstream.fetch)
    reading = asyncio.ensure_future(read_all(fill))
    await asyncio.wait_for(upstream.held.wait(), 10)
    await fills.close()
    with pytest.raises(FillFailedError, match="stopped"):
        await reading
    assert await residue(fills.storage, tmp_path / "spool", digest) == []
    with pytest.raises(RuntimeError):
        await fills.open(digest, upstream.fetch)


async def test_storage_failing_fails_the_fill(fs_fills: BlobFills, tmp_path: Path) -> None:
    blob = make_blob(8 * MiB)
    digest = sha256(blob)

    class Broken(FilesystemStorage):
        async def append(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("disk on fire")

        async def adopt_file(self, fd: int, key: str, size: int) -> bool:
            raise OSError("disk on fire")

    engine = BlobFills(Broken(tmp_path / "broken"), tmp_path / "spool2")
    try:
        fill = await engine.open(digest, Upstream(blob, delay=0.0005).fetch)
        # The reader got the verified bytes (the spool is adopted once verified); the
        # blob is not stored, and nothing of it is left.
        assert await read_all(fill) == blob
        with pytest.raises(FillFailedError, match="disk on fire"):
            await fill.stored()
        assert await residue(engine.storage, tmp_path / "spool2", digest) == []
    finally:
        await engine.close()


async def test_open_refuses_bad_arguments(fs_fills: BlobFills) -> None:
    upstream = Upstream(b"")
    with pytest.raises(AppError):
        await fs_fills.open("sha256:nothex", upstream.fetch)
    with pytest.raises(ValueError, match="limit"):
        await fs_fills.open(sha256(b"x"), upstream.fetch, limit_bps=0)
    with pytest.raises(ValueError, match="size"):
        await fs_fills.open(sha256(b"x"), upstream.fetch, size=-1)
    assert upstream.calls == 0


# --- bandwidth limit -------------------------------------------------------------------------


async def test_the_bandwidth_limit_holds_within_20_percent(fs_fills: BlobFills) -> None:
    blob = make_blob(400 * KiB)
    limit = 200 * KiB  # bytes per second: 2 s for the blob
    upstream = Upstream(blob, piece=16 * KiB)
    started = time.monotonic()
    fill = await fs_fills.open(sha256(blob), upstream.fetch, limit_bps=limit)
    assert await read_all(fill) == blob
    elapsed = time.monotonic() - started
    rate = len(blob) / elapsed
    assert 0.8 * limit <= rate <= 1.2 * limit, f"{rate / KiB:.0f} KiB/s at a {limit / KiB} limit"


async def test_an_empty_blob_is_filled(fills: BlobFills) -> None:
    digest = sha256(b"")
    fill = await fills.open(digest, Upstream(b"").fetch, size=0)
    assert await fill.ready() == 0
    assert await read_all(fill) == b""
    assert await fill.stored() == 0
    info = await fills.storage.stat(blob_key(digest))
    assert info is not None and info.size == 0


async def test_a_blob_stored_while_open_looked_is_not_fetched(tmp_path: Path) -> None:
    """``open`` found no blob, but a fill (here: another node) stored it meanwhile: the
    new fill looks once more before it fetches, and serves it from storage."""
    blob = make_blob(MiB)
    digest = sha256(blob)

    class Late(FilesystemStorage):
        misses = 1

        async def stat(self, key: str) -> Any:
            if self.misses:
                self.misses -= 1
                return None
            return await super().stat(key)

    storage = Late(tmp_path / "storage")
    await storage.write_bytes(blob_key(digest), blob)
    engine = BlobFills(storage, tmp_path / "spool")
    try:
        upstream = Upstream(blob)
        fill = await engine.open(digest, upstream.fetch)
        assert await fill.stored() == len(blob)
        assert await read_all(fill) == blob
        assert not fill.fetched
        assert upstream.calls == 0 and engine.fetches == 0
    finally:
        await engine.close()


async def test_a_body_never_read_is_closed(fs_fills: BlobFills) -> None:
    """A fill that fails before it reads the body (here: the upstream announces another
    size than the manifest's) still closes it, so the upstream's response is released."""
    blob = make_blob(MiB)

    class Body:
        closed = False

        def __aiter__(self) -> Body:
            return self

        async def __anext__(self) -> bytes:
            raise AssertionError("not to be read")

        async def aclose(self) -> None:
            Body.closed = True

    async def fetch() -> tuple[int | None, AsyncIterator[bytes]]:
        return len(blob) + 1, Body()

    fill = await fs_fills.open(sha256(blob), fetch, size=len(blob))
    with pytest.raises(FillFailedError, match="announced"):
        await read_all(fill)
    with pytest.raises(FillFailedError):
        await fill.stored()
    assert Body.closed


async def test_a_failed_on_stored_is_raised_to_its_caller_only(fs_fills: BlobFills) -> None:
    """``on_stored`` refusing (a quota refusing the link into one repository) makes that
    caller's ``stored()`` raise, while another caller of the same fill gets the size; and
    a blob stored already raises the refusal the same way."""
    blob = make_blob(MiB)
    digest = sha256(blob)
    upstream = Upstream(blob, hold_at=MiB // 2)
    linked: list[str] = []

    async def refuse(d: str, size: int) -> None:
        raise AppError("quota exceeded")

    async def accept(d: str, size: int) -> None:
        linked.append(d)

    refused = await fs_fills.open(digest, upstream.fetch, on_stored=refuse)
    accepted = await fs_fills.open(digest, upstream.fetch, on_stored=accept)
    upstream.release.set()
    with pytest.raises(AppError, match="quota exceeded"):
        await refused.stored()
    assert await accepted.stored() == len(blob)
    assert linked == [digest] and upstream.calls == 1

    again = await fs_fills.open(digest, upstream.fetch, on_stored=refuse)
    assert not again.fetched
    with pytest.raises(AppError, match="quota exceeded"):
        await again.stored()
    assert upstream.calls == 1


async def test_proxy_blobs_release_a_response_never_read(fs_fills: BlobFills) -> None:
    """``ProxyBlobs``' fetch holds the upstream's response; a fill that fails before it
    reads the body (the upstream announces another size than the manifest's) releases
    it at once, not when the garbage collector finds the body."""
    from contextlib import asynccontextmanager
    from typing import cast

    from dockyard.audit.events import Actor
    from dockyard.proxy.blobs import ProxyBlobs
    from dockyard.registry.service import RegistryService
    from dockyard.remotes.adapter import Adapter, BlobStream

    blob = make_blob(MiB)
    released: list[str] = []

    class FakeAdapter:
        @asynccontextmanager
        async def open_blob(self, repository: str, digest: str) -> AsyncIterator[BlobStream]:
            try:
                yield BlobStream(len(blob) + 1, 0, Upstream(blob)._body())
            finally:
                released.append(digest)

    proxy = ProxyBlobs(cast(RegistryService, None), fs_fills)
    fill = await proxy.open(
        cast(Adapter, FakeAdapter()),
        "cache/app",
        "app",
        sha256(blob),
        kib_per_second=0,
        actor=cast(Actor, None),
        size=len(blob),
    )
    with pytest.raises(FillFailedError, match="announced"):
        await fill.stored()
    assert released == [sha256(blob)]


@pytest.mark.parametrize("adopts", [True, False], ids=["adopted", "uploaded"])
async def test_the_filesystem_adopts_the_spool_or_the_fill_uploads_it(
    tmp_path: Path, adopts: bool
) -> None:
    """On the filesystem driver the verified spool becomes the stored blob (linked, its
    bytes written once: the upload path is never taken); a driver that cannot adopt it
    (another filesystem) makes the fill upload it from the spool instead."""
    blob = make_blob(3 * MiB)
    digest = sha256(blob)
    uploads: list[int] = []

    class Watched(FilesystemStorage):
        async def begin(self, upload_id: str) -> dict[str, Any]:
            uploads.append(1)
            return await super().begin(upload_id)

        async def adopt_file(self, fd: int, key: str, size: int) -> bool:
            return await super().adopt_file(fd, key, size) if adopts else False

    engine = BlobFills(Watched(tmp_path / "storage"), tmp_path / "spool")
    try:
        fill = await engine.open(digest, Upstream(blob).fetch, size=len(blob))
        assert await read_all(fill) == blob
        assert await fill.stored() == len(blob)
        assert await engine.storage.read_bytes(blob_key(digest)) == blob
        assert uploads == ([] if adopts else [1])
        assert await residue(engine.storage, tmp_path / "spool", digest) == [blob_key(digest)]
    finally:
        await engine.close()
