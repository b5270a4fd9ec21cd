"""The console's artifact kinds (pure; no browser): which icon and word a row gets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dockyard.console.kinds import KINDS, accessory_kind, artifact_kind

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _artifact(kind: str, manifest: str = OCI_MANIFEST, **extra: str) -> SimpleNamespace:
    fields = {"type": kind, "manifest_media_type": manifest, "artifact_type": None}
    fields.update(extra)
    fields.setdefault("media_type", "application/vnd.oci.image.config.v1+json")
    return SimpleNamespace(**fields)


@pytest.mark.parametrize(
    ("artifact", "expected"),
    [
        (_artifact("IMAGE"), "image"),
        (_artifact("IMAGE", "application/vnd.docker.distribution.manifest.list.v2+json"), "index"),
        (_artifact("IMAGE", OCI_INDEX), "index"),
        (_artifact("CHART", media_type="application/vnd.cncf.helm.config.v1+json"), "chart"),
        (_artifact("SBOM", media_type="application/vnd.goharbor.harbor.sbom.v1"), "sbom"),
        (_artifact("UNKNOWN", artifact_type="application/spdx+json"), "sbom"),
        (
            _artifact("UNKNOWN", artifact_type="application/vnd.cncf.notary.signature"),
            "signature",
        ),
        (
            _artifact("UNKNOWN", media_type="application/vnd.dev.cosign.artifact.sig.v1+json"),
            "signature",
        ),
        (_artifact("CNAB", OCI_INDEX), "other"),
        (_artifact("UNKNOWN", media_type="application/vnd.example.thing.v1+json"), "other"),
    ],
)
def test_artifact_kinds(artifact: SimpleNamespace, expected: str) -> None:
    assert artifact_kind(artifact) == expected
    assert expected in KINDS


@pytest.mark.parametrize(
    ("accessory", "expected"),
    [
        ("signature.cosign", "signature"),
        ("signature.notation", "signature"),
        ("harbor.sbom", "sbom"),
        ("subject.accessory", "other"),
        (None, "other"),
    ],
)
def test_accessory_kinds(accessory: str | None, expected: str) -> None:
    assert accessory_kind(accessory) == expected
