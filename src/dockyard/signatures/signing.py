"""Making cosign signatures (``dockyard sign``): the simple-signing payload, the signature over it
with a PEM private key, and the signature manifest in either storage form cosign writes.

The payload is byte for byte what cosign writes (compact JSON, cosign's key order, ``"optional":
null``), so cosign verifies what this signs. The manifest follows cosign's: an OCI image manifest
whose config lists the payload as its one ``diff_id`` per layer (tag scheme, ``sha256-<hex>.sig``,
one layer per signature, appended), or an OCI 1.1 referrer with ``artifactType``
``application/vnd.dev.cosign.artifact.sig.v1+json``, the empty config and a ``subject``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from dockyard.signatures.cosign import SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE
from dockyard.signatures.crypto import cosign_hash, cosign_signature_ok
from dockyard.signatures.keys import MIN_RSA_BITS

__all__ = [
    "COSIGN_ARTIFACT_TYPE",
    "EMPTY_CONFIG",
    "EMPTY_CONFIG_MEDIA_TYPE",
    "OCI_CONFIG_MEDIA_TYPE",
    "OCI_MANIFEST_MEDIA_TYPE",
    "PrivateKey",
    "SignatureBlob",
    "append_layer",
    "cosign_tag",
    "descriptor",
    "load_private_key",
    "referrer_manifest",
    "sign",
    "simple_signing_payload",
    "tag_manifest",
]

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

COSIGN_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class SignatureBlob:
    """A blob the signature manifest needs in the registry: its bytes and descriptor."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def load_private_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    """A PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA, encrypted or not): ECDSA P-256/P-384,
    Ed25519 or RSA >= 2048 bits. ``ValueError`` says what to do otherwise."""
    if b"SIGSTORE PRIVATE KEY" in pem or b"COSIGN PRIVATE KEY" in pem:
        raise ValueError(
            "this is cosign's own encrypted key format, which Dockyard does not read: export a "
            "PEM key (for example `openssl genpkey -algorithm ed25519 -out key.pem`, or "
            "`cosign import-key-pair` in reverse) and sign with that"
        )
    if b"PRIVATE KEY-----" not in pem:
        raise ValueError("not a PEM private key: expected '-----BEGIN ... PRIVATE KEY-----'")
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError:
        raise ValueError(
            "the key is encrypted: give its password (--key-password or DOCKYARD_KEY_PASSWORD)"
            if password is None
            else "the key is not encrypted: drop the password"
        ) from None
    except ValueError as exc:
        raise ValueError(f"the private key cannot be read (wrong password?): {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise ValueError(f"unsupported curve {key.curve.name}: use P-256 or P-384")
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too weak: use {MIN_RSA_BITS}+")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(
        f"unsupported key type {type(key).__name__}: use ECDSA P-256/P-384, Ed25519 or RSA"
    )


def simple_signing_payload(
    docker_reference: str, digest: str, annotations: Mapping[str, str] | None = None
) -> bytes:
    """cosign's payload for ``docker_reference`` (registry/repository, no tag) at ``digest``."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": dict(annotations) if annotations else None,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: PrivateKey, payload: bytes) -> str:
    """The base64 signature cosign would make over ``payload`` with ``key``: ECDSA (DER, SHA-256
    for P-256, SHA-384 for P-384), Ed25519, or RSA PKCS#1 v1.5 with SHA-256."""
    public_key = key.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(payload, ec.ECDSA(cosign_hash(public_key)))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(payload)
    else:
        raw = key.sign(payload, padding.PKCS1v15(), cosign_hash(public_key))
    return base64.b64encode(raw).decode("ascii")


def cosign_tag(digest: str) -> str:
    """``sha256:<hex>`` → ``sha256-<hex>.sig``, the tag cosign stores signatures under."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}.sig"


def descriptor(
    media_type: str, data: bytes, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "mediaType": media_type,
        "size": len(data),
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
    }
    if annotations:
        found["annotations"] = dict(annotations)
    return found


def _layer(payload: bytes, signature: str) -> dict[str, Any]:
    return descriptor(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: signature})


def _config(layers: Sequence[Mapping[str, Any]]) -> bytes:
    """cosign's config for a signature image: one diff_id per layer (the payload's digest)."""
    document = {
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        "config": {},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def tag_manifest(
    layers: Sequence[Mapping[str, Any]],
) -> tuple[bytes, SignatureBlob]:
    """The tag-scheme signature manifest over ``layers``, and its config blob."""
    config = SignatureBlob(_config(layers), OCI_CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor(OCI_CONFIG_MEDIA_TYPE, config.data),
        "layers": [dict(layer) for layer in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), config


def append_layer(
    existing: Mapping[str, Any] | None, payload: bytes, signature: str, key: PrivateKey
) -> tuple[list[dict[str, Any]], bool]:
    """The layers of the tag-scheme manifest once this signature is added, as cosign does: one
    more layer, or none when a layer already signs the same payload with the same key (ECDSA
    signatures differ each time, so the signature bytes cannot tell). Returns (layers,
    changed)."""
    layers = [
        dict(layer) for layer in (existing or {}).get("layers", []) if isinstance(layer, dict)
    ]
    new = _layer(payload, signature)
    for layer in layers:
        if layer.get("digest") != new["digest"]:
            continue
        previous = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        try:
            raw = base64.b64decode(previous or "", validate=True)
        except ValueError:
            continue
        if cosign_signature_ok(key.public_key(), payload, raw):
            return layers, False
    layers.append(new)
    return layers, True


def referrer_manifest(
    subject: Mapping[str, Any], payload: bytes, signature: str
) -> tuple[bytes, SignatureBlob]:
    """The OCI 1.1 referrer form: ``artifactType`` cosign's signature type, the empty config,
    one simple-signing layer, and the signed manifest as ``subject``."""
    config = SignatureBlob(EMPTY_CONFIG, EMPTY_CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": COSIGN_ARTIFACT_TYPE,
        "config": descriptor(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG),
        "layers": [_layer(payload, signature)],
        "subject": dict(subject),
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), config
