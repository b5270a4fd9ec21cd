"""The S3 storage driver: objects in an S3-compatible bucket, through ``obstore``.

Keys are object names under an optional prefix in one bucket. Whole objects are
single PUTs (or, when streamed past one part, a multipart upload that S3 makes
visible only when it completes), so a reader sees all of an object or nothing.

An upload keeps no bytes on the node. ``begin`` writes an empty marker object
``uploads/<id>``; each append stores its body as one *segment* object
``uploads/<id>/<random>`` (one PUT up to ``part_bytes``, else a multipart upload of
such parts fed as the body arrives, aborted when the body fails or the request is
cancelled); the upload's state (kept in its database row by the caller) lists the
segments and how many bytes of each count, so any node continues the upload and a
crashed append leaves only unlisted segments. ``complete`` turns the listed segments
into the blob: one segment by a server-side copy, more by one multipart upload
streamed from the segments; then the segments and the marker go. The registry
checks the digest before it calls ``complete``, and the blob appears only when the
copy or the multipart upload completes: never half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import obstore
from anyio import to_thread
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from dockyard.errors import (
    BlobUploadInvalidError,
    ConfigurationError,
    ObjectNotFoundError,
    SizeInvalidError,
    StorageError,
    StorageUnavailableError,
)
from dockyard.storage.base import Hasher, ObjectInfo, Storage
from dockyard.storage.layout import check_key, check_prefix, upload_key

__all__ = ["MIN_PART_BYTES", "S3Storage", "open_s3"]

MIN_PART_BYTES = 5 << 20  # S3's smallest multipart part (except the last)
# Smallest chunk asked of a GET stream: obstore joins the HTTP body's pieces up to it, so
# each chunk costs one hop into Python and one ASGI message (smaller ones cost more CPU
# per GiB: docs/benchmarks.md, "S3 pull CPU").
READ_CHUNK = 2 << 20
_DELETE_BATCH = 500
_PART_CONCURRENCY = 4  # parts of one multipart upload in flight at once
_QUEUED_PIECES = 1  # parts cut and waiting for obstore, per upload (each is part_bytes)
_MAX_COPY = 5 << 30  # S3's largest single server-side copy
# An upload state's segments: [{"k": name, "n": bytes used, "s": bytes stored}] ("s" is
# absent from states written before it was kept; the store is asked then).
Segments = list[dict[str, Any]]


class S3Storage(Storage):
    """A :class:`~dockyard.storage.base.Storage` on one bucket of an S3-compatible store."""

    def __init__(
        self,
        store: S3Store,
        *,
        part_bytes: int = 8 << 20,
        redirect: bool = False,
        name: str = "s3",
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {MIN_PART_BYTES}")
        self.store = store
        self.part_bytes = part_bytes
        self.redirect = redirect
        self.name = name

    def __repr__(self) -> str:
        return f"S3Storage({self.name!r})"

    async def check(self) -> None:
        """Ask the store once, so a missing bucket or refused credentials stop the start
        with a clear message rather than failing the first push."""
        with _translate("the bucket", "list"):
            stream = obstore.list(self.store, "_dockyard-start-check/", chunk_size=1)
            async for _ in stream:
                break

    # --- plain objects ---------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            meta = await obstore.head_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            return None
        except BaseError as exc:
            raise _storage_error("stat", key, exc) from exc
        return ObjectInfo(key, meta["size"], _utc(meta["last_modified"]))

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        check_key(key)
        return self._read(key, offset, length, None)

    async def read_bytes(self, key: str) -> bytes:
        check_key(key)
        with _translate(key, "read"):
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        check_key(key)
        # Through a hidden upload: the object appears only when complete() makes it.
        state = await self.begin("w-" + secrets.token_hex(12))
        try:
            state, size = await self.append(state, 0, chunks)
            await self.complete(state, key, None, replace=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.abort(state)
            raise
        return size

    async def write_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        with _translate(key, "write"):
            await obstore.put_async(self.store, key, data, use_multipart=False)

    async def delete(self, key: str) -> bool:
        if await self.stat(key) is None:
            return False
        with _translate(key, "delete"):
            await obstore.delete_async(self.store, key)
        return True

    async def move(self, src: str, dst: str) -> None:
        check_key(src)
        check_key(dst)
        if src == dst:
            if await self.stat(src) is None:
                raise ObjectNotFoundError(f"no object at {src!r}")
            return
        with _translate(src, "move"):
            await obstore.copy_async(self.store, src, dst)
        with _translate(src, "delete"):
            await obstore.delete_async(self.store, src)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        check_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        with _translate(prefix, "list"):
            stream = obstore.list(self.store, head or None, chunk_size=1000)
            async for batch in stream:
                for meta in batch:
                    path = meta["path"]
                    if path.startswith(prefix):
                        yield path

    def local_path(self, key: str) -> Path | None:
        check_key(key)
        return None  # remote: blobs are streamed (or redirected), never sent from a file

    async def redirect_url(self, key: str, expires_in: int) -> str | None:
        check_key(key)
        if not self.redirect:
            return None
        with _translate(key, "sign"):
            return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=expires_in))

    # --- uploads -----------------------------------------------------------------

    async def begin(self, upload_id: str) -> dict[str, Any]:
        key = upload_key(upload_id)
        with _translate(key, "write"):
            await obstore.put_async(self.store, key, b"", use_multipart=False)
        return {"key": key, "segments": []}

    async def append(
        self,
        state: dict[str, Any],
        offset: int,
        chunks: AsyncIterable[bytes],
        observe: Hasher | None = None,
        limit: int | None = None,
    ) -> tuple[dict[str, Any], int]:
        key, segments = _upload(state)
        if offset < 0:
            raise ValueError(f"negative offset: {offset}")
        await self._require(key)
        size = _total(segments)
        if size < offset:
            raise BlobUploadInvalidError(
                f"upload holds {size} bytes, fewer than the offset {offset}"
            )
        kept = _cut(segments, offset)
        name = f"{key}/{secrets.token_hex(8)}"
        pieces = _observed(_pieces(chunks, self.part_bytes, limit), observe)
        try:
            async with contextlib.aclosing(pieces):
                written = await self._put_stream(name, pieces)
        except BaseException:
            # Whatever reached the store under this append's segment goes (shielded:
            # also when the append is cancelled); the state still names what it did.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._delete_all([name])
            raise
        new_segments = kept + ([{"k": name, "n": written, "s": written}] if written else [])
        return {"key": key, "segments": new_segments}, _total(new_segments)

    async def _put_stream(self, name: str, pieces: AsyncIterator[bytes]) -> int:
        """Store ``pieces`` as the object ``name``; return its size (0: nothing stored).

        One piece (at most a part): one PUT. More: one multipart upload, fed from this
        task through a small queue, so the pieces are produced (read from the client,
        hashed) here, in this task's cancel scope, while the store takes earlier parts.
        When producing fails or is cancelled, the upload's source is told to fail, so
        obstore aborts the multipart upload, and that is awaited before the error
        propagates: no part is left behind and nothing appears at ``name``.
        """
        first = await anext(pieces, None)
        if first is None:
            return 0
        second = await anext(pieces, None)
        if second is None:
            with _translate(name, "write"):
                await obstore.put_async(self.store, name, first, use_multipart=False)
            return len(first)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUED_PIECES)
        finished = False

        async def source() -> AsyncIterator[bytes]:
            while (item := await queue.get()) is not None:
                yield item
            if not finished:
                raise _Abandoned

        put = asyncio.ensure_future(
            obstore.put_async(
                self.store,
                name,
                source(),
                use_multipart=True,
                chunk_size=self.part_bytes,
                max_concurrency=_PART_CONCURRENCY,
            )
        )
        size = 0
        try:
            for piece in (first, second):
                await _feed(queue, put, piece, name)
                size += len(piece)
            async for piece in pieces:
                await _feed(queue, put, piece, name)
                size += len(piece)
            finished = True
            await _feed(queue, put, None, name)
            with _translate(name, "write"):
                await asyncio.shield(put)
        except BaseException:
            if not finished:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # the source raises: obstore aborts the upload
            with anyio.CancelScope(shield=True):
                await asyncio.wait({put})
            if not put.cancelled():
                put.exception()  # retrieved: the error that matters is ours
            raise
        return size

    def read_upload(
        self, state: dict[str, Any], offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key, segments = _upload(state)
        return self._read(key, offset, length, segments)

    async def upload_size(self, state: dict[str, Any]) -> int:
        key, segments = _upload(state)
        await self._require(key)
        return _total(segments)

    async def complete(
        self,
        state: dict[str, Any],
        key: str,
        expected_size: int | None = None,
        *,
        replace: bool = False,
    ) -> None:
        upload, segments = _upload(state)
        check_key(key)
        if expected_size is not None and expected_size < 0:
            raise ValueError(f"negative size: {expected_size}")
        await self._require(upload)
        size = _total(segments)
        if expected_size is not None:
            if size < expected_size:
                raise BlobUploadInvalidError(
                    f"upload holds {size} bytes, fewer than the expected {expected_size}"
                )
            segments = _cut(segments, expected_size)
        if replace or await self.stat(key) is None:
            await self._assemble(segments, key)
        # Content-addressed: when the key was there, the same bytes are; drop ours.
        await self.abort(state)

    async def abort(self, state: dict[str, Any]) -> None:
        key, _ = _upload(state)
        # Every segment under the upload, also those of appends never committed.
        names = [name async for name in self.list(key + "/")]
        await self._delete_all([*names, key])

    # --- helpers -------------------------------------------------------------------

    async def _require(self, upload: str) -> None:
        if await self.stat(upload) is None:
            raise ObjectNotFoundError(f"no upload {upload!r}")

    async def _assemble(self, segments: Segments, key: str) -> None:
        if len(segments) == 1 and segments[0]["n"] <= _MAX_COPY and await self._whole(segments[0]):
            # One segment used whole: a server-side copy, no bytes through this node.
            with _translate(key, "write"):
                await obstore.copy_async(self.store, segments[0]["k"], key)
            return
        if not segments:
            await self.write_bytes(key, b"")
            return
        # Streamed from the segments through this node, in parts: one multipart upload
        # (aborted should this be cancelled), or one PUT when it all fits in a part.
        pieces = _pieces(self._segment_bytes(segments), self.part_bytes, None)
        async with contextlib.aclosing(pieces):
            await self._put_stream(key, pieces)

    async def _whole(self, segment: dict[str, Any]) -> bool:
        if "s" in segment:  # the size it was stored with: no HEAD (a gone one fails the copy)
            return bool(segment["s"] == segment["n"])
        info = await self.stat(segment["k"])
        if info is None:
            raise ObjectNotFoundError(f"segment {segment['k']!r} is gone")
        return bool(info.size == segment["n"])

    async def _segment_bytes(self, segments: Segments) -> AsyncIterator[bytes]:
        for segment in segments:
            async for part in self._get(segment["k"], 0, segment["n"]):
                yield part

    async def _read(
        self,
        key: str,
        offset: int,
        length: int | None,
        segments: Segments | None,
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        if segments is None and offset == 0 and length is None:
            # A whole object (a blob GET without Range): one GET, no HEAD first.
            with _translate(key, "read"):
                result = await obstore.get_async(self.store, key)
                async with contextlib.aclosing(_chunks(result)) as parts:
                    async for part in parts:
                        yield part
            return
        if segments is None:
            info = await self.stat(key)
            if info is None:
                raise ObjectNotFoundError(f"no object {key!r}")
            pieces = [(key, 0, info.size)]
        else:
            await self._require(key)
            pieces = [(s["k"], 0, s["n"]) for s in segments]
        end = None if length is None else offset + length
        position = 0
        for name, _, size in pieces:
            start, stop = position, position + size
            position = stop
            lo = max(start, offset)
            hi = stop if end is None else min(stop, end)
            if hi <= lo:
                continue
            async for part in self._get(name, lo - start, hi - lo):
                yield part

    async def _get(self, key: str, offset: int, length: int) -> AsyncIterator[bytes]:
        if length <= 0:
            return
        with _translate(key, "read"):
            result = await obstore.get_async(
                self.store, key, options={"range": (offset, offset + length)}
            )
            async with contextlib.aclosing(_chunks(result)) as parts:
                async for part in parts:
                    yield part

    async def _delete_all(self, names: Sequence[str]) -> None:
        for start in range(0, len(names), _DELETE_BATCH):
            batch = list(names[start : start + _DELETE_BATCH])
            with _translate(batch[0], "delete"):
                await obstore.delete_async(self.store, batch)


def open_s3(
    *,
    bucket: str,
    prefix: str = "",
    region: str = "us-east-1",
    endpoint: str = "",
    path_style: bool = False,
    credentials: str = "env",
    access_key_id: str = "",
    secret_access_key: str = "",
    tls_verify: bool = True,
    part_bytes: int = 8 << 20,
    redirect: bool = False,
) -> S3Storage:
    """The driver for a bucket, from the ``storage_s3_*`` settings (nothing is asked of
    the store yet: :meth:`S3Storage.check` does that)."""
    config: dict[str, Any] = {"region": region, "virtual_hosted_style_request": not path_style}
    if endpoint:
        config["endpoint"] = endpoint
    if credentials == "static":
        config["access_key_id"] = access_key_id
        config["secret_access_key"] = secret_access_key
    elif credentials == "instance" and os.environ.get("AWS_ACCESS_KEY_ID"):
        raise ConfigurationError(
            "storage_s3_credentials is instance but AWS_ACCESS_KEY_ID is set, which would be "
            "used instead of the instance profile: unset it or choose env"
        )
    # A store that is down answers within seconds, not after obstore's default of 10
    # retries over 3 minutes (a request then fails as a StorageError).
    client: dict[str, Any] = {"connect_timeout": timedelta(seconds=5)}
    retry: dict[str, Any] = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=20),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=4),
        },
    }
    if endpoint.startswith("http://"):
        client["allow_http"] = True
    if not tls_verify:
        client["allow_invalid_certificates"] = True
    try:
        store = S3Store(
            bucket,
            prefix=prefix.strip("/") or None,
            client_options=client,  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
            **config,
        )
    except BaseError as exc:
        raise ConfigurationError(f"storage_s3: {str(exc).splitlines()[0]}") from exc
    where = f"{endpoint or 'AWS S3'} bucket {bucket}" + (f" prefix {prefix}" if prefix else "")
    return S3Storage(store, part_bytes=part_bytes, redirect=redirect, name=where)


class _Abandoned(Exception):
    """Raised in a multipart upload's source when its producer failed or was cancelled."""


async def _feed(
    queue: asyncio.Queue[bytes | None], put: asyncio.Future[Any], item: bytes | None, name: str
) -> None:
    """Queue ``item`` for the upload ``put``; raise the upload's error if it stops first."""
    if put.done():
        with _translate(name, "write"):
            put.result()
        raise StorageError(f"the upload of {name!r} stopped early")
    adding = asyncio.ensure_future(queue.put(item))
    try:
        await asyncio.wait({adding, put}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not adding.done():
            adding.cancel()
    if not adding.done() or adding.cancelled():
        with _translate(name, "write"):
            put.result()
        raise StorageError(f"the upload of {name!r} stopped early")


async def _chunks(result: Any) -> AsyncGenerator[bytes]:
    """The body of a GET ``result`` in chunks of at least ``READ_CHUNK`` (the last one
    shorter), each pulled from obstore's stream when the caller asks for it.

    No task reads ahead: the store connection's socket buffer already holds what
    arrives while a chunk is sent, and a reading task (a queue hop and a wake-up per
    chunk) cost more CPU per GiB and was slower (docs/benchmarks.md, "S3 pull CPU").
    """
    async for part in result.stream(min_chunk_size=READ_CHUNK):
        # Granian takes a body as ``bytes`` (other buffers are converted slowly).
        yield bytes(part)


async def _observed(pieces: AsyncGenerator[bytes], observe: Hasher | None) -> AsyncGenerator[bytes]:
    """``pieces``, each passed to ``observe`` on a worker thread first."""
    async with contextlib.aclosing(pieces):
        async for piece in pieces:
            if observe is not None:
                await to_thread.run_sync(observe, piece)
            yield piece


def _upload(state: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    key = state.get("key")
    segments = state.get("segments")
    if not isinstance(key, str) or not key.startswith("uploads/") or not isinstance(segments, list):
        raise ValueError(f"not an upload state: {state!r}")
    check_key(key)
    return key, segments


def _total(segments: list[dict[str, Any]]) -> int:
    return sum(int(s["n"]) for s in segments)


def _cut(segments: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The segments holding the first ``size`` bytes (the last one shortened)."""
    kept: list[dict[str, Any]] = []
    position = 0
    for segment in segments:
        if position >= size:
            break
        n = min(int(segment["n"]), size - position)
        kept.append({**segment, "n": n})
        position += n
    return kept


async def _pieces(
    chunks: AsyncIterable[bytes], part_bytes: int, limit: int | None
) -> AsyncGenerator[bytes]:
    """``chunks`` regrouped into pieces of ``part_bytes`` (the last one shorter).

    Each piece is joined once from the chunks it takes; only the chunk that straddles
    two pieces is cut (no join of everything followed by slices that copy it again:
    that doubled the bytes copied and held two parts' worth per piece).
    """
    parts: list[bytes | memoryview] = []
    pending = 0
    received = 0
    async for chunk in chunks:
        if not chunk:
            continue
        received += len(chunk)
        if limit is not None and received > limit:
            raise SizeInvalidError(f"more than {limit} bytes sent")
        if pending + len(chunk) < part_bytes:
            parts.append(chunk)
            pending += len(chunk)
            continue
        view = memoryview(chunk)
        at = 0
        while pending + len(chunk) - at >= part_bytes:
            need = part_bytes - pending
            parts.append(view[at : at + need])
            at += need
            piece = b"".join(parts)
            parts = []
            pending = 0
            yield piece
        if at < len(chunk):
            parts.append(view[at:])
            pending = len(chunk) - at
    if parts:
        yield b"".join(parts)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@contextlib.contextmanager
def _translate(key: str, action: str) -> Iterator[None]:
    """Turn obstore's errors into the storage errors of :mod:`dockyard.errors`."""
    try:
        yield
    except (NotFoundError, FileNotFoundError) as exc:
        if action == "list" or "NoSuchBucket" in str(exc):
            # Not a missing object: the whole bucket is gone (a 503 until it is mended).
            raise StorageUnavailableError(
                f"the bucket does not exist (cannot {action} {key!r})"
            ) from exc
        raise ObjectNotFoundError(f"no object {key!r}") from exc
    except BaseError as exc:
        raise _storage_error(action, key, exc) from exc


_UNAVAILABLE = (
    "error sending request",
    "connection refused",
    "connection reset",
    "connection closed",
    "tcp connect error",
    "timed out",
    "dns error",
    "incomplete message",
    "service unavailable",
    "slowdown",
    "internal server error",
    "bad gateway",
    "gateway timeout",
    "non-2xx status code: 5",
)
"""Lower-cased fragments of obstore's messages (after its own retries) that mean the store
could not be reached or failed on its side, as opposed to refusing the request: these are
``StorageUnavailableError`` (503, retry), not internal errors."""


def _storage_error(action: str, key: str, exc: BaseError) -> StorageError:
    first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    text = str(exc)
    refused = ("403 Forbidden", "401 Unauthorized", "AccessDenied", "SignatureDoesNotMatch")
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or any(
        marker in text for marker in (*refused, "InvalidAccessKeyId")
    ):
        # A 503, not a 500: the request was fine and nothing was half-done; the store
        # cannot be used until an administrator mends its settings (the log says which).
        return StorageUnavailableError(
            f"the object store refused the credentials (cannot {action} {key!r}): "
            "check the storage_s3 access key, secret and the bucket's policy"
        )
    if "NoSuchBucket" in text:
        return StorageUnavailableError(f"the bucket does not exist (cannot {action} {key!r})")
    if any(marker in text.lower() for marker in _UNAVAILABLE):
        # Safe to show: it names neither the key nor the endpoint (the cause is logged).
        return StorageUnavailableError(
            "the object store is unavailable (it cannot be reached, timed out or is "
            "overloaded); try again"
        )
    return StorageError(f"cannot {action} {key!r} in the object store: {first}")
