"""The filesystem storage driver: objects are files under one root directory.

Keys map to ``<root>/<key>`` (see :mod:`dockyard.storage.layout`). Whole
objects are written to ``<root>/_tmp/`` first, fsynced and renamed into
place, so a reader sees all of an object or nothing. Uploads grow in place at
``<root>/uploads/<id>`` and are renamed into ``blobs/`` when complete.

Blocking file I/O runs in worker threads (``anyio.to_thread``). An append
gathers incoming chunks into batches of a few MiB; one worker thread writes
each batch at its offset while another passes it to ``observe`` (hashing
releases the GIL), so writing and hashing overlap, and the event loop gathers
the next batch meanwhile. No fsync per chunk: an upload is fsynced once, when
it completes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterator,
    Sequence,
)
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any, cast

import anyio
from anyio import to_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from dockyard.errors import (
    BlobUploadInvalidError,
    ObjectNotFoundError,
    SizeInvalidError,
    StorageError,
    StorageFullError,
)
from dockyard.storage.base import Hasher, ObjectInfo, Storage
from dockyard.storage.layout import check_key, check_prefix, upload_key

__all__ = ["FilesystemStorage"]

READ_CHUNK = 1 << 20  # bytes per chunk yielded by read()
WRITE_BUFFER = 2 << 20  # incoming chunks are coalesced to about this size per write
INLINE_WRITE = 256 << 10  # a whole append up to this size is written on the event loop
_MAX_PARTS = 64  # more chunks than this in one batch are joined before writing
_LIST_BATCH = 256  # keys gathered per worker-thread hop in list()
_TMP = "_tmp"
_FILE_MODE = 0o600  # blobs and uploads are the service's alone (issue 13.4)
_DIR_MODE = 0o700


class FilesystemStorage(Storage):
    """A :class:`~dockyard.storage.base.Storage` on a local (or mounted) directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self._root = str(self.root)
        self._tmp = os.path.join(self._root, _TMP)
        os.makedirs(self._root, mode=_DIR_MODE, exist_ok=True)
        os.makedirs(self._tmp, mode=_DIR_MODE, exist_ok=True)

    def __repr__(self) -> str:
        return f"FilesystemStorage({self._root!r})"

    async def check(self) -> None:
        """A real write: a probe file created and removed in ``_tmp/`` (a read-only,
        full, unmounted or removed root fails it)."""
        try:
            await to_thread.run_sync(self._probe)
        except OSError as exc:
            raise StorageError(
                f"the storage root {self._root} is not writable: {exc.strerror or exc}"
            ) from exc

    def _probe(self) -> None:
        # Never made again here: a root that vanished (an unmounted volume) must fail.
        if not os.path.isdir(self._root):
            raise FileNotFoundError(errno.ENOENT, "no such directory")
        with contextlib.suppress(FileExistsError):
            os.mkdir(self._tmp, _DIR_MODE)
        path = os.path.join(self._tmp, f"probe-{secrets.token_hex(8)}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE))
        os.unlink(path)

    # --- plain objects ---------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = await to_thread.run_sync(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _storage_error("stat", key, exc) from exc
        if not S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._stream(self._path(key), key, offset, length)

    async def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with _translate(key):
            return await to_thread.run_sync(_read_all, path)

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        with _translate(key, missing=False):
            fd, tmp = await to_thread.run_sync(self._mktemp)
        try:
            try:
                size = await _pump(key, fd, 0, chunks, None, None)
                with _translate(key, missing=False):
                    await to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
            with _translate(key, missing=False):
                await to_thread.run_sync(_install, tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return size

    async def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with _translate(key, missing=False):
            await to_thread.run_sync(self._write_whole, path, data)

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await to_thread.run_sync(os.unlink, path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except OSError as exc:
            raise _storage_error("delete", key, exc) from exc
        return True

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove many objects in one trip to a worker thread (garbage collection's
        sweep, which runs several of these at once); returns how many existed."""
        paths = [self._path(key) for key in keys]
        return await to_thread.run_sync(_unlink_many, paths)

    async def stat_many(self, keys: Sequence[str]) -> list[ObjectInfo | None]:
        """``stat`` of many objects in one trip to a worker thread (garbage collection's
        walk for nameless files, which would otherwise wait for the loop once per file)."""
        paths = [self._path(key) for key in keys]
        try:
            found = await to_thread.run_sync(_stat_many, paths)
        except OSError as exc:
            raise _storage_error("stat", keys[0] if keys else "", exc) from exc
        return [
            None if st is None else ObjectInfo(key, st[0], datetime.fromtimestamp(st[1], UTC))
            for key, st in zip(keys, found, strict=True)
        ]

    async def move(self, src: str, dst: str) -> None:
        src_path, dst_path = self._path(src), self._path(dst)
        with _translate(dst, missing=False):
            await to_thread.run_sync(_move, src_path, dst_path)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        check_prefix(prefix)
        head, _, last = prefix.rpartition("/")
        keys = _walk_keys(self._root, head, last)
        while True:
            try:
                batch = await to_thread.run_sync(_take, keys, _LIST_BATCH)
            except OSError as exc:
                raise _storage_error("list", prefix, exc) from exc
            for key in batch:
                yield key
            if len(batch) < _LIST_BATCH:
                return

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return Path(path) if os.path.isfile(path) else None

    async def redirect_url(self, key: str, expires_in: int) -> str | None:
        self._path(key)
        return None

    # --- uploads -----------------------------------------------------------------

    async def begin(self, upload_id: str) -> dict[str, Any]:
        key = upload_key(upload_id)
        path = self._path(key)
        with _translate(key, missing=False):
            await to_thread.run_sync(_create_empty, path)
        return {"key": key}

    async def append(
        self,
        state: dict[str, Any],
        offset: int,
        chunks: AsyncIterable[bytes],
        observe: Hasher | None = None,
        limit: int | None = None,
    ) -> tuple[dict[str, Any], int]:
        key, path = self._upload(state)
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        with _translate(key):
            fd, size = await to_thread.run_sync(_open_sized, path)
        try:
            if size < offset:
                raise BlobUploadInvalidError(
                    f"upload holds {size} bytes, fewer than the offset {offset}"
                )
            try:
                written = await _pump(key, fd, offset, chunks, observe, limit)
                if size > offset + written:
                    with _translate(key):
                        await to_thread.run_sync(os.ftruncate, fd, offset + written)
            except BaseException:
                # Leave the partial object as it was at `offset`. A blocking call,
                # but a short one, and it must run even when we are cancelled.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, offset)
                raise
        finally:
            os.close(fd)
        return dict(state), offset + written

    def read_upload(
        self, state: dict[str, Any], offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key, path = self._upload(state)
        return self._stream(path, key, offset, length)

    async def upload_size(self, state: dict[str, Any]) -> int:
        key, path = self._upload(state)
        with _translate(key):
            st = await to_thread.run_sync(os.stat, path)
        return st.st_size

    async def complete(
        self, state: dict[str, Any], key: str, expected_size: int | None = None
    ) -> None:
        _, src = self._upload(state)
        dst = self._path(key)
        if expected_size is not None and expected_size < 0:
            raise ValueError(f"negative size: {expected_size}")
        with _translate(key, missing=False):
            await to_thread.run_sync(_complete, src, dst, expected_size)

    async def abort(self, state: dict[str, Any]) -> None:
        key, path = self._upload(state)
        with _translate(key, missing=False):
            await to_thread.run_sync(_unlink_quietly, path)

    async def adopt_file(self, fd: int, key: str, size: int) -> bool:
        """Link the unnamed file ``fd`` into place (``AdoptsFiles``): no copy of its
        bytes. ``False`` when the kernel cannot link it here (another filesystem)."""
        path = self._path(key)
        with _translate(key, missing=False):
            return await to_thread.run_sync(_adopt, fd, self._tmp, path, size)

    # --- helpers -------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self._root, check_key(key))

    def _upload(self, state: dict[str, Any]) -> tuple[str, str]:
        key = state.get("key")
        if not isinstance(key, str) or not key.startswith("uploads/"):
            raise ValueError(f"not an upload state: {state!r}")
        return key, self._path(key)

    async def _stream(
        self, path: str, key: str, offset: int, length: int | None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        with _translate(key):
            fd = await to_thread.run_sync(_open_regular, path)
        try:
            end = None if length is None else offset + length
            position = offset
            while end is None or position < end:
                size = READ_CHUNK if end is None else min(READ_CHUNK, end - position)
                with _translate(key):
                    data = await to_thread.run_sync(os.pread, fd, size, position)
                if not data:
                    return
                position += len(data)
                yield data
        finally:
            os.close(fd)

    def _mktemp(self) -> tuple[int, str]:
        """Create a new empty temporary file; runs in a worker thread."""
        path = os.path.join(self._tmp, secrets.token_hex(16))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            return os.open(path, flags, _FILE_MODE), path
        except FileNotFoundError:  # someone removed _tmp/: make it again
            os.makedirs(self._tmp, mode=_DIR_MODE, exist_ok=True)
            return os.open(path, flags, _FILE_MODE), path

    def _write_whole(self, path: str, data: bytes) -> None:
        fd, tmp = self._mktemp()
        try:
            try:
                _put(fd, [data], 0, None)
                os.fsync(fd)
            finally:
                os.close(fd)
            _install(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise


# --- blocking helpers (run in worker threads) --------------------------------------


async def _pump(
    key: str,
    fd: int,
    offset: int,
    chunks: AsyncIterable[bytes],
    observe: Hasher | None,
    limit: int | None,
) -> int:
    """Write ``chunks`` to ``fd`` from ``offset``; return how many bytes were written.

    A pipeline: this task gathers the next batch of chunks while one worker
    thread writes the previous one at its offset and another passes it to
    ``observe``. Errors of the file become storage errors; errors of ``chunks``
    and ``observe`` pass as they are.
    """
    gathered = _batches(chunks, limit)
    async with contextlib.aclosing(gathered):
        first = await anext(gathered, None)
        if first is None:
            return 0
        size = sum(map(len, first))
        if size < WRITE_BUFFER and size <= INLINE_WRITE:
            # The whole body was one small batch (a batch short of WRITE_BUFFER
            # ends the stream): writing and hashing it here costs less than
            # handing it to a thread and back.
            with _translate(key, missing=False):
                return _put(fd, first, offset, observe)
        return await _pipeline(key, fd, offset, _chain(first, gathered), observe)


async def _chain(
    first: list[bytes], rest: AsyncIterator[list[bytes]]
) -> AsyncGenerator[list[bytes]]:
    yield first
    async for batch in rest:
        yield batch


async def _pipeline(
    key: str,
    fd: int,
    offset: int,
    gathered_batches: AsyncGenerator[list[bytes]],
    observe: Hasher | None,
) -> int:
    """Gather batches here; write them in one worker thread and observe (hash) them
    in another, so that writing and hashing overlap instead of taking turns."""
    written = 0

    async def write(batches: MemoryObjectReceiveStream[list[bytes]]) -> None:
        nonlocal written
        async with batches:
            async for buffers in batches:
                with _translate(key, missing=False):
                    written += await to_thread.run_sync(_put, fd, buffers, offset + written, None)

    async def hash_(batches: MemoryObjectReceiveStream[list[bytes]], see: Hasher) -> None:
        async with batches:
            async for buffers in batches:
                await to_thread.run_sync(_observe, see, buffers)

    to_write, write_batches = anyio.create_memory_object_stream[list[bytes]](1)
    outlets = [to_write]
    inlets = [write_batches]
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write, write_batches)
            if observe is not None:
                to_hash, hash_batches = anyio.create_memory_object_stream[list[bytes]](1)
                outlets.append(to_hash)
                inlets.append(hash_batches)
                tasks.start_soon(hash_, hash_batches, observe)
            async with contextlib.AsyncExitStack() as stack:
                for outlet in outlets:
                    stack.enter_context(outlet)
                gathered = await stack.enter_async_context(contextlib.aclosing(gathered_batches))
                async for buffers in gathered:
                    for outlet in outlets:
                        await outlet.send(buffers)
    except BaseExceptionGroup as group:
        # One real failure (the stream's, the writer's or the hasher's) propagates as
        # itself; a consumer that failed makes the sender see a broken stream: noise.
        real = [e for e in group.exceptions if not isinstance(e, anyio.BrokenResourceError)]
        if len(real) == 1:
            raise real[0] from None
        raise
    finally:
        for inlet in inlets:
            inlet.close()  # already closed by its consumer, unless it never started
    return written


def _observe(observe: Hasher, buffers: list[bytes]) -> None:
    for buffer in buffers:
        observe(buffer)


async def _batches(chunks: AsyncIterable[bytes], limit: int | None) -> AsyncGenerator[list[bytes]]:
    """Group ``chunks`` into batches of about ``WRITE_BUFFER`` bytes."""
    parts: list[bytes] = []
    pending = 0
    received = 0
    async for chunk in chunks:
        if not chunk:
            continue
        received += len(chunk)
        if limit is not None and received > limit:
            raise SizeInvalidError(f"more than {limit} bytes sent")
        parts.append(chunk)
        pending += len(chunk)
        if pending >= WRITE_BUFFER:
            yield _coalesce(parts)
            parts = []
            pending = 0
    if parts:
        yield _coalesce(parts)


def _coalesce(parts: list[bytes]) -> list[bytes]:
    # A few big chunks are written as they are, with one pwritev; many small
    # ones are joined first so that observing (hashing) them releases the GIL.
    return parts if len(parts) <= _MAX_PARTS else [b"".join(parts)]


def _put(fd: int, buffers: list[bytes], position: int, observe: Hasher | None) -> int:
    """Write ``buffers`` at ``position``, then observe them; return the byte count."""
    total = sum(map(len, buffers))
    done = os.pwritev(fd, buffers, position)
    if done < total:  # a short write: rare, finish the rest piece by piece
        data = memoryview(b"".join(buffers))
        while done < total:
            done += os.pwrite(fd, data[done:], position + done)
    if total >= _EARLY_WRITEBACK_BYTES:
        _start_writeback(fd, position, total)
    if observe is not None:
        for buffer in buffers:
            observe(buffer)
    return total


def _open_regular(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    if not S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(path)
    return fd


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages; do not wait for it
# Batches this large start their writeback at once, so the fsync that makes a
# finished blob durable waits for the tail only, not for the whole blob.
_EARLY_WRITEBACK_BYTES = 1 << 20


def _start_writeback(fd: int, position: int, length: int) -> None:
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, position, length, _SYNC_FILE_RANGE_WRITE)  # advisory: errors ignored


def _open_sized(path: str) -> tuple[int, int]:
    fd = os.open(path, os.O_WRONLY)
    try:
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


def _read_all(path: str) -> bytes:
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(fd)


def _create_empty(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=_DIR_MODE, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE))


def _install(tmp: str, path: str) -> None:
    """Rename a finished, fsynced file into place and make the rename durable."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=_DIR_MODE, exist_ok=True)
    os.replace(tmp, path)
    _fsync_dir(directory)


def _adopt(fd: int, tmp_dir: str, path: str, size: int) -> bool:
    if (held := os.fstat(fd).st_size) != size:
        raise BlobUploadInvalidError(f"the file holds {held} bytes, not {size}")
    os.fsync(fd)
    name = secrets.token_hex(16)
    os.makedirs(tmp_dir, mode=_DIR_MODE, exist_ok=True)
    directory = os.open(tmp_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N names an O_TMPFILE file; Python
        # calls linkat (not link, which would link the /proc symlink) given a dir fd.
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=directory, follow_symlinks=True)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOENT, errno.EACCES):
            return False  # another filesystem, or not an unnamed file: the caller uploads
        raise
    finally:
        os.close(directory)
    tmp = os.path.join(tmp_dir, name)
    try:
        _install(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return True


def _move(src: str, dst: str) -> None:
    try:
        regular = S_ISREG(os.stat(src).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        regular = False
    if not regular:
        raise ObjectNotFoundError(f"no object at {src!r}")
    if src != dst:
        _install(src, dst)


def _complete(src: str, dst: str, expected_size: int | None) -> None:
    try:
        fd = os.open(src, os.O_RDWR)
    except FileNotFoundError:
        raise ObjectNotFoundError(f"no upload at {src!r}") from None
    try:
        size = os.fstat(fd).st_size
        if expected_size is not None:
            if size < expected_size:
                raise BlobUploadInvalidError(
                    f"upload holds {size} bytes, fewer than the expected {expected_size}"
                )
            if size > expected_size:
                os.ftruncate(fd, expected_size)
        if os.path.isfile(dst):
            # Content-addressed: the same bytes are already there.
            os.unlink(src)
            return
        # The object is new now, however long ago its last chunk came: garbage
        # collection takes a nameless file only when it is old (docs/gc.md).
        os.utime(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    # Concurrent completes of the same content may all get here; each rename is
    # atomic and every one installs the same bytes, so the last one wins harmlessly.
    _install(src, dst)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_many(paths: Sequence[str]) -> int:
    removed = 0
    for path in paths:
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise _storage_error("delete", path, exc) from exc
        removed += 1
    return removed


def _stat_many(paths: Sequence[str]) -> list[tuple[int, float] | None]:
    """(size, mtime) of each regular file, ``None`` where there is none."""
    found: list[tuple[int, float] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            found.append(None)
            continue
        found.append((st.st_size, st.st_mtime) if S_ISREG(st.st_mode) else None)
    return found


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _walk_keys(root: str, head: str, last: str) -> Iterator[str]:
    """Keys under ``root`` starting with ``head/last`` (``last`` a partial name)."""
    base = os.path.join(root, head) if head else root
    cut = len(root) + 1
    for dirpath, dirnames, filenames in os.walk(base):
        names = filenames
        if dirpath == base:
            dirnames[:] = [d for d in dirnames if d.startswith(last) and _visible(head, d)]
            names = [f for f in filenames if f.startswith(last) and _visible(head, f)]
        dirnames.sort()
        relative = dirpath[cut:]
        for name in sorted(names):
            yield f"{relative}/{name}" if relative else name


def _visible(head: str, name: str) -> bool:
    """Top-level names beginning with ``_`` are the driver's, not keys."""
    return bool(head) or not name.startswith("_")


def _take(keys: Iterator[str], count: int) -> list[str]:
    return [key for _, key in zip(range(count), keys, strict=False)]


@contextlib.contextmanager
def _translate(key: str, *, missing: bool = True) -> Iterator[None]:
    """Turn ``OSError`` into the storage errors of :mod:`dockyard.errors`."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        if missing:
            raise ObjectNotFoundError(f"no object {key!r}") from exc
        raise _storage_error("write", key, exc) from exc
    except OSError as exc:
        raise _storage_error("access", key, exc) from exc


def _storage_error(action: str, key: str, exc: OSError) -> StorageError | StorageFullError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(
            "storage is full: no space left to store the data; free space (delete artifacts "
            "and run garbage collection) and push again"
        )
    return StorageError(f"cannot {action} {key!r}: {exc.strerror or exc}")
