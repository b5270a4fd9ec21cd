"""The storage layout: which key holds what, and which keys are refused."""

from __future__ import annotations

import pytest

from dockyard.storage.layout import (
    attempt_id,
    blob_key,
    check_key,
    check_prefix,
    upload_id_of_key,
    upload_key,
)

SHA256 = "3f2a" + "0" * 60
SHA512 = "ab" * 64


@pytest.mark.parametrize(
    ("digest", "key"),
    [
        (f"sha256:{SHA256}", f"blobs/sha256/3f/{SHA256}"),
        (f"sha512:{SHA512}", f"blobs/sha512/ab/{SHA512}"),
        ("blake3:abcd", "blobs/blake3/ab/abcd"),
        ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", None),
    ],
)
def test_blob_key(digest: str, key: str | None) -> None:
    encoded = digest.partition(":")[2]
    alg = digest.partition(":")[0]
    assert blob_key(digest) == (key or f"blobs/{alg}/{encoded[:2]}/{encoded}")


@pytest.mark.parametrize(
    "digest",
    [
        "",
        SHA256,
        f"sha256:{SHA256[:-1]}",
        f"sha256:{SHA256}0",
        f"sha256:{SHA256.upper()}",
        f"SHA256:{SHA256}",
        f"sha256:{SHA256[:-2]}..",
        "sha256:",
        ":abcd",
        "md5:a",
        "alg:../../etc",
        "alg:ab/cd",
        "alg:ab\\cd",
        "alg:ab\0cd",
        f"sha256:{SHA256}\n",
        "a..b:abcd",
    ],
)
def test_blob_key_refuses_what_is_not_a_digest(digest: str) -> None:
    with pytest.raises(ValueError, match="digest"):
        blob_key(digest)


def test_upload_key() -> None:
    assert upload_key("0b6c1f5e-1c4b-4a4f-9d8e-4d1c2b3a4f5e") == (
        "uploads/0b6c1f5e-1c4b-4a4f-9d8e-4d1c2b3a4f5e"
    )


def test_a_first_chunks_object_belongs_to_its_upload() -> None:
    """GC keeps what an upload session names by its id: a first chunk's own object, and
    an S3 segment under either, map back to the session."""
    upload_id = "9f" * 16
    key = upload_key(attempt_id(upload_id, "0a1b2c3d"))
    assert key == f"uploads/{upload_id}--0a1b2c3d"
    assert check_key(key) == key
    for stored in (key, f"{key}/segment", upload_key(upload_id), f"uploads/{upload_id}/seg"):
        assert upload_id_of_key(stored) == upload_id
    assert upload_id_of_key(upload_key("0b6c1f5e-1c4b")) == "0b6c1f5e-1c4b"


@pytest.mark.parametrize("upload_id", ["", ".", "..", "a/b", "a_b", "a.b", "a\0", "é", "x" * 129])
def test_upload_key_refuses_other_ids(upload_id: str) -> None:
    with pytest.raises(ValueError, match="upload id"):
        upload_key(upload_id)


@pytest.mark.parametrize("key", ["a", "blobs/sha256/ab/abc", "uploads/x", ".hidden/x", "a/_b"])
def test_check_key_accepts(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "/", "/a", "a/", "a//b", ".", "..", "a/.", "a/..", "../a", "a/./b", "a\\b", "a\0", "_tmp"],
)
def test_check_key_refuses(key: str) -> None:
    with pytest.raises(ValueError, match=r"invalid|reserved"):
        check_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "blobs/sha256/3", "a/b/", "a/.", "a/.."])
def test_check_prefix_accepts(prefix: str) -> None:
    # The last component of a prefix is only the beginning of a name.
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["/", "/a", "//", "a//", "../", "a/../", "./", "a\\b", "a\0", "_", "_tmp/"]
)
def test_check_prefix_refuses(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"invalid|reserved"):
        check_prefix(prefix)
