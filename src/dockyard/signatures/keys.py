"""Loading and describing trust material: cosign public keys and Notation root certificates."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from dockyard.signatures.verify import KeyInfo, SignatureKind

__all__ = [
    "CERTIFICATE_ERRORS",
    "MAX_PEM_BYTES",
    "MIN_RSA_BITS",
    "PublicKey",
    "describe",
    "fingerprint",
    "is_ca",
    "issued_by",
    "key_algorithm",
    "load_public_key",
    "load_roots",
    "parse_identity",
    "read_certificate",
]

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048
MAX_PEM_BYTES = 256 * 1024
"""Trust material larger than this is refused (a bundle of a few dozen roots is far less)."""
MAX_ROOTS = 64
_CURVES = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}
_COSIGN_CURVES = {"secp256r1", "secp384r1"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----")


@dataclass(frozen=True, slots=True)
class Identity:
    """A trusted identity: ``*`` (any) or the X.509 subject attributes that must all match."""

    any: bool
    attributes: tuple[tuple[str, str], ...] = ()
    text: str = "*"


def fingerprint(public_key: PublicKey) -> str:
    """``sha256:<hex>`` of the key's SubjectPublicKeyInfo DER."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def key_algorithm(public_key: object, *, cosign: bool = False) -> str:
    """``ECDSA-P256``, ``Ed25519``, ``RSA-3072``; ``ValueError`` for anything else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        if curve not in _CURVES or (cosign and curve not in _COSIGN_CURVES):
            raise ValueError(f"unsupported elliptic curve {curve}: use P-256 or P-384")
        return f"ECDSA-{_CURVES[curve]}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"RSA key of {public_key.key_size} bits is too weak: use at least {MIN_RSA_BITS}"
            )
        return f"RSA-{public_key.key_size}"
    raise ValueError(
        f"unsupported key type {type(public_key).__name__}: use ECDSA P-256/P-384, Ed25519 or RSA"
    )


def _pem_bytes(pem: str | bytes) -> bytes:
    if not isinstance(pem, str | bytes):
        raise ValueError("key material must be PEM text")
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_PEM_BYTES:
        raise ValueError(f"key material is larger than {MAX_PEM_BYTES // 1024} KiB")
    if b"-----BEGIN " not in data:
        raise ValueError("not PEM: expected a '-----BEGIN ...-----' block")
    return data


def load_public_key(pem: str | bytes) -> PublicKey:
    """The one public key of a cosign key PEM (``PUBLIC KEY``; a certificate's key is accepted
    too). ``ValueError`` says why it cannot be used."""
    data = _pem_bytes(pem)
    if b"PRIVATE KEY" in data:
        raise ValueError("this is a private key: give the public key (cosign.pub)")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            loaded: object = read_certificate(x509.load_pem_x509_certificate(data)).public_key()
        else:
            loaded = serialization.load_pem_public_key(data)
    except CERTIFICATE_ERRORS as exc:
        raise ValueError(f"not a readable PEM public key: {exc}") from None
    key_algorithm(loaded, cosign=True)
    assert isinstance(loaded, PublicKey)  # key_algorithm accepted it
    return loaded


def load_roots(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a Notation trust store PEM; ``ValueError`` if there is none or one
    cannot be read."""
    data = _pem_bytes(pem)
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data)]
    certificates = [b for b in blocks if b.startswith(b"-----BEGIN CERTIFICATE-----")]
    if not certificates:
        raise ValueError("no '-----BEGIN CERTIFICATE-----' block: give X.509 root certificates")
    if len(certificates) > MAX_ROOTS:
        raise ValueError(f"more than {MAX_ROOTS} root certificates in one key")
    roots = []
    for block in certificates:
        try:
            roots.append(read_certificate(x509.load_pem_x509_certificate(block)))
        except CERTIFICATE_ERRORS as exc:
            raise ValueError(f"a certificate cannot be read: {exc}") from None
    return roots


# What ``cryptography`` raises on malformed certificate DER, found by mutating published ones
# (tests/unit/test_signatures_mutations.py). UserWarning: an odd attribute length warns, and is
# an error where warnings are (the tests).
CERTIFICATE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UserWarning,
)


def read_certificate(certificate: x509.Certificate) -> x509.Certificate:
    """The certificate, once every part verification reads has parsed (``cryptography`` parses
    the key, names and extensions lazily); ``ValueError`` if one does not."""
    try:
        certificate.public_key()
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
        _ = certificate.extensions
    except CERTIFICATE_ERRORS as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    return certificate


def is_ca(certificate: x509.Certificate) -> bool:
    """Whether the certificate's basicConstraints say CA:TRUE."""
    try:
        constraints = certificate.extensions.get_extension_for_oid(
            ExtensionOID.BASIC_CONSTRAINTS
        ).value
    except x509.ExtensionNotFound:
        return False
    return isinstance(constraints, x509.BasicConstraints) and constraints.ca


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` issued ``certificate`` (issuer name and signature)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


_IDENTITY_PREFIX = "x509.subject:"


def parse_identity(text: str) -> Identity:
    """A trust policy's trusted identity: ``*`` or ``x509.subject: C=US, O=Acme, CN=...``
    (the attributes that must all be in the leaf's subject)."""
    if not isinstance(text, str):
        raise ValueError(f"trusted identity {text!r} is not a string")
    text = text.strip()
    if text == "*":
        return Identity(any=True)
    if not text.startswith(_IDENTITY_PREFIX):
        raise ValueError(f"trusted identity {text!r} must be '*' or 'x509.subject: <DN>'")
    dn = text[len(_IDENTITY_PREFIX) :].strip()
    attributes = []
    for part in _split_dn(dn):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"trusted identity {text!r}: {part!r} is not NAME=VALUE")
        attributes.append((name.strip().upper(), value.strip()))
    if not attributes:
        raise ValueError(f"trusted identity {text!r} names no subject attribute")
    names = [n for n, _ in attributes]
    if len(set(names)) != len(names):
        raise ValueError(f"trusted identity {text!r} repeats an attribute")
    return Identity(any=False, attributes=tuple(attributes), text=text)


def _split_dn(dn: str) -> list[str]:
    """Split a DN on commas not escaped with a backslash."""
    parts, current, escaped = [], [], False
    for char in dn:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in (x.strip() for x in parts) if p]


def describe(kind: SignatureKind, pem: str, identities: tuple[str, ...]) -> KeyInfo:
    """See ``verify.describe_key``."""
    if kind == "cosign":
        if identities:
            raise ValueError("trusted identities apply to notation keys only")
        public_key = load_public_key(pem)
        return KeyInfo(
            kind="cosign",
            algorithm=key_algorithm(public_key, cosign=True),
            fingerprint=fingerprint(public_key),
        )
    if kind != "notation":
        raise ValueError(f"unknown key kind {kind!r}: use cosign or notation")
    for identity in identities:
        parse_identity(identity)
    roots = load_roots(pem)
    now = datetime.now(UTC)
    for root in roots:
        subject = root.subject.rfc4514_string()
        if root.not_valid_after_utc < now:
            raise ValueError(
                f"root certificate {subject} expired on {root.not_valid_after_utc:%Y-%m-%d}"
            )
        if not is_ca(root) and not issued_by(root, root):
            raise ValueError(
                f"certificate {subject} is neither a CA (basicConstraints CA:TRUE) nor "
                "self-signed: give the root of the signing chain"
            )
        key_algorithm(root.public_key())
    first = roots[0]
    return KeyInfo(
        kind="notation",
        algorithm=key_algorithm(first.public_key()),
        fingerprint="sha256:" + first.fingerprint(_sha256()).hex(),
        subjects=tuple(r.subject.rfc4514_string() for r in roots),
        not_after=max(r.not_valid_after_utc for r in roots),
    )


def _sha256() -> hashes.SHA256:
    return hashes.SHA256()
