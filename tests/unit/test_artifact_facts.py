"""Artifact facts recorded at push: Harbor type, media type, size, extra_attrs, accessories."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest

from dockyard.artifacts.service import build_history, chart_dependencies, chart_files
from dockyard.errors import NotFoundError
from dockyard.oci import artifacts as facts
from dockyard.oci.manifest import ParsedManifest, parse_manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _manifest(
    config_type: str,
    *,
    layers: tuple[tuple[str, int], ...] = (("application/vnd.oci.image.layer.v1.tar", 10),),
    config_size: int = 7,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    subject: bool = False,
) -> ParsedManifest:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": _digest("config"), "size": config_size},
        "layers": [
            {"mediaType": media_type, "digest": _digest(f"layer{i}"), "size": size}
            for i, (media_type, size) in enumerate(layers)
        ],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    if subject:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": _digest("subject"), "size": 5}
    return parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST)


def _index(annotations: dict[str, str] | None = None) -> ParsedManifest:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": _digest("a"), "size": 100},
            {"mediaType": OCI_MANIFEST, "digest": _digest("b"), "size": 200},
        ],
    }
    if annotations:
        doc["annotations"] = annotations
    return parse_manifest(json.dumps(doc).encode(), OCI_INDEX)


@pytest.mark.parametrize(
    ("config_type", "artifact_type", "kind"),
    [
        ("application/vnd.oci.image.config.v1+json", None, "IMAGE"),
        ("application/vnd.docker.container.image.v1+json", None, "IMAGE"),
        ("application/vnd.cncf.helm.config.v1+json", None, "CHART"),
        ("application/vnd.cnab.config.v1+json", None, "CNAB"),
        ("application/vnd.wasm.config.v1+json", None, "WASM"),
        ("application/vnd.module.wasm.config.v1+json", None, "WASM"),
        ("application/vnd.oci.empty.v1+json", "application/vnd.goharbor.harbor.sbom.v1", "SBOM"),
        ("application/vnd.example.widget.config.v1+json", None, "WIDGET"),
        ("application/vnd.oci.empty.v1+json", "application/vnd.cncf.notary.signature", "UNKNOWN"),
        ("application/octet-stream", None, "UNKNOWN"),
    ],
)
def test_artifact_kind(config_type: str, artifact_type: str | None, kind: str) -> None:
    parsed = _manifest(config_type, artifact_type=artifact_type)
    assert facts.artifact_kind(parsed) == kind


def test_index_kind_media_type_and_size() -> None:
    plain = _index()
    assert facts.artifact_kind(plain) == "IMAGE"
    assert facts.artifact_media_type(plain) == OCI_INDEX
    sizes = {_digest("a"): 1000, _digest("b"): 2000}
    assert facts.artifact_size(plain, sizes) == plain.size + 3000
    cnab = _index({"io.cnab.runtime_version": "v1.0.0"})
    assert facts.artifact_kind(cnab) == "CNAB"
    assert facts.artifact_media_type(cnab) == facts.CNAB_MEDIA_TYPE


def test_wasm_annotation_and_image_size() -> None:
    wasm = _manifest(
        "application/vnd.oci.image.config.v1+json",
        annotations={"module.wasm.image/variant": "compat"},
    )
    assert facts.artifact_media_type(wasm) == "application/vnd.wasm.config.v1+json"
    assert facts.artifact_kind(wasm) == "WASM"
    # manifest + config + every layer, as Harbor counts it (a repeated layer twice)
    layer = "application/vnd.oci.image.layer.v1.tar"
    image = _manifest("application/vnd.oci.image.config.v1+json", layers=((layer, 10), (layer, 20)))
    assert facts.artifact_size(image) == image.size + 7 + 30


def test_extra_attrs_of_an_image_keeps_harbors_keys() -> None:
    config = json.dumps(
        {
            "created": "2026-01-01T00:00:00Z",
            "author": "me",
            "architecture": "arm64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "history": [{"created_by": "x"}],
            "rootfs": {"diff_ids": []},
        }
    ).encode()
    assert facts.extra_attrs("IMAGE", config) == {
        "created": "2026-01-01T00:00:00Z",
        "author": "me",
        "architecture": "arm64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
    }


def test_extra_attrs_of_a_chart_and_of_what_has_none() -> None:
    chart = json.dumps({"name": "c", "version": "1.0.0", "apiVersion": "v2", "x": 1}).encode()
    assert facts.extra_attrs("CHART", chart) == {
        "name": "c",
        "version": "1.0.0",
        "apiVersion": "v2",
    }
    assert facts.extra_attrs("UNKNOWN", chart) is None
    assert facts.extra_attrs("IMAGE", None) is None
    assert facts.extra_attrs("IMAGE", b"not json") is None
    assert facts.extra_attrs("IMAGE", b"[1, 2]") is None
    assert facts.extra_attrs("IMAGE", b"{}") is None
    assert facts.extra_attrs("IMAGE", b"[" * 100_000) is None
    assert facts.extra_attrs("IMAGE", b" " * (facts.MAX_CONFIG_BYTES + 1)) is None


@pytest.mark.parametrize(
    ("config_type", "artifact_type", "layer", "expected"),
    [
        (
            "application/vnd.oci.image.config.v1+json",
            None,
            "application/vnd.dev.cosign.simplesigning.v1+json",
            "signature.cosign",
        ),
        (
            "application/vnd.oci.empty.v1+json",
            "application/vnd.cncf.notary.signature",
            "application/jose+json",
            "signature.notation",
        ),
        (
            "application/vnd.oci.empty.v1+json",
            "application/vnd.goharbor.harbor.sbom.v1",
            "application/spdx+json",
            "harbor.sbom",
        ),
        ("application/vnd.oci.empty.v1+json", "application/spdx+json", "x/y", "subject.accessory"),
    ],
)
def test_accessory_type(config_type: str, artifact_type: str, layer: str, expected: str) -> None:
    parsed = _manifest(config_type, artifact_type=artifact_type, layers=((layer, 5),), subject=True)
    assert facts.accessory_type(parsed) == expected


def test_cosign_bundle_referrers() -> None:
    """cosign 3's default: a sigstore bundle referrer. Its sign predicate (or a bare message
    signature) is a signature; another predicate is an attestation, a generic accessory."""
    bundle = "application/vnd.dev.sigstore.bundle.v0.3+json"

    def kind(annotations: dict[str, str]) -> str:
        parsed = _manifest(
            "application/vnd.oci.empty.v1+json",
            artifact_type=bundle,
            layers=((bundle, 4037),),
            annotations=annotations,
            subject=True,
        )
        return facts.accessory_type(parsed)

    sign = {
        "dev.sigstore.bundle.content": "dsse-envelope",
        "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
    }
    assert kind(sign) == "signature.cosign"
    assert kind({"dev.sigstore.bundle.content": "message-signature"}) == "signature.cosign"
    attestation = {**sign, "dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"}
    assert kind(attestation) == "subject.accessory"
    assert kind({}) == "subject.accessory"


def test_cosign_tags() -> None:
    hex_digest = "a" * 64
    assert facts.cosign_subject(f"sha256-{hex_digest}.sig") == (
        f"sha256:{hex_digest}",
        "signature.cosign",
    )
    assert facts.cosign_subject(f"sha256-{hex_digest}.att") == (
        f"sha256:{hex_digest}",
        "subject.accessory",
    )
    for tag in ("latest", f"sha256-{hex_digest}", f"sha256-{'a' * 63}.sig", "sha256-AB.sig"):
        assert facts.cosign_subject(tag) is None


def test_build_history() -> None:
    config = json.dumps({"history": [{"created_by": "a"}, "junk", {"empty_layer": True}]})
    assert build_history(config.encode()) == [{"created_by": "a"}, {"empty_layer": True}]
    assert build_history(b"{}") == []
    assert build_history(b'{"history": "no"}') == []
    with pytest.raises(NotFoundError):
        build_history(b"\xff")


def _tgz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_chart_files_reads_the_top_chart_only() -> None:
    archive = _tgz(
        {
            "c/charts/sub/values.yaml": b"sub: 1\n",
            "c/values.yaml": b"top: 1\n",
            "c/README.md": b"# c\n",
            "c/Chart.yaml": b"name: c\n",
        }
    )
    found = chart_files(archive)
    assert (found.values, found.readme, found.chart_yaml) == ("top: 1\n", "# c\n", "name: c\n")
    assert chart_files(_tgz({"c/templates/x.yaml": b""})).values is None
    with pytest.raises(NotFoundError):
        chart_files(b"not an archive")


def test_chart_dependencies() -> None:
    config = json.dumps({"dependencies": [{"name": "redis"}, 3]}).encode()
    assert chart_dependencies(config) == [{"name": "redis"}]
    assert chart_dependencies(b"{}") == []
    assert chart_dependencies(b"junk") == []
    assert chart_dependencies(None) == []
