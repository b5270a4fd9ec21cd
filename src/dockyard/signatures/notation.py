"""Notation signatures: JWS (``application/jose+json``) and COSE (``application/cose``)
envelopes, checked as the Notary Project signature specification says.

The checks, in order, each with its own reason: the envelope parses within the size and depth
limits; its protected headers are complete (``cty``, ``io.cncf.notary.signingScheme`` and the
signing time of that scheme) and every header listed as critical is one we understand; the
payload's ``targetArtifact`` names exactly this manifest digest; the signature checks with the
leaf certificate of the envelope's chain; each certificate is issued by the next, none repeats,
and the chain ends at (or is issued by) a trusted root; every certificate, the root included, is
valid at the signing time; the signature has not expired (``io.cncf.notary.expiry``); the leaf's
subject matches one of the key's trusted identities.

Timestamp countersignatures (RFC 3161) and revocation checks (OCSP, CRL) are not evaluated, and
``io.cncf.notary.verificationPlugin`` signatures are refused: Dockyard runs no plugins.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from dockyard.signatures import keys as keys_mod
from dockyard.signatures.crypto import ENVELOPE_ALGORITHMS, envelope_signature_ok
from dockyard.signatures.limits import (
    MAX_CHAIN,
    MAX_ENVELOPE_BYTES,
    MAX_JSON_DEPTH,
    Malformed,
    b64url_decode,
    load_json,
)
from dockyard.signatures.verify import SignatureArtifact, TrustedKey, Verdict

__all__ = ["COSE_MEDIA_TYPE", "JWS_MEDIA_TYPE", "verify"]

JWS_MEDIA_TYPE = "application/jose+json"
COSE_MEDIA_TYPE = "application/cose"
PAYLOAD_CONTENT_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
PLUGIN = "io.cncf.notary.verificationPlugin"
PLUGIN_MIN_VERSION = "io.cncf.notary.verificationPluginMinVersion"
# Headers a verifier must understand when listed as critical; the plugin ones we refuse.
_UNDERSTOOD = {SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME}
_SCHEME_TIME = {
    "notary.x509": SIGNING_TIME,
    "notary.x509.signingAuthority": AUTHENTIC_SIGNING_TIME,
}
_COSE_ALGORITHMS = {
    -37: "PS256",
    -38: "PS384",
    -39: "PS512",
    -7: "ES256",
    -35: "ES384",
    -36: "ES512",
}
_COSE_ALG, _COSE_CRIT, _COSE_CTY, _COSE_X5CHAIN = 1, 2, 3, 33
_COSE_SIGN1_TAG = 18
_SUPPORTED = "use PS256/384/512 or ES256/384/512"


class _Failed(Exception):
    """The signature does not verify; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class _Envelope:
    """What either envelope format carries, in one shape."""

    alg: str
    signed: bytes  # the bytes the signature is over
    signature: bytes
    headers: Mapping[str, Any]  # protected headers, by their Notary names
    critical: tuple[str, ...]
    payload: bytes
    chain: tuple[x509.Certificate, ...]


def verify(
    signature: SignatureArtifact,
    subject_digest: str,
    keys: Sequence[TrustedKey],
    *,
    now: datetime | None = None,
) -> Verdict:
    """See ``verify.verify``."""
    moment = now or datetime.now(UTC)
    envelopes = [
        layer for layer in signature.layers if layer.media_type in (JWS_MEDIA_TYPE, COSE_MEDIA_TYPE)
    ]
    if len(envelopes) != 1:
        return Verdict(
            False,
            f"a Notation signature has exactly one {JWS_MEDIA_TYPE} or {COSE_MEDIA_TYPE} layer; "
            f"this one has {len(envelopes)}",
        )
    layer = envelopes[0]
    try:
        if len(layer.data) > MAX_ENVELOPE_BYTES:
            raise Malformed(f"the envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
        if layer.media_type == JWS_MEDIA_TYPE:
            envelope = _read_jws(layer.data)
        else:
            envelope = _read_cose(layer.data)
        signing_time = _check_headers(envelope, moment)
        _check_payload(envelope.payload, subject_digest)
        ok, why = envelope_signature_ok(
            envelope.chain[0].public_key(), envelope.alg, envelope.signed, envelope.signature
        )
        if not ok:
            raise _Failed(why)
        _check_chain_shape(envelope.chain)
        _check_leaf(envelope.chain[0])
        return _trusted(envelope.chain, signing_time, keys)
    except Malformed as exc:
        return Verdict(False, f"malformed Notation envelope: {exc}")
    except _Failed as exc:
        return Verdict(False, str(exc))


# --- reading the envelopes -----------------------------------------------------------------


def _too_long(count: int) -> str:
    return f"the certificate chain has {count} certificates, more than {MAX_CHAIN}"


def _certificates(ders: object) -> tuple[x509.Certificate, ...]:
    if isinstance(ders, bytes):
        ders = [ders]
    if not isinstance(ders, list | tuple) or not ders:
        raise Malformed("the envelope carries no certificate chain")
    if len(ders) > MAX_CHAIN:
        raise Malformed(_too_long(len(ders)))
    chain = []
    for der in ders:
        if not isinstance(der, bytes):
            raise Malformed("a certificate of the chain is not DER bytes")
        try:
            chain.append(keys_mod.read_certificate(x509.load_der_x509_certificate(der)))
        except keys_mod.CERTIFICATE_ERRORS as exc:
            raise Malformed(f"a certificate of the chain cannot be read ({exc})") from None
    return tuple(chain)


def _read_jws(data: bytes) -> _Envelope:
    document = load_json(data, "the JWS envelope", max_bytes=MAX_ENVELOPE_BYTES)
    protected_b64 = document.get("protected")
    payload_b64 = document.get("payload")
    protected = load_json(b64url_decode(protected_b64, "protected header"), "protected header")
    payload = b64url_decode(payload_b64, "payload")
    signature = b64url_decode(document.get("signature"), "signature", max_bytes=2048)
    header = document.get("header")
    if not isinstance(header, dict):
        raise Malformed("the JWS envelope has no unprotected header")
    x5c = header.get("x5c")
    if not isinstance(x5c, list):
        raise Malformed("the JWS unprotected header has no x5c certificate chain")
    if len(x5c) > MAX_CHAIN:
        raise Malformed(_too_long(len(x5c)))
    ders = []
    for item in x5c:
        if not isinstance(item, str):
            raise Malformed("an x5c entry is not a string")
        try:
            ders.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise Malformed("an x5c certificate is not valid base64") from None
    alg = protected.get("alg")
    if alg not in ENVELOPE_ALGORITHMS:
        raise _Failed(f"signature algorithm {alg!r} is not supported ({_SUPPORTED})")
    critical = protected.get("crit")
    if not isinstance(critical, list) or not all(isinstance(c, str) for c in critical):
        raise Malformed("the protected header's crit is missing or not a list of names")
    headers = dict(protected)
    headers["cty"] = protected.get("cty")
    for name in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY):
        if name in headers:
            headers[name] = _rfc3339(headers[name], name)
    return _Envelope(
        alg=str(alg),
        signed=f"{protected_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
        headers=headers,
        critical=tuple(critical),
        payload=payload,
        chain=_certificates(ders),
    )


def _rfc3339(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise Malformed(f"{name} is not a time string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Malformed(f"{name} {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise Malformed(f"{name} {value!r} has no time zone")
    return moment.astimezone(UTC)


def _read_cose(data: bytes) -> _Envelope:
    try:
        message = cbor2.loads(data, max_depth=MAX_JSON_DEPTH, allow_duplicate_keys=False)
    except (cbor2.CBORDecodeError, ValueError, RecursionError, OverflowError, MemoryError) as exc:
        raise Malformed(f"the COSE envelope is not valid CBOR ({exc})") from None
    if not isinstance(message, cbor2.CBORTag) or message.tag != _COSE_SIGN1_TAG:
        raise Malformed("the COSE envelope is not a tagged COSE_Sign1 message")
    value = message.value
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise Malformed("COSE_Sign1 must be an array of four items")
    protected_bytes, unprotected, payload, signature = value
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, Mapping):
        raise Malformed("COSE_Sign1's headers are not a byte string and a map")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise Malformed("COSE_Sign1's payload or signature is not a byte string (detached?)")
    try:
        protected = cbor2.loads(protected_bytes, max_depth=8, allow_duplicate_keys=False)
    except (cbor2.CBORDecodeError, ValueError, RecursionError, OverflowError) as exc:
        raise Malformed(f"the COSE protected header is not valid CBOR ({exc})") from None
    if not isinstance(protected, Mapping):
        raise Malformed("the COSE protected header is not a map")
    alg = _COSE_ALGORITHMS.get(protected.get(_COSE_ALG))  # type: ignore[arg-type]
    if alg is None:
        raise _Failed(
            f"COSE algorithm {protected.get(_COSE_ALG)!r} is not supported ({_SUPPORTED})"
        )
    critical = protected.get(_COSE_CRIT)
    if not isinstance(critical, list | tuple):
        raise Malformed("the COSE protected header's crit is missing or not a list")
    names = []
    for item in critical:
        if isinstance(item, int) and item in (_COSE_ALG, _COSE_CRIT, _COSE_CTY):
            continue
        if not isinstance(item, str):
            raise _Failed(f"critical COSE header {item!r} is not understood")
        names.append(item)
    headers: dict[str, Any] = {
        "cty": protected.get(_COSE_CTY),
        **{k: v for k, v in protected.items() if isinstance(k, str)},
    }
    for name in (SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY):
        if name in headers:
            moment = headers[name]
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise Malformed(f"{name} is not a CBOR date-time (tag 1)")
            headers[name] = moment.astimezone(UTC)
    signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    return _Envelope(
        alg=alg,
        signed=signed,
        signature=signature,
        headers=headers,
        critical=tuple(names),
        payload=payload,
        chain=_certificates(unprotected.get(_COSE_X5CHAIN)),
    )


# --- the checks ----------------------------------------------------------------------------


def _check_headers(envelope: _Envelope, now: datetime) -> datetime:
    """The headers' rules; returns the signing time the chain must be valid at."""
    headers = envelope.headers
    if headers.get("cty") != PAYLOAD_CONTENT_TYPE:
        raise Malformed(f"content type {headers.get('cty')!r} is not {PAYLOAD_CONTENT_TYPE}")
    for name in envelope.critical:
        if name in (PLUGIN, PLUGIN_MIN_VERSION):
            raise _Failed(
                f"the signature requires verification plugin {headers.get(PLUGIN)!r}; "
                "Dockyard runs no Notation plugins"
            )
        if name not in _UNDERSTOOD and name not in ("alg", "cty", "crit"):
            raise _Failed(f"critical header {name!r} is not understood")
        if name not in headers:
            raise Malformed(f"critical header {name!r} is listed but absent")
    scheme = headers.get(SIGNING_SCHEME)
    if scheme not in _SCHEME_TIME:
        raise _Failed(f"signing scheme {scheme!r} is not {' or '.join(_SCHEME_TIME)}")
    for required in (SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME):
        if required in headers and required not in envelope.critical:
            raise Malformed(f"header {required} must be listed as critical")
    time_header = _SCHEME_TIME[scheme]
    signing_time = headers.get(time_header)
    if not isinstance(signing_time, datetime):
        raise Malformed(f"the {scheme} scheme needs the {time_header} header")
    expiry = headers.get(EXPIRY)
    if isinstance(expiry, datetime) and now > expiry:
        raise _Failed(f"the signature expired on {expiry:%Y-%m-%d %H:%M:%S} UTC")
    return signing_time


def _check_payload(payload: bytes, subject_digest: str) -> None:
    document = load_json(payload, "the signed payload")
    target = document.get("targetArtifact")
    if not isinstance(target, dict):
        raise Malformed("the signed payload has no targetArtifact descriptor")
    digest = target.get("digest")
    if not isinstance(digest, str) or not isinstance(target.get("mediaType"), str):
        raise Malformed("the targetArtifact descriptor has no digest or mediaType")
    if digest != subject_digest:
        raise _Failed(f"the signed payload names {digest}, not this artifact ({subject_digest})")


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _check_chain_shape(chain: Sequence[x509.Certificate]) -> None:
    seen: set[bytes] = set()
    for index, certificate in enumerate(chain):
        der = _der(certificate)
        if der in seen:
            raise _Failed("the certificate chain repeats a certificate (a loop)")
        seen.add(der)
        if index + 1 < len(chain):
            issuer = chain[index + 1]
            if not keys_mod.issued_by(certificate, issuer):
                raise _Failed(
                    f"certificate {_subject(certificate)} is not issued by the next one in the "
                    f"chain ({_subject(issuer)})"
                )
            if not keys_mod.is_ca(issuer):
                raise _Failed(f"certificate {_subject(issuer)} signs others but is not a CA")


def _check_leaf(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        usage = None
    if not isinstance(usage, x509.KeyUsage) or not usage.digital_signature:
        raise _Failed(f"signing certificate {_subject(leaf)} lacks the digitalSignature key usage")
    try:
        extended = leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return
    if isinstance(extended, x509.ExtendedKeyUsage) and (
        ExtendedKeyUsageOID.CODE_SIGNING not in extended
    ):
        raise _Failed(f"signing certificate {_subject(leaf)} is not for code signing")


def _valid_at(certificate: x509.Certificate, moment: datetime) -> None:
    if moment < certificate.not_valid_before_utc:
        raise _Failed(
            f"certificate {_subject(certificate)} was not yet valid at signing time "
            f"{moment:%Y-%m-%d %H:%M:%S} UTC "
            f"(valid from {certificate.not_valid_before_utc:%Y-%m-%d})"
        )
    if moment > certificate.not_valid_after_utc:
        raise _Failed(
            f"certificate {_subject(certificate)} had expired at signing time "
            f"{moment:%Y-%m-%d %H:%M:%S} UTC "
            f"(valid until {certificate.not_valid_after_utc:%Y-%m-%d})"
        )


def _trusted(
    chain: Sequence[x509.Certificate], signing_time: datetime, keys: Sequence[TrustedKey]
) -> Verdict:
    leaf, last = chain[0], chain[-1]
    anchored: list[tuple[TrustedKey, x509.Certificate]] = []
    problems: list[str] = []
    for key in keys:
        try:
            roots = keys_mod.load_roots(key.pem)
        except ValueError as exc:
            problems.append(f"trusted key {key.id} cannot be used: {exc}")
            continue
        for root in roots:
            if _der(root) == _der(last) or (
                keys_mod.is_ca(root) and keys_mod.issued_by(last, root)
            ):
                anchored.append((key, root))
                break
    if not anchored:
        extra = f" ({'; '.join(problems)})" if problems else ""
        raise _Failed(
            f"the certificate chain ({_subject(leaf)} ... {_subject(last)}) does not lead to a "
            f"trusted root{extra}"
        )
    for certificate in chain:
        _valid_at(certificate, signing_time)
    mismatched = []
    for key, root in anchored:
        _valid_at(root, signing_time)
        if _identity_matches(leaf, key.identities):
            name = key.name or f"root {_subject(root)}"
            return Verdict(True, f"verified by key {name}", key.id, _subject(leaf))
        mismatched.append(key)
    allowed = ", ".join(i for key in mismatched for i in key.identities)
    raise _Failed(
        f"signing certificate subject {_subject(leaf)} is not a trusted identity ({allowed})"
    )


def _identity_matches(leaf: x509.Certificate, identities: Sequence[str]) -> bool:
    if not identities:
        return True
    attributes: dict[str, list[str]] = {}
    for attribute in leaf.subject:
        attributes.setdefault(attribute.rfc4514_attribute_name.upper(), []).append(
            str(attribute.value)
        )
    for text in identities:
        try:
            identity = keys_mod.parse_identity(text)
        except ValueError:
            continue
        if identity.any:
            return True
        if all(value in attributes.get(name, []) for name, value in identity.attributes):
            return True
    return False
