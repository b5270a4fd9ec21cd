"""Free disk space: keep enough of it that a full disk can be recovered through the product.

Two measures, both on the local filesystems Dockyard writes to (the filesystem driver's
root and the SQLite database's folder):

- **Admission.** New bytes (an upload starting or growing, a manifest) are refused with
  :class:`~dockyard.errors.StorageFullError` once free space falls below
  ``min_free_bytes``, and a chunk may not take free space below it either, so Dockyard's
  own pushes stop before the disk is completely full.
- **A reserve file** (``disk_reserve_bytes``, next to the SQLite database). Deleting a
  manifest or running garbage collection writes to the database, and SQLite needs free
  pages for its journal to do so. When the disk fills anyway (another program, chunks
  racing each other, ``min_free_bytes`` 0), the reserve is released before the next
  database write finds less free space than the reserve's size, so deletes and GC have
  room; it is made again once space is back.

With PostgreSQL the reserve is kept in the data directory: when PostgreSQL's data shares
that disk (one host), releasing it gives PostgreSQL room to record a garbage collection
too; when it does not, it costs the reserve's size and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path

from anyio import to_thread

from dockyard.errors import StorageFullError

__all__ = ["DiskSpace"]

log = logging.getLogger("dockyard.storage")

RESERVE_NAME = "disk-reserve"
_RESTORE_RETRY_SECONDS = 10.0  # after a failed attempt to make the reserve again


class DiskSpace:
    """Free-space checks over ``paths`` (directories); ``reserve`` is the reserve file."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        min_free_bytes: int,
        reserve: Path | None = None,
        reserve_bytes: int = 0,
    ) -> None:
        self.paths = tuple(paths)
        self.min_free_bytes = min_free_bytes
        self.reserve = reserve if reserve_bytes > 0 else None
        self.reserve_bytes = reserve_bytes
        # The reserve is released only when the disk is all but full (less free than the
        # reserve itself): released any earlier, another program could take it first.
        self.full_below = reserve_bytes
        self._next_restore = 0.0
        # Whether this process knows the reserve is in place: then a database write costs
        # one statvfs and no stat of the reserve (writes are on the push path).
        self._reserve_in_place = False

    # --- measuring ----------------------------------------------------------------

    def free_bytes(self) -> int:
        """The least free space (for unprivileged writers) among the watched filesystems."""
        free = None
        for path in self.paths:
            try:
                st = os.statvfs(path)
            except OSError:
                continue
            available = st.f_bavail * st.f_frsize
            free = available if free is None else min(free, available)
        return free if free is not None else 1 << 62

    # --- admission ----------------------------------------------------------------

    def check_room(self) -> int:
        """Raise unless new bytes may be stored; returns how many may be (above the floor)."""
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise StorageFullError(
                f"storage is full ({free} bytes free, {self.min_free_bytes} kept free): "
                "nothing new can be pushed until space is freed — delete artifacts and run "
                "garbage collection"
            )
        return free - self.min_free_bytes

    async def limit(self, chunks: AsyncIterable[bytes], room: int) -> AsyncIterator[bytes]:
        """Pass ``chunks`` on, refusing the one that would take more than ``room`` bytes."""
        taken = 0
        async for chunk in chunks:
            taken += len(chunk)
            if taken > room:
                raise StorageFullError(
                    f"storage is full: this chunk would leave less than {self.min_free_bytes} "
                    "bytes free; the upload was discarded — delete artifacts and run garbage "
                    "collection, then push again"
                )
            yield chunk

    # --- the reserve ----------------------------------------------------------------

    async def before_database_write(self) -> None:
        """Called before each database write: release the reserve on a full disk, so the
        write (a delete, GC) has room; make it again once space is back."""
        reserve = self.reserve
        if reserve is None:
            return
        free = self.free_bytes()
        if free < self.full_below:
            self.release_reserve()
        elif (
            not self._reserve_in_place
            and free >= self.full_below + 2 * self.reserve_bytes
            and time.monotonic() >= self._next_restore
        ) and not await to_thread.run_sync(self.make_reserve):
            self._next_restore = time.monotonic() + _RESTORE_RETRY_SECONDS

    def release_reserve(self) -> bool:
        """Delete the reserve file; True when there was one."""
        if self.reserve is None:
            return False
        self._reserve_in_place = False
        try:
            os.unlink(self.reserve)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot release the disk reserve %s: %s", self.reserve, exc)
            return False
        log.warning(
            "disk nearly full: released the %d-byte reserve %s so deletes and garbage "
            "collection can run; uploads are refused below %d free bytes",
            self.reserve_bytes,
            self.reserve,
            self.min_free_bytes,
        )
        return True

    def make_reserve(self) -> bool:
        """Create the reserve file when it is missing (blocking; at start and in a thread);
        False when there is no room for it now (it is made later, when space is back)."""
        reserve = self.reserve
        if reserve is None or _size_of(reserve) == self.reserve_bytes:
            self._reserve_in_place = reserve is not None
            return True
        if self.free_bytes() < self.full_below + self.reserve_bytes:
            return False
        tmp = reserve.with_name(f".{reserve.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, reserve)
            self._reserve_in_place = True
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            log.warning("cannot make the disk reserve %s: %s", reserve, exc)
            return False
        log.info(
            "disk reserve %s made (%d bytes, %d free)",
            reserve,
            self.reserve_bytes,
            self.free_bytes(),
        )
        return True


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
