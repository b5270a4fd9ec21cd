"""Signatures made by cosign v3.0.4 (captured byte for byte from a signing run and checked with
`cosign verify --key` by their publisher; tests/data/signatures/README.md): the classic
``.sig`` tag form and cosign 3's default sigstore-bundle referrer. Dockyard verifies both, makes
the classic form byte for byte, and records the bundle referrer as a cosign signature."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard.oci.artifacts import ACCESSORY_COSIGN, accessory_type
from dockyard.oci.manifest import parse_manifest
from dockyard.signatures import signing
from dockyard.signatures.verify import (
    SignatureArtifact,
    SignatureLayer,
    TrustedKey,
    describe_key,
    verify,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "signatures" / "cosign-v3"
CLASSIC_SUBJECT = "sha256:f20c43161d73848408ef247f0ec7111b19fe58ffebc0cbcaa0d2c8bda4967268"
CLASSIC_REFERENCE = "localhost:15381/tobby/fixture"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _classic() -> tuple[bytes, bytes, dict[str, object]]:
    manifest = (DATA / "classic-signature-manifest.json").read_bytes()
    payload = (DATA / "classic-payload.json").read_bytes()
    [layer] = json.loads(manifest)["layers"]
    return manifest, payload, layer


def _classic_artifact(payload: bytes | None = None) -> SignatureArtifact:
    manifest, original, layer = _classic()
    return SignatureArtifact(
        "cosign",
        signing.SignatureBlob(manifest, OCI_MANIFEST).digest,
        manifest,
        (SignatureLayer(str(layer["mediaType"]), payload or original, layer["annotations"]),),  # type: ignore[arg-type]
    )


def _key(name: str) -> TrustedKey:
    return TrustedKey(1, "cosign", (DATA / name).read_text())


def test_classic_signature_verifies() -> None:
    verdict = verify(_classic_artifact(), CLASSIC_SUBJECT, [_key("classic-cosign.pub")])
    assert verdict.verified, verdict.reason
    # The fingerprint scheme is cosign's bundle key hint (sha256 of the SPKI DER).
    assert verdict.signer == describe_key("cosign", _key("classic-cosign.pub").pem).fingerprint
    assert not verify(_classic_artifact(), CLASSIC_SUBJECT, [_key("bundle-cosign.pub")]).verified
    tampered = (DATA / "classic-payload.json").read_bytes().replace(b"tobby", b"tobbz")
    assert not verify(
        _classic_artifact(tampered), CLASSIC_SUBJECT, [_key("classic-cosign.pub")]
    ).verified


def test_dockyard_builds_the_classic_manifest_byte_for_byte() -> None:
    manifest, payload, layer = _classic()
    assert signing.simple_signing_payload(CLASSIC_REFERENCE, CLASSIC_SUBJECT) == payload
    signature = layer["annotations"]["dev.cosignproject.cosign/signature"]  # type: ignore[index]
    layers, changed = signing.append_layer(None, payload, signature, _unused_key())
    assert changed
    built, config = signing.tag_manifest(layers)
    assert built == manifest
    assert json.loads(manifest)["config"]["digest"] == config.digest


def _unused_key() -> signing.PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate()


def _bundle_artifact(bundle: bytes | None = None) -> tuple[SignatureArtifact, str]:
    manifest = (DATA / "bundle-referring-manifest.json").read_bytes()
    document = json.loads(manifest)
    data = bundle if bundle is not None else (DATA / "bundle-sigstore.json").read_bytes()
    layer = SignatureLayer(document["layers"][0]["mediaType"], data, {})
    artifact = SignatureArtifact(
        "cosign", signing.SignatureBlob(manifest, OCI_MANIFEST).digest, manifest, (layer,)
    )
    return artifact, document["subject"]["digest"]


def test_bundle_referrer_verifies_and_is_a_cosign_signature() -> None:
    artifact, subject = _bundle_artifact()
    verdict = verify(artifact, subject, [_key("bundle-cosign.pub")])
    assert verdict.verified, verdict.reason
    hint = json.loads((DATA / "bundle-sigstore.json").read_bytes())["verificationMaterial"][
        "publicKey"
    ]["hint"]
    assert verdict.signer == "sha256:" + base64.b64decode(hint).hex()
    parsed = parse_manifest(artifact.manifest, OCI_MANIFEST)
    assert accessory_type(parsed) == ACCESSORY_COSIGN
    other = "sha256:" + "1" * 64
    wrong = verify(artifact, other, [_key("bundle-cosign.pub")])
    assert not wrong.verified and subject in wrong.reason
    assert not verify(artifact, subject, [_key("classic-cosign.pub")]).verified


@pytest.mark.parametrize("cut", ["flip", "truncate", "empty", "garbage"])
def test_bundle_tampered(cut: str) -> None:
    original = (DATA / "bundle-sigstore.json").read_bytes()
    document = json.loads(original)
    if cut == "flip":
        signature = bytearray(base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"]))
        signature[-1] ^= 1
        document["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
        data = json.dumps(document).encode()
    elif cut == "truncate":
        data = original[: len(original) // 2]
    elif cut == "empty":
        data = b""
    else:
        data = b"\x00\xff not a bundle"
    artifact, subject = _bundle_artifact(data)
    verdict = verify(artifact, subject, [_key("bundle-cosign.pub")])
    assert not verdict.verified
    assert verdict.reason
