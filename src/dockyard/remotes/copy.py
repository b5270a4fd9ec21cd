"""Copy one artifact between two remotes through the adapter interface.

The building block of replication: an index with every manifest it lists, each
manifest's config and layers. Blobs the destination has are not sent again (HEAD
first); a blob it is known to hold in another repository is mounted from there
(``BlobLocations``); any other goes in one request, or in ``chunk_size`` pieces resumed
where the destination has the upload when a piece fails. Children are put before their index and
blobs before their manifest, so nothing the destination shows refers to what it lacks.
Layers a registry need not hold (non-distributable, with ``urls``) are skipped. A
manifest's blobs are copied ``BLOB_CONCURRENCY`` at a time, an index's manifests
``CHILD_CONCURRENCY`` at a time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci.mediatypes import INDEX_TYPES, NON_DISTRIBUTABLE_LAYER_TYPES
from dockyard.remotes.adapter import Adapter, BlobSource, Manifest
from dockyard.remotes.client import (
    RemoteAuthError,
    RemoteNotFound,
    RemoteProtocolError,
    RemoteUnsupported,
)

MAX_CHILDREN = 1000
"""Manifests an index may list (a hostile index cannot make a copy endless)."""


BLOB_CONCURRENCY = 4
"""Blobs of one manifest copied at once (as ``skopeo`` and ``docker push`` do): the
destination hashes and stores one while the next is read and sent."""
CHILD_CONCURRENCY = 4
"""Manifests of one index copied at once (each with its own blobs at once)."""
MAX_LOCATIONS = 100_000
"""Blobs a ``BlobLocations`` remembers (the least recently used are forgotten)."""
MAX_DESTINATIONS = 64


@dataclass
class CopyReport:
    """What a copy did: the digests it put, blobs sent, mounted and skipped, bytes sent."""

    manifests: list[str] = field(default_factory=list)
    blobs_sent: list[str] = field(default_factory=list)
    blobs_skipped: list[str] = field(default_factory=list)
    blobs_mounted: list[str] = field(default_factory=list)
    bytes_sent: int = 0


class BlobLocations:
    """Where one destination is known to hold blobs (a repository per digest, learnt from
    what copies sent or found there), so that a blob another repository there already has
    is mounted (``POST …/blobs/uploads/?mount=…&from=…``) instead of sent again.

    ``mounts`` is whether the destination mounts: None until tried, False once a mount
    was refused before any succeeded (it answered 202, opening an upload instead), so a
    destination that cannot mount costs one refused request, not one per blob."""

    def __init__(self, limit: int = MAX_LOCATIONS) -> None:
        self.limit = limit
        self.mounts: bool | None = None
        self.probe: asyncio.Event | None = None
        """Set while the first mount asks whether the destination mounts."""
        self._where: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def where(self, digest: str) -> str | None:
        with self._lock:
            return self._where.get(digest)

    def saw(self, digest: str, repository: str) -> None:
        with self._lock:
            self._where[digest] = repository
            self._where.move_to_end(digest)
            while len(self._where) > self.limit:
                self._where.popitem(last=False)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._where.pop(digest, None)


_DESTINATIONS: OrderedDict[str, BlobLocations] = OrderedDict()
_DESTINATIONS_LOCK = threading.Lock()


def locations_for(key: str, *, mounts: bool | None = None) -> BlobLocations:
    """The process's ``BlobLocations`` of one destination (``key`` names it: an endpoint
    id, or this registry), kept across copies and tasks. ``mounts=True``: the destination
    is known to mount (this registry), so a refused mount (the blob left the repository
    it was known in) never turns mounts off there."""
    with _DESTINATIONS_LOCK:
        found = _DESTINATIONS.get(key)
        if found is None:
            found = _DESTINATIONS[key] = BlobLocations()
            found.mounts = mounts
            while len(_DESTINATIONS) > MAX_DESTINATIONS:
                _DESTINATIONS.popitem(last=False)
        _DESTINATIONS.move_to_end(key)
        return found


def _document(manifest: Manifest) -> dict[str, Any]:
    try:
        document = json.loads(manifest.body)
    except ValueError:
        raise RemoteProtocolError(f"manifest {manifest.digest} is not JSON") from None
    if not isinstance(document, dict):
        raise RemoteProtocolError(f"manifest {manifest.digest} is not a JSON object")
    return document


def _descriptors(items: Any, where: str) -> list[dict[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(
        isinstance(d, dict) and isinstance(d.get("digest"), str) for d in items
    ):
        raise RemoteProtocolError(f"{where}: descriptors without digests")
    return items


def blob_source(adapter: Adapter, repository: str, digest: str) -> BlobSource:
    """The bytes of a remote blob from any offset on (a ranged GET per call)."""

    async def from_offset(offset: int) -> AsyncIterator[bytes]:
        async with adapter.open_blob(repository, digest, offset) as stream:
            if stream.offset != offset:
                raise RemoteProtocolError(f"{digest}: asked from {offset}, got {stream.offset}")
            async for chunk in stream.chunks:
                yield chunk

    return from_offset


async def copy_blob(
    source: Adapter,
    source_repository: str,
    destination: Adapter,
    destination_repository: str,
    descriptor: dict[str, Any],
    report: CopyReport,
    chunk_size: int | None,
    locations: BlobLocations | None = None,
) -> None:
    digest = str(descriptor["digest"])
    if await destination.blob_exists(destination_repository, digest) is not None:
        report.blobs_skipped.append(digest)
        if locations is not None:
            locations.saw(digest, destination_repository)
        return
    if locations is not None and await _mount(
        destination, destination_repository, digest, locations
    ):
        report.blobs_mounted.append(digest)
        return
    size = descriptor.get("size")
    if not isinstance(size, int) or size < 0:
        raise RemoteProtocolError(f"{digest}: the descriptor has no size")
    await destination.push_blob(
        destination_repository,
        digest,
        size,
        blob_source(source, source_repository, digest),
        chunk_size=chunk_size,
    )
    report.blobs_sent.append(digest)
    report.bytes_sent += size
    if locations is not None:
        locations.saw(digest, destination_repository)


async def _mount(
    destination: Adapter, repository: str, digest: str, locations: BlobLocations
) -> bool:
    """Mount ``digest`` from the repository the destination is known to hold it in.
    While it is not known whether the destination mounts, one mount at a time asks
    (the blobs copied beside it wait for the answer)."""
    while True:
        other = locations.where(digest)
        if other is None or other == repository or locations.mounts is False:
            return False
        if locations.mounts is True:
            return await _try_mount(destination, repository, digest, other, locations)
        if locations.probe is None:
            break
        await locations.probe.wait()
    locations.probe = asyncio.Event()
    try:
        return await _try_mount(destination, repository, digest, other, locations)
    finally:
        locations.probe.set()
        locations.probe = None


async def _try_mount(
    destination: Adapter, repository: str, digest: str, other: str, locations: BlobLocations
) -> bool:
    try:
        mounted = await destination.mount_blob(repository, digest, other)
    except (RemoteUnsupported, RemoteAuthError, RemoteNotFound, RemoteProtocolError):
        # Refused (no pull on the other repository, a kind that cannot): send it instead.
        mounted = False
    if mounted:
        locations.mounts = True
        locations.saw(digest, repository)
        return True
    if locations.mounts is None:
        locations.mounts = False
    else:
        locations.forget(digest)  # it mounts, but no longer has this one there
    return False


async def concurrently(jobs: list[Coroutine[Any, Any, None]], limit: int) -> None:
    """Run ``jobs``, ``limit`` at a time; the first failure cancels the rest and is
    raised as it is (not wrapped in an ``ExceptionGroup``)."""
    gate = asyncio.Semaphore(limit)

    async def gated(job: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await job

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(gated(job))
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _copy_child(
    source: Adapter,
    source_repository: str,
    destination: Adapter,
    destination_repository: str,
    digest: str,
    chunk_size: int | None,
    report: CopyReport,
    locations: BlobLocations | None,
) -> None:
    await copy_artifact(
        source,
        source_repository,
        destination,
        destination_repository,
        digest,
        chunk_size=chunk_size,
        report=report,
        locations=locations,
    )


async def copy_artifact(
    source: Adapter,
    source_repository: str,
    destination: Adapter,
    destination_repository: str,
    reference: str,
    *,
    chunk_size: int | None = None,
    report: CopyReport | None = None,
    locations: BlobLocations | None = None,
    manifest: Manifest | None = None,
) -> CopyReport:
    """Copy ``source_repository:reference`` to ``destination_repository`` under the same
    reference (a tag, or the digest). With ``locations``, blobs the destination holds in
    another repository are mounted from there. ``manifest``: the source's manifest of
    ``reference`` when the caller has it already (it is not fetched again)."""
    report = report or CopyReport()
    if manifest is None:
        manifest = await source.get_manifest(source_repository, reference)
    document = _document(manifest)
    if manifest.media_type in INDEX_TYPES or "manifests" in document:
        children = _descriptors(document.get("manifests"), manifest.digest)
        if len(children) > MAX_CHILDREN:
            raise RemoteProtocolError(f"{manifest.digest} lists more than {MAX_CHILDREN}")
        await concurrently(
            [
                _copy_child(
                    source,
                    source_repository,
                    destination,
                    destination_repository,
                    str(child["digest"]),
                    chunk_size,
                    report,
                    locations,
                )
                for child in children
            ],
            CHILD_CONCURRENCY,
        )
    else:
        config = document.get("config")
        blobs = _descriptors([config] if config is not None else [], manifest.digest)
        for layer in _descriptors(document.get("layers"), manifest.digest):
            if layer.get("mediaType") in NON_DISTRIBUTABLE_LAYER_TYPES and layer.get("urls"):
                continue
            blobs.append(layer)
        await concurrently(
            [
                copy_blob(
                    source,
                    source_repository,
                    destination,
                    destination_repository,
                    blob,
                    report,
                    chunk_size,
                    locations,
                )
                for blob in blobs
            ],
            BLOB_CONCURRENCY,
        )
    await destination.put_manifest(destination_repository, reference, manifest)
    report.manifests.append(manifest.digest)
    return report
