"""Content digests as the OCI image spec defines them.

Grammar (image-spec ``descriptor.md``)::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+

Dockyard accepts only the registered algorithms ``sha256`` and ``sha512``,
whose encoded part is lowercase hex of a fixed length.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from dockyard.errors import DigestInvalidError

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Digest",
    "Hasher",
    "is_digest",
    "new_hasher",
]

#: Supported algorithm -> length of its lowercase hex encoding.
SUPPORTED_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX = re.compile(r"[0-9a-f]+")
# Long enough for any supported digest plus slack; longer input is refused
# before the regex sees it so error messages stay short.
_MAX_DIGEST_LENGTH = 256


class Hasher(Protocol):
    """The part of a :mod:`hashlib` object a caller needs to stream data."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _check_algorithm(algorithm: str) -> int:
    try:
        return SUPPORTED_ALGORITHMS[algorithm]
    except KeyError:
        supported = ", ".join(sorted(SUPPORTED_ALGORITHMS))
        raise DigestInvalidError(
            f"unsupported digest algorithm {algorithm!r}; supported: {supported}"
        ) from None


def _shorten(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest. Construct with :meth:`parse` or :meth:`of`."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        length = _check_algorithm(self.algorithm)
        if len(self.hex) != length or not _LOWER_HEX.fullmatch(self.hex):
            raise DigestInvalidError(
                f"{self.algorithm} digest must be {length} lowercase hex characters"
            )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse ``"alg:hex"``; raise :class:`DigestInvalidError` saying what is wrong."""
        if not isinstance(value, str):
            raise DigestInvalidError(f"digest must be a string, not {type(value).__name__}")
        if not value:
            raise DigestInvalidError("digest is empty")
        if len(value) > _MAX_DIGEST_LENGTH:
            raise DigestInvalidError(
                f"digest is too long ({len(value)} characters): {_shorten(value)}"
            )
        if ":" not in value:
            raise DigestInvalidError(
                f"digest {_shorten(value)} has no algorithm; expected '<algorithm>:<hex>'"
            )
        if not _GRAMMAR.fullmatch(value):
            head = value.partition(":")[0]
            if head != head.lower() and head.lower() in SUPPORTED_ALGORITHMS:
                raise DigestInvalidError(
                    f"digest {_shorten(value)}: the algorithm must be lowercase"
                )
            raise DigestInvalidError(
                f"digest {_shorten(value)} does not match the OCI digest grammar "
                "'<algorithm>:<encoded>'"
            )
        algorithm, _, encoded = value.partition(":")
        length = _check_algorithm(algorithm)
        if not _LOWER_HEX.fullmatch(encoded):
            if _LOWER_HEX.fullmatch(encoded.lower()):
                raise DigestInvalidError(f"digest {_shorten(value)} must use lowercase hex")
            raise DigestInvalidError(f"digest {_shorten(value)} is not hex")
        if len(encoded) != length:
            raise DigestInvalidError(
                f"{algorithm} digest must have {length} hex characters, got {len(encoded)}"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest ``data`` with ``algorithm``."""
        hasher = new_hasher(algorithm)
        hasher.update(data)
        return cls(algorithm, hasher.hexdigest())

    @classmethod
    def from_hasher(cls, algorithm: str, hasher: Hasher) -> Digest:
        """The digest a streaming :func:`new_hasher` has reached."""
        return cls(algorithm, hasher.hexdigest())


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hashlib object for ``algorithm``; :class:`DigestInvalidError` if unsupported."""
    _check_algorithm(algorithm)
    return hashlib.new(algorithm)


def is_digest(value: str) -> bool:
    """Whether a manifest reference is meant as a digest rather than a tag.

    Tags cannot contain ``':'``, so a colon is enough to tell; the caller then
    calls :meth:`Digest.parse` to validate it.
    """
    return ":" in value
