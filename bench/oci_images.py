"""Generate OCI image layouts with random, incompressible layers for benchmarking.

Each layer is a real ``tar`` archive holding one file of random bytes, wrapped in
gzip *stored* blocks (deflate level 0). That makes every layer a valid
``application/vnd.oci.image.layer.v1.tar+gzip`` blob that clients such as skopeo
recognise as already compressed, so they copy it as-is instead of spending CPU
re-compressing random data. Random bytes come from AES-CTR keyed with
``os.urandom`` (fast and incompressible); every layer gets its own key, so no two
layers share content.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

CHUNK = 4 << 20
BLOCK = 512


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass
class Image:
    """One image inside an OCI layout: its manifest and the blobs it refers to."""

    ref: str
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes a client moves for this image: manifest, config and layers."""
        return self.manifest.size + self.config.size + sum(d.size for d in self.layers)


class RandomStream:
    """Incompressible bytes from AES-128-CTR over zeros with a fresh random key."""

    def __init__(self) -> None:
        cipher = Cipher(algorithms.AES(os.urandom(16)), modes.CTR(os.urandom(16)))
        self._enc = cipher.encryptor()

    def read(self, n: int) -> bytes:
        return self._enc.update(bytes(n))


class _BlobWriter:
    """Writes a blob to ``blobs/sha256`` while hashing it; renamed into place on close."""

    def __init__(self, layout: Path) -> None:
        self._dir = layout / "blobs" / "sha256"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self._dir / f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
        self._fh = self._tmp.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self._fh.write(data)
            self._hash.update(data)
            self.size += len(data)

    def close(self) -> str:
        self._fh.close()
        digest = "sha256:" + self._hash.hexdigest()
        self._tmp.replace(self._dir / digest.split(":", 1)[1])
        return digest


def write_blob(layout: Path, data: bytes) -> str:
    writer = _BlobWriter(layout)
    writer.write(data)
    return writer.close()


def write_random_layer(layout: Path, size: int, name: str = "random.bin") -> tuple[Descriptor, str]:
    """Write one gzip(stored) tar layer of about ``size`` bytes; return (descriptor, diff_id)."""
    # tar = one 512-byte header + payload padded to 512 + two 512-byte end blocks.
    payload = max(BLOCK, (size - 3 * BLOCK) // BLOCK * BLOCK)
    info = tarfile.TarInfo(name)
    info.size = payload
    info.mode = 0o644
    info.mtime = 0
    header = info.tobuf(format=tarfile.USTAR_FORMAT)

    writer = _BlobWriter(layout)
    diff = hashlib.sha256()
    gz = zlib.compressobj(level=0, wbits=31)

    def feed(data: bytes) -> None:
        diff.update(data)
        writer.write(gz.compress(data))

    feed(header)
    rnd = RandomStream()
    left = payload
    while left > 0:
        n = min(CHUNK, left)
        feed(rnd.read(n))
        left -= n
    feed(bytes(2 * BLOCK))
    writer.write(gz.flush())
    digest = writer.close()
    return Descriptor(MT_LAYER_GZIP, digest, writer.size), "sha256:" + diff.hexdigest()


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def write_image(layout: Path, ref: str, layer_sizes: list[int]) -> Image:
    """Write an image with random layers of the given sizes into the OCI layout ``layout``."""
    layers: list[Descriptor] = []
    diff_ids: list[str] = []
    for i, size in enumerate(layer_sizes):
        desc, diff_id = write_random_layer(layout, size, name=f"layer{i}.bin")
        layers.append(desc)
        diff_ids.append(diff_id)
    config_bytes = _canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"dockyard.bench.ref": ref}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    )
    config = Descriptor(MT_CONFIG, write_blob(layout, config_bytes), len(config_bytes))
    manifest_bytes = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": config.as_json(),
            "layers": [d.as_json() for d in layers],
        }
    )
    manifest = Descriptor(MT_MANIFEST, write_blob(layout, manifest_bytes), len(manifest_bytes))
    return Image(ref=ref, manifest=manifest, config=config, layers=layers)


def write_index(layout: Path, images: list[Image]) -> None:
    """Write ``oci-layout`` and ``index.json`` naming every image by its ref."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {**img.manifest.as_json(), "annotations": {REF_ANNOTATION: img.ref}} for img in images
        ],
    }
    (layout / "index.json").write_text(json.dumps(index, indent=1))


def image_to_json(img: Image) -> dict[str, object]:
    return {
        "ref": img.ref,
        "manifest": img.manifest.as_json(),
        "config": img.config.as_json(),
        "layers": [d.as_json() for d in img.layers],
    }


def image_from_json(obj: dict[str, object]) -> Image:
    def desc(d: object) -> Descriptor:
        assert isinstance(d, dict)
        return Descriptor(d["mediaType"], d["digest"], d["size"])

    layers = obj["layers"]
    assert isinstance(layers, list)
    return Image(
        ref=str(obj["ref"]),
        manifest=desc(obj["manifest"]),
        config=desc(obj["config"]),
        layers=[desc(d) for d in layers],
    )


def build_layout(layout: Path, specs: list[tuple[str, list[int]]]) -> list[Image]:
    """Build (or reuse, when a matching ``bench-images.json`` exists) a layout of images."""
    meta = layout / "bench-images.json"
    wanted = [[ref, sizes] for ref, sizes in specs]
    if meta.exists():
        try:
            saved = json.loads(meta.read_text())
            if saved.get("specs") == wanted:
                images = [image_from_json(o) for o in saved["images"]]
                blobs = layout / "blobs" / "sha256"
                if all(
                    (blobs / d.digest.split(":", 1)[1]).is_file()
                    for img in images
                    for d in [img.manifest, img.config, *img.layers]
                ):
                    return images
        except (ValueError, KeyError, AssertionError, TypeError):
            pass
    layout.mkdir(parents=True, exist_ok=True)
    images = [write_image(layout, ref, sizes) for ref, sizes in specs]
    write_index(layout, images)
    meta.write_text(
        json.dumps({"specs": wanted, "images": [image_to_json(i) for i in images]}, indent=1)
    )
    return images


def write_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return the sha256 digest."""
    h = hashlib.sha256()
    rnd = RandomStream()
    with path.open("wb") as fh:
        left = size
        while left > 0:
            data = rnd.read(min(CHUNK, left))
            fh.write(data)
            h.update(data)
            left -= len(data)
    return "sha256:" + h.hexdigest()
