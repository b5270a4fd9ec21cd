"""Digest grammar, hashing and the supported algorithms."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from dockyard.errors import DigestInvalidError
from dockyard.oci.digest import SUPPORTED_ALGORITHMS, Digest, Hasher, is_digest, new_hasher

SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA256_EMPTY_JSON = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SHA512_EMPTY = hashlib.sha512(b"").hexdigest()


def test_supported_algorithms_are_the_registered_ones() -> None:
    assert SUPPORTED_ALGORITHMS == {"sha256": 64, "sha512": 128}


@pytest.mark.parametrize(
    ("value", "algorithm", "hex_"),
    [
        (f"sha256:{SHA256_EMPTY}", "sha256", SHA256_EMPTY),
        (f"sha256:{SHA256_EMPTY_JSON}", "sha256", SHA256_EMPTY_JSON),
        (f"sha512:{SHA512_EMPTY}", "sha512", SHA512_EMPTY),
        ("sha256:" + "0" * 64, "sha256", "0" * 64),
    ],
)
def test_parse_valid(value: str, algorithm: str, hex_: str) -> None:
    digest = Digest.parse(value)
    assert digest == Digest(algorithm, hex_)
    assert digest.algorithm == algorithm
    assert digest.hex == hex_
    assert str(digest) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("sha256", "no algorithm"),
        (SHA256_EMPTY, "no algorithm"),
        (":" + SHA256_EMPTY, "grammar"),
        ("sha256:", "grammar"),
        ("sha256::" + SHA256_EMPTY, "grammar"),
        ("sha256 :" + SHA256_EMPTY, "grammar"),
        (" sha256:" + SHA256_EMPTY, "grammar"),
        ("sha256:" + SHA256_EMPTY + " ", "grammar"),
        ("sha256:" + SHA256_EMPTY + "\n", "grammar"),
        ("sha256:" + SHA256_EMPTY + "\x00", "grammar"),
        ("\x00sha256:" + SHA256_EMPTY, "grammar"),
        ("sha256:" + SHA256_EMPTY[:-1] + "\u0660", "grammar"),  # Arabic-Indic zero
        ("sha256:" + SHA256_EMPTY[:-1] + "ｆ", "grammar"),  # fullwidth f
        ("sha256:" + SHA256_EMPTY + "/../x", "grammar"),
        ("sha256-:" + SHA256_EMPTY, "grammar"),
        ("-sha256:" + SHA256_EMPTY, "grammar"),
        ("sha256+:" + SHA256_EMPTY, "grammar"),
        ("SHA256:" + SHA256_EMPTY, "algorithm must be lowercase"),
        ("Sha512:" + SHA512_EMPTY, "algorithm must be lowercase"),
        ("sha256:" + SHA256_EMPTY.upper(), "lowercase hex"),
        ("sha256:" + SHA256_EMPTY[:-1] + "A", "lowercase hex"),
        ("sha256:" + SHA256_EMPTY[:-1] + "g", "not hex"),
        ("sha256:" + SHA256_EMPTY[:-1] + "=", "not hex"),
        ("sha256:" + SHA256_EMPTY[:-1] + "_", "not hex"),
        ("sha256:" + SHA256_EMPTY[:-1], "64 hex characters, got 63"),
        ("sha256:" + SHA256_EMPTY + "0", "64 hex characters, got 65"),
        ("sha256:" + SHA512_EMPTY, "64 hex characters, got 128"),
        ("sha512:" + SHA256_EMPTY, "128 hex characters, got 64"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm 'md5'"),
        ("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709", "unsupported"),
        ("sha384:" + "0" * 96, "unsupported"),
        ("blake3:" + "0" * 64, "unsupported"),
        ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported"),
        ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "unsupported"),
        ("sha256:" + "a" * 300, "too long"),
        ("x" * 10_000, "too long"),
    ],
)
def test_parse_invalid(value: str, message: str) -> None:
    with pytest.raises(DigestInvalidError, match=message) as info:
        Digest.parse(value)
    assert info.value.message
    assert len(info.value.message) < 250


@pytest.mark.parametrize("value", [None, 123, b"sha256:" + SHA256_EMPTY.encode(), ["sha256"]])
def test_parse_non_string(value: object) -> None:
    with pytest.raises(DigestInvalidError, match="must be a string"):
        Digest.parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("algorithm", "hex_"),
    [
        ("sha256", "0" * 63),
        ("sha256", "G" * 64),
        ("sha256", SHA256_EMPTY.upper()),
        ("sha512", SHA256_EMPTY),
        ("md5", "0" * 32),
        ("", ""),
    ],
)
def test_constructor_enforces_invariants(algorithm: str, hex_: str) -> None:
    with pytest.raises(DigestInvalidError):
        Digest(algorithm, hex_)


@pytest.mark.parametrize(
    ("data", "algorithm", "expected"),
    [
        (b"", "sha256", f"sha256:{SHA256_EMPTY}"),
        (b"{}", "sha256", f"sha256:{SHA256_EMPTY_JSON}"),
        (b"", "sha512", f"sha512:{SHA512_EMPTY}"),
        (b"hello", "sha256", "sha256:" + hashlib.sha256(b"hello").hexdigest()),
    ],
)
def test_of(data: bytes, algorithm: str, expected: str) -> None:
    assert str(Digest.of(data, algorithm)) == expected


def test_of_defaults_to_sha256() -> None:
    assert Digest.of(b"{}").algorithm == "sha256"


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "SHA256", "", "sha3_256", "blake2b"])
def test_of_unsupported_algorithm(algorithm: str) -> None:
    with pytest.raises(DigestInvalidError, match="unsupported digest algorithm"):
        Digest.of(b"x", algorithm)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_new_hasher_streams_like_one_shot(algorithm: str) -> None:
    hasher: Hasher = new_hasher(algorithm)
    for chunk in (b"abc", b"", b"def" * 1000):
        hasher.update(chunk)
    assert Digest.from_hasher(algorithm, hasher) == Digest.of(b"abc" + b"def" * 1000, algorithm)


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha384", "", "Sha256"])
def test_new_hasher_unsupported(algorithm: str) -> None:
    with pytest.raises(DigestInvalidError, match="supported: sha256, sha512"):
        new_hasher(algorithm)


def test_digest_is_frozen_and_hashable() -> None:
    digest = Digest.of(b"")
    with pytest.raises(dataclasses.FrozenInstanceError):
        digest.hex = "0" * 64  # type: ignore[misc]
    assert {digest, Digest.parse(str(digest))} == {digest}
    assert digest != Digest.of(b"", "sha512")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("latest", False),
        ("v1.2.3", False),
        ("", False),
        (f"sha256:{SHA256_EMPTY}", True),
        ("sha256:bogus", True),  # looks like a digest; parse() then rejects it
        (":", True),
    ],
)
def test_is_digest(reference: str, expected: bool) -> None:
    assert is_digest(reference) is expected
