"""cosign signatures made in tests with ``cryptography``, in the shape ``cosign sign --key``
writes them (sigstore/cosign's simple signing): a manifest whose one layer is the payload
``{"critical": {"identity": {"docker-reference": …}, "image": {"docker-manifest-digest": …},
"type": "cosign container image signature"}, "optional": null}`` with media type
``application/vnd.dev.cosign.simplesigning.v1+json``, and the base64 ECDSA-SHA256 signature of
those payload bytes in its ``dev.cosignproject.cosign/signature`` annotation. Stored under the
tag ``sha256-<hex>.sig`` (cosign's tag scheme)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class CosignSignature:
    config: bytes
    payload: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def sign(
    key: ec.EllipticCurvePrivateKey, reference: str, signed_digest: str, *, nonce: str = ""
) -> CosignSignature:
    """A signature of ``signed_digest`` (the digest its payload names) by ``key``."""
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": signed_digest},
                "type": "cosign container image signature",
            },
            "optional": {"nonce": nonce} if nonce else None,
        },
        separators=(",", ":"),
    ).encode()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    payload_digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "size": len(config),
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            },
            "layers": [
                {
                    "mediaType": PAYLOAD_TYPE,
                    "size": len(payload),
                    "digest": payload_digest,
                    "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    return CosignSignature(config, payload, manifest)


def signature_tag(subject_digest: str) -> str:
    algorithm, _, hex_digest = subject_digest.partition(":")
    return f"{algorithm}-{hex_digest}.sig"
