"""The verification interface: what a signature, a trusted key and a verdict are, and the one
``verify`` function that judges a signature artifact against a set of trusted keys.

``verify`` never raises on bad input: a malformed, oversized, hostile or unsupported signature
gives ``Verdict(verified=False, reason=<which check failed>)``. Only a signature whose payload
names exactly the subject digest and whose signature checks against a trusted key (and, for
Notation, whose certificate chain leads to a trusted root and is valid at signing time) is
verified.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "KeyInfo",
    "SignatureArtifact",
    "SignatureKind",
    "SignatureLayer",
    "TrustedKey",
    "Verdict",
    "describe_key",
    "verify",
]

SignatureKind = Literal["cosign", "notation"]
_log = logging.getLogger("dockyard.signatures")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key a project trusts. For ``cosign``, ``pem`` is one public key (SubjectPublicKeyInfo
    PEM: ECDSA P-256/P-384, Ed25519 or RSA >= 2048 bits). For ``notation``, ``pem`` holds one or
    more X.509 root certificates, and ``identities`` the trust policy's trustedIdentities
    (``x509.subject: CN=..,O=..`` or ``*``; empty means ``*``)."""

    id: int
    kind: SignatureKind
    pem: str
    identities: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class SignatureLayer:
    """One layer of a signature manifest: its media type, its blob and its annotations."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignatureArtifact:
    """A signature manifest (cosign tag-scheme or referrer, or a Notation referrer) with the
    blobs of its layers."""

    kind: SignatureKind
    digest: str
    manifest: bytes
    layers: tuple[SignatureLayer, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome: ``reason`` says which key verified it, or exactly which check failed.
    ``signer`` is the key fingerprint (``sha256:<hex>`` of the SubjectPublicKeyInfo DER) for
    cosign, the leaf certificate's subject for Notation."""

    verified: bool
    reason: str
    key_id: int | None = None
    signer: str | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What ``describe_key`` found in a key: its algorithm (``ECDSA-P256``, ``Ed25519``,
    ``RSA-3072``...), its fingerprint (``sha256:<hex>`` of the SPKI DER, or of the first root
    certificate's DER for Notation), the roots' subjects and their latest expiry."""

    kind: SignatureKind
    algorithm: str
    fingerprint: str
    subjects: tuple[str, ...] = ()
    not_after: datetime | None = None


def describe_key(kind: SignatureKind, pem: str, identities: Sequence[str] = ()) -> KeyInfo:
    """Validate trust material for the API and say what it is. Raises ``ValueError`` with a
    reason a user can act on: not PEM, unsupported algorithm or curve, RSA below 2048 bits, a
    root certificate expired or not a CA, a malformed identity."""
    from dockyard.signatures import keys

    return keys.describe(kind, pem, tuple(identities))


def verify(
    signature: SignatureArtifact,
    subject_digest: str,
    keys: Sequence[TrustedKey],
    *,
    now: datetime | None = None,
) -> Verdict:
    """Judge ``signature`` for the artifact ``subject_digest`` against the trusted ``keys`` of
    its kind (keys of the other kind are ignored). ``now`` (default: the current UTC time) is
    when Notation's expiry and timestamps are judged. Never raises."""
    from dockyard.signatures import cosign, notation

    if signature.kind not in ("cosign", "notation"):
        return Verdict(False, f"unknown signature kind {signature.kind!r}")
    usable = [key for key in keys if key.kind == signature.kind]
    if not usable:
        return Verdict(False, f"no trusted {signature.kind} key is configured")
    try:
        if signature.kind == "cosign":
            return cosign.verify(signature, subject_digest, usable)
        return notation.verify(signature, subject_digest, usable, now=now)
    except Exception as exc:  # last resort: verify() must never raise
        _log.warning("signature %s could not be checked", signature.digest, exc_info=True)
        return Verdict(False, f"signature could not be checked: {type(exc).__name__}")
