"""Copy one artifact between two remotes through the adapter interface.

The building block of replication: an index with every manifest it lists, each
manifest's config and layers. Blobs the destination has are not sent again (HEAD
first); a blob goes in one request, or in ``chunk_size`` pieces resumed where the
destination has the upload when a piece fails. Children are put before their index and
blobs before their manifest, so nothing the destination shows refers to what it lacks.
Layers a registry need not hold (non-distributable, with ``urls``) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci.mediatypes import INDEX_TYPES, NON_DISTRIBUTABLE_LAYER_TYPES
from dockyard.remotes.adapter import Adapter, BlobSource, Manifest
from dockyard.remotes.client import RemoteProtocolError

MAX_CHILDREN = 1000
"""Manifests an index may list (a hostile index cannot make a copy endless)."""


@dataclass
class CopyReport:
    """What a copy did: the digests it put, blobs sent and skipped, bytes sent."""

    manifests: list[str] = field(default_factory=list)
    blobs_sent: list[str] = field(default_factory=list)
    blobs_skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0


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
) -> None:
    digest = str(descriptor["digest"])
    if await destination.blob_exists(destination_repository, digest) is not None:
        report.blobs_skipped.append(digest)
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


async def copy_artifact(
    source: Adapter,
    source_repository: str,
    destination: Adapter,
    destination_repository: str,
    reference: str,
    *,
    chunk_size: int | None = None,
    report: CopyReport | None = None,
) -> CopyReport:
    """Copy ``source_repository:reference`` to ``destination_repository`` under the same
    reference (a tag, or the digest)."""
    report = report or CopyReport()
    manifest = await source.get_manifest(source_repository, reference)
    document = _document(manifest)
    if manifest.media_type in INDEX_TYPES or "manifests" in document:
        children = _descriptors(document.get("manifests"), manifest.digest)
        if len(children) > MAX_CHILDREN:
            raise RemoteProtocolError(f"{manifest.digest} lists more than {MAX_CHILDREN}")
        for child in children:
            await copy_artifact(
                source,
                source_repository,
                destination,
                destination_repository,
                str(child["digest"]),
                chunk_size=chunk_size,
                report=report,
            )
    else:
        config = document.get("config")
        blobs = _descriptors([config] if config is not None else [], manifest.digest)
        for layer in _descriptors(document.get("layers"), manifest.digest):
            if layer.get("mediaType") in NON_DISTRIBUTABLE_LAYER_TYPES and layer.get("urls"):
                continue
            blobs.append(layer)
        for blob in blobs:
            await copy_blob(
                source,
                source_repository,
                destination,
                destination_repository,
                blob,
                report,
                chunk_size,
            )
    await destination.put_manifest(destination_repository, reference, manifest)
    report.manifests.append(manifest.digest)
    return report
