"""cosign signatures checked with a public key.

Three layer forms, as cosign writes them:

- simple signing (``application/vnd.dev.cosign.simplesigning.v1+json``): the layer is the
  payload JSON, whose ``critical.image.docker-manifest-digest`` names the image; the base64
  signature over the payload bytes is the layer annotation ``dev.cosignproject.cosign/signature``;
- a sigstore bundle (``application/vnd.dev.sigstore.bundle.v0.3+json`` and the earlier versions):
  a ``messageSignature`` over the manifest itself (its digest is the bundle's ``messageDigest``),
  or a ``dsseEnvelope`` whose in-toto statement (or simple-signing payload) names the image;
- a bare DSSE envelope (``application/vnd.dsse.envelope.v1+json``).

Keyless signatures (a Fulcio certificate, a Rekor entry) are not verified here: checking them
needs the sigstore trust root and transparency log, which is out of scope. They are reported as
such, never as verified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.signatures import keys as keys_mod
from dockyard.signatures.crypto import cosign_signature_ok
from dockyard.signatures.limits import (
    MAX_ENVELOPE_BYTES,
    MAX_LAYERS,
    Malformed,
    b64decode,
    load_json,
)
from dockyard.signatures.verify import SignatureArtifact, SignatureLayer, TrustedKey, Verdict

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "DSSE_MEDIA_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "SIMPLE_SIGNING_TYPES",
    "pae",
    "verify",
]

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)
SIMPLE_SIGNING_TYPES = frozenset(
    {"cosign container image signature", "https://sigstore.dev/cosign/sign/v1"}
)
_KEYLESS = (
    "keyless signature (Fulcio certificate) that no trusted key verifies: Dockyard verifies "
    "signatures made with a public key only; Fulcio and Rekor verification is out of scope"
)


class _Failed(Exception):
    """This layer cannot verify; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class _Signed:
    """What one layer claims: the bytes signed, the signature, and whether ``message`` is the
    message itself or its SHA-256 digest."""

    message: bytes
    signature: bytes
    prehashed: bool = False
    keyless: bool = False  # signed with a certificate's key (Fulcio)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def verify(
    signature: SignatureArtifact, subject_digest: str, keys: Sequence[TrustedKey]
) -> Verdict:
    """See ``verify.verify``: a cosign artifact verifies when one of its layers does."""
    loaded: list[tuple[TrustedKey, keys_mod.PublicKey, str]] = []
    problems: list[str] = []
    for key in keys:
        try:
            public_key = keys_mod.load_public_key(key.pem)
        except ValueError as exc:
            problems.append(f"trusted key {key.id} cannot be used: {exc}")
            continue
        loaded.append((key, public_key, keys_mod.fingerprint(public_key)))
    if not loaded:
        return Verdict(False, "; ".join(problems) or "no usable trusted cosign key")
    if not signature.layers:
        return Verdict(False, "the signature manifest has no layers")
    reasons: list[str] = []
    for index, layer in enumerate(signature.layers[:MAX_LAYERS]):
        try:
            signed = _layer_claim(layer, subject_digest)
        except (_Failed, Malformed) as exc:
            reasons.append(_numbered(index, len(signature.layers), str(exc)))
            continue
        for key, public_key, fingerprint in loaded:
            if cosign_signature_ok(
                public_key, signed.message, signed.signature, prehashed=signed.prehashed
            ):
                name = key.name or fingerprint
                return Verdict(True, f"verified by key {name}", key.id, fingerprint)
        failed = (
            _KEYLESS
            if signed.keyless
            else f"the signature does not verify with any of the {len(loaded)} trusted cosign "
            "keys (signed by another key, or the payload was changed)"
        )
        reasons.append(_numbered(index, len(signature.layers), failed))
    if len(signature.layers) > MAX_LAYERS:
        reasons.append(f"layers past the first {MAX_LAYERS} were not checked")
    return Verdict(False, "; ".join(dict.fromkeys(reasons)))


def _numbered(index: int, count: int, reason: str) -> str:
    return reason if count == 1 else f"layer {index + 1}: {reason}"


def _layer_claim(layer: SignatureLayer, subject_digest: str) -> _Signed:
    media_type = layer.media_type.replace(" ", "")
    if media_type == SIMPLE_SIGNING_MEDIA_TYPE:
        return _simple_signing(layer, subject_digest)
    if media_type in BUNDLE_MEDIA_TYPES:
        return _bundle(layer.data, subject_digest)
    if media_type == DSSE_MEDIA_TYPE:
        envelope = load_json(layer.data, "the DSSE envelope", max_bytes=MAX_ENVELOPE_BYTES)
        return _dsse(envelope, subject_digest)
    raise _Failed(f"layer media type {layer.media_type!r} is not a cosign signature")


def _simple_signing(layer: SignatureLayer, subject_digest: str) -> _Signed:
    encoded = layer.annotations.get(SIGNATURE_ANNOTATION)
    if not encoded:
        raise _Failed(f"the layer has no {SIGNATURE_ANNOTATION} annotation")
    signature = b64decode(encoded, "the signature annotation", max_bytes=4096)
    _check_simple_signing(load_json(layer.data, "the simple-signing payload"), subject_digest)
    keyless = "dev.sigstore.cosign/certificate" in layer.annotations
    return _Signed(layer.data, signature, keyless=keyless)


def _check_simple_signing(payload: Mapping[str, Any], subject_digest: str) -> None:
    critical = payload.get("critical")
    if not isinstance(critical, dict):
        raise Malformed("the simple-signing payload has no 'critical' object")
    kind = critical.get("type")
    if kind not in SIMPLE_SIGNING_TYPES:
        raise Malformed(f"the simple-signing payload's type {kind!r} is not cosign's")
    image = critical.get("image")
    named = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(named, str):
        raise Malformed("the simple-signing payload names no docker-manifest-digest")
    if named != subject_digest:
        raise _Failed(f"the signed payload names {named}, not this artifact ({subject_digest})")


def _bundle(data: bytes, subject_digest: str) -> _Signed:
    bundle = load_json(data, "the sigstore bundle", max_bytes=MAX_ENVELOPE_BYTES)
    material = bundle.get("verificationMaterial")
    if not isinstance(material, dict):
        raise Malformed("the sigstore bundle has no verificationMaterial")
    keyless = "certificate" in material or "x509CertificateChain" in material
    if not keyless and "publicKey" not in material:
        raise Malformed("the sigstore bundle names no public key, certificate or chain")
    if "dsseEnvelope" in bundle:
        envelope = bundle["dsseEnvelope"]
        if not isinstance(envelope, dict):
            raise Malformed("the bundle's dsseEnvelope is not an object")
        return dataclasses.replace(_dsse(envelope, subject_digest), keyless=keyless)
    message = bundle.get("messageSignature")
    if not isinstance(message, dict):
        raise Malformed("the sigstore bundle has neither messageSignature nor dsseEnvelope")
    digest = message.get("messageDigest")
    if not isinstance(digest, dict) or digest.get("algorithm") != "SHA2_256":
        raise Malformed("the bundle's messageDigest is missing or not SHA2_256")
    signed = b64decode(digest.get("digest"), "the bundle's messageDigest", max_bytes=64)
    algorithm, _, hex_digest = subject_digest.partition(":")
    if algorithm != "sha256" or signed.hex() != hex_digest:
        raise _Failed(
            f"the bundle signs sha256:{signed.hex()}, not this artifact ({subject_digest})"
        )
    signature = b64decode(message.get("signature"), "the bundle's signature", max_bytes=4096)
    return _Signed(signed, signature, prehashed=True, keyless=keyless)


def _dsse(envelope: Mapping[str, Any], subject_digest: str) -> _Signed:
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise Malformed("the DSSE envelope has no payloadType")
    payload = b64decode(envelope.get("payload"), "the DSSE payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise Malformed("the DSSE envelope must carry exactly one signature")
    entry = signatures[0]
    signature = b64decode(
        entry.get("sig") if isinstance(entry, dict) else None,
        "the DSSE signature",
        max_bytes=4096,
    )
    if payload_type == IN_TOTO_PAYLOAD_TYPE:
        _check_statement(load_json(payload, "the in-toto statement"), subject_digest)
    elif payload_type == SIMPLE_SIGNING_MEDIA_TYPE:
        _check_simple_signing(load_json(payload, "the simple-signing payload"), subject_digest)
    else:
        raise Malformed(f"DSSE payload type {payload_type!r} is not in-toto or simple signing")
    return _Signed(pae(payload_type, payload), signature)


def _check_statement(statement: Mapping[str, Any], subject_digest: str) -> None:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise Malformed("the in-toto statement names no subject")
    algorithm, _, hex_digest = subject_digest.partition(":")
    named: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digests, dict):
            raise Malformed("an in-toto subject has no digest")
        value = digests.get(algorithm)
        if value == hex_digest:
            return
        named.extend(f"{k}:{v}" for k, v in digests.items() if isinstance(v, str))
    raise _Failed(
        f"the signed statement names {', '.join(named[:3]) or 'no digest'}, "
        f"not this artifact ({subject_digest})"
    )
