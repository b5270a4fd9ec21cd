"""The OCI layouts tests/support builds are valid to skopeo, byte for byte (no server needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.support.oci_layout import (
    MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST,
    blob_path,
    layout_tags,
    make_image_layout,
    make_index_layout,
)
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e


def test_skopeo_reads_an_image_layout(skopeo: Skopeo, tmp_path: Path) -> None:
    image = make_image_layout(tmp_path / "img", layers=3, layer_size=10_000, tag="v1")

    info = skopeo.json("inspect", f"oci:{image.path}:v1")

    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == list(image.layer_digests)
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")


def test_skopeo_copies_layers_unchanged(skopeo: Skopeo, tmp_path: Path) -> None:
    image = make_image_layout(tmp_path / "img", layers=2, layer_size=10_000)

    skopeo.run("copy", f"oci:{image.path}:latest", f"dir:{tmp_path / 'dir'}")

    copied = json.loads((tmp_path / "dir" / "manifest.json").read_bytes())
    assert [layer["digest"] for layer in copied["layers"]] == list(image.layer_digests)
    for digest in image.blob_digests:
        assert (tmp_path / "dir" / digest.split(":")[1]).read_bytes() == blob_path(
            image.path, digest
        ).read_bytes()


def test_layers_are_gzip_tars_matching_the_diff_ids(tmp_path: Path) -> None:
    image = make_image_layout(tmp_path / "img", layers=2, layer_size=5000)

    config = json.loads(blob_path(image.path, image.config_digest).read_bytes())
    assert config["rootfs"]["diff_ids"] == list(image.diff_ids)
    for digest, diff_id, size in zip(
        image.layer_digests, image.diff_ids, image.layer_sizes, strict=True
    ):
        compressed = blob_path(image.path, digest).read_bytes()
        assert len(compressed) == size
        assert "sha256:" + hashlib.sha256(compressed).hexdigest() == digest
        tar_bytes = gzip.decompress(compressed)
        assert "sha256:" + hashlib.sha256(tar_bytes).hexdigest() == diff_id
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            (member,) = tar.getmembers()
            assert member.size == 5000


def test_seed_makes_layouts_reproducible_and_no_seed_makes_them_unique(tmp_path: Path) -> None:
    first = make_image_layout(tmp_path / "a", seed=7)
    again = make_image_layout(tmp_path / "b", seed=7)
    other = make_image_layout(tmp_path / "c")

    assert first.manifest_digest == again.manifest_digest
    assert len(set(first.layer_digests)) == 3
    assert not set(first.layer_digests) & set(other.layer_digests)


def test_one_layout_holds_several_tags(skopeo: Skopeo, tmp_path: Path) -> None:
    one = make_image_layout(tmp_path / "img", layers=1, tag="one")
    two = make_image_layout(tmp_path / "img", layers=1, tag="two")

    assert layout_tags(tmp_path / "img") == {"one": one.manifest_digest, "two": two.manifest_digest}
    assert skopeo.json("inspect", f"oci:{tmp_path / 'img'}:two")["Digest"] == two.manifest_digest


def test_skopeo_reads_an_index_layout(skopeo: Skopeo, tmp_path: Path) -> None:
    index = make_index_layout(tmp_path / "idx", tag="multi")

    raw = skopeo.run("inspect", "--raw", f"oci:{index.path}:multi").stdout
    arm = skopeo.json(
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        "inspect",
        f"oci:{index.path}:multi",
    )

    document = json.loads(raw)
    assert document["mediaType"] == MEDIA_TYPE_IMAGE_INDEX
    assert [m["platform"]["architecture"] for m in document["manifests"]] == ["amd64", "arm64"]
    assert all(m["mediaType"] == MEDIA_TYPE_IMAGE_MANIFEST for m in document["manifests"])
    assert arm["Digest"] == index.index_digest  # skopeo reports the digest it was pointed at
    assert arm["Layers"] == list(index.images[1].layer_digests)
    assert arm["Architecture"] == "arm64"
