"""Caps on what a signature may make the verifier read: sizes, JSON depth, chain length.

Signatures come from anyone who may push. Nothing here grows with what the pusher sends past
these limits, so a hostile signature costs at most a bounded parse and a few public-key
operations.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

__all__ = [
    "MAX_CHAIN",
    "MAX_ENVELOPE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_LAYERS",
    "MAX_PAYLOAD_BYTES",
    "Malformed",
    "b64decode",
    "b64url_decode",
    "load_json",
]

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

MAX_PAYLOAD_BYTES = 256 * 1024
"""A signed payload (simple-signing JSON, in-toto statement, Notation descriptor): real ones are
a few hundred bytes."""
MAX_ENVELOPE_BYTES = 1024 * 1024
"""A whole signature blob (Notation envelope with its chain, sigstore bundle with log proofs)."""
MAX_JSON_DEPTH = 32
MAX_CHAIN = 10
"""Certificates in a Notation chain; real chains have two to four."""
MAX_LAYERS = 64
"""Signature layers judged in one artifact (cosign appends one per signature)."""


class Malformed(ValueError):
    """The signature cannot be read; the message says what is wrong with it."""


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


def load_json(data: bytes, what: str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """A JSON object of at most ``max_bytes`` and ``MAX_JSON_DEPTH`` levels, or ``Malformed``."""
    if len(data) > max_bytes:
        raise Malformed(f"{what} is {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        document = json.loads(data)
    except RecursionError:
        raise Malformed(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise Malformed(f"{what} is not a JSON object")
    if _depth(document) > MAX_JSON_DEPTH:
        raise Malformed(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def b64decode(value: object, what: str, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> bytes:
    """Standard base64 (padding required), or ``Malformed``."""
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} is missing or not a string")
    if len(value) > max_bytes * 4 // 3 + 4:
        raise Malformed(f"{what} is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"{what} is not valid base64") from None


def b64url_decode(value: object, what: str, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> bytes:
    """Unpadded base64url (JWS), or ``Malformed``."""
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} is missing or not a string")
    if len(value) > max_bytes * 4 // 3 + 4:
        raise Malformed(f"{what} is larger than {max_bytes} bytes")
    if not _BASE64URL.fullmatch(value):
        raise Malformed(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise Malformed(f"{what} is not valid base64url") from None
