"""Build OCI image layouts on disk, for skopeo (or anything else) to push.

An OCI image layout is a directory holding ``oci-layout``, ``index.json`` and content-addressed
``blobs/sha256/<hex>``; ``skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG`` pushes it.

Layers are real tar archives holding one file of random (incompressible) bytes, gzip-wrapped
with compression level 0 (stored deflate blocks). That keeps them cheap to produce at any size,
valid for every client, and - because they are already gzip - containers/image pushes them
byte for byte instead of compressing them again, so the digests written here are the digests
the registry sees. ``rootfs.diff_ids`` in the config are the digests of the uncompressed tars.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import random
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MEDIA_TYPE_IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

_CHUNK = 1024 * 1024

Platform = tuple[str, ...]
"""``(os, architecture)`` or ``(os, architecture, variant)``."""


@dataclass(frozen=True)
class ImageInfo:
    """One image manifest written into a layout."""

    path: Path
    tag: str | None
    platform: Platform
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layer_digests: tuple[str, ...]
    layer_sizes: tuple[int, ...]
    diff_ids: tuple[str, ...]

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """The config and layer digests: every blob the manifest references."""
        return (self.config_digest, *self.layer_digests)

    @property
    def total_size(self) -> int:
        """Bytes of layers, config and manifest together."""
        config_size = blob_path(self.path, self.config_digest).stat().st_size
        return sum(self.layer_sizes) + config_size + self.manifest_size

    def manifest(self) -> dict[str, Any]:
        return read_json_blob(self.path, self.manifest_digest)


@dataclass(frozen=True)
class IndexInfo:
    """A multi-platform image index written into a layout."""

    path: Path
    tag: str
    index_digest: str
    index_size: int
    images: tuple[ImageInfo, ...]

    @property
    def total_size(self) -> int:
        return self.index_size + sum(image.total_size for image in self.images)

    def index(self) -> dict[str, Any]:
        return read_json_blob(self.path, self.index_digest)


def make_image_layout(
    path: Path,
    *,
    layers: int = 3,
    layer_size: int = 64 * 1024,
    seed: int | None = None,
    tag: str = "latest",
    platform: Platform = ("linux", "amd64"),
) -> ImageInfo:
    """Write (or add to) an OCI layout at ``path`` holding one image tagged ``tag``.

    Each of the ``layers`` layers carries ``layer_size`` random bytes, so a large ``layer_size``
    makes a benchmark-sized image; blobs are streamed to disk, never held in memory whole.
    With ``seed`` the bytes (and so every digest) are reproducible; without, they are unique.
    """
    rng = _rng(seed)
    _init_layout(path)
    image = _write_image(path, rng, layers=layers, layer_size=layer_size, platform=platform)
    image = dataclasses.replace(image, tag=tag)
    _add_to_layout_index(
        path, tag, MEDIA_TYPE_IMAGE_MANIFEST, image.manifest_digest, image.manifest_size
    )
    return image


def make_index_layout(
    path: Path,
    platforms: Sequence[Platform] = (("linux", "amd64"), ("linux", "arm64", "v8")),
    *,
    layers: int = 2,
    layer_size: int = 16 * 1024,
    seed: int | None = None,
    tag: str = "latest",
) -> IndexInfo:
    """Write (or add to) an OCI layout at ``path`` holding a multi-platform index tagged ``tag``.

    Every platform gets its own image with its own ``layers`` random layers.
    """
    if not platforms:
        raise ValueError("an index needs at least one platform")
    rng = _rng(seed)
    _init_layout(path)
    images = tuple(
        _write_image(path, rng, layers=layers, layer_size=layer_size, platform=platform)
        for platform in platforms
    )
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_IMAGE_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
                "digest": image.manifest_digest,
                "size": image.manifest_size,
                "platform": _platform_json(image.platform),
            }
            for image in images
        ],
    }
    digest, size = write_json_blob(path, index)
    _add_to_layout_index(path, tag, MEDIA_TYPE_IMAGE_INDEX, digest, size)
    return IndexInfo(path=path, tag=tag, index_digest=digest, index_size=size, images=images)


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    return layout / "blobs" / algorithm / hex_digest


def read_json_blob(layout: Path, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(blob_path(layout, digest).read_bytes())
    return data


def write_json_blob(layout: Path, document: dict[str, Any]) -> tuple[str, int]:
    """Store ``document`` as a compact JSON blob; return its digest and size."""
    return write_blob(layout, json.dumps(document, separators=(",", ":")).encode())


def write_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    target = blob_path(layout, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return digest, len(data)


def layout_tags(layout: Path) -> dict[str, str]:
    """The layout's ``index.json`` as ``{tag: digest}``."""
    index = json.loads((layout / "index.json").read_text())
    return {
        entry["annotations"][REF_NAME_ANNOTATION]: entry["digest"]
        for entry in index.get("manifests", [])
        if REF_NAME_ANNOTATION in entry.get("annotations", {})
    }


# --- internals -------------------------------------------------------------------------------


class _RandomSource:
    """Yields pseudo-random bytes from a seeded generator, or the OS's when unseeded."""

    def __init__(self, rng: random.Random | None) -> None:
        self._rng = rng

    def read(self, size: int) -> bytes:
        if self._rng is None:
            return os.urandom(size)
        return self._rng.randbytes(size)


def _rng(seed: int | None) -> _RandomSource:
    return _RandomSource(None if seed is None else random.Random(seed))


class _LimitedReader:
    """A file-like view of ``size`` bytes drawn from ``source`` in bounded chunks."""

    def __init__(self, source: _RandomSource, size: int) -> None:
        self._source = source
        self._left = size

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._left:
            size = self._left
        size = min(size, _CHUNK)
        self._left -= size
        return self._source.read(size) if size else b""


class _DigestingWriter:
    """Hashes and counts bytes on their way to ``sink``."""

    mode = "wb"

    def __init__(self, sink: BinaryIO | gzip.GzipFile) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _write_layer(
    layout: Path, source: _RandomSource, index: int, size: int
) -> tuple[str, int, str]:
    """Stream one gzip-wrapped tar layer into the blob store; return digest, size, diff_id."""
    blobs = layout / "blobs" / "sha256"
    fd, tmp_name = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            compressed = _DigestingWriter(out)
            with gzip.GzipFile(
                fileobj=compressed,
                mode="wb",
                compresslevel=0,
                mtime=0,
                filename="",
            ) as gz:
                uncompressed = _DigestingWriter(gz)
                with tarfile.open(
                    fileobj=uncompressed,
                    mode="w|",  # type: ignore[call-overload]
                    format=tarfile.PAX_FORMAT,
                ) as tar:
                    member = tarfile.TarInfo(f"data/layer-{index:04d}.bin")
                    member.size = size
                    member.mode = 0o644
                    member.mtime = 0
                    tar.addfile(member, _LimitedReader(source, size))
        target = blob_path(layout, compressed.digest)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return compressed.digest, compressed.size, uncompressed.digest


def _platform_json(platform: Platform) -> dict[str, str]:
    if len(platform) not in (2, 3):
        raise ValueError(f"platform must be (os, arch) or (os, arch, variant), not {platform!r}")
    result = {"os": platform[0], "architecture": platform[1]}
    if len(platform) == 3:
        result["variant"] = platform[2]
    return result


def _write_image(
    layout: Path, source: _RandomSource, *, layers: int, layer_size: int, platform: Platform
) -> ImageInfo:
    if layers < 0 or layer_size < 0:
        raise ValueError("layers and layer_size must not be negative")
    written = [_write_layer(layout, source, i, layer_size) for i in range(layers)]
    config = {
        "created": "1970-01-01T00:00:00Z",
        **_platform_json(platform),
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, _, diff_id in written]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"dockyard test layer {i}"}
            for i in range(layers)
        ],
    }
    config_digest, config_size = write_json_blob(layout, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_IMAGE_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {"mediaType": MEDIA_TYPE_LAYER_GZIP, "digest": digest, "size": size}
            for digest, size, _ in written
        ],
    }
    manifest_digest, manifest_size = write_json_blob(layout, manifest)
    return ImageInfo(
        path=layout,
        tag=None,
        platform=platform,
        manifest_digest=manifest_digest,
        manifest_size=manifest_size,
        config_digest=config_digest,
        layer_digests=tuple(digest for digest, _, _ in written),
        layer_sizes=tuple(size for _, size, _ in written),
        diff_ids=tuple(diff_id for _, _, diff_id in written),
    )


def _init_layout(layout: Path) -> None:
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    marker = layout / "oci-layout"
    if not marker.exists():
        marker.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = layout / "index.json"
    if not index.exists():
        index.write_text(json.dumps({"schemaVersion": 2, "manifests": []}))


def _add_to_layout_index(layout: Path, tag: str, media_type: str, digest: str, size: int) -> None:
    index_file = layout / "index.json"
    index = json.loads(index_file.read_text())
    manifests = [
        entry
        for entry in index.get("manifests", [])
        if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    manifests.append(
        {
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": {REF_NAME_ANNOTATION: tag},
        }
    )
    index["manifests"] = manifests
    index_file.write_text(json.dumps(index, indent=2))
