"""Manifest and index parsing: real-world pushes and hostile bodies."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from dockyard.errors import DigestInvalidError, ManifestInvalidError, PayloadTooLargeError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SIZE,
    Descriptor,
    ParsedManifest,
    Platform,
    parse_manifest,
)

EMPTY_JSON = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def dg(seed: str) -> str:
    """A valid digest string derived from ``seed``."""
    return str(Digest.of(seed.encode()))


def desc(media_type: str, seed: str = "x", size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": dg(seed), "size": size, **extra}


def oci_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, "config"),
        "layers": [desc(mt.OCI_LAYER_GZIP, "layer1"), desc(mt.OCI_LAYER_GZIP, "layer2")],
        **extra,
    }


def oci_index(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            desc(mt.OCI_MANIFEST, "amd64", platform={"architecture": "amd64", "os": "linux"})
        ],
        **extra,
    }


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def parse(doc: Any, content_type: str | None = None) -> ParsedManifest:
    return parse_manifest(encode(doc), content_type)


def invalid(doc: Any, message: str, content_type: str | None = None) -> str:
    """Assert ``doc`` is refused with a message matching ``message``; return it."""
    with pytest.raises(ManifestInvalidError, match=message) as info:
        parse(doc, content_type)
    return info.value.message


# --- real-world manifests ----------------------------------------------------

DOCKER_V2 = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1472,
      "digest": "sha256:c1aabb73d2339c5ebaa3681de2e9d9c18d57485045a4e311d9f8004bec208d67"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 3408729,
         "digest": "sha256:63b65145d645c1250c391b2d16ebe53b3747c295ca8ba2fcb6b0cf064a4dc21c"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 32,
         "digest": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 32,
         "digest": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
      }
   ]
}"""

OCI_BUILDKIT = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
    "size": 581
  },
  "layers": [
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "digest": "sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8",
      "size": 3408729
    },
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
      "digest": "sha256:d2c3b2ee2c9b3b04a5dbba6fd1d2bce0b0a0e4b3e1b3c1e2f0ad1c9e4f1ab8f1",
      "size": 1234
    }
  ],
  "annotations": {
    "org.opencontainers.image.created": "2024-03-01T10:00:00Z",
    "org.opencontainers.image.base.name": "docker.io/library/alpine:3.19"
  }
}"""

OCI_INDEX_BUILDX = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
      "size": 1052,
      "platform": {"architecture": "amd64", "os": "linux"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
      "size": 1052,
      "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
      "size": 1052,
      "platform": {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.5329",
        "os.features": ["win32k"]
      }
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
      "size": 566,
      "annotations": {
        "vnd.docker.reference.digest":
          "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "vnd.docker.reference.type": "attestation-manifest"
      },
      "platform": {"architecture": "unknown", "os": "unknown"}
    }
  ],
  "annotations": {"org.opencontainers.image.ref.name": "latest"}
}"""

DOCKER_LIST = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 528,
         "digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555",
         "platform": {"architecture": "amd64", "os": "linux"}
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 528,
         "digest": "sha256:6666666666666666666666666666666666666666666666666666666666666666",
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8", "features": []}
      }
   ]
}"""

ORAS_ARTIFACT = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/vnd.example.sbom.v1",
  "config": {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
    "data": "e30="
  },
  "layers": [
    {
      "mediaType": "application/spdx+json",
      "digest": "sha256:7777777777777777777777777777777777777777777777777777777777777777",
      "size": 1024,
      "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"}
    }
  ],
  "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
}"""

NOTATION_SIGNATURE = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/vnd.cncf.notary.signature",
  "config": {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2
  },
  "layers": [
    {
      "mediaType": "application/jose+json",
      "digest": "sha256:8888888888888888888888888888888888888888888888888888888888888888",
      "size": 2090
    }
  ],
  "subject": {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "size": 1052
  },
  "annotations": {
    "io.cncf.notary.x509chain.thumbprint#S256":
      "[\\"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\\"]",
    "org.opencontainers.image.created": "2024-02-02T02:02:02Z"
  }
}"""

COSIGN_SIGNATURE = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "size": 233,
    "digest": "sha256:9999999999999999999999999999999999999999999999999999999999999999"
  },
  "layers": [
    {
      "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
      "size": 250,
      "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "annotations": {
        "dev.cosignproject.cosign/signature": "MEUCIQDx...base64...==",
        "dev.sigstore.cosign/bundle": "{\\"SignedEntryTimestamp\\":\\"MEQ=\\"}"
      }
    }
  ],
  "subject": {
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "size": 528,
    "digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555"
  }
}"""

SIGSTORE_BUNDLE = b"""{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
  "config": {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2
  },
  "layers": [
    {
      "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
      "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
      "size": 4200
    }
  ],
  "subject": {
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "digest": "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    "size": 1609
  }
}"""

HELM_CHART = b"""{
  "schemaVersion": 2,
  "config": {
    "mediaType": "application/vnd.cncf.helm.config.v1+json",
    "digest": "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
    "size": 117
  },
  "layers": [
    {
      "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
      "digest": "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
      "size": 3701
    },
    {
      "mediaType": "application/vnd.cncf.helm.chart.provenance.v1.prov",
      "digest": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
      "size": 1021
    }
  ],
  "annotations": {
    "org.opencontainers.image.title": "mychart",
    "org.opencontainers.image.version": "0.1.0"
  }
}"""

WINDOWS_FOREIGN = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1811,
      "digest": "sha256:0101010101010101010101010101010101010101010101010101010101010101"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 1654613376,
         "digest": "sha256:0202020202020202020202020202020202020202020202020202020202020202",
         "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:0202"]
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 1234,
         "digest": "sha256:0303030303030303030303030303030303030303030303030303030303030303"
      }
   ]
}"""


def test_docker_v2_manifest() -> None:
    manifest = parse_manifest(DOCKER_V2, mt.DOCKER_MANIFEST)
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert manifest.digest == Digest.of(DOCKER_V2)
    assert manifest.size == len(DOCKER_V2)
    assert manifest.raw == DOCKER_V2
    assert not manifest.is_index
    assert manifest.config is not None
    assert manifest.config.media_type == mt.DOCKER_CONFIG
    assert manifest.config.size == 1472
    assert len(manifest.layers) == 3
    assert manifest.manifests == ()
    assert manifest.subject is None
    assert manifest.artifact_type is None
    assert manifest.effective_artifact_type == mt.DOCKER_CONFIG
    assert manifest.annotations == {}
    # The repeated empty layer is required once.
    assert [str(d.digest) for d in manifest.required_blobs] == [
        "sha256:c1aabb73d2339c5ebaa3681de2e9d9c18d57485045a4e311d9f8004bec208d67",
        "sha256:63b65145d645c1250c391b2d16ebe53b3747c295ca8ba2fcb6b0cf064a4dc21c",
        "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4",
    ]


def test_oci_image_manifest_from_buildkit() -> None:
    manifest = parse_manifest(OCI_BUILDKIT, mt.OCI_MANIFEST)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert [layer.media_type for layer in manifest.layers] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD]
    assert manifest.annotations["org.opencontainers.image.base.name"] == (
        "docker.io/library/alpine:3.19"
    )
    assert len(manifest.required_blobs) == 3
    assert manifest.effective_artifact_type == mt.OCI_CONFIG


def test_oci_index_with_platforms_and_attestations() -> None:
    index = parse_manifest(OCI_INDEX_BUILDX, mt.OCI_INDEX)
    assert index.is_index
    assert index.config is None
    assert index.layers == ()
    assert index.required_blobs == ()
    assert index.effective_artifact_type is None
    assert index.annotations == {"org.opencontainers.image.ref.name": "latest"}
    platforms = [child.platform for child in index.manifests]
    assert platforms == [
        Platform("amd64", "linux"),
        Platform("arm", "linux", variant="v7"),
        Platform("amd64", "windows", os_version="10.0.17763.5329", features=("win32k",)),
        Platform("unknown", "unknown"),
    ]
    assert index.manifests[3].annotations["vnd.docker.reference.type"] == "attestation-manifest"


def test_docker_manifest_list() -> None:
    index = parse_manifest(DOCKER_LIST, mt.DOCKER_MANIFEST_LIST)
    assert index.media_type == mt.DOCKER_MANIFEST_LIST
    assert index.is_index
    assert [c.platform.architecture for c in index.manifests if c.platform] == ["amd64", "arm64"]
    assert index.manifests[1].platform == Platform("arm64", "linux", variant="v8")


def test_oras_artifact_with_empty_config() -> None:
    manifest = parse_manifest(ORAS_ARTIFACT, mt.OCI_MANIFEST)
    assert manifest.artifact_type == "application/vnd.example.sbom.v1"
    assert manifest.effective_artifact_type == "application/vnd.example.sbom.v1"
    assert manifest.config is not None
    assert manifest.config.media_type == mt.OCI_EMPTY
    assert str(manifest.config.digest) == EMPTY_JSON
    assert manifest.layers[0].annotations == {"org.opencontainers.image.title": "sbom.spdx.json"}
    assert [d.media_type for d in manifest.required_blobs] == [
        mt.OCI_EMPTY,
        "application/spdx+json",
    ]


def test_notation_signature_with_subject() -> None:
    manifest = parse_manifest(NOTATION_SIGNATURE, mt.OCI_MANIFEST)
    assert manifest.subject is not None
    assert manifest.subject.media_type == mt.OCI_MANIFEST
    assert str(manifest.subject.digest) == "sha256:" + "1" * 64
    assert manifest.subject.size == 1052
    assert manifest.effective_artifact_type == "application/vnd.cncf.notary.signature"
    assert manifest.annotations["io.cncf.notary.x509chain.thumbprint#S256"].startswith('["')


def test_cosign_signature_without_artifact_type_reports_config_type() -> None:
    manifest = parse_manifest(COSIGN_SIGNATURE, mt.OCI_MANIFEST)
    assert manifest.subject is not None
    assert manifest.subject.media_type == mt.DOCKER_MANIFEST
    assert manifest.artifact_type is None
    assert manifest.effective_artifact_type == mt.OCI_CONFIG
    layer = manifest.layers[0]
    assert layer.annotations["dev.cosignproject.cosign/signature"] == "MEUCIQDx...base64...=="


def test_sigstore_bundle_media_type_with_parameters() -> None:
    manifest = parse_manifest(SIGSTORE_BUNDLE, mt.OCI_MANIFEST)
    assert manifest.artifact_type == "application/vnd.dev.sigstore.bundle+json;version=0.2"
    assert manifest.layers[0].media_type == "application/vnd.dev.sigstore.bundle+json;version=0.2"
    assert manifest.subject is not None
    assert manifest.subject.media_type == mt.OCI_INDEX


@pytest.mark.parametrize("content_type", [mt.OCI_MANIFEST, None, "application/json"])
def test_helm_chart_without_media_type_field(content_type: str | None) -> None:
    manifest = parse_manifest(HELM_CHART, content_type)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert manifest.effective_artifact_type == "application/vnd.cncf.helm.config.v1+json"
    assert len(manifest.required_blobs) == 3


def test_windows_foreign_layers_are_not_required() -> None:
    manifest = parse_manifest(WINDOWS_FOREIGN, mt.DOCKER_MANIFEST)
    foreign = manifest.layers[0]
    assert foreign.media_type == mt.DOCKER_FOREIGN_LAYER
    assert foreign.urls == ("https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:0202",)
    assert foreign.size == 1654613376
    assert not foreign.is_distributable
    assert [str(d.digest) for d in manifest.required_blobs] == [
        "sha256:" + "01" * 32,
        "sha256:" + "03" * 32,
    ]


@pytest.mark.parametrize("media_type", sorted(mt.OCI_NONDISTRIBUTABLE_LAYERS))
def test_nondistributable_oci_layers_are_not_required(media_type: str) -> None:
    doc = oci_manifest(layers=[desc(media_type, "nd"), desc(mt.OCI_LAYER, "ok")])
    manifest = parse(doc)
    assert [d.media_type for d in manifest.required_blobs] == [mt.OCI_CONFIG, mt.OCI_LAYER]


def test_layers_with_urls_are_not_required() -> None:
    doc = oci_manifest(layers=[desc(mt.OCI_LAYER_GZIP, "remote", urls=["https://e.example/b"])])
    assert [d.media_type for d in parse(doc).required_blobs] == [mt.OCI_CONFIG]


def test_config_is_required_even_if_a_layer_shares_its_digest() -> None:
    doc = oci_manifest(layers=[desc(mt.OCI_LAYER, "config")])
    assert [d.media_type for d in parse(doc).required_blobs] == [mt.OCI_CONFIG]


def test_oci_index_with_subject_and_artifact_type() -> None:
    index = parse(
        oci_index(
            artifactType="application/vnd.example.bundle",
            subject=desc(mt.OCI_MANIFEST, "subject"),
        )
    )
    assert index.is_index
    assert index.artifact_type == "application/vnd.example.bundle"
    assert index.effective_artifact_type == "application/vnd.example.bundle"
    assert index.subject is not None


def test_index_may_list_artifacts_and_nested_indexes() -> None:
    doc = oci_index(
        manifests=[
            desc(mt.OCI_INDEX, "nested"),
            desc(mt.OCI_MANIFEST, "art", artifactType="application/vnd.example"),
            desc("application/vnd.example.custom+json", "custom"),
        ]
    )
    index = parse(doc)
    assert [c.media_type for c in index.manifests] == [
        mt.OCI_INDEX,
        mt.OCI_MANIFEST,
        "application/vnd.example.custom+json",
    ]
    assert index.manifests[1].artifact_type == "application/vnd.example"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_digest_is_over_the_raw_bytes(algorithm: str) -> None:
    body = b'  {"schemaVersion":2, "mediaType":"' + mt.OCI_INDEX.encode() + b'","manifests":[]}\n'
    manifest = parse_manifest(body, None, algorithm)
    assert manifest.digest == Digest.of(body, algorithm)
    assert manifest.size == len(body)
    assert manifest.raw == body


def test_unsupported_digest_algorithm() -> None:
    with pytest.raises(DigestInvalidError):
        parse_manifest(encode(oci_index()), None, "md5")


def test_bytearray_body_is_copied_to_bytes() -> None:
    body = bytearray(encode(oci_index()))
    manifest = parse_manifest(body, None)  # type: ignore[arg-type]
    assert type(manifest.raw) is bytes


# --- media type resolution ---------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "content_type", "expected"),
    [
        (oci_manifest(), mt.OCI_MANIFEST, mt.OCI_MANIFEST),
        (oci_manifest(), None, mt.OCI_MANIFEST),
        (oci_manifest(), "", mt.OCI_MANIFEST),
        (oci_manifest(), f"{mt.OCI_MANIFEST}; charset=utf-8", mt.OCI_MANIFEST),
        (oci_manifest(), "  Application/VND.oci.image.manifest.v1+JSON  ", mt.OCI_MANIFEST),
        (oci_manifest(), "application/json", mt.OCI_MANIFEST),
        (oci_manifest(), "application/json; charset=utf-8", mt.OCI_MANIFEST),
        (oci_manifest(), "application/octet-stream", mt.OCI_MANIFEST),
        (oci_manifest(), "application/x-www-form-urlencoded", mt.OCI_MANIFEST),
        (oci_manifest(), "text/plain", mt.OCI_MANIFEST),
        (oci_manifest(mediaType=None), mt.OCI_MANIFEST, mt.OCI_MANIFEST),
        (oci_manifest(mediaType=None), None, mt.OCI_MANIFEST),
        (oci_manifest(mediaType=None), mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST),
        (
            oci_manifest(mediaType="Application/Vnd.Oci.Image.Manifest.V1+Json"),
            None,
            mt.OCI_MANIFEST,
        ),
        (oci_index(), None, mt.OCI_INDEX),
        (oci_index(mediaType=None), None, mt.OCI_INDEX),
        (oci_index(mediaType=None), mt.OCI_INDEX, mt.OCI_INDEX),
        (oci_index(mediaType=None), mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST_LIST),
    ],
)
def test_media_type_resolution(
    doc: dict[str, Any], content_type: str | None, expected: str
) -> None:
    if doc.get("mediaType", "") is None:
        del doc["mediaType"]
    assert parse(doc, content_type).media_type == expected


def test_null_media_type_counts_as_absent() -> None:
    assert parse(oci_manifest(mediaType=None)).media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        (oci_manifest(), mt.OCI_INDEX),
        (oci_manifest(), mt.DOCKER_MANIFEST),
        (oci_index(), mt.OCI_MANIFEST),
        (oci_index(), mt.DOCKER_MANIFEST_LIST),
        (oci_manifest(), "application/vnd.example+json"),
        (oci_manifest(), "garbage"),
    ],
)
def test_content_type_conflicting_with_body(doc: dict[str, Any], content_type: str) -> None:
    message = invalid(doc, "does not match the manifest's mediaType", content_type)
    assert doc["mediaType"] in message


@pytest.mark.parametrize(
    ("doc", "content_type", "message"),
    [
        (oci_manifest(mediaType="application/vnd.example+json"), None, "unsupported manifest"),
        (oci_manifest(mediaType=mt.OCI_CONFIG), None, "unsupported manifest media type"),
        (
            oci_manifest(mediaType=f"{mt.OCI_MANIFEST}; charset=utf-8"),
            None,
            "unsupported manifest media type",
        ),
        ({**oci_manifest(), "mediaType": None}, "application/vnd.example+json", "unsupported"),
        ({**oci_manifest(), "mediaType": None}, "garbage", "unsupported manifest media type"),
        (
            oci_manifest(mediaType="application/vnd.oci.artifact.manifest.v1+json"),
            None,
            "artifact manifest was dropped from OCI 1.1",
        ),
        (oci_manifest(mediaType=""), None, "mediaType must not be empty"),
        (oci_manifest(mediaType=2), None, "mediaType must be a string, got a number"),
        (oci_manifest(mediaType=["x"]), None, "mediaType must be a string, got an array"),
        (oci_manifest(mediaType="no-slash"), None, "mediaType 'no-slash' is not a valid"),
        (
            {"schemaVersion": 2, "layers": []},
            None,
            "cannot tell the manifest type",
        ),
        (
            {"schemaVersion": 2, "config": desc(mt.OCI_CONFIG), "manifests": []},
            None,
            "both 'config' and 'manifests'",
        ),
    ],
)
def test_media_type_errors(doc: dict[str, Any], content_type: str | None, message: str) -> None:
    if doc.get("mediaType", "") is None:
        del doc["mediaType"]
    invalid(doc, message, content_type)


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        ({"schemaVersion": 1, "name": "a/b", "tag": "latest", "fsLayers": []}, None),
        ({"schemaVersion": 1, "name": "a/b", "tag": "latest", "fsLayers": []}, mt.DOCKER_SCHEMA1),
        ({"schemaVersion": 1, "signatures": []}, mt.DOCKER_SCHEMA1_SIGNED),
        ({"schemaVersion": 2}, mt.DOCKER_SCHEMA1_SIGNED),
        ({"schemaVersion": 2, "mediaType": mt.DOCKER_SCHEMA1}, None),
        ({"schemaVersion": 2, "mediaType": mt.DOCKER_SCHEMA1_SIGNED}, None),
        ({"schemaVersion": 1.0}, None),
    ],
)
def test_schema1_is_refused_clearly(doc: dict[str, Any], content_type: str | None) -> None:
    invalid(doc, "schema 1 manifests are not supported", content_type)


def test_schema1_header_is_refused_before_the_body_is_read() -> None:
    with pytest.raises(ManifestInvalidError, match="schema 1"):
        parse_manifest(b"not even json", f"{mt.DOCKER_SCHEMA1_SIGNED}; charset=utf-8")


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        (3, "got 3"),
        (0, "got 0"),
        (-2, "got -2"),
        ("2", "got '2'"),
        (2.0, "got 2.0"),
        (2.5, "got 2.5"),
        (True, "got true"),
        (None, "got null"),
        ([2], "got an array"),
        ({"v": 2}, "got an object"),
        (json.loads("[" * 900 + "]" * 900), "got an array"),
        (10**30, "got 1000"),
    ],
)
def test_schema_version_must_be_integer_two(version: Any, shown: str) -> None:
    invalid(oci_manifest(schemaVersion=version), f"schemaVersion must be 2, {shown}")


def test_schema_version_is_required() -> None:
    doc = oci_manifest()
    del doc["schemaVersion"]
    invalid(doc, "schemaVersion is required")


# --- structure -----------------------------------------------------------------


def test_image_manifest_requires_config() -> None:
    doc = oci_manifest()
    del doc["config"]
    invalid(doc, "config is required", mt.OCI_MANIFEST)


@pytest.mark.parametrize("config", [None, [], "sha256:abc", 1, True])
def test_config_must_be_a_descriptor(config: Any) -> None:
    invalid(oci_manifest(config=config), "config must be a descriptor object")


@pytest.mark.parametrize("layers", [None, []])
def test_oci_manifest_layers_may_be_empty_or_null(layers: Any) -> None:
    manifest = parse(oci_manifest(layers=layers))
    assert manifest.layers == ()
    assert [d.media_type for d in manifest.required_blobs] == [mt.OCI_CONFIG]


def test_oci_manifest_layers_may_be_missing() -> None:
    doc = oci_manifest()
    del doc["layers"]
    assert parse(doc).layers == ()


def test_docker_manifest_requires_layers() -> None:
    doc = oci_manifest(mediaType=mt.DOCKER_MANIFEST, config=desc(mt.DOCKER_CONFIG))
    del doc["layers"]
    invalid(doc, "layers is required in a Docker image manifest")


def test_docker_manifest_with_empty_layers() -> None:
    doc = oci_manifest(mediaType=mt.DOCKER_MANIFEST, config=desc(mt.DOCKER_CONFIG), layers=[])
    assert parse(doc).layers == ()


@pytest.mark.parametrize("layers", [{}, "layer", 1, {"0": {}}])
def test_layers_must_be_a_list(layers: Any) -> None:
    invalid(oci_manifest(layers=layers), "layers must be an array of descriptors")


@pytest.mark.parametrize("layer", [None, [], "sha256:x", 0])
def test_each_layer_must_be_an_object(layer: Any) -> None:
    invalid(oci_manifest(layers=[desc(mt.OCI_LAYER), layer]), r"layers\[1\] must be a descriptor")


def test_index_requires_manifests() -> None:
    doc = oci_index()
    del doc["manifests"]
    invalid(doc, "manifests is required in an index")


@pytest.mark.parametrize("manifests", [None, []])
def test_index_may_be_empty(manifests: Any) -> None:
    assert parse(oci_index(manifests=manifests)).manifests == ()


@pytest.mark.parametrize("manifests", [{}, "x", 5])
def test_index_manifests_must_be_a_list(manifests: Any) -> None:
    invalid(oci_index(manifests=manifests), "manifests must be an array of descriptors")


@pytest.mark.parametrize(
    "child_type",
    [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_CONFIG, "application/vnd.example+json"],
)
def test_docker_manifest_list_children_must_be_manifests(child_type: str) -> None:
    doc = oci_index(
        mediaType=mt.DOCKER_MANIFEST_LIST,
        manifests=[desc(mt.DOCKER_MANIFEST, "ok"), desc(child_type, "bad")],
    )
    invalid(doc, r"manifests\[1\].mediaType .* is not allowed in a Docker manifest list")


def test_docker_manifest_list_may_hold_oci_manifests() -> None:
    doc = oci_index(mediaType=mt.DOCKER_MANIFEST_LIST, manifests=[desc(mt.OCI_MANIFEST)])
    assert parse(doc).manifests[0].media_type == mt.OCI_MANIFEST


def test_docker_manifest_ignores_subject_and_artifact_type() -> None:
    doc = oci_manifest(
        mediaType=mt.DOCKER_MANIFEST,
        config=desc(mt.DOCKER_CONFIG),
        subject=desc(mt.DOCKER_MANIFEST, "s"),
        artifactType="application/vnd.example",
    )
    manifest = parse(doc)
    assert manifest.subject is None
    assert manifest.artifact_type is None
    assert manifest.effective_artifact_type == mt.DOCKER_CONFIG


def test_docker_manifest_config_type_is_not_policed() -> None:
    doc = oci_manifest(mediaType=mt.DOCKER_MANIFEST, config=desc(mt.OCI_EMPTY))
    assert parse(doc).config is not None


def test_unknown_fields_are_ignored() -> None:
    doc = oci_manifest(
        extra={"deep": [1, 2, {"x": None}]},
        config={**desc(mt.OCI_CONFIG), "future": True, "data": "e30="},
    )
    assert parse(doc).config is not None


@pytest.mark.parametrize("subject", [None])
def test_null_subject_is_absent(subject: Any) -> None:
    assert parse(oci_manifest(subject=subject)).subject is None


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("sha256:abc", "subject must be a descriptor object, got a string"),
        ([], "subject must be a descriptor object, got an array"),
        ({}, r"subject.mediaType is required"),
        ({"mediaType": mt.OCI_MANIFEST, "size": 1}, "subject.digest is required"),
        ({**desc(mt.OCI_MANIFEST), "digest": "sha256:nope"}, "subject.digest: "),
    ],
)
def test_subject_errors(subject: Any, message: str) -> None:
    invalid(oci_manifest(subject=subject), message)


@pytest.mark.parametrize(
    ("artifact_type", "message"),
    [
        ("", "artifactType must not be empty"),
        (5, "artifactType must be a string, got a number"),
        ("sbom", "artifactType 'sbom' is not a valid media type"),
        ("application/", "not a valid media type"),
        ("/json", "not a valid media type"),
        ("a/b/c", "not a valid media type"),
        ("a b/c", "not a valid media type"),
        ("application/x\x00", "must not contain NUL"),
        ("application/" + "x" * 200, "not a valid media type"),
    ],
)
def test_artifact_type_errors(artifact_type: Any, message: str) -> None:
    invalid(oci_manifest(artifactType=artifact_type), message)


def test_null_artifact_type_is_absent() -> None:
    assert parse(oci_manifest(artifactType=None)).artifact_type is None


# --- descriptors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mediaType": None}, r"layers\[0\].mediaType must be a string, got null"),
        ({"mediaType": ""}, r"layers\[0\].mediaType must not be empty"),
        ({"mediaType": 7}, "must be a string, got a number"),
        ({"mediaType": "tar"}, r"layers\[0\].mediaType 'tar' is not a valid media type"),
        ({"mediaType": " application/x"}, "not a valid media type"),
        ({"mediaType": "application/x\n"}, "not a valid media type"),
        ({"mediaType": "applicatión/x"}, "not a valid media type"),
        ({"mediaType": "application/x;\x01"}, "not a valid media type"),
        ({"digest": None}, r"layers\[0\].digest must be a string, got null"),
        ({"digest": ""}, r"layers\[0\].digest must not be empty"),
        ({"digest": 12}, "digest must be a string, got a number"),
        ({"digest": "sha256:abc"}, r"layers\[0\].digest: sha256 digest must have 64"),
        ({"digest": "md5:" + "0" * 32}, r"layers\[0\].digest: unsupported digest algorithm"),
        ({"digest": "sha256:" + "A" * 64}, "lowercase hex"),
        ({"digest": "sha256:" + "0" * 64 + "\x00"}, "must not contain NUL"),
        ({"size": None}, r"layers\[0\].size must be an integer, got null"),
        ({"size": "10"}, "size must be an integer, got a string"),
        ({"size": 10.0}, "size must be an integer, got a number"),
        ({"size": 1e3}, "size must be an integer, got a number"),
        ({"size": True}, "size must be an integer, got a boolean"),
        ({"size": False}, "size must be an integer, got a boolean"),
        ({"size": -1}, r"layers\[0\].size must not be negative, got -1"),
        ({"size": 2**63}, "size is too large"),
        ({"size": 10**100}, "size is too large"),
        ({"annotations": []}, r"layers\[0\].annotations must be an object of strings"),
        ({"annotations": "a=b"}, "annotations must be an object of strings, got a string"),
        ({"annotations": {"a": 1}}, r"layers\[0\].annotations\['a'\] must be a string"),
        ({"annotations": {"a": None}}, "must be a string, got null"),
        ({"annotations": {"a": True}}, "must be a string, got a boolean"),
        ({"annotations": {"a": {"b": "c"}}}, "must be a string, got an object"),
        ({"annotations": {"a": ["b"]}}, "must be a string, got an array"),
        ({"annotations": {"": "x"}}, "annotations key '' must not be empty"),
        ({"annotations": {"a": "b\x00c"}}, "must not contain NUL"),
        ({"annotations": {"a\x00": "b"}}, "must not contain NUL"),
        ({"urls": "https://x"}, r"layers\[0\].urls must be an array of strings"),
        ({"urls": {}}, "urls must be an array of strings, got an object"),
        ({"urls": [1]}, r"layers\[0\].urls\[0\] must be a string, got a number"),
        ({"urls": ["https://a", ""]}, r"urls\[1\] must not be empty"),
        ({"urls": [None]}, "must be a string, got null"),
        ({"artifactType": "nope"}, r"layers\[0\].artifactType 'nope' is not a valid"),
        ({"artifactType": 1}, "artifactType must be a string"),
        ({"data": 5}, r"layers\[0\].data must be a base64 string, got a number"),
        ({"platform": "linux/amd64"}, r"layers\[0\].platform must be an object, got a string"),
    ],
)
def test_descriptor_errors(change: dict[str, Any], message: str) -> None:
    layer = {**desc(mt.OCI_LAYER_GZIP), **change}
    invalid(oci_manifest(layers=[layer]), message)


@pytest.mark.parametrize("missing", ["mediaType", "digest", "size"])
def test_descriptor_fields_are_required(missing: str) -> None:
    layer = desc(mt.OCI_LAYER_GZIP)
    del layer[missing]
    invalid(oci_manifest(layers=[desc(mt.OCI_LAYER), layer]), rf"layers\[1\].{missing} is required")


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.in-toto+json",
        "application/vnd.wasm.content.layer.v1+wasm",
        "text/plain",
        "application/x.custom_type-1.0+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        'application/vnd.example; a=b; c="d"',
        "Application/JSON",
        "a/b",
        "x" * 127 + "/" + "y" * 127,
    ],
)
def test_descriptor_media_types_accepted(media_type: str) -> None:
    manifest = parse(oci_manifest(layers=[desc(media_type)]))
    assert manifest.layers[0].media_type == media_type


# The largest layer leaves room for the manifest and its config: their sum is the
# artifact's size, which must fit a signed 64-bit column too.
@pytest.mark.parametrize("size", [0, 1, 2**31, 2**32 + 1, MAX_SIZE - 2**20])
def test_descriptor_sizes_accepted(size: int) -> None:
    assert parse(oci_manifest(layers=[desc(mt.OCI_LAYER, size=size)])).layers[0].size == size


@pytest.mark.parametrize("sizes", [[MAX_SIZE], [MAX_SIZE // 2 + 1, MAX_SIZE // 2 + 1]])
def test_descriptor_sizes_that_overflow_together_are_refused(sizes: list[int]) -> None:
    with pytest.raises(ManifestInvalidError, match="more than"):
        parse(oci_manifest(layers=[desc(mt.OCI_LAYER, size=size) for size in sizes]))


def test_descriptor_null_optional_fields_are_absent() -> None:
    layer = desc(mt.OCI_LAYER, annotations=None, urls=None, platform=None, artifactType=None)
    parsed = parse(oci_manifest(layers=[layer])).layers[0]
    assert parsed.annotations == {}
    assert parsed.urls == ()
    assert parsed.platform is None
    assert parsed.artifact_type is None


def test_annotations_accept_any_unicode_text() -> None:
    annotations = {
        "org.opencontainers.image.description": "多语言 ✓ émoji 🐳\nsecond line",
        "empty": "",
        "com.example/键": "值",
    }
    manifest = parse(oci_manifest(annotations=annotations))
    assert manifest.annotations == annotations


def test_error_in_top_level_annotations_names_the_field() -> None:
    invalid(oci_manifest(annotations={"a": 1}), r"^annotations\['a'\] must be a string")


def test_error_in_config_names_the_field() -> None:
    invalid(oci_manifest(config={**desc(mt.OCI_CONFIG), "size": -5}), r"^config.size must not")


def test_error_in_index_child_names_the_field() -> None:
    doc = oci_index(manifests=[desc(mt.OCI_MANIFEST), {**desc(mt.OCI_MANIFEST), "size": "1"}])
    invalid(doc, r"^manifests\[1\].size must be an integer")


# --- platforms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ({"architecture": "amd64", "os": "linux"}, Platform("amd64", "linux")),
        (
            {"architecture": "arm64", "os": "linux", "variant": "v8"},
            Platform("arm64", "linux", variant="v8"),
        ),
        (
            {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2227"},
            Platform("amd64", "windows", os_version="10.0.20348.2227"),
        ),
        (
            {
                "architecture": "amd64",
                "os": "linux",
                "os.features": ["a", "b"],
                "features": ["sse4"],
            },
            Platform("amd64", "linux", features=("a", "b")),
        ),
        (
            {"architecture": "s390x", "os": "linux", "variant": None, "os.version": None},
            Platform("s390x", "linux"),
        ),
        (
            {"architecture": "amd64", "os": "linux", "os.features": None, "features": None},
            Platform("amd64", "linux"),
        ),
        (
            {"architecture": "riscv64", "os": "linux", "variant": "", "extra": 1},
            Platform("riscv64", "linux", variant=""),
        ),
    ],
)
def test_platforms(platform: dict[str, Any], expected: Platform) -> None:
    index = parse(oci_index(manifests=[desc(mt.OCI_MANIFEST, platform=platform)]))
    assert index.manifests[0].platform == expected


def test_index_entries_need_no_platform() -> None:
    assert parse(oci_index(manifests=[desc(mt.OCI_MANIFEST)])).manifests[0].platform is None


@pytest.mark.parametrize(
    ("platform", "message"),
    [
        ([], "platform must be an object, got an array"),
        ({}, r"platform.architecture is required"),
        ({"architecture": "amd64"}, r"platform.os is required"),
        ({"os": "linux"}, r"platform.architecture is required"),
        ({"architecture": "", "os": "linux"}, r"platform.architecture must not be empty"),
        ({"architecture": "amd64", "os": ""}, r"platform.os must not be empty"),
        ({"architecture": None, "os": "linux"}, r"platform.architecture must be a string"),
        ({"architecture": 64, "os": "linux"}, r"platform.architecture must be a string"),
        ({"architecture": "amd64", "os": ["linux"]}, r"platform.os must be a string"),
        ({"architecture": "amd64", "os": "linux", "variant": 7}, r"platform.variant must be a"),
        ({"architecture": "amd64", "os": "linux", "os.version": 10}, r"platform.os.version must"),
        (
            {"architecture": "amd64", "os": "linux", "os.features": "x"},
            r"platform.os.features must",
        ),
        (
            {"architecture": "amd64", "os": "linux", "os.features": [1]},
            r"platform.os.features\[0\] must",
        ),
        ({"architecture": "amd64", "os": "linux", "features": "sse"}, r"platform.features must"),
        ({"architecture": "amd\x00", "os": "linux"}, "platform.architecture must not contain NUL"),
    ],
)
def test_platform_errors(platform: Any, message: str) -> None:
    doc = oci_index(manifests=[desc(mt.OCI_MANIFEST, platform=platform)])
    invalid(doc, rf"^manifests\[0\].{message}")


# --- hostile bodies ---------------------------------------------------------------


def test_too_large() -> None:
    body = b" " * (MAX_MANIFEST_BYTES + 1)
    with pytest.raises(PayloadTooLargeError, match="4194305 bytes; the limit is 4194304"):
        parse_manifest(body, mt.OCI_MANIFEST)


def test_exactly_the_limit_is_accepted() -> None:
    body = encode(oci_index())
    body += b" " * (MAX_MANIFEST_BYTES - len(body))
    assert parse_manifest(body, None).size == MAX_MANIFEST_BYTES


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "manifest body is empty"),
        (b"   \n\t ", "manifest body is empty"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"schemaVersion": 2, "mediaType": "\xc3\x28"}', "not valid UTF-8"),
        (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8"),  # encoded surrogate
        (b'{"a": "\xc0\xaf"}', "not valid UTF-8"),  # overlong encoding
        ("{}".encode("utf-16"), "not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b"{", "not valid JSON"),
        (b"}", "not valid JSON"),
        (b"{'schemaVersion': 2}", "not valid JSON"),
        (b'{"schemaVersion": 2,}', "not valid JSON"),
        (b'{"schemaVersion": 2} {}', "not valid JSON: Extra data"),
        (b'{"schemaVersion": 2}\x00', "not valid JSON"),
        (b"\x00", "not valid JSON"),
        (b'{"schemaVersion": 2, "x": NaN}', "NaN is not a JSON number"),
        (b'{"schemaVersion": 2, "x": Infinity}', "Infinity is not a JSON number"),
        (b'{"schemaVersion": 2, "x": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"schemaVersion": 2, "x": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"schemaVersion": 2, "x": "\\x41"}', "not valid JSON"),
        (b'{"schemaVersion": 2, "x": "a\nb"}', "not valid JSON"),  # raw control character
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b"[" * (MAX_MANIFEST_BYTES - 10), "nested too deeply"),
        (b"[]", "manifest must be a JSON object, got an array"),
        (b'"manifest"', "must be a JSON object, got a string"),
        (b"2", "must be a JSON object, got a number"),
        (b"null", "must be a JSON object, got null"),
        (b"true", "must be a JSON object, got a boolean"),
        (b"{}", "schemaVersion is required"),
    ],
)
def test_hostile_bodies(body: bytes, message: str) -> None:
    with pytest.raises(ManifestInvalidError, match=message) as info:
        parse_manifest(body, mt.OCI_MANIFEST)
    assert len(info.value.message) < 300


def test_deep_nesting_inside_an_ignored_field_that_parses_is_fine() -> None:
    body = encode(oci_index(x=json.loads("[" * 200 + "]" * 200)))
    assert parse_manifest(body, None).is_index


def test_duplicate_keys_last_one_wins() -> None:
    body = (
        b'{"schemaVersion": 1, "schemaVersion": 2, "mediaType": "'
        + mt.OCI_INDEX.encode()
        + b'", "manifests": 5, "manifests": []}'
    )
    assert parse_manifest(body, None).manifests == ()


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ('{"a": "\\ud800"}', "unpaired UTF-16 surrogate"),
        ('{"\\udfff": "b"}', "unpaired UTF-16 surrogate"),
        ('{"a": "\\u0000"}', "must not contain NUL"),
    ],
)
def test_escaped_strings_that_cannot_be_stored(annotations: str, message: str) -> None:
    body = (
        '{"schemaVersion": 2, "mediaType": "' + mt.OCI_INDEX + '", "manifests": [], '
        '"annotations": ' + annotations + "}"
    ).encode()
    with pytest.raises(ManifestInvalidError, match=rf"^annotations.* {message}"):
        parse_manifest(body, None)


def test_escaped_surrogate_pair_is_fine() -> None:
    body = (
        '{"schemaVersion": 2, "mediaType": "' + mt.OCI_INDEX + '", "manifests": [], '
        '"annotations": {"whale": "\\ud83d\\udc33"}}'
    ).encode()
    assert parse_manifest(body, None).annotations == {"whale": "🐳"}


def test_many_layers() -> None:
    layers = [desc(mt.OCI_LAYER_GZIP, str(i)) for i in range(5000)]
    manifest = parse(oci_manifest(layers=layers))
    assert len(manifest.layers) == 5000
    assert len(manifest.required_blobs) == 5001


def test_long_values_are_cut_short_in_messages() -> None:
    message = invalid(oci_manifest(mediaType="x" * 10_000), "is not a valid media type")
    assert len(message) < 300


# --- model -------------------------------------------------------------------------


def test_descriptor_to_json_minimal() -> None:
    digest = Digest.of(b"x")
    assert Descriptor(mt.OCI_LAYER, digest, 1).to_json() == {
        "mediaType": mt.OCI_LAYER,
        "digest": str(digest),
        "size": 1,
    }


def test_descriptor_to_json_full() -> None:
    digest = Digest.of(b"x")
    descriptor = Descriptor(
        media_type=mt.OCI_MANIFEST,
        digest=digest,
        size=7,
        artifact_type="application/vnd.example",
        annotations={"k": "v"},
        urls=("https://a",),
        platform=Platform("arm", "linux", variant="v7", os_version="1", features=("f",)),
    )
    assert descriptor.to_json() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(digest),
        "size": 7,
        "artifactType": "application/vnd.example",
        "annotations": {"k": "v"},
        "urls": ["https://a"],
        "platform": {
            "architecture": "arm",
            "os": "linux",
            "variant": "v7",
            "os.version": "1",
            "os.features": ["f"],
        },
    }


def test_descriptor_to_json_round_trips_through_the_parser() -> None:
    index = parse_manifest(OCI_INDEX_BUILDX, None)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [child.to_json() for child in index.manifests],
    }
    assert parse(doc).manifests == index.manifests


def test_descriptor_to_json_does_not_share_state() -> None:
    descriptor = Descriptor(mt.OCI_LAYER, Digest.of(b"x"), 1, annotations={"a": "b"})
    descriptor.to_json()["annotations"]["a"] = "changed"
    assert descriptor.annotations == {"a": "b"}


def test_descriptor_default_annotations_are_not_shared() -> None:
    first = Descriptor(mt.OCI_LAYER, Digest.of(b"x"), 1)
    second = Descriptor(mt.OCI_LAYER, Digest.of(b"x"), 1)
    assert first.annotations is not second.annotations


def test_models_are_frozen() -> None:
    manifest = parse_manifest(DOCKER_V2, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.size = 1  # type: ignore[misc]
    assert manifest.config is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.config.size = 1  # type: ignore[misc]
