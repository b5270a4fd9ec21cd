"""Filling the cache with one blob from the upstream: the function boundary the cache
calls (``fetch_blob``), behind which the single-fetch streaming engine (``fill.py``)
goes when it lands.

This first path is the simplest correct one: the upstream's bytes go through the
registry's own upload path (``RegistryService.upload_monolithic``), which checks the
length and the digest before the blob becomes visible and leaves nothing behind when
either is wrong or the stream breaks; quota hooks count it like a push. Clients of the
same process asking for the same blob meanwhile wait for this fill rather than start
another (``BlobFills``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dockyard.audit.events import Actor
from dockyard.errors import BlobUploadInvalidError, DigestInvalidError, SizeInvalidError
from dockyard.registry.service import BlobInfo, RegistryService
from dockyard.remotes.adapter import Adapter


class WrongBytesError(Exception):
    """The upstream's bytes for a digest are not the blob the digest names."""


async def throttled(chunks: AsyncIterator[bytes], kib_per_second: int) -> AsyncIterator[bytes]:
    """``chunks`` at no more than ``kib_per_second`` (``proxy_speed_kb``) on average;
    unchanged when the limit is -1 (none)."""
    if kib_per_second <= 0:
        async for chunk in chunks:
            yield chunk
        return
    rate = kib_per_second * 1024.0
    start = time.monotonic()
    sent = 0
    async for chunk in chunks:
        yield chunk
        sent += len(chunk)
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            await asyncio.sleep(ahead)


class BlobFills:
    """One fill per digest at a time in this process; the others wait for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def one_at_a_time(self, digest: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(digest, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(digest) is lock:
                del self._locks[digest]


async def fetch_blob(
    registry: RegistryService,
    adapter: Adapter,
    repository: str,
    upstream_repository: str,
    digest: str,
    *,
    kib_per_second: int,
    actor: Actor,
) -> BlobInfo:
    """Copy the blob from the upstream into ``repository``, verified; the stored blob.

    Raises ``WrongBytesError`` when the upstream's bytes do not match ``digest`` (nothing
    is stored), and the adapter's ``RemoteError`` when the upstream fails."""
    async with adapter.open_blob(upstream_repository, digest) as stream:
        length = stream.size if stream.size >= 0 else None
        try:
            return await registry.upload_monolithic(
                repository,
                digest,
                throttled(stream.chunks, kib_per_second),
                length,
                actor,
            )
        except (DigestInvalidError, SizeInvalidError, BlobUploadInvalidError) as exc:
            raise WrongBytesError(exc.message) from None
