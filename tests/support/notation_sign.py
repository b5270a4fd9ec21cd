"""Notation signatures made in tests with ``cryptography``, in the shape ``notation sign``
writes them (notaryproject's JWS envelope, ``application/jose+json``): a root CA, a code-signing
leaf it issued, and an ES256 JWS whose payload's ``targetArtifact`` names the signed manifest,
with the ``notary.x509`` signing scheme and ``x5c`` chain in the unprotected header. The
signature artifact is an OCI 1.1 referrer with ``artifactType``
``application/vnd.cncf.notary.signature``."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

JWS = "application/jose+json"
ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
EMPTY = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Signer:
    root_pem: str
    root: x509.Certificate
    leaf: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )


def new_signer(common_name: str = "builder", organisation: str = "Example") -> Signer:
    now = datetime.now(UTC) - timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{common_name} root", organisation)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organisation))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = root.public_bytes(serialization.Encoding.PEM).decode()
    return Signer(pem, root, leaf, leaf_key)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def envelope(signer: Signer, subject_digest: str, subject_size: int) -> bytes:
    """A JWS envelope signing ``subject_digest``."""
    payload = json.dumps(
        {
            "targetArtifact": {
                "mediaType": OCI_MANIFEST,
                "digest": subject_digest,
                "size": subject_size,
            }
        }
    ).encode()
    protected = json.dumps(
        {
            "alg": "ES256",
            "crit": ["io.cncf.notary.signingScheme"],
            "cty": "application/vnd.cncf.notary.payload.v1+json",
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ).encode()
    signing_input = f"{_b64url(protected)}.{_b64url(payload)}".encode()
    r, s = decode_dss_signature(signer.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    chain = [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
        for c in (signer.leaf, signer.root)
    ]
    return json.dumps(
        {
            "payload": _b64url(payload),
            "protected": _b64url(protected),
            "header": {"x5c": chain, "io.cncf.notary.signingAgent": "dockyard-tests"},
            "signature": _b64url(raw),
        }
    ).encode()


def referrer_manifest(
    envelope_bytes: bytes, subject_digest: str, subject_size: int
) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) of the signature artifact carrying ``envelope_bytes``."""
    config = b"{}"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": EMPTY,
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": JWS,
                    "digest": "sha256:" + hashlib.sha256(envelope_bytes).hexdigest(),
                    "size": len(envelope_bytes),
                }
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size},
        }
    ).encode()
    return config, manifest
