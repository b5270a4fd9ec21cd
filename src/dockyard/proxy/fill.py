"""Filling the cache with a blob from the upstream: one fetch, many readers, verified.

A proxy cache project serves a blob it does not hold by fetching it from the upstream
registry. Many clients often ask for the same new layer at once (a fleet pulling a
fresh image); this module makes that **one** upstream GET per blob, streams the bytes
to every client as they arrive, and stores the blob only once its digest is checked.

Use::

    fills = BlobFills(storage, spool_dir)          # one per process, closed on shutdown
    fill = await fills.open(
        digest,                                    # "sha256:…" or "sha512:…"
        fetch,                                     # async () -> (size | None, AsyncIterator[bytes])
        size=descriptor_size,                      # expected size, or None
        limit_bps=project_limit,                   # bytes/second from the upstream, or None
        on_stored=record_blob,                     # async (digest, size), once it is stored
    )
    size = await fill.ready()                      # the upstream answered: its size (or None)
    async for chunk in fill.reader(offset):        # the bytes, as they arrive
        ...
    await fill.stored()                            # optional: wait until it is in storage
    await fills.close()

``open`` joins the fill already running for that digest, or serves the blob from
storage when it is there already (``fill.fetched`` is ``False`` then; ``on_stored`` is
run before ``open`` returns, so the caller's record of it is made in every case), or
starts a new fill: ``fetch`` is called once, in the fill's own task. The module knows
neither HTTP nor the database: ``fetch`` and ``on_stored`` are the caller's.

Each ``open`` returns its own :class:`Fill` (a view of the one shared fetch): its
``stored()`` raises what *its* ``on_stored`` raised (a quota refusing the link of the
blob into the caller's repository), not another caller's.

``fetch``'s body is closed (its ``aclose``, when it has one) when the fill ends, also
when it failed before reading it (a size that differs from ``size``, storage refusing
the upload, shutdown). An async generator that was never iterated runs none of its code
on ``aclose``, so a body that holds the upstream's response must release it in its
``aclose`` (an object with ``__anext__`` and ``aclose``), not only in a ``finally`` of a
generator.

How a fill works
----------------
The fill's task reads the upstream body (paced to ``limit_bps``) and appends it to a
*spool*: an unnamed temporary file (``O_TMPFILE``) in ``spool_dir``, hashing it on the
way, in worker threads, one batch of about 2 MiB behind the read. Readers tail the
spool: each takes what has been written and waits for more (a reader at the head is
handed the last batches, kept in memory, as written; one further behind ``pread``\\ s
the spool). A storage driver
that can adopt a local file (``AdoptsFiles``: the filesystem driver) gets the spool
itself once the digest and the size are checked (linked into place: the bytes are
written once); on other drivers the storage upload is one more tail of the spool:
``storage.begin`` then one ``storage.append`` fed from the spool, then
``storage.complete`` once the digest and the size are checked. So:

- **one upstream fetch** per blob per process; a second ``open`` while it runs joins.
  Across nodes there is no lease: each node fetches a blob at most once at a time, and
  two nodes filling the same blob both store the same bytes under the same key (a
  storage ``complete`` of a key that exists discards the second copy).
- **streaming**: readers get bytes as soon as they are in the spool; a slow reader
  or a slow storage does not slow the fill or the other readers (the spool is on
  local disk, the page cache serves the readers that keep up).
- **a reader that stops** (a client that disconnects) only closes its iterator; the
  fill goes on for the others and for the cache.
- **verified**: the digest (sha256 or sha512) and the size are checked when the body
  ends; only then is the storage upload completed (the blob becomes visible) and do
  readers end cleanly. A fill that fails (the fetch raises, the body is cut short or
  too long, the digest differs, storage fails) aborts the storage upload, and every
  reader still streaming raises :class:`FillFailedError`, so the HTTP layer breaks
  the connection instead of ending the body as if it were whole. The next ``open``
  fetches again.
- **bounded memory**: two batches (about 2 MiB each: one being read, one being
  written) and the last ``RECENT_BATCHES`` written in the fill, one read (1 MiB) per
  reader further behind and the storage driver's own buffers (a few MiB); never the blob.
- **no leftovers**: the spool has no name, so a crash leaves nothing in
  ``spool_dir``; a crashed storage upload is a partial upload no session names, which
  garbage collection removes (docs/gc.md).

Why a spool rather than readers tailing the storage upload: the S3 driver's append is
one multipart upload that is invisible until it completes, so readers could not tail
it; and a spool decouples the readers from the store's pace. The cost is writing the
bytes twice on S3 (spool, then the upload); the filesystem driver adopts the spool
(``bench/proxy_cache_bench.py`` measures both ways, docs/proxy-fill.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread

from dockyard.errors import ServiceUnavailableError
from dockyard.oci.digest import Digest, Hasher, new_hasher
from dockyard.storage.base import AdoptsFiles, Storage
from dockyard.storage.layout import blob_key

__all__ = ["BlobFills", "Fetch", "Fill", "FillFailedError", "OnStored"]

log = logging.getLogger("dockyard.proxy")

Fetch = Callable[[], Awaitable[tuple[int | None, AsyncIterator[bytes]]]]
"""Ask the upstream for the blob: its size when the upstream says it, and its body."""
OnStored = Callable[[str, int], Awaitable[None]]
"""Called with (digest, size) once the blob is durably in storage."""

BATCH_BYTES = 2 << 20  # upstream pieces gathered before one spool write (and hash)
# (1 MiB cost a cold pull ~0.9 CPU-s per GiB more: a thread hop, a reader's wake-up and
# a send to the client per batch; docs/benchmarks.md)
READ_BYTES = 1 << 20  # the most one reader reads from the spool at a time
RECENT_BATCHES = 2  # batches kept in memory after their write, for readers keeping up
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class FillFailedError(ServiceUnavailableError):
    """The blob could not be fetched from the upstream, or what came was not the blob.

    Nothing of it was stored; a later pull fetches it again (hence ``503``)."""


class BlobFills:
    """The fills of one process: at most one running per digest."""

    def __init__(self, storage: Storage, spool_dir: str | os.PathLike[str]) -> None:
        self.storage = storage
        self.spool_dir = Path(spool_dir)
        self._fills: dict[str, _Blob] = {}
        self._closed = False
        self.fetches = 0
        """Upstream fetches started (for tests and metrics)."""

    def running(self) -> int:
        """How many fills are running now."""
        return len(self._fills)

    async def open(
        self,
        digest: str,
        fetch: Fetch,
        *,
        size: int | None = None,
        limit_bps: float | None = None,
        on_stored: OnStored | None = None,
    ) -> Fill:
        """The fill of ``digest``: the running one, one served from storage, or a new one.

        ``size`` is the size the caller expects (a manifest's descriptor says it); an
        upstream that answers another fails the fill. ``limit_bps`` paces the upstream
        read (bytes per second); a joined fill keeps the pace it started with.
        ``on_stored`` runs once the blob is in storage (also for a fill joined, and
        before ``open`` returns when the blob was stored already); what it raises, the
        returned fill's ``stored()`` raises (to this caller only: another ``open`` of the
        same blob has its own callback and outcome).
        """
        if self._closed:
            raise RuntimeError("the blob fills are closed")
        parsed = Digest.parse(digest)
        if size is not None and size < 0:
            raise ValueError(f"negative size: {size}")
        if limit_bps is not None and limit_bps <= 0:
            raise ValueError(f"the bandwidth limit must be positive, not {limit_bps}")
        digest = str(parsed)
        loop = asyncio.get_running_loop()
        linked: asyncio.Future[None] = loop.create_future()
        fill = self._fills.get(digest)
        if fill is None:
            info = await self.storage.stat(blob_key(digest))
            if info is not None:
                fill = _Blob(self, parsed, size=info.size, stored=True)
                await _run_callbacks(digest, info.size, [(on_stored, linked)])
                return Fill(fill, linked)
            fill = self._fills.get(digest)  # another open may have started one meanwhile
            if fill is None:
                fill = _Blob(self, parsed, size=size)
                self._fills[digest] = fill
                fill._start(fetch, limit_bps)
        fill._callbacks.append((on_stored, linked))
        return Fill(fill, linked)

    async def close(self) -> None:
        """Stop every running fill (their readers raise); wait until they have cleaned up."""
        self._closed = True
        tasks = [fill._task for fill in self._fills.values() if fill._task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, fill: _Blob) -> None:
        if self._fills.get(str(fill.digest)) is fill:
            del self._fills[str(fill.digest)]


class Fill:
    """One caller's view of a blob's fill: the shared fetch (or the stored blob), and the
    outcome of this caller's own ``on_stored``."""

    def __init__(self, blob: _Blob, linked: asyncio.Future[None]) -> None:
        self._blob = blob
        self._linked = linked
        self.digest = blob.digest

    @property
    def fetched(self) -> bool:
        """Whether the blob is fetched from the upstream (``False``: served from storage)."""
        return self._blob.fetched

    @property
    def failed(self) -> bool:
        return self._blob.failed

    def when_settled(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once this caller's outcome is known: its ``on_stored`` ran, or
        the fill failed (then ``on_stored`` never runs)."""

        def linked(_: asyncio.Future[None]) -> None:
            callback()

        def stored(done: asyncio.Future[int]) -> None:
            if done.cancelled() or done.exception() is not None:
                callback()

        self._linked.add_done_callback(linked)
        self._blob._stored.add_done_callback(stored)

    async def ready(self) -> int | None:
        """Wait until the upstream has answered; return the blob's size (``None`` when the
        upstream did not say it and the caller did not give it). Raises what the fetch
        raised (the caller maps the upstream's refusal), or :class:`FillFailedError`."""
        return await self._blob.ready()

    async def stored(self) -> int:
        """Wait until the blob is in storage and this caller's ``on_stored`` has run;
        return its size. Raises :class:`FillFailedError` when the fill failed, and what
        ``on_stored`` raised when it failed (e.g. the quota refusing the link)."""
        size = await self._blob.stored()
        await asyncio.shield(self._linked)
        return size

    def reader(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset`` (``length`` of them, or to the end), as they
        arrive. Raises :class:`FillFailedError` when the fill fails, also mid-stream."""
        return self._blob.reader(offset, length)


class _Blob:
    """One blob being fetched (or already stored): its size, its readers, the
    ``on_stored`` callbacks of every ``open`` (each with the future of its outcome)."""

    def __init__(self, owner: BlobFills, digest: Digest, *, size: int | None, stored: bool = False):
        self._owner = owner
        self.digest = digest
        self.key = blob_key(str(digest))
        self.fetched = not stored
        """Whether this fill fetches from the upstream (``False``: served from storage)."""
        self._size = size
        self._task: asyncio.Task[None] | None = None
        self._callbacks: list[tuple[OnStored | None, asyncio.Future[None]]] = []
        loop = asyncio.get_running_loop()
        self._answered: asyncio.Future[int | None] = loop.create_future()
        self._stored: asyncio.Future[int] = loop.create_future()
        self._in_storage = stored  # the blob is in storage: readers without a spool read it
        if stored:
            assert size is not None
            self._answered.set_result(size)
            self._stored.set_result(size)
        self._received = 0  # bytes written to the spool
        # The last batches written, (offset, bytes): a reader at the head of the fill
        # takes its bytes from here, without a pread (and its thread hop and copy).
        self._recent: deque[tuple[int, bytes]] = deque(maxlen=RECENT_BATCHES)
        self._verified = False  # the body ended and was checked: readers may end
        self._error: BaseException | None = None
        self._progress = asyncio.Event()
        self._fd: int | None = None
        self._users = 0  # the fill's task and the readers of its spool

    # --- the caller's side --------------------------------------------------------------

    async def ready(self) -> int | None:
        """Wait until the upstream has answered; return the blob's size (``None`` when the
        upstream did not say it and the caller did not give it). Raises what the fetch
        raised (the caller maps the upstream's refusal), or :class:`FillFailedError`."""
        return await asyncio.shield(self._answered)

    async def stored(self) -> int:
        """Wait until the blob is in storage (and every ``on_stored`` has run); return its
        size. Raises :class:`FillFailedError` when the fill failed."""
        return await asyncio.shield(self._stored)

    @property
    def failed(self) -> bool:
        return self._error is not None

    def reader(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset`` (``length`` of them, or to the end), as they
        arrive. Raises :class:`FillFailedError` when the fill fails, also mid-stream."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        return self._read(offset, length)

    async def _read(self, offset: int, length: int | None) -> AsyncGenerator[bytes]:
        # Before the task has opened the spool: wait for it (or for the outcome).
        while self._fd is None and not self._in_storage and self._error is None:
            if self._task is None or self._task.done():
                break
            await self._progress.wait()
        if self._fd is not None:
            async with contextlib.aclosing(self._tail(offset, length)) as tail:
                async for chunk in tail:
                    yield chunk
        elif self._in_storage:  # the spool is closed once the blob is stored
            async for chunk in self._owner.storage.read(self.key, offset, length):
                yield chunk
        else:
            raise _failure(self._error or FillFailedError(f"blob {self.digest} was not stored"))

    async def _tail(self, offset: int, length: int | None) -> AsyncGenerator[bytes]:
        """The spool from ``offset``, waiting for bytes; ends once the body is verified."""
        assert self._fd is not None
        fd = self._fd
        self._users += 1
        try:
            end = None if length is None else offset + length
            position = offset
            while end is None or position < end:
                if self._error is not None and not self._verified:
                    raise _failure(self._error)
                available = self._received
                if position < available:
                    count = available - position if end is None else min(available, end) - position
                    data = self._in_memory(position, count)
                    if data is None:
                        # In a worker thread even when the pages are hot: the copy (and
                        # the new buffer's page faults) overlaps the event loop's work.
                        data = await to_thread.run_sync(
                            os.pread, fd, min(count, READ_BYTES), position
                        )
                    if not data:  # cannot happen: the spool only grows
                        raise FillFailedError(f"the spool of blob {self.digest} shrank")
                    position += len(data)
                    yield data
                    continue
                if self._verified:
                    return
                await self._progress.wait()
        finally:
            self._release()

    def _in_memory(self, position: int, count: int) -> bytes | None:
        """Up to ``count`` bytes at ``position`` from the batches still in memory (the
        whole batch itself when a reader asks from its start, as one that keeps up
        does: no copy), or None."""
        for start, data in self._recent:
            if start <= position < start + len(data):
                if position == start and len(data) <= count:
                    return data
                return bytes(memoryview(data)[position - start : position - start + count])
        return None

    # --- the fill's task ----------------------------------------------------------------

    def _start(self, fetch: Fetch, limit_bps: float | None) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(fetch, limit_bps), name=f"dockyard-fill-{self.digest.hex[:12]}"
        )

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def _release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            self._recent.clear()
            _close_soon(fd)

    async def _run(self, fetch: Fetch, limit_bps: float | None) -> None:
        storage = self._owner.storage
        upload: dict[str, Any] | None = None
        writer: asyncio.Task[tuple[dict[str, Any], int]] | None = None
        body: AsyncIterator[bytes] | None = None
        holding = False
        try:
            if await self._stored_meanwhile():
                return
            self._fd = await to_thread.run_sync(_open_spool, self._owner.spool_dir)
            self._users += 1
            holding = True
            self._notify()
            self._owner.fetches += 1
            try:
                announced, body = await fetch()
            except Exception as exc:
                self._fail(exc, answered=exc)  # ready() raises the upstream's refusal itself
                raise
            size = self._check_announced(announced)
            self._size = size
            self._answered.set_result(size)
            adopts = isinstance(storage, AdoptsFiles)
            if not adopts:  # the upload tails the spool while it grows
                upload = await storage.begin(f"proxy-{secrets.token_hex(16)}")
                writer = asyncio.get_running_loop().create_task(self._store(upload))
            hasher = new_hasher(self.digest.algorithm)
            paced = _paced(body, limit_bps) if limit_bps else body
            await self._download(paced, hasher, size, writer)
            self._verify(hasher, size)
            self._verified = True
            self._notify()
            written = self._received
            if isinstance(storage, AdoptsFiles) and await storage.adopt_file(
                self._fd, self.key, written
            ):
                pass  # the spool is the stored blob: its bytes were written once
            else:
                if writer is None:  # the driver could not adopt it here: upload it now
                    upload = await storage.begin(f"proxy-{secrets.token_hex(16)}")
                    writer = asyncio.get_running_loop().create_task(self._store(upload))
                upload, written = await writer
                if written != self._received:
                    raise FillFailedError(
                        f"storage took {written} of the {self._received} bytes of blob "
                        f"{self.digest}"
                    )
                await storage.complete(upload, self.key, expected_size=written)
                upload = None
            self._in_storage = True
            self._owner._forget(self)
            # Released before the callbacks: new readers read from storage from now on.
            holding = False
            self._release()
            await _run_callbacks(str(self.digest), written, self._callbacks)
            self._stored.set_result(written)
            self._notify()
        except BaseException as exc:
            if self._error is None:
                self._fail(exc)
            with anyio.CancelScope(shield=True):
                await _undo(writer, upload, storage)
            # Only now: whoever waits for the outcome finds nothing of the fill left.
            if not self._stored.done():
                self._stored.set_exception(_failure(self._error or exc))
                self._stored.exception()  # retrieved: stored() may never be awaited
            self._notify()
            if isinstance(exc, Exception):
                log.warning("proxy cache: fetching blob %s failed: %s", self.digest, exc)
            else:
                raise
        finally:
            closer = getattr(body, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await closer()
            if holding:
                self._release()

    async def _stored_meanwhile(self) -> bool:
        """Whether the blob is in storage already: an ``open`` that found none may have
        raced with a fill that stored it since. Then nothing is fetched."""
        info = await self._owner.storage.stat(self.key)
        if info is None:
            return False
        self.fetched = False
        self._in_storage = True
        self._owner._forget(self)
        self._answered.set_result(info.size)
        await _run_callbacks(str(self.digest), info.size, self._callbacks)
        self._stored.set_result(info.size)
        self._notify()
        return True

    def _check_announced(self, announced: int | None) -> int | None:
        if announced is not None and announced < 0:
            raise FillFailedError(f"the upstream announced a negative size for {self.digest}")
        if self._size is not None and announced is not None and announced != self._size:
            raise FillFailedError(
                f"the upstream announced {announced} bytes for blob {self.digest}, "
                f"the manifest says {self._size}"
            )
        return announced if announced is not None else self._size

    async def _download(
        self,
        body: AsyncIterator[bytes],
        hasher: Hasher,
        size: int | None,
        writer: asyncio.Task[Any] | None,
    ) -> None:
        """Spool the body: each batch written and hashed in a worker thread while the next
        one is read; readers are told as soon as each write ends (not when the next batch
        is gathered: a slow upstream would hold them a batch longer). Fails early when
        storage does."""
        assert self._fd is not None
        fd = self._fd
        pending: asyncio.Future[bytes] | None = None
        handed: asyncio.Future[bytes] | None = None
        offset = self._received  # where the next batch goes in the spool
        batch: list[bytes] = []
        gathered = 0
        read = 0

        def hand_over(done: asyncio.Future[bytes]) -> None:
            # A written batch goes to the readers once, in write order: from the write's
            # done callback (as soon as it ends) or from settle(), whichever comes first
            # (a write that ended before settle() awaits it has its callback still queued).
            nonlocal handed
            if done is handed or done.cancelled() or done.exception() is not None:
                return  # handed over already, or failed: settle() raises that
            handed = done
            data = done.result()
            self._recent.append((self._received, data))
            self._received += len(data)
            self._notify()

        async def settle() -> None:
            nonlocal pending
            if pending is not None:
                writing, pending = pending, None
                await writing
                hand_over(writing)
            if writer is not None and writer.done():
                writer.result()  # storage failed: raise that, do not fetch the rest

        def submit() -> None:
            nonlocal pending, batch, gathered, offset
            pending = asyncio.ensure_future(
                to_thread.run_sync(_spool_write, fd, batch, offset, hasher)
            )
            pending.add_done_callback(hand_over)
            offset += gathered
            batch, gathered = [], 0

        try:
            async for piece in body:
                if not piece:
                    continue
                read += len(piece)
                if size is not None and read > size:
                    raise FillFailedError(
                        f"the upstream sent more than the {size} bytes of blob {self.digest}"
                    )
                batch.append(piece)
                gathered += len(piece)
                if gathered >= BATCH_BYTES:
                    await settle()
                    submit()
            await settle()
            if batch:
                submit()
                await settle()
        except BaseException:
            if pending is not None:  # the thread writes on: wait, the fd is closed after
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await pending
            raise

    def _verify(self, hasher: Hasher, size: int | None) -> None:
        if size is not None and self._received != size:
            raise FillFailedError(
                f"the upstream's body of blob {self.digest} ended after {self._received} "
                f"of {size} bytes"
            )
        got = Digest.from_hasher(self.digest.algorithm, hasher)
        if got != self.digest:
            raise FillFailedError(
                f"the upstream sent bytes whose digest is {got}, not the blob {self.digest}"
            )

    async def _store(self, upload: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Append the spool to the storage upload as it grows (ends once verified)."""
        assert self._fd is not None
        tail = self._tail(0, None)
        async with contextlib.aclosing(tail):
            return await self._owner.storage.append(upload, 0, tail)

    def _fail(self, exc: BaseException, answered: BaseException | None = None) -> None:
        self._error = exc
        self._owner._forget(self)
        failure = answered if answered is not None else _failure(exc)
        if not self._answered.done():
            self._answered.set_exception(failure)
            self._answered.exception()  # retrieved: ready() may never be awaited
        self._notify()


def _failure(exc: BaseException) -> FillFailedError:
    if isinstance(exc, FillFailedError):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        failure = FillFailedError("the fetch of the blob was stopped (the server is stopping)")
    else:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        failure = FillFailedError(f"fetching the blob from the upstream failed: {message}")
    failure.__cause__ = exc
    return failure


async def _undo(
    writer: asyncio.Task[Any] | None, upload: dict[str, Any] | None, storage: Storage
) -> None:
    """Stop the storage append and discard the upload (nothing of a failed fill stays)."""
    if writer is not None:
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
    if upload is not None:
        try:
            await storage.abort(upload)
        except Exception as exc:  # garbage collection removes it later (docs/gc.md)
            log.warning("proxy cache: discarding a failed fill's upload failed: %s", exc)


async def _run_callbacks(
    digest: str, size: int, callbacks: list[tuple[OnStored | None, asyncio.Future[None]]]
) -> None:
    """Run each ``on_stored``; its outcome goes to its own future (``Fill.stored``)."""
    for callback, outcome in callbacks:
        try:
            if callback is not None:
                await callback(digest, size)
        except Exception as exc:
            log.warning("proxy cache: recording stored blob %s failed: %s", digest, exc)
            if not outcome.done():
                outcome.set_exception(exc)
                outcome.exception()  # retrieved: stored() may never be awaited
        else:
            if not outcome.done():
                outcome.set_result(None)


async def _paced(body: AsyncIterator[bytes], limit_bps: float) -> AsyncIterator[bytes]:
    """``body`` no faster than ``limit_bps`` bytes per second, on average from its start:
    after each piece, wait until the time that many bytes take at the limit. The wait
    holds the next read, so the upstream connection's flow control slows the sender."""
    start = time.monotonic()
    total = 0
    async for piece in body:
        total += len(piece)
        delay = start + total / limit_bps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield piece


def _close_soon(fd: int) -> None:
    """Close the spool in a worker thread: the last close of an unnamed file frees its
    pages (hundreds of MiB, some still dirty), which takes the kernel milliseconds that
    the event loop should not wait for (py-spy on a cold pull: 7 % of the loop's time)."""
    try:
        asyncio.get_running_loop().run_in_executor(None, os.close, fd)
    except RuntimeError:  # no running loop (interpreter shutdown): close here
        os.close(fd)


def _open_spool(directory: Path) -> int:
    """An unnamed read-write file in ``directory`` (gone when closed, or on a crash)."""
    directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    flag = getattr(os, "O_TMPFILE", 0)
    if flag:
        try:
            return os.open(directory, flag | os.O_RDWR, _FILE_MODE)
        except OSError:
            pass  # a filesystem without O_TMPFILE: a named file, unlinked at once
    fd, path = tempfile.mkstemp(prefix="fill-", dir=directory)
    os.unlink(path)
    return fd


def _spool_write(fd: int, buffers: list[bytes], position: int, hasher: Hasher) -> bytes:
    """Write ``buffers`` at ``position`` and hash them; return them as one ``bytes`` (what
    readers keeping up are given). Runs in a worker thread."""
    data = buffers[0] if len(buffers) == 1 else b"".join(buffers)
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.pwrite(fd, view[done:], position + done)
    hasher.update(data)
    return data
