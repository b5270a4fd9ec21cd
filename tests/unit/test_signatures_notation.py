"""Notation signatures made by notation itself (published test data, tests/data/signatures/
README.md) judged by ``dockyard.signatures.verify``: JWS and COSE envelopes, chains to trusted
roots, expiry, identities, and hostile envelopes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dockyard.signatures.verify import (
    SignatureArtifact,
    SignatureLayer,
    TrustedKey,
    describe_key,
    verify,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "signatures" / "notation-go"
JWS = "application/jose+json"
COSE = "application/cose"
ALPINE_SUBJECT = "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
MOCK_SUBJECT = "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _root(name: str, key_id: int = 1, identities: tuple[str, ...] = ()) -> TrustedKey:
    return TrustedKey(key_id, "notation", (DATA / name).read_text(), identities)


def _artifact(data: bytes, media_type: str = JWS) -> SignatureArtifact:
    return SignatureArtifact(
        "notation", "sha256:" + "0" * 64, b"{}", (SignatureLayer(media_type, data),)
    )


def _check(
    name: str, subject: str, keys: list[TrustedKey], media_type: str = JWS, now: datetime = NOW
):  # type: ignore[no-untyped-def]
    return verify(_artifact((DATA / name).read_bytes(), media_type), subject, keys, now=now)


def test_published_jws_and_cose_verify_with_their_root() -> None:
    for name, media_type in (("jws_signature.sig", JWS), ("cose_signature.sig", COSE)):
        verdict = _check(name, ALPINE_SUBJECT, [_root("alpine-root.pem", 4)], media_type)
        assert verdict.verified, verdict.reason
        assert verdict.key_id == 4
        assert verdict.signer == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"


def test_published_chain_with_expiry_verifies_with_notation_test_root() -> None:
    verdict = _check("ca_valid_sig_env.json", MOCK_SUBJECT, [_root("NotationTestRoot.pem")])
    assert verdict.verified, verdict.reason


def test_expired_signature() -> None:
    verdict = _check("ca_expired_sig_env.json", MOCK_SUBJECT, [_root("NotationTestRoot.pem")])
    assert not verdict.verified
    assert verdict.reason == "the signature expired on 2022-07-29 23:59:00 UTC"
    # Judged before its expiry, the same signature verifies.
    early = _check(
        "ca_expired_sig_env.json",
        MOCK_SUBJECT,
        [_root("NotationTestRoot.pem")],
        now=datetime(2022, 7, 29, 12, tzinfo=UTC),
    )
    assert early.verified, early.reason


def test_untrusted_root_and_other_certificate() -> None:
    verdict = _check("jws_signature.sig", ALPINE_SUBJECT, [_root("wabbit-networks.io.crt")])
    assert not verdict.verified and "does not lead to a trusted root" in verdict.reason
    # Another self-signed "CN=alpine" (same name, other key) is not the same root.
    other = _check(
        "withoutTimestamp.sig",
        "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda",
        [_root("alpine-root.pem")],
    )
    assert not other.verified and "does not lead to a trusted root" in other.reason


def test_wrong_digest() -> None:
    verdict = _check("jws_signature.sig", MOCK_SUBJECT, [_root("alpine-root.pem")])
    assert not verdict.verified
    assert ALPINE_SUBJECT in verdict.reason and MOCK_SUBJECT in verdict.reason


def test_one_byte_changed_jws_and_cose() -> None:
    document = json.loads((DATA / "jws_signature.sig").read_bytes())
    signature = bytearray(base64.urlsafe_b64decode(document["signature"] + "=="))
    signature[10] ^= 1
    document["signature"] = base64.urlsafe_b64encode(bytes(signature)).decode().rstrip("=")
    verdict = verify(
        _artifact(json.dumps(document).encode()),
        ALPINE_SUBJECT,
        [_root("alpine-root.pem")],
        now=NOW,
    )
    assert not verdict.verified and "signature does not match" in verdict.reason

    raw = bytearray((DATA / "cose_signature.sig").read_bytes())
    raw[-5] ^= 1  # inside the signature, the last item
    verdict = verify(
        _artifact(bytes(raw), COSE), ALPINE_SUBJECT, [_root("alpine-root.pem")], now=NOW
    )
    assert not verdict.verified and "signature does not match" in verdict.reason


def test_identities() -> None:
    good = ("x509.subject: C=US, ST=WA, O=Notary, CN=alpine",)
    assert _check(
        "jws_signature.sig", ALPINE_SUBJECT, [_root("alpine-root.pem", identities=good)]
    ).verified
    assert _check(
        "jws_signature.sig", ALPINE_SUBJECT, [_root("alpine-root.pem", identities=("*",))]
    ).verified
    bad = ("x509.subject: CN=alpine, O=Acme",)
    verdict = _check(
        "jws_signature.sig", ALPINE_SUBJECT, [_root("alpine-root.pem", identities=bad)]
    )
    assert not verdict.verified and "is not a trusted identity" in verdict.reason


def test_describe_notation_keys() -> None:
    info = describe_key("notation", (DATA / "NotationTestRoot.pem").read_text(), ["*"])
    assert info.kind == "notation" and info.algorithm.startswith("RSA-")
    assert info.subjects == ("CN=Notation Test Root,O=Notary,L=Seattle,ST=WA,C=US",)
    with pytest.raises(ValueError, match=r"x509\.subject"):
        describe_key("notation", (DATA / "NotationTestRoot.pem").read_text(), ["CN=x"])
    with pytest.raises(ValueError, match="CERTIFICATE"):
        describe_key("notation", "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")


# --- envelopes we build, to reach each rule ------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
        ]
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    start: datetime,
    days: int = 3650,
) -> x509.Certificate:
    issuer_name, issuer_key = (subject, key) if issuer is None else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jws(
    leaf_key: ec.EllipticCurvePrivateKey,
    chain: list[x509.Certificate],
    *,
    subject: str = ALPINE_SUBJECT,
    signing_time: datetime = NOW - timedelta(days=1),
    extra: dict[str, object] | None = None,
    crit: list[str] | None = None,
) -> bytes:
    protected = {
        "alg": "ES256",
        "crit": crit if crit is not None else ["io.cncf.notary.signingScheme"],
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": signing_time.isoformat(),
        **(extra or {}),
    }
    payload = {
        "targetArtifact": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": subject,
            "size": 1,
        }
    }
    header_b64 = _b64url(json.dumps(protected).encode())
    payload_b64 = _b64url(json.dumps(payload).encode())
    der = leaf_key.sign(f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return json.dumps(
        {
            "payload": payload_b64,
            "protected": header_b64,
            "header": {
                "x5c": [
                    base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                    for c in chain
                ]
            },
            "signature": _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
        }
    ).encode()


@pytest.fixture(scope="module")
def pki() -> dict[str, object]:
    start = NOW - timedelta(days=30)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("Root", root_key, None, ca=True, start=start)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = _certificate("Intermediate", mid_key, ("Root", root_key), ca=True, start=start)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("Signer", leaf_key, ("Intermediate", mid_key), ca=False, start=start)
    return {
        "root": root,
        "root_key": root_key,
        "mid": mid,
        "mid_key": mid_key,
        "leaf": leaf,
        "leaf_key": leaf_key,
    }


def _verdict(envelope: bytes, pki: dict[str, object], subject: str = ALPINE_SUBJECT):  # type: ignore[no-untyped-def]
    key = TrustedKey(9, "notation", _pem(pki["root"]))  # type: ignore[arg-type]
    return verify(_artifact(envelope), subject, [key], now=NOW)


def test_built_chain_with_intermediate(pki: dict[str, object]) -> None:
    chain = [pki["leaf"], pki["mid"], pki["root"]]
    assert _verdict(_jws(pki["leaf_key"], chain), pki).verified  # type: ignore[arg-type]
    # The root may be left out of the chain: the last certificate is issued by it.
    assert _verdict(_jws(pki["leaf_key"], chain[:2]), pki).verified  # type: ignore[arg-type]
    # An intermediate left out breaks the chain.
    verdict = _verdict(_jws(pki["leaf_key"], [pki["leaf"], pki["root"]]), pki)  # type: ignore[arg-type]
    assert not verdict.verified and "is not issued by the next one" in verdict.reason


def test_chain_loops_and_length(pki: dict[str, object]) -> None:
    leaf, mid, root = pki["leaf"], pki["mid"], pki["root"]
    looped = _verdict(_jws(pki["leaf_key"], [leaf, mid, root, root]), pki)  # type: ignore[arg-type]
    assert not looped.verified and "repeats" in looped.reason
    long = _verdict(_jws(pki["leaf_key"], [leaf] + [mid] * 11), pki)  # type: ignore[arg-type]
    assert not long.verified and "more than 10" in long.reason


def test_certificate_not_valid_at_signing_time(pki: dict[str, object]) -> None:
    envelope = _jws(
        pki["leaf_key"],
        [pki["leaf"], pki["mid"], pki["root"]],
        signing_time=NOW - timedelta(days=60),
    )  # type: ignore[arg-type]
    verdict = _verdict(envelope, pki)
    assert not verdict.verified and "not yet valid at signing time" in verdict.reason


def test_critical_headers(pki: dict[str, object]) -> None:
    chain = [pki["leaf"], pki["mid"], pki["root"]]
    unknown = _jws(
        pki["leaf_key"],
        chain,
        extra={"x.custom": "1"},
        crit=["io.cncf.notary.signingScheme", "x.custom"],
    )  # type: ignore[arg-type]
    assert "not understood" in _verdict(unknown, pki).reason
    plugin = _jws(
        pki["leaf_key"],
        chain,  # type: ignore[arg-type]
        extra={"io.cncf.notary.verificationPlugin": "acme"},
        crit=["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"],
    )
    assert "plugin" in _verdict(plugin, pki).reason
    uncritical_expiry = _jws(
        pki["leaf_key"], chain, extra={"io.cncf.notary.expiry": "2120-01-01T00:00:00Z"}
    )  # type: ignore[arg-type]
    assert "must be listed as critical" in _verdict(uncritical_expiry, pki).reason
    no_crit = _jws(pki["leaf_key"], chain, crit=[])  # type: ignore[arg-type]
    assert not _verdict(no_crit, pki).verified


def test_unsupported_algorithm(pki: dict[str, object]) -> None:
    document = json.loads(_jws(pki["leaf_key"], [pki["leaf"], pki["mid"]]))  # type: ignore[arg-type]
    header = json.loads(base64.urlsafe_b64decode(document["protected"] + "=="))
    header["alg"] = "HS256"
    document["protected"] = _b64url(json.dumps(header).encode())
    verdict = _verdict(json.dumps(document).encode(), pki)
    assert not verdict.verified and "'HS256' is not supported" in verdict.reason


@pytest.mark.parametrize(
    ("data", "media_type", "reason"),
    [
        (b"not json", JWS, "not valid JSON"),
        (b"[" * 10000 + b"]" * 10000, JWS, "deeper"),
        (b'{"payload": "a", "protected": "!!", "signature": "a"}', JWS, "base64url"),
        (b"\xff" * 10, COSE, "not valid CBOR"),
        (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""])), COSE, "malformed"),
        (cbor2.dumps(cbor2.CBORTag(98, [])), COSE, "not a tagged COSE_Sign1"),
        (b"\x81" * 100 + b"\x00", COSE, "not valid CBOR"),
        (b" " * (1024 * 1024 + 1), JWS, "larger than"),
    ],
)
def test_hostile_envelopes(data: bytes, media_type: str, reason: str) -> None:
    verdict = verify(
        _artifact(data, media_type), ALPINE_SUBJECT, [_root("alpine-root.pem")], now=NOW
    )
    assert not verdict.verified
    assert reason in verdict.reason


def test_layer_count_and_cose_signature_size() -> None:
    two = SignatureArtifact(
        "notation",
        "sha256:x",
        b"{}",
        (SignatureLayer(JWS, b"{}"), SignatureLayer(COSE, b"")),
    )
    assert "exactly one" in verify(two, ALPINE_SUBJECT, [_root("alpine-root.pem")]).reason
    # A PS256 COSE envelope whose signature is cut short.
    message = cbor2.loads((DATA / "cose_signature.sig").read_bytes())
    protected, unprotected, payload, signature = message.value
    cut = cbor2.dumps(cbor2.CBORTag(18, [protected, dict(unprotected), payload, signature[:10]]))
    verdict = verify(_artifact(cut, COSE), ALPINE_SUBJECT, [_root("alpine-root.pem")], now=NOW)
    assert not verdict.verified
