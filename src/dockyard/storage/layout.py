"""Where Dockyard keeps bytes: the storage layout, documented here and only here.

Every storage driver (filesystem, S3-compatible) holds objects under string
keys: ``/``-separated relative paths, the same for every driver. A filesystem
driver maps a key to ``<root>/<key>``; an S3 driver to ``<bucket>/<prefix><key>``.

::

    blobs/<alg>/<first two chars of hex>/<hex>   one immutable, content-addressed
                                                 blob: layers, configs and
                                                 manifests alike, stored once
                                                 whatever number of repositories
                                                 link it (links are DB rows)
    uploads/<upload id>                          the partial object of one upload
                                                 session (its state is a DB row);
                                                 moved to ``blobs/...`` on completion
    _<anything>/                                 reserved for drivers' own
                                                 bookkeeping (the filesystem
                                                 driver writes temporary files
                                                 under ``_tmp/``); never a key

Example: ``sha256:3f2a…`` is stored at ``blobs/sha256/3f/3f2a…``. The two-char
fan-out keeps directories small on filesystems and spreads S3 key prefixes.

The database is the truth for names and state; storage holds only immutable
blobs and in-flight uploads. Nothing under ``blobs/`` is ever rewritten in
place: it is written whole under a temporary name and renamed, so a reader sees
all of an object or nothing.

Rules every key obeys (checked by :func:`check_key`, which every driver calls):
relative, no empty, ``.`` or ``..`` component, no backslash or NUL, and a first
component that does not begin with ``_``.
"""

from __future__ import annotations

import re

__all__ = ["blob_key", "check_key", "check_prefix", "upload_key"]

# OCI image-spec digest grammar: algorithm ":" encoded.
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
# Registered algorithms have a fixed lowercase-hex encoding.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")
_UPLOAD_ID = re.compile(r"[A-Za-z0-9-]{1,128}")


def blob_key(digest: str) -> str:
    """The key of the blob with ``digest`` (``"<alg>:<hex>"``).

    Raises ``ValueError`` when ``digest`` is not shaped like a digest. This is
    a cheap shape check for safety, not the OCI grammar's full validation.
    """
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ValueError(f"not a digest: {digest!r}")
    alg, encoded = match.groups()
    length = _HEX_LENGTH.get(alg)
    if length is not None and (len(encoded) != length or not _HEX.fullmatch(encoded)):
        raise ValueError(f"not a {alg} digest: {digest!r}")
    if len(encoded) < 2:
        raise ValueError(f"digest too short: {digest!r}")
    return f"blobs/{alg}/{encoded[:2]}/{encoded}"


def upload_key(upload_id: str) -> str:
    """The key of the partial object of upload ``upload_id`` (``[A-Za-z0-9-]+``)."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    return f"uploads/{upload_id}"


ATTEMPT_SEPARATOR = "--"
"""Between an upload's id and an attempt's nonce in ``attempt_id``; the ids the
registry hands out (hex) never hold it."""


def attempt_id(upload_id: str, nonce: str) -> str:
    """The partial object a request writes on its own before it may become the
    upload's (``upload_id``'s first chunk, written optimistically: the registry
    records it only if no other request got there first). Its key,
    ``uploads/<upload_id>--<nonce>``, still maps to ``upload_id``
    (``upload_id_of_key``), so garbage collection keeps it while the upload exists."""
    return f"{upload_id}{ATTEMPT_SEPARATOR}{nonce}"


def upload_id_of_key(key: str) -> str:
    """``uploads/<id>`` -> ``<id>``; also ``uploads/<id>--<nonce>`` (``attempt_id``) and
    the S3 driver's ``uploads/<id>/<segment>``."""
    name = key.removeprefix("uploads/").split("/", 1)[0]
    return name.split(ATTEMPT_SEPARATOR, 1)[0]


def check_key(key: str) -> str:
    """Return ``key`` when it is a valid object key; raise ``ValueError`` otherwise."""
    _check(key, key.split("/"))
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` when keys may start with it; raise ``ValueError`` otherwise.

    A prefix is ``""`` (every key), a key, a key followed by ``/``
    (``"uploads/"``), or a key's beginning (``"blobs/sha256/3"``): every
    component but the last is whole, the last may be partial or empty.
    """
    if prefix:
        parts = prefix.split("/")
        _check(prefix, parts[:-1])
        if parts[0].startswith("_"):
            raise ValueError(f"reserved prefix: {prefix!r}")
    return prefix


def _check(key: str, whole_parts: list[str]) -> None:
    if "\\" in key or "\0" in key:
        raise ValueError(f"invalid key: {key!r}")
    for part in whole_parts:
        if part in ("", ".", ".."):
            raise ValueError(f"invalid key: {key!r}")
    if whole_parts and whole_parts[0].startswith("_"):
        raise ValueError(f"reserved key: {key!r}")
