"""The storage-driver contract: plain objects and chunked uploads.

Two small protocols; a driver implements both (:class:`Storage`). Keys follow
:mod:`dockyard.storage.layout`; a driver refuses any other key with
``ValueError``. Drivers raise :class:`~dockyard.errors.ObjectNotFoundError`
for a missing object and :class:`~dockyard.errors.StorageError` when the
backend fails. ``tests/integration/test_storage_conformance.py`` is the
executable form of this contract; every driver must pass it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Hasher", "ObjectInfo", "ObjectStore", "Storage", "UploadStore"]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware UTC


# Called with each buffer as it is written, e.g. ``hashlib.sha256().update``.
Hasher = Callable[[bytes], None]


class ObjectStore(Protocol):
    """Whole, immutable objects under keys."""

    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and time, or ``None`` when there is none."""
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when ``None``) from ``offset``.

        An async generator: ``ObjectNotFoundError`` is raised on the first
        iteration. Past the end it yields what there is (possibly nothing).
        """
        ...

    async def read_bytes(self, key: str) -> bytes:
        """The whole object; for small objects such as manifests."""
        ...

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the stream under ``key`` atomically; return its size.

        Readers see the old object or the new one, never a part. When
        ``chunks`` raises, nothing is left under ``key`` or elsewhere and the
        exception propagates.
        """
        ...

    async def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the object; ``False`` when there was none."""
        ...

    async def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``, replacing ``dst``; ``ObjectNotFoundError`` without src."""
        ...

    def list(self, prefix: str) -> AsyncIterator[str]:
        """Every key that starts with ``prefix`` (a string prefix, in no set order)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's real file, for zero-copy sending; ``None`` on remote drivers."""
        ...

    async def redirect_url(self, key: str, expires_in: int) -> str | None:
        """A presigned URL valid ``expires_in`` seconds; ``None`` when unsupported."""
        ...

    async def check(self) -> None:
        """Ask the backend once, cheaply, whether it works (start-up and health checks);
        ``StorageError`` saying what is wrong when it does not."""
        ...


class UploadStore(Protocol):
    """Partial objects that grow by appends, then become objects.

    The state returned by :meth:`begin` and :meth:`append` is opaque and
    JSON-able; the caller keeps it in the upload's database row, so any node
    can continue the upload. The caller also serialises appends to one
    upload (a driver does not lock).
    """

    async def begin(self, upload_id: str) -> dict[str, Any]:
        """Start an empty partial object for ``upload_id``; return its state."""
        ...

    async def append(
        self,
        state: dict[str, Any],
        offset: int,
        chunks: AsyncIterable[bytes],
        observe: Hasher | None = None,
        limit: int | None = None,
    ) -> tuple[dict[str, Any], int]:
        """Write ``chunks`` at ``offset`` (the committed size); return (state, new size).

        ``observe`` sees every written buffer, in order, on the thread that
        writes it. When ``chunks`` raises or is cancelled, or more than
        ``limit`` bytes arrive in this call (``SizeInvalidError``), the partial
        object is cut back to ``offset`` and the exception propagates; bytes
        past ``offset`` (left by a failed or crashed earlier append) are
        overwritten.
        """
        ...

    def read_upload(
        self, state: dict[str, Any], offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the partial object, as :meth:`ObjectStore.read` does."""
        ...

    async def upload_size(self, state: dict[str, Any]) -> int:
        """The partial object's size in storage."""
        ...

    async def complete(
        self, state: dict[str, Any], key: str, expected_size: int | None = None
    ) -> None:
        """Make the partial object the object ``key``, durably and atomically.

        Cut to ``expected_size`` first when given. When ``key`` exists already
        (content-addressed: same bytes), the partial object is discarded. A new
        object's modified time is the completion's, not the last append's (garbage
        collection takes only old objects no row names).
        """
        ...

    async def abort(self, state: dict[str, Any]) -> None:
        """Discard the partial object; idempotent."""
        ...


class Storage(ObjectStore, UploadStore, Protocol):
    """What a storage driver implements."""


@runtime_checkable
class AdoptsFiles(Protocol):
    """An optional addition to :class:`Storage`: a driver that can make a local file the
    object without copying its bytes (the filesystem driver, on the same filesystem)."""

    async def adopt_file(self, fd: int, key: str, size: int) -> bool:
        """Make the file open as ``fd`` (``size`` bytes, complete and verified, an unnamed
        file: ``O_TMPFILE``) the object ``key``, durably; ``key`` is replaced if it exists.
        ``False`` when it cannot here (another filesystem, a named or unlinked file): the
        caller then uploads the bytes. The caller must not write to ``fd`` afterwards."""
        ...
