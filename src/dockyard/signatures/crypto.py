"""Signature checks over bytes with ``cryptography``: cosign's rules and JOSE/COSE algorithms."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

__all__ = [
    "ENVELOPE_ALGORITHMS",
    "MAX_RSA_BITS",
    "cosign_hash",
    "cosign_signature_ok",
    "envelope_signature_ok",
]

MAX_RSA_BITS = 8192
"""Larger RSA keys are refused: a 16k-bit key makes each check cost tens of milliseconds."""

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
# Notation's algorithms (JWS names; COSE's numbers map onto them in notation.py): RSASSA-PSS
# with the hash's length as salt, and ECDSA whose curve matches the hash.
ENVELOPE_ALGORITHMS: dict[str, tuple[str, str]] = {
    "PS256": ("RSA-PSS", "SHA256"),
    "PS384": ("RSA-PSS", "SHA384"),
    "PS512": ("RSA-PSS", "SHA512"),
    "ES256": ("ECDSA", "SHA256"),
    "ES384": ("ECDSA", "SHA384"),
    "ES512": ("ECDSA", "SHA512"),
}
_CURVE_FOR = {"SHA256": "secp256r1", "SHA384": "secp384r1", "SHA512": "secp521r1"}
_CURVE_BYTES = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}


def cosign_hash(public_key: object) -> hashes.HashAlgorithm:
    """The hash cosign (sigstore's default verifier) uses with a key: SHA-384 for P-384,
    SHA-512 for P-521, SHA-256 otherwise."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name == "secp384r1":
            return hashes.SHA384()
        if public_key.curve.name == "secp521r1":
            return hashes.SHA512()
    return hashes.SHA256()


def _too_big(public_key: object) -> bool:
    return isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size > MAX_RSA_BITS


def cosign_signature_ok(
    public_key: object, message: bytes, signature: bytes, *, prehashed: bool = False
) -> bool:
    """Whether ``signature`` is a cosign signature of ``message`` (or, with ``prehashed``, of the
    message whose digest ``message`` is) by ``public_key``: ECDSA DER, Ed25519, RSA PKCS#1 v1.5
    or RSA-PSS."""
    if _too_big(public_key):
        return False
    digest = cosign_hash(public_key)
    algorithm: hashes.HashAlgorithm | utils.Prehashed = (
        utils.Prehashed(digest) if prehashed else digest
    )
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(algorithm))
            return True
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            if prehashed:
                return False
            public_key.verify(signature, message)
            return True
        if isinstance(public_key, rsa.RSAPublicKey):
            return _rsa_ok(public_key, message, signature, algorithm, digest)
    except (InvalidSignature, ValueError):
        return False
    return False


def _rsa_ok(
    public_key: rsa.RSAPublicKey,
    message: bytes,
    signature: bytes,
    algorithm: hashes.HashAlgorithm | utils.Prehashed,
    digest: hashes.HashAlgorithm,
) -> bool:
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), algorithm)
        return True
    except InvalidSignature:
        pass
    try:
        public_key.verify(
            signature,
            message,
            padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO),
            algorithm,
        )
        return True
    except InvalidSignature:
        return False


def envelope_signature_ok(
    public_key: object, alg: str, message: bytes, signature: bytes
) -> tuple[bool, str]:
    """Check a JWS/COSE signature (``alg`` a JWS name). Returns (ok, why not)."""
    family, hash_name = ENVELOPE_ALGORITHMS[alg]
    digest = _HASHES[hash_name]()
    if _too_big(public_key):
        return False, f"signing key is larger than {MAX_RSA_BITS} bits"
    if family == "RSA-PSS":
        if not isinstance(public_key, rsa.RSAPublicKey):
            return False, f"algorithm {alg} needs an RSA signing certificate"
        try:
            public_key.verify(
                signature,
                message,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
                digest,
            )
        except (InvalidSignature, ValueError):
            return False, "the envelope's signature does not match its signing certificate"
        return True, ""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False, f"algorithm {alg} needs an ECDSA signing certificate"
    if public_key.curve.name != _CURVE_FOR[hash_name]:
        return False, f"algorithm {alg} does not match the certificate's curve"
    size = _CURVE_BYTES[public_key.curve.name]
    if len(signature) != 2 * size:
        return False, f"an {alg} signature is {2 * size} bytes, not {len(signature)}"
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    try:
        public_key.verify(utils.encode_dss_signature(r, s), message, ec.ECDSA(digest))
    except (InvalidSignature, ValueError):
        return False, "the envelope's signature does not match its signing certificate"
    return True, ""
