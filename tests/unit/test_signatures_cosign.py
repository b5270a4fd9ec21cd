"""cosign signatures made by cosign itself (published test data, tests/data/signatures/README.md)
judged by ``dockyard.signatures.verify``, and signatures made by ``dockyard.signatures.signing``
checked against the same verifier and cosign's published payloads."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dockyard.signatures import signing
from dockyard.signatures.verify import (
    SignatureArtifact,
    SignatureLayer,
    TrustedKey,
    describe_key,
    verify,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "signatures"
IMAGES = DATA / "containers-image"
COSIGN = DATA / "cosign"
SIGNED = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
REKOR_SIGNED = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a"
BLOB = "sha256:658781cd4ed9bca60dacd09f7bb914bb51502e8b5d619f57f39a1d652596cc24"
OTHER_BLOB = "sha256:0da559c2f127230a1fabcfbb20d5db8dba765923c6efc6f483165119c4c2c5d4"
DSSE = "application/vnd.dsse.envelope.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _key(name: str, key_id: int = 1, directory: Path = IMAGES) -> TrustedKey:
    return TrustedKey(key_id, "cosign", (directory / name).read_text())


def _layer(name: str) -> SignatureLayer:
    """A containers/image serialisation of a cosign layer, as a SignatureLayer."""
    raw = (IMAGES / name).read_bytes()
    prefix = b"\0sigstore-json\n"
    assert raw.startswith(prefix)
    document = json.loads(raw[len(prefix) :])
    return SignatureLayer(
        document["mimeType"], base64.b64decode(document["payload"]), document["annotations"]
    )


def _artifact(*layers: SignatureLayer) -> SignatureArtifact:
    return SignatureArtifact("cosign", "sha256:" + "0" * 64, b"{}", layers)


def test_published_signature_verifies_with_its_key() -> None:
    # The subject digest is the digest of the published signed manifest itself.
    manifest = (IMAGES / "dir-img-cosign-valid_manifest.json").read_bytes()
    assert signing.SignatureBlob(manifest, "").digest == SIGNED
    for name in ("dir-img-cosign-valid_signature-1", "dir-img-cosign-valid-2_signature-2"):
        verdict = verify(_artifact(_layer(name)), SIGNED, [_key("cosign.pub", 7)])
        assert verdict.verified, verdict.reason
        assert verdict.key_id == 7
        assert verdict.signer == describe_key("cosign", _key("cosign.pub").pem).fingerprint
        assert verdict.reason == f"verified by key {verdict.signer}"


def test_key_signed_with_rekor_bundle_verifies_with_the_second_key() -> None:
    layer = _layer("dir-img-cosign-key-rekor-valid_signature-1")
    assert verify(_artifact(layer), REKOR_SIGNED, [_key("cosign2.pub")]).verified
    foreign = verify(_artifact(layer), REKOR_SIGNED, [_key("cosign.pub")])
    assert not foreign.verified
    assert "does not verify with any of the 1 trusted cosign keys" in foreign.reason


def test_one_byte_changed_is_not_verified() -> None:
    layer = _layer("dir-img-cosign-valid_signature-1")
    # In the payload: a space inside the JSON keeps it valid and naming the same digest.
    tampered = SignatureLayer(
        layer.media_type, layer.data.replace(b'{"critical"', b'{ "critical"'), layer.annotations
    )
    verdict = verify(_artifact(tampered), SIGNED, [_key("cosign.pub")])
    assert not verdict.verified
    assert "does not verify" in verdict.reason
    # In the signature.
    signature = bytearray(base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"]))
    signature[-1] ^= 1
    flipped = SignatureLayer(
        layer.media_type,
        layer.data,
        {"dev.cosignproject.cosign/signature": base64.b64encode(bytes(signature)).decode()},
    )
    assert not verify(_artifact(flipped), SIGNED, [_key("cosign.pub")]).verified


def test_wrong_digest_names_both() -> None:
    verdict = verify(
        _artifact(_layer("dir-img-cosign-valid_signature-1")), REKOR_SIGNED, [_key("cosign.pub")]
    )
    assert not verdict.verified
    assert SIGNED in verdict.reason and REKOR_SIGNED in verdict.reason


def test_foreign_key_and_unpublished_key() -> None:
    layer = _layer("unknown-cosign-key.signature")
    keys = [_key("cosign.pub", 1), _key("cosign2.pub", 2), _key("some-rsa-key.pub", 3)]
    verdict = verify(_artifact(layer), SIGNED, keys)
    assert not verdict.verified
    assert "any of the 3 trusted cosign keys" in verdict.reason


def test_keyless_is_out_of_scope_not_verified() -> None:
    layer = _layer("dir-img-cosign-fulcio-rekor-valid_signature-1")
    verdict = verify(_artifact(layer), REKOR_SIGNED, [_key("cosign.pub")])
    assert not verdict.verified
    assert "keyless" in verdict.reason and "out of scope" in verdict.reason
    bundle = SignatureLayer(BUNDLE, (COSIGN / "oci-attestation.sigstore.json").read_bytes())
    attested = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
    verdict = verify(_artifact(bundle), attested, [_key("cosign.pub")])
    assert not verdict.verified and "out of scope" in verdict.reason


def test_keyless_signature_checks_with_its_certificates_key() -> None:
    """The published keyless signatures are sound: trusting the Fulcio certificate's own key
    verifies them (DSSE over cosign's bundle, simple signing with the certificate annotation),
    so the keyless verdict above is about trust, not a parsing failure."""
    from cryptography import x509

    bundle_bytes = (COSIGN / "oci-attestation.sigstore.json").read_bytes()
    bundle = json.loads(bundle_bytes)
    certificate = x509.load_der_x509_certificate(
        base64.b64decode(bundle["verificationMaterial"]["certificate"]["rawBytes"])
    )
    key = TrustedKey(5, "cosign", _pem(certificate.public_key()))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    subject = "sha256:" + statement["subject"][0]["digest"]["sha256"]
    verdict = verify(_artifact(SignatureLayer(BUNDLE, bundle_bytes)), subject, [key])
    assert verdict.verified, verdict.reason

    layer = _layer("dir-img-cosign-fulcio-rekor-valid_signature-1")
    leaf = x509.load_pem_x509_certificate(
        layer.annotations["dev.sigstore.cosign/certificate"].encode()
    )
    key = TrustedKey(6, "cosign", _pem(leaf.public_key()))
    assert verify(_artifact(layer), REKOR_SIGNED, [key]).verified


def test_other_attachment_is_not_a_signature() -> None:
    verdict = verify(
        _artifact(_layer("dir-img-cosign-other-attachment_signature-1")),
        SIGNED,
        [_key("cosign.pub")],
    )
    assert not verdict.verified and "text/plain" in verdict.reason


def test_one_good_layer_among_bad_ones_verifies() -> None:
    good = _layer("dir-img-cosign-valid_signature-1")
    bad = _layer("unknown-cosign-key.signature")
    assert verify(_artifact(bad, good), SIGNED, [_key("cosign.pub")]).verified
    verdict = verify(_artifact(bad, bad), SIGNED, [_key("cosign.pub")])
    assert not verdict.verified and verdict.reason.startswith("layer 1:")


def test_published_dsse_envelopes_made_with_a_key() -> None:
    key = _key("blob-attestation.pub", directory=COSIGN)
    for name in ("blobSLSAProvenanceSignature", "dssePredicateMultipleSubjects"):
        envelope = (COSIGN / f"{name}.dsse.json").read_bytes()
        assert verify(_artifact(SignatureLayer(DSSE, envelope)), BLOB, [key]).verified
        # The same envelope inside a sigstore bundle signed with a key.
        bundle = json.dumps(
            {
                "mediaType": BUNDLE,
                "verificationMaterial": {"publicKey": {"hint": "k"}},
                "dsseEnvelope": json.loads(envelope),
            }
        ).encode()
        assert verify(_artifact(SignatureLayer(BUNDLE, bundle)), BLOB, [key]).verified
    single = (COSIGN / "blobSLSAProvenanceSignature.dsse.json").read_bytes()
    verdict = verify(_artifact(SignatureLayer(DSSE, single)), OTHER_BLOB, [key])
    assert not verdict.verified and BLOB in verdict.reason
    multiple = (COSIGN / "dssePredicateMultipleSubjects.dsse.json").read_bytes()
    assert verify(_artifact(SignatureLayer(DSSE, multiple)), OTHER_BLOB, [key]).verified
    document = json.loads(single)
    payload = bytearray(base64.b64decode(document["payload"]))
    payload[payload.index(b"predicate")] ^= 0x20  # one byte, outside the subject
    document["payload"] = base64.b64encode(bytes(payload)).decode()
    tampered = SignatureLayer(DSSE, json.dumps(document).encode())
    assert not verify(_artifact(tampered), BLOB, [key]).verified


# --- keys ----------------------------------------------------------------------------------


def _pem(public_key: object) -> str:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_describe_key_accepts_cosign_algorithms() -> None:
    assert describe_key("cosign", _key("cosign.pub").pem).algorithm == "ECDSA-P256"
    assert describe_key("cosign", _key("some-rsa-key.pub").pem).algorithm == "RSA-4096"
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert describe_key("cosign", p384).algorithm == "ECDSA-P384"
    ed = _pem(ed25519.Ed25519PrivateKey.generate().public_key())
    info = describe_key("cosign", ed)
    assert info.algorithm == "Ed25519" and info.fingerprint.startswith("sha256:")


@pytest.mark.parametrize(
    ("pem", "reason"),
    [
        ("hello", "not PEM"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a readable"),
        ("x" * 300_000, "larger than"),
    ],
)
def test_describe_key_refuses_with_a_reason(pem: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        describe_key("cosign", pem)


def test_describe_key_refuses_weak_and_odd_keys() -> None:
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused below
    weak = _pem(weak_key.public_key())
    with pytest.raises(ValueError, match="too weak"):
        describe_key("cosign", weak)
    p521 = _pem(ec.generate_private_key(ec.SECP521R1()).public_key())
    with pytest.raises(ValueError, match="curve"):
        describe_key("cosign", p521)
    private = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="private key"):
        describe_key("cosign", private.decode())
    with pytest.raises(ValueError, match="notation keys only"):
        describe_key("cosign", _key("cosign.pub").pem, ["*"])


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        (
            SignatureLayer("application/vnd.dev.cosign.simplesigning.v1+json", b"{}"),
            "no dev.cosignproject",
        ),
        (
            SignatureLayer(
                "application/vnd.dev.cosign.simplesigning.v1+json",
                b"[" * 5000 + b"]" * 5000,
                {"dev.cosignproject.cosign/signature": "AAAA"},
            ),
            "deeper",
        ),
        (
            SignatureLayer(
                "application/vnd.dev.cosign.simplesigning.v1+json",
                b'{"a":"' + b"x" * 300_000 + b'"}',
                {"dev.cosignproject.cosign/signature": "AAAA"},
            ),
            "more than",
        ),
        (
            SignatureLayer(
                "application/vnd.dev.cosign.simplesigning.v1+json",
                b"not json",
                {"dev.cosignproject.cosign/signature": "AAAA"},
            ),
            "not valid JSON",
        ),
        (
            SignatureLayer(
                "application/vnd.dev.cosign.simplesigning.v1+json",
                b"{}",
                {"dev.cosignproject.cosign/signature": "***"},
            ),
            "base64",
        ),
        (SignatureLayer(DSSE, b'{"payloadType": 3}'), "payloadType"),
        (SignatureLayer(BUNDLE, b'{"verificationMaterial": {}}'), "names no public key"),
        (
            SignatureLayer(
                BUNDLE,
                json.dumps(
                    {
                        "verificationMaterial": {"publicKey": {}},
                        "messageSignature": {
                            "messageDigest": {"algorithm": "SHA2_256", "digest": "AAAA"},
                            "signature": "AAAA",
                        },
                    }
                ).encode(),
            ),
            "not this artifact",
        ),
    ],
)
def test_malformed_layers_say_why(layer: SignatureLayer, reason: str) -> None:
    verdict = verify(_artifact(layer), SIGNED, [_key("cosign.pub")])
    assert not verdict.verified
    assert reason in verdict.reason


def test_no_keys_and_no_layers() -> None:
    layer = _layer("dir-img-cosign-valid_signature-1")
    assert "no trusted cosign key" in verify(_artifact(layer), SIGNED, []).reason
    notation_only = [
        TrustedKey(1, "notation", (DATA / "notation-go" / "NotationTestRoot.pem").read_text())
    ]
    assert not verify(_artifact(layer), SIGNED, notation_only).verified
    assert "no layers" in verify(_artifact(), SIGNED, [_key("cosign.pub")]).reason
    broken = TrustedKey(1, "cosign", "garbage")
    verdict = verify(_artifact(layer), SIGNED, [broken])
    assert not verdict.verified and "cannot be used" in verdict.reason


# --- signing -------------------------------------------------------------------------------


def test_payload_is_byte_for_byte_cosigns() -> None:
    published = _layer("dir-img-cosign-valid_signature-1").data
    made = signing.simple_signing_payload("192.168.64.2:5000/cosign-signed-single-sample", SIGNED)
    assert made == published


@pytest.mark.parametrize(
    "private",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_dockyard_signatures_verify_and_match_cosigns_shape(
    private: signing.PrivateKey,
) -> None:
    payload = signing.simple_signing_payload("registry.example/app", SIGNED)
    signature = signing.sign(private, payload)
    layers, changed = signing.append_layer(None, payload, signature, private)
    assert changed
    manifest, config = signing.tag_manifest(layers)
    document = json.loads(manifest)
    # The shape of cosign's published signature layer: the same media type and annotation key,
    # the layer blob being the payload.
    published = _layer("dir-img-cosign-valid_signature-1")
    [layer] = document["layers"]
    assert layer["mediaType"] == published.media_type
    assert set(layer["annotations"]) == set(published.annotations)
    assert document["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert json.loads(config.data)["rootfs"]["diff_ids"] == [layer["digest"]]
    key = TrustedKey(1, "cosign", _pem(private.public_key()))
    built = SignatureArtifact(
        "cosign",
        "sha256:x",
        manifest,
        (SignatureLayer(layer["mediaType"], payload, layer["annotations"]),),
    )
    assert verify(built, SIGNED, [key]).verified
    # The same key again over the same payload is not appended; another key is.
    again, changed = signing.append_layer(
        document, payload, signing.sign(private, payload), private
    )
    assert not changed and len(again) == 1
    other = ec.generate_private_key(ec.SECP256R1())
    more, changed = signing.append_layer(document, payload, signing.sign(other, payload), other)
    assert changed and len(more) == 2


def test_referrer_form() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    payload = signing.simple_signing_payload("registry.example/app", SIGNED)
    subject = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": SIGNED,
        "size": 1,
    }
    manifest, config = signing.referrer_manifest(subject, payload, signing.sign(private, payload))
    document = json.loads(manifest)
    assert document["artifactType"] == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert document["subject"] == subject
    assert config.data == b"{}" and document["config"]["size"] == 2
    assert signing.cosign_tag(SIGNED) == f"sha256-{SIGNED[7:]}.sig"


def test_load_private_key_reasons() -> None:
    with pytest.raises(ValueError, match="not a PEM private key"):
        signing.load_private_key(_key("cosign.pub").pem.encode())
    with pytest.raises(ValueError, match="cosign's own encrypted key format"):
        signing.load_private_key(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAA\n")
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(ValueError, match="encrypted"):
        signing.load_private_key(encrypted)
    with pytest.raises(ValueError, match="wrong password"):
        signing.load_private_key(encrypted, b"nope")
    assert isinstance(signing.load_private_key(encrypted, b"pw"), ec.EllipticCurvePrivateKey)
