"""The registry core: blobs, upload sessions, manifests, tags, referrers.

No HTTP here. Transactions stay short and never span streaming: a request that
carries bytes claims its upload in one transaction, streams to storage with no
transaction open, and records the result in another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.errors import (
    BlobUnknownError,
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    DigestInvalidError,
    ManifestBlobUnknownError,
    ManifestInvalidError,
    ManifestReferencedError,
    ManifestUnknownError,
    NameUnknownError,
    ObjectNotFoundError,
    ProjectNotFoundError,
    RangeInvalidError,
    SizeInvalidError,
    StorageFullError,
    TagInvalidError,
)
from dockyard.oci import artifacts as facts
from dockyard.oci.digest import Digest, Hasher, is_digest, new_hasher
from dockyard.oci.manifest import Descriptor, ParsedManifest, parse_manifest
from dockyard.oci.names import split_repository, validate_tag
from dockyard.projects import repository as projects
from dockyard.projects.models import Project
from dockyard.registry import claims
from dockyard.registry import repository as repo
from dockyard.registry.hooks import (
    SYSTEM_ACTOR,
    Actor,
    BlobsLinked,
    ManifestPull,
    ManifestPush,
    ManifestRemoval,
    RegistryHooks,
)
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    ArtifactReference,
    BlobUpload,
)
from dockyard.registry.pull_policy import ManifestPullCheck, PullPolicies
from dockyard.registry.pull_through import PullThrough
from dockyard.storage import Storage, blob_key
from dockyard.storage.layout import attempt_id
from dockyard.storage.space import DiskSpace

UPLOAD_LEASE = timedelta(minutes=10)
UPLOAD_START_LIMIT = 300.0
"""Seconds an upload start may take from creating its partial object to recording its
row; a slower one is rolled back. Half of GC's ``UPLOAD_MIN_AGE``, so the file of a
row being created is always too young for GC's sweep of nameless partial uploads."""
log = logging.getLogger("dockyard.registry")
# GC: how often a blob HEAD/GET renews the blob's touch time, and how long an upload
# waits for a collection to finish deleting an older copy of its blob.
_TOUCH_INTERVAL = timedelta(minutes=1)
_GC_WAIT_SECONDS = 30.0
_MANIFEST_CACHE_BYTES = 32 * 1024 * 1024
_HASHERS_KEPT = 4096
_SMALL_BLOB_BYTES = 1024 * 1024
"""Largest upload a bodiless ``PUT`` completes by writing a copy of its bytes rather than
moving its partial object under a claim (``_complete_small``): copying costs I/O that a
move does not, worth one transaction only for small blobs."""
# What start_upload hands out (hex) with room to spare; anything else names no upload.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    key: str


@dataclass(frozen=True, slots=True)
class UploadStatus:
    upload_id: str
    size: int


@dataclass(frozen=True, slots=True)
class ManifestContent:
    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class PushedManifest:
    digest: str
    subject: str | None


_PROJECT_TIME_SECONDS = 1.0
_PROJECT_TIMES_KEPT = 4096


class UploadRangeError(RangeInvalidError):
    """A chunk that does not continue the upload; carries the upload's real size."""

    def __init__(self, message: str, upload_id: str, size: int) -> None:
        super().__init__(message)
        self.upload_id = upload_id
        self.size = size


class RegistryService:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        *,
        upload_max_bytes: int = 0,
        hooks: RegistryHooks | None = None,
        space: DiskSpace | None = None,
        pull_policies: PullPolicies | None = None,
    ) -> None:
        self.hooks = hooks or RegistryHooks()
        self.pull_policies = pull_policies or PullPolicies()
        self._pull_lookups = repo.manifest_pull_lookups(self.pull_policies.switches)
        """What a client's manifest GET/HEAD must pass (``registry/pull_policy.py``)."""
        self.pull_through: PullThrough | None = None
        """Proxy cache projects (``registry/pull_through.py``); set by ``create_app``."""
        self.space = space
        """Free-space admission for new bytes (``storage/space.py``); None: unchecked."""
        self.db = db
        self.storage = storage
        self.upload_max_bytes = upload_max_bytes or None
        # Running digests of uploads this process is receiving: id -> (offset, hasher).
        # Lost on restart or on another node; the digest is then recomputed from storage.
        # By upload: the size this process last recorded, the hasher that has seen those
        # bytes, and the state recorded with them (a hint: another node may have appended
        # since, which the size's compare-and-set catches).
        self._hashers: OrderedDict[str, tuple[int, Hasher, str]] = OrderedDict()
        # Manifests are immutable by digest, so caching their bytes is always safe.
        self._manifests: OrderedDict[str, bytes] = OrderedDict()
        self._project_times: dict[str, tuple[datetime | None, float]] = {}
        self._manifest_bytes = 0

    # --- helpers ------------------------------------------------------------------

    async def _writable_repository(self, session: AsyncSession, name: str) -> repo.RepositoryRef:
        found = await repo.find_repository_ref(session, name)
        if found is not None:
            return found
        project = await _project_of(session, name)
        return await repo.ensure_repository(session, name, project.project_id, looked=True)

    async def _existing_repository(self, session: AsyncSession, name: str) -> repo.RepositoryRef:
        found = await repo.find_repository_ref(session, name)
        if found is None:
            raise NameUnknownError(f"repository {name} is not known to the registry")
        return found

    async def _find_upload(
        self, session: AsyncSession, repository: str, upload_id: str
    ) -> BlobUpload:
        # The shape check keeps bytes such as NUL, which PostgreSQL refuses, out of the query.
        upload = (
            await repo.find_upload(session, upload_id, repository)
            if _UPLOAD_ID.fullmatch(upload_id)
            else None
        )
        if upload is None:
            raise BlobUploadUnknownError(f"upload {upload_id!r} is not known in {repository}")
        return upload

    def _remember_hasher(self, upload_id: str, offset: int, hasher: Hasher, state: str) -> None:
        self._hashers[upload_id] = (offset, hasher, state)
        self._hashers.move_to_end(upload_id)
        while len(self._hashers) > _HASHERS_KEPT:
            self._hashers.popitem(last=False)

    # --- blobs ----------------------------------------------------------------------

    async def project_creation_time(self, repository: str) -> datetime | None:
        """When the project of ``repository`` was created; None when it does not exist.

        Asked on every bearer-token request (a token must not predate its project),
        so the answer is kept for one second: the same resolution as the token's
        ``iat``, and a query less on nearly every request.
        """
        project_name, _ = split_repository(repository)
        now = time.monotonic()
        kept = self._project_times.get(project_name)
        if kept is not None and kept[1] > now:
            return kept[0]
        async with self.db.read_connection() as conn:
            created = await repo.project_creation_time(conn, project_name)
        if len(self._project_times) >= _PROJECT_TIMES_KEPT:
            self._project_times.clear()
        self._project_times[project_name] = (created, now + _PROJECT_TIME_SECONDS)
        return created

    async def stat_blob(self, repository: str, digest: str) -> BlobInfo:
        parsed = Digest.parse(digest)
        async with self.db.read_connection() as conn:
            found = await repo.find_linked_blob_size(conn, repository, str(parsed))
        if found is None:
            raise BlobUnknownError(f"blob {parsed} is not in repository {repository}")
        size, status, touched = found
        # Garbage collection: clients HEAD a blob and skip its upload when it exists, so
        # an answer of "exists" must keep the blob. A blob marked for deletion is rescued
        # (compare-and-set; docs/gc.md), one being deleted is unknown (the client uploads
        # it again), and a stale touch time is renewed at most once a minute (one write per
        # blob per minute on this hot path) so the protection window counts from now.
        if status != repo.BLOB_LIVE or touched < utcnow() - _TOUCH_INTERVAL:
            async with self.db.write() as session:
                if not await repo.touch_blobs(session, [str(parsed)]):
                    raise BlobUnknownError(f"blob {parsed} is being garbage-collected")
        return BlobInfo(str(parsed), size, blob_key(str(parsed)))

    def blob_path(self, blob: BlobInfo) -> Path | None:
        return self.storage.local_path(blob.key)

    async def read_blob(
        self, blob: BlobInfo, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes, with the first chunk already read: a store that cannot serve
        it (gone away, object missing) fails here, before the response starts, as an error
        answer (``503``, ``404``) rather than a ``200`` cut short."""
        stream = self.storage.read(blob.key, offset, length)
        first = await anext(stream, None)
        return _prepended(first, stream)

    async def blob_redirect(self, blob: BlobInfo) -> str | None:
        return await self.storage.redirect_url(blob.key, 1200)

    async def delete_blob(self, repository: str, digest: str) -> None:
        parsed = Digest.parse(digest)
        async with self.db.write() as session:
            if not await repo.unlink_blob(session, repository, str(parsed)):
                raise BlobUnknownError(f"blob {parsed} is not in repository {repository}")

    async def mount_blob(
        self, repository: str, digest: str, source: str, actor: Actor = SYSTEM_ACTOR
    ) -> BlobInfo | None:
        """Link a blob another repository holds; None when it cannot (caller uploads)."""
        parsed = Digest.parse(digest)
        async with self.db.write() as session:
            blob = await repo.find_linked_blob(session, source, str(parsed))
            # GC rescue: a mount touches the blob; one being deleted cannot be mounted.
            if blob is None or not await repo.touch_blobs(session, [blob.digest]):
                return None
            target = await self._writable_repository(session, repository)
            if await repo.link_blob(session, target.repository_id, target.project_id, blob.id):
                await self.hooks.blobs_linked(
                    session,
                    BlobsLinked(actor, target.project_id, repository, ((blob.id, blob.size),)),
                )
        return BlobInfo(blob.digest, blob.size, blob_key(blob.digest))

    async def link_stored_blob(
        self, repository: str, digest: str, size: int, actor: Actor = SYSTEM_ACTOR
    ) -> BlobInfo:
        """Record and link a blob whose verified bytes are already in storage (a proxy
        cache fill wrote them): its row, its link into ``repository``, and the
        ``blobs_linked`` hooks (quota) as an upload's completion does."""
        parsed = str(Digest.parse(digest))
        try:
            await self._protect_existing_blob(parsed, size)
        except repo.BlobBeingDeletedError as exc:
            raise BlobUploadInvalidError(f"blob {parsed} is being garbage-collected") from exc
        async with self.db.write() as session:
            target = await self._writable_repository(session, repository)
            try:
                blob_id = await repo.ensure_blob(session, parsed, size, "application/octet-stream")
            except repo.BlobBeingDeletedError as exc:
                raise BlobUploadInvalidError(f"blob {parsed} is being garbage-collected") from exc
            if await repo.link_blob(session, target.repository_id, target.project_id, blob_id):
                await self.hooks.blobs_linked(
                    session,
                    BlobsLinked(actor, target.project_id, repository, ((blob_id, size),)),
                )
        return BlobInfo(parsed, size, blob_key(parsed))

    # --- uploads ----------------------------------------------------------------------

    async def start_upload(self, repository: str) -> UploadStatus:
        if self.space is not None:
            self.space.check_room()
        upload_id = secrets.token_hex(16)
        began = time.monotonic()
        state = await self.storage.begin(upload_id)
        try:
            async with self.db.write() as session:
                # One statement when the repository exists (every upload but its first).
                if not await repo.insert_upload_by_name(
                    session, upload_id, repository, json.dumps(state)
                ):
                    # The repository's first upload: create it (a concurrent creator's
                    # row does as well), then the same insert by name again.
                    project = await _project_of(session, repository)
                    await repo.create_repository(session, repository, project.project_id)
                    inserted = await repo.insert_upload_by_name(
                        session, upload_id, repository, json.dumps(state)
                    )
                    assert inserted, f"repository {repository} vanished in its transaction"
                # GC takes a partial upload no row names once it is UPLOAD_MIN_AGE old:
                # a row may come only while its file is far younger (docs/gc.md).
                if time.monotonic() - began > UPLOAD_START_LIMIT:
                    raise BlobUploadInvalidError("the upload took too long to start; retry")
        except BaseException:
            await _shielded(self.storage.abort(state))
            raise
        self._remember_hasher(upload_id, 0, new_hasher("sha256"), json.dumps(state))
        return UploadStatus(upload_id, 0)

    async def upload_status(self, repository: str, upload_id: str) -> UploadStatus:
        async with self.db.read() as session:
            upload = await self._find_upload(session, repository, upload_id)
        return UploadStatus(upload.id, upload.size)

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        async with self.db.write() as session:
            upload = await self._find_upload(session, repository, upload_id)
            state = json.loads(upload.state)
            await repo.delete_upload(session, upload_id)
        self._hashers.pop(upload_id, None)
        await self.storage.abort(state)

    async def append_upload(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
        length: int | None = None,
    ) -> UploadStatus:
        """Append one chunk; ``start`` (from ``Content-Range``) must equal the upload's size."""
        if start in (None, 0) and _UPLOAD_ID.fullmatch(upload_id):
            kept = self._hashers.get(upload_id)
            if kept is not None and kept[0] == 0:
                # This process started it (or recorded it empty): no need to read it. If
                # another node's chunk came since, the first chunk's record says so.
                return await self._append_first(
                    repository, upload_id, json.loads(kept[2]), chunks, length, start
                )
            async with self.db.read_connection() as conn:
                found = await repo.upload_start(conn, upload_id, repository, utcnow())
            if found is None:
                raise BlobUploadUnknownError(f"upload {upload_id!r} is not known in {repository}")
            if found.size == 0 and found.free:
                return await self._append_first(
                    repository, upload_id, json.loads(found.state), chunks, length, start
                )
        claim = await self._claim(repository, upload_id, start)
        _, new_size = await self._append_claimed(
            upload_id, json.loads(claim.state), claim.size, chunks, length
        )
        return UploadStatus(upload_id, new_size)

    async def _append_first(
        self,
        repository: str,
        upload_id: str,
        state: dict[str, Any],
        chunks: AsyncIterable[bytes],
        length: int | None,
        start: int | None,
    ) -> UploadStatus:
        """The first chunk of an empty upload (a push's usual single ``PATCH``), written
        without a claim: into an object of its own (``storage/layout.py``,
        ``attempt_id``), which one statement then makes the upload's if the upload is
        still empty and unclaimed. Two requests never write one object, so none needs
        the claim's exclusion; of two first chunks one is recorded and the other's
        object deleted (it is refused as a claimed upload is). One write transaction
        instead of the claim's two."""
        kept = self._hashers.pop(upload_id, None)
        # The chunk starts at byte 0: a hasher for it is always at hand.
        hasher = kept[1] if kept is not None and kept[0] == 0 else new_hasher("sha256")
        attempt = await self.storage.begin(attempt_id(upload_id, secrets.token_hex(4)))
        try:
            if self.space is not None:
                chunks = self.space.limit(chunks, self.space.check_room())
            new_state, new_size = await self.storage.append(
                attempt, 0, chunks, hasher.update, self.upload_max_bytes
            )
            if length is not None and new_size != length:
                raise SizeInvalidError(
                    f"chunk holds {new_size} bytes but its headers announced {length}"
                )
            recorded_state = json.dumps(new_state)
            async with self.db.write() as session:
                recorded = await repo.record_first_chunk(
                    session, upload_id, repository, new_size, recorded_state
                )
        except StorageFullError:
            # As a claimed chunk's: the session cannot go on (docs/architecture.md).
            await _shielded(self.storage.abort(attempt))
            await _shielded(self._discard_upload(upload_id, state))
            raise
        except BaseException:
            await _shielded(self.storage.abort(attempt))
            raise
        if not recorded:
            try:
                return await self._append_unrecorded(
                    repository, upload_id, new_state, new_size, start
                )
            finally:
                await _shielded(self.storage.abort(attempt))
        # The upload's empty object from its start is nobody's now (GC sweeps it, once the
        # upload is gone, if this delete fails).
        try:
            await _shielded(self.storage.abort(state))
        except Exception:
            log.warning("upload %s: its empty start object stays for GC", upload_id, exc_info=True)
        self._remember_hasher(upload_id, new_size, hasher, recorded_state)
        return UploadStatus(upload_id, new_size)

    async def _append_unrecorded(
        self,
        repository: str,
        upload_id: str,
        attempt: dict[str, Any],
        size: int,
        start: int | None,
    ) -> UploadStatus:
        """A first chunk whose record failed (its ``size`` bytes in the object whose state
        is ``attempt``, as ``append`` returned it: an S3 upload's lists its segments):
        answered as a claim that failed (the upload went, or another request is writing
        or got there first), except a chunk without a range into an upload that is no
        longer empty (this process's view was stale: another node's chunk came first),
        which appends at the end as such a chunk always did: under the claim, from its
        own object."""
        async with self.db.read_connection() as conn:
            found = await repo.upload_start(conn, upload_id, repository, utcnow())
        if found is None:
            raise BlobUploadUnknownError(f"upload {upload_id!r} is not known in {repository}")
        if start is not None and found.size != start:
            raise UploadRangeError(
                f"chunk starts at byte {start} but the upload holds {found.size} bytes",
                upload_id,
                found.size,
            )
        if start is not None or found.size == 0:
            raise UploadRangeError(
                "another request is writing to this upload", upload_id, found.size
            )
        claim = await self._claim(repository, upload_id, None)
        _, new_size = await self._append_claimed(
            upload_id,
            json.loads(claim.state),
            claim.size,
            self.storage.read_upload(attempt, 0, size),
            size,
        )
        return UploadStatus(upload_id, new_size)

    async def _claim(
        self, repository: str, upload_id: str, start: int | None
    ) -> repo.ClaimedUpload:
        """Take the upload for this request (``start``: the chunk's first byte)."""
        holder = claims.this_process()
        async with self.db.write() as session:
            claim = (
                await repo.claim_upload(
                    session,
                    upload_id,
                    repository,
                    start,
                    utcnow() + UPLOAD_LEASE,
                    holder,
                )
                if _UPLOAD_ID.fullmatch(upload_id)
                else None
            )
            if claim is not None:
                return claim
            upload = await self._find_upload(session, repository, upload_id)
            if (start is None or start == upload.size) and claims.holder_is_gone(upload.holder):
                # The claim's process died mid-chunk (a crash, kill -9): the chunk it was
                # writing never counted, so the upload continues now, not after the lease.
                claim = await repo.claim_upload(
                    session,
                    upload_id,
                    repository,
                    start,
                    utcnow() + UPLOAD_LEASE,
                    holder,
                    take_from=upload.holder,
                )
                if claim is not None:
                    log.info("upload %s taken over from dead %s", upload_id, upload.holder)
                    return claim
        if start is not None and start != upload.size:
            raise UploadRangeError(
                f"chunk starts at byte {start} but the upload holds {upload.size} bytes",
                upload_id,
                upload.size,
            )
        raise UploadRangeError("another request is writing to this upload", upload_id, upload.size)

    async def _release(self, upload_id: str, **values: Any) -> None:
        async with self.db.write() as session:
            await repo.release_upload(session, upload_id, **values)

    async def _append_claimed(
        self,
        upload_id: str,
        state: dict[str, Any],
        size: int,
        chunks: AsyncIterable[bytes],
        length: int | None,
        *,
        keep_claim: bool = False,
    ) -> tuple[dict[str, Any], int]:
        """Stream a chunk into the claimed upload; returns its new (state, size)."""
        kept = self._hashers.pop(upload_id, None)
        hasher = kept[1] if kept is not None and kept[0] == size else None
        limit = None
        if self.upload_max_bytes is not None:
            limit = max(self.upload_max_bytes - size, 0)
        try:
            if self.space is not None:
                chunks = self.space.limit(chunks, self.space.check_room())
            new_state, new_size = await self.storage.append(
                state, size, chunks, hasher.update if hasher else None, limit
            )
            if length is not None and new_size - size != length:
                raise SizeInvalidError(
                    f"chunk holds {new_size - size} bytes but its headers announced {length}"
                )
        except StorageFullError:
            # A full disk: the session cannot go on, and its partial file holds space
            # the operator needs back now, not at the next garbage collection.
            await _shielded(self._discard_upload(upload_id, state))
            raise
        except BaseException:
            # The driver cut the partial object back to ``size``; the hasher has
            # seen bytes that are gone, so it is dropped.
            await _shielded(self._release(upload_id))
            raise
        await self._release(
            upload_id, size=new_size, state=json.dumps(new_state), keep_claim=keep_claim
        )
        if hasher is not None:
            self._remember_hasher(upload_id, new_size, hasher, json.dumps(new_state))
        return new_state, new_size

    async def complete_upload(
        self,
        repository: str,
        upload_id: str,
        digest: str,
        chunks: AsyncIterable[bytes] | None = None,
        start: int | None = None,
        length: int | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> BlobInfo:
        """Take the last chunk (if any), check the digest, and make the blob."""
        expected = Digest.parse(digest)
        if chunks is None:
            small = await self._complete_small(repository, upload_id, expected, start, actor)
            if small is not None:
                return small
        claim = await self._claim(repository, upload_id, start)
        state, size = json.loads(claim.state), claim.size
        if chunks is not None:
            state, size = await self._append_claimed(
                upload_id, state, size, chunks, length, keep_claim=True
            )
        try:
            actual = await self._upload_digest(upload_id, state, size, expected.algorithm)
        except BaseException:
            await _shielded(self._release(upload_id))
            raise
        if actual != expected:
            await self._discard_upload(upload_id, state)
            raise DigestInvalidError(
                f"the uploaded content has digest {actual}, not {expected}; upload discarded",
                detail={"expected": str(expected), "actual": str(actual)},
            )
        key = blob_key(str(expected))
        try:
            # GC: protect an existing copy before the driver drops ours for it (docs/gc.md).
            try:
                # The blob's status is read again here, not taken from the claim: between the
                # two, GC's orphan sweep may have claimed and deleted a file at this path, and
                # a stale "no row" would install bytes the sweep's claim then refuses to link
                # (test_gc_orphan_race: the upload must wait for the sweep, then succeed).
                await self._protect_existing_blob(str(expected), size)
            except repo.BlobBeingDeletedError as exc:
                raise BlobUploadInvalidError(
                    f"blob {expected} is being garbage-collected; upload it again"
                ) from exc
            await self.storage.complete(state, key, expected_size=size)
        except BaseException:
            await _shielded(self._release(upload_id))
            raise
        try:
            await self._link_completed(repository, upload_id, claim, expected, size, actor)
        except BaseException:
            # The bytes already became the blob; the session cannot continue. Drop it
            # rather than leave it claimed until its lease ends (GC sweeps the bytes).
            await _shielded(self._drop_upload_row(upload_id))
            raise
        return BlobInfo(str(expected), size, key)

    async def _complete_small(
        self,
        repository: str,
        upload_id: str,
        expected: Digest,
        start: int | None,
        actor: Actor,
    ) -> BlobInfo | None:
        """Make a small upload the blob without claiming it (a push's usual bodiless
        ``PUT``): its bytes are read (an upload only grows past its recorded size, so
        they cannot change underneath) and written as the blob, which one statement then
        records by deleting the upload row only if it is still that size and unclaimed
        (``finish_upload``), in the transaction that links the blob. The partial object
        is never moved, so a chunk racing in is harmless: the delete fails and the claim
        path (which answers what it always did) takes over. One write transaction
        instead of two. None when the upload is not such a case (unknown, busy, large,
        another range, another digest): the claim path decides."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            return None
        kept = self._hashers.get(upload_id)
        if kept is not None:
            # What this process recorded last; if the upload changed since (another node's
            # chunk, claim or cancel), the compare-and-set below fails.
            size, hasher, recorded = kept
        else:
            async with self.db.read_connection() as conn:
                found = await repo.upload_start(conn, upload_id, repository, utcnow())
            if found is None or not found.free:
                return None
            size, hasher, recorded = found.size, None, found.state
        if size > _SMALL_BLOB_BYTES or (start is not None and start != size):
            return None
        if self.space is not None and self.space.free_bytes() - self.space.min_free_bytes < (
            2 * size
        ):
            return None  # a copy needs room a move does not: the claim path moves it
        # A wrong digest goes to the claim path, which discards the upload as it always did.
        verified = hasher is not None and expected.algorithm == "sha256"
        if verified and hasher is not None and Digest("sha256", hasher.hexdigest()) != expected:
            return None
        state = json.loads(recorded)
        try:
            data = b"".join([c async for c in self.storage.read_upload(state, 0, size)])
        except ObjectNotFoundError:
            return None  # completed or cancelled meanwhile: the claim path says which
        if len(data) != size:
            return None
        if not verified:
            check = new_hasher(expected.algorithm)
            check.update(data)
            if Digest(expected.algorithm, check.hexdigest()) != expected:
                return None
        key = blob_key(str(expected))
        try:
            # GC: as the claim path does before it installs bytes (docs/gc.md).
            stored = await self._protect_existing_blob(str(expected), size)
        except repo.BlobBeingDeletedError as exc:
            raise BlobUploadInvalidError(
                f"blob {expected} is being garbage-collected; upload it again"
            ) from exc
        if not stored:
            await self.storage.write_bytes(key, data)
        try:
            async with self.db.write() as session:
                finished = await repo.finish_upload(session, upload_id, repository, size)
                if finished is not None:
                    await self._link_upload_blob(
                        session, repository, finished[0], finished[1], expected, size, actor
                    )
        except BaseException:
            # As on the claimed path: a refused link (a quota) ends the session rather
            # than leave it to be finished again; unless a chunk or claim came meanwhile.
            try:
                await _shielded(self._drop_unchanged_upload(repository, upload_id, size, state))
            except Exception:  # the first error is the one to answer with
                log.warning(
                    "upload %s: not dropped after a failed finish", upload_id, exc_info=True
                )
            raise
        if finished is None:
            return None  # a chunk, a claim or a cancel came meanwhile
        self._hashers.pop(upload_id, None)
        try:
            await _shielded(self.storage.abort(state))
        except Exception:
            log.warning("upload %s: its partial object stays for GC", upload_id, exc_info=True)
        return BlobInfo(str(expected), size, key)

    async def _drop_unchanged_upload(
        self, repository: str, upload_id: str, size: int, state: dict[str, Any]
    ) -> None:
        async with self.db.write() as session:
            dropped = await repo.finish_upload(session, upload_id, repository, size)
        if dropped is not None:
            self._hashers.pop(upload_id, None)
            await self.storage.abort(state)

    async def _protect_existing_blob(
        self,
        digest: str,
        size: int,
        content_type: str = "application/octet-stream",
        *,
        touch_live: bool = True,
    ) -> bool:
        """Before a push installs or adopts the bytes at blob ``digest``'s path; returns
        whether bytes are there (the push may keep them rather than write its own).

        The driver keeps a copy that is already there, so that copy must not be garbage
        collected meanwhile: the push holds a row GC respects before it relies on the
        copy. A row that exists is touched (compare-and-set: it moves past any running
        collection's cut-off); a file without a row (an orphan left by a crash) gets a
        row inserted, so GC's orphan sweep, which claims a digest by inserting its own
        ``deleting`` row, can no longer take it. A blob being deleted (a claimed row or
        a claimed orphan) is waited for: its bytes go before its row, so the push then
        installs its own. ``touch_live=False`` skips the write for a live row whose
        bytes are there (a manifest push: its transaction touches the row anyway).
        Raises ``BlobBeingDeletedError`` if the deletion does not finish in time."""
        key = blob_key(digest)
        async with self.db.read_connection() as conn:
            status = await repo.blob_status(conn, digest)
        stored = await self.storage.stat(key) is not None
        if status is None and not stored:
            # A new blob (the common case): no write. Nothing is there to adopt, and the
            # bytes this push installs are new, far younger than any orphan GC takes.
            return False
        if status == repo.BLOB_LIVE and stored and not touch_live:
            return True
        deadline = time.monotonic() + _GC_WAIT_SECONDS
        while True:
            async with self.db.write() as session:
                held = await repo.hold_blob(session, digest, size, content_type)
            if held:
                return await self.storage.stat(key) is not None
            if time.monotonic() > deadline:
                raise repo.BlobBeingDeletedError(digest)
            await anyio.sleep(0.05)

    async def _drop_upload_row(self, upload_id: str) -> None:
        async with self.db.write() as session:
            await repo.delete_upload(session, upload_id)
        self._hashers.pop(upload_id, None)

    async def _link_completed(
        self,
        repository: str,
        upload_id: str,
        claim: repo.ClaimedUpload,
        expected: Digest,
        size: int,
        actor: Actor,
    ) -> None:
        project_id = claim.project_id
        async with self.db.write() as session:
            # First, so that nothing is linked for an upload that went meanwhile: its
            # repository deleted (which takes its uploads) or the upload cancelled.
            if not await repo.delete_claimed_upload(session, upload_id):
                raise BlobUploadUnknownError(
                    f"upload {upload_id} in {repository} no longer exists (cancelled, or "
                    "its repository deleted)"
                )
            await self._link_upload_blob(
                session, repository, claim.repository_id, project_id, expected, size, actor
            )

    async def _link_upload_blob(
        self,
        session: AsyncSession,
        repository: str,
        repository_id: int,
        project_id: int,
        expected: Digest,
        size: int,
        actor: Actor,
    ) -> None:
        """The blob an upload became: its row, its links, and the quota hook's charge."""
        try:
            blob_id = await repo.ensure_blob(
                session, str(expected), size, "application/octet-stream"
            )
        except repo.BlobBeingDeletedError as exc:  # GC claimed it despite the touch
            raise BlobUploadInvalidError(
                f"blob {expected} is being garbage-collected; upload it again"
            ) from exc
        if await repo.link_blob(session, repository_id, project_id, blob_id):
            await self.hooks.blobs_linked(
                session, BlobsLinked(actor, project_id, repository, ((blob_id, size),))
            )

    async def _upload_digest(
        self, upload_id: str, state: dict[str, Any], size: int, algorithm: str
    ) -> Digest:
        kept = self._hashers.pop(upload_id, None)
        if kept is not None and kept[0] == size and algorithm == "sha256":
            return Digest(algorithm, kept[1].hexdigest())
        hasher = new_hasher(algorithm)
        async for chunk in self.storage.read_upload(state, 0, size):
            hasher.update(chunk)
        return Digest(algorithm, hasher.hexdigest())

    async def _discard_upload(self, upload_id: str, state: dict[str, Any]) -> None:
        async with self.db.write() as session:
            await repo.delete_upload(session, upload_id)
        self._hashers.pop(upload_id, None)
        await self.storage.abort(state)

    async def upload_monolithic(
        self,
        repository: str,
        digest: str,
        chunks: AsyncIterable[bytes],
        length: int | None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> BlobInfo:
        """``POST …/blobs/uploads/?digest=``: a whole blob in one request."""
        Digest.parse(digest)
        status = await self.start_upload(repository)
        try:
            return await self.complete_upload(
                repository, status.upload_id, digest, chunks, length=length, actor=actor
            )
        except BaseException:
            await _shielded(self._forget_upload(repository, status.upload_id))
            raise

    async def _forget_upload(self, repository: str, upload_id: str) -> None:
        with contextlib.suppress(BlobUploadUnknownError):
            await self.cancel_upload(repository, upload_id)

    # --- manifests ------------------------------------------------------------------

    async def get_manifest(
        self,
        repository: str,
        reference: str,
        *,
        policies: bool = False,
        scanner_pull: bool = False,
        signer_pull: bool = False,
    ) -> ManifestContent:
        """The manifest ``reference`` names. With ``policies`` (a client's pull), the pull
        policies are asked on the same connection before its bytes are read; they refuse
        with ``PolicyViolationError``. ``scanner_pull``/``signer_pull``: who the caller is
        (``ManifestPullCheck``)."""
        try:  # a reference that is neither tag nor digest names no manifest (spec, Harbor)
            digest = str(Digest.parse(reference)) if is_digest(reference) else None
            if digest is None:
                validate_tag(reference)
        except (DigestInvalidError, TagInvalidError):
            raise ManifestUnknownError(
                f"manifest {reference[:200]!r} is not in repository {repository}: "
                "it is neither a valid tag nor a valid digest"
            ) from None
        async with self.db.read_connection() as conn:
            found: tuple[str, str] | None
            if policies and self.pull_policies:
                # The lookup also reads which policies are on (no statement for the others).
                pull = await repo.find_manifest_for_pull(
                    conn,
                    self._pull_lookups,
                    repository,
                    digest or reference,
                    digest=digest is not None,
                )
                found = None if pull is None else (pull[0], pull[1])
                if pull is not None and any(pull[2]):
                    check = ManifestPullCheck(
                        repository, pull[0], reference, scanner_pull, signer_pull
                    )
                    await self.pull_policies.check(conn, check, pull[2])
            elif digest is not None:
                found = await repo.find_manifest_by_digest(conn, repository, digest)
            else:
                found = await repo.find_manifest_by_tag(conn, repository, reference)
            if found is None and await repo.find_repository_ref(conn, repository) is None:
                raise NameUnknownError(f"repository {repository} is not known to the registry")
        if found is None:
            raise ManifestUnknownError(f"manifest {reference} is not in repository {repository}")
        digest, media_type = found
        return ManifestContent(digest, media_type, await self._manifest_bytes_for(digest))

    async def check_pull(
        self,
        repository: str,
        digest: str,
        reference: str,
        *,
        scanner_pull: bool = False,
        signer_pull: bool = False,
    ) -> None:
        """Ask the pull policies about a manifest served from elsewhere than the store
        (a proxy cache's upstream), as ``get_manifest(policies=True)`` asks them."""
        if not self.pull_policies:
            return
        async with self.db.read_connection() as conn:
            check = ManifestPullCheck(repository, digest, reference, scanner_pull, signer_pull)
            await self.pull_policies.check(conn, check)

    async def _manifest_bytes_for(self, digest: str) -> bytes:
        cached = self._manifests.get(digest)
        if cached is not None:
            self._manifests.move_to_end(digest)
            return cached
        body = await self.storage.read_bytes(blob_key(digest))
        self._manifests[digest] = body
        self._manifest_bytes += len(body)
        while self._manifest_bytes > _MANIFEST_CACHE_BYTES:
            _, dropped = self._manifests.popitem(last=False)
            self._manifest_bytes -= len(dropped)
        return body

    async def put_manifest(
        self,
        repository: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> PushedManifest:
        if self.space is not None:
            self.space.check_room()
        by_digest = is_digest(reference)
        algorithm = Digest.parse(reference).algorithm if by_digest else "sha256"
        if not by_digest:
            validate_tag(reference)
        parsed = parse_manifest(body, content_type, algorithm)
        digest = str(parsed.digest)
        if by_digest and digest != reference:
            raise DigestInvalidError(
                f"the manifest's digest is {digest}, not {reference} as the URL says"
            )
        # Refuse a manifest whose blobs are missing before writing anything;
        # the write transaction checks again, as a blob may go meanwhile.
        if not await self._references_present(repository, parsed):
            async with self.db.read() as session:  # find what is wrong, and say it
                existing_repo = await repo.find_repository_ref(session, repository)
                if existing_repo is None:
                    await _project_of(session, repository)
                await _check_references(
                    session,
                    existing_repo.repository_id if existing_repo else None,
                    repository,
                    parsed,
                )
        # Bytes first (content-addressed, so a rolled-back push leaves only
        # garbage for GC), then the rows.
        # GC: a copy already there (an orphan file included) is kept only once a row
        # protects it from the orphan sweep (docs/gc.md).
        try:
            stored = await self._protect_existing_blob(
                digest, parsed.size, parsed.media_type, touch_live=False
            )
        except repo.BlobBeingDeletedError as exc:
            raise ManifestBlobUnknownError(
                f"manifest {digest} is being garbage-collected; push it again",
                detail={"digest": digest},
            ) from exc
        if not stored:
            await self.storage.write_bytes(blob_key(digest), body)
        config = await self._config_for_facts(parsed)
        async with self.db.write() as session:
            target = await self._writable_repository(session, repository)
            artifact, is_new, linked = await self._record_manifest(session, target, parsed, config)
            if linked:
                await self.hooks.blobs_linked(
                    session, BlobsLinked(actor, target.project_id, repository, linked)
                )
            tag = None if by_digest else reference
            previous = None
            if tag is not None:
                found = await repo.tag_target(session, target.repository_id, tag)
                previous = found[1] if found is not None else None
            push = ManifestPush(
                actor,
                target.project_id,
                target.repository_id,
                repository,
                artifact.id,
                digest,
                tag,
                previous,
                is_new,
                str(parsed.subject.digest) if parsed.subject is not None else None,
            )
            await self.hooks.before_manifest_push(session, push)
            if tag is not None:
                await repo.set_tag(session, target.repository_id, tag, artifact.id)
                await _record_cosign_accessory(session, target, artifact, tag)
            await self.hooks.after_manifest_push(session, push)
        subject = str(parsed.subject.digest) if parsed.subject is not None else None
        return PushedManifest(digest, subject)

    async def _references_present(self, repository: str, parsed: ParsedManifest) -> bool:
        """Whether an image manifest's blobs are all in the repository with the sizes it
        declares, in one statement and no transaction (the common push). False sends the
        caller to the full check, which says what is wrong; indexes and referrers (which
        name manifests and subjects) always go there."""
        if parsed.manifests or parsed.subject is not None:
            return False
        wanted = [str(b.digest) for b in parsed.required_blobs]
        if not wanted:
            return False
        async with self.db.read_connection() as conn:
            have = await repo.linked_blob_sizes_by_name(conn, repository, wanted)
        if any(digest not in have for digest in wanted):
            return False
        if parsed.config is not None:
            named = [parsed.config, *parsed.layers]
            if any(have.get(str(d.digest)) != d.size for d in named):
                return False
        return True

    async def _config_for_facts(self, parsed: ParsedManifest) -> bytes | None:
        """The config blob's bytes when its facts are shown (images, charts) and it is small;
        read before the write transaction opens (bytes never stream inside one)."""
        if parsed.config is None or parsed.config.size > facts.MAX_CONFIG_BYTES:
            return None
        if facts.artifact_kind(parsed) not in ("IMAGE", "CHART", "WASM"):
            return None
        try:
            body = await self.storage.read_bytes(blob_key(str(parsed.config.digest)))
        except ObjectNotFoundError:
            return None  # the facts are optional; the push goes on without them
        return body if len(body) <= facts.MAX_CONFIG_BYTES else None

    async def _record_manifest(
        self,
        session: AsyncSession,
        target: repo.RepositoryRef,
        parsed: ParsedManifest,
        config: bytes | None = None,
    ) -> tuple[Artifact, bool, tuple[tuple[int, int], ...]]:
        """The artifact row (new or existing), whether it is new, and the blobs (the
        manifest's own bytes) newly counted in the project.

        A new row carries the facts Harbor shows, extracted once here: type, media
        type, size, ``extra_attrs`` (from ``config``, the config blob's bytes), and an
        accessory row when the manifest names a ``subject``."""
        digest = str(parsed.digest)
        blobs = parsed.required_blobs
        wanted = {str(b.digest) for b in blobs}
        # GC rescue: the blobs the manifest names are touched in this transaction, so a
        # collection either claimed one first (the push is refused as if it were missing)
        # or can no longer claim any of them. An image manifest (no children, no subject)
        # is checked by the touch itself: every blob linked here, live, of its declared
        # size. Anything else, or a touch that finds less, takes the full check, which
        # says what is wrong.
        children: dict[str, Artifact] = {}
        touched = (
            await repo.touch_linked_blobs(session, target.repository_id, sorted(wanted))
            if wanted and not parsed.manifests and parsed.subject is None
            else {}
        )
        if not touched or not _sizes_match(touched, wanted, parsed):
            children = await _check_references(session, target.repository_id, target.name, parsed)
            missing = sorted(wanted - await repo.touch_blobs(session, sorted(wanted)))
        else:
            missing = []
        if missing:
            raise ManifestBlobUnknownError(
                f"blob {missing[0]} referenced by the manifest is being garbage-collected; "
                "push it again",
                detail={"digest": missing[0]},
            )
        try:
            blob_id = await repo.ensure_blob(session, digest, parsed.size, parsed.media_type)
        except repo.BlobBeingDeletedError as exc:
            raise ManifestBlobUnknownError(
                f"manifest {digest} is being garbage-collected; push it again",
                detail={"digest": digest},
            ) from exc
        linked: tuple[tuple[int, int], ...] = ()
        if await repo.link_blob(session, target.repository_id, target.project_id, blob_id):
            linked = ((blob_id, parsed.size),)
        existing = await repo.find_artifact(session, target.repository_id, digest)
        if existing is not None:
            return existing, False, linked
        size = facts.artifact_size(parsed, {d: a.size for d, a in children.items()})
        kind = facts.artifact_kind(parsed)
        attrs = facts.extra_attrs(kind, config)
        artifact = Artifact(
            type=kind,
            media_type=facts.artifact_media_type(parsed),
            manifest_media_type=parsed.media_type,
            artifact_type=parsed.effective_artifact_type,
            project_id=target.project_id,
            repository_id=target.repository_id,
            repository_name=target.name,
            digest=digest,
            size=size,
            subject_digest=str(parsed.subject.digest) if parsed.subject else None,
            annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
            extra_attrs=json.dumps(attrs) if attrs else None,
            push_time=utcnow(),
        )
        session.add(artifact)
        await session.flush()
        await repo.link_artifact_blobs(session, digest, {digest, *(str(b.digest) for b in blobs)})
        for child in parsed.manifests:
            session.add(
                ArtifactReference(
                    parent_id=artifact.id,
                    child_id=children[str(child.digest)].id,
                    child_digest=str(child.digest),
                    platform=json.dumps(child.platform.to_json()) if child.platform else None,
                    urls=json.dumps(list(child.urls)) if child.urls else None,
                    annotations=json.dumps(child.annotations) if child.annotations else None,
                )
            )
        if parsed.subject is not None:
            subject = await repo.find_artifact(
                session, target.repository_id, str(parsed.subject.digest)
            )
            session.add(
                ArtifactAccessory(
                    artifact_id=artifact.id,
                    subject_artifact_id=subject.id if subject else None,
                    subject_artifact_digest=str(parsed.subject.digest),
                    subject_artifact_repo=target.name,
                    type=facts.accessory_type(parsed),
                    size=size,
                    digest=digest,
                )
            )
        await session.flush()
        await _adopt_accessories(session, target, artifact)
        return artifact, True, linked

    async def delete_manifest(
        self, repository: str, reference: str, actor: Actor = SYSTEM_ACTOR
    ) -> None:
        """By tag: remove the tag. By digest: remove the manifest with its tags and, as
        Harbor does, its accessories and the index children nothing else holds."""
        async with self.db.write() as session:
            target = await self._existing_repository(session, repository)
            if not is_digest(reference):
                validate_tag(reference)
                await self.remove_tag(session, target, reference, actor)
                return
            digest = str(Digest.parse(reference))
            artifact = await repo.find_artifact(session, target.repository_id, digest)
            if artifact is None:
                raise ManifestUnknownError(f"manifest {digest} is not in {repository}")
            # A manifest an index lists is refused by remove_artifact; the transaction
            # then undoes whatever the deep delete had removed before it.
            await self.remove_artifact_deeply(session, target, artifact, actor)

    async def remove_artifact(
        self,
        session: AsyncSession,
        target: repo.RepositoryRef,
        artifact: Artifact,
        actor: Actor = SYSTEM_ACTOR,
    ) -> None:
        """Delete an artifact and its tags inside ``session``, through the hooks."""
        parent = await repo.referencing_index(session, artifact.id)
        if parent is not None:
            raise ManifestReferencedError(
                f"manifest {artifact.digest} is listed by index {parent} in {target.name}; "
                "delete the index first"
            )
        removal = ManifestRemoval(
            actor,
            target.project_id,
            target.repository_id,
            target.name,
            artifact.id,
            artifact.digest,
            await repo.tags_of_artifact(session, artifact.id),
            artifact_removed=True,
        )
        await self.hooks.before_manifest_removal(session, removal)
        await repo.delete_artifact(session, artifact)
        # The manifest's bytes were linked as a blob of the repository when pushed.
        await repo.unlink_blob(session, target.name, artifact.digest)
        await self.hooks.after_manifest_removal(session, removal)

    async def remove_artifact_deeply(
        self,
        session: AsyncSession,
        target: repo.RepositoryRef,
        artifact: Artifact,
        actor: Actor = SYSTEM_ACTOR,
        gone: set[int] | None = None,
    ) -> None:
        """Delete ``artifact`` with its accessories (Harbor's rule), then the children
        of an index that no other index lists and no tag holds, inside ``session``.
        ``gone`` collects the ids deleted, so a caller deleting many shares one set."""
        gone = set() if gone is None else gone
        if artifact.id in gone:
            return
        gone.add(artifact.id)
        for accessory in await repo.accessory_artifacts(session, artifact):
            if await repo.referencing_index(session, accessory.id) is None:
                await self.remove_artifact_deeply(session, target, accessory, actor, gone)
        children = await repo.children_of(session, artifact)
        await self.remove_artifact(session, target, artifact, actor)
        for reference in children:
            child = await session.get(Artifact, reference.child_id)
            if child is None or child.id in gone:
                continue
            if await repo.tags_of_artifact(session, child.id):
                continue
            if await repo.referencing_index(session, child.id) is not None:
                continue
            await self.remove_artifact_deeply(session, target, child, actor, gone)

    async def remove_tag(
        self,
        session: AsyncSession,
        target: repo.RepositoryRef,
        tag: str,
        actor: Actor = SYSTEM_ACTOR,
    ) -> None:
        """Delete one tag (the artifact stays) inside ``session``, through the hooks."""
        found = await repo.tag_target(session, target.repository_id, tag)
        if found is None:
            raise ManifestUnknownError(f"tag {tag} is not in {target.name}")
        removal = ManifestRemoval(
            actor,
            target.project_id,
            target.repository_id,
            target.name,
            found[0],
            found[1],
            (tag,),
            artifact_removed=False,
        )
        await self.hooks.before_manifest_removal(session, removal)
        await repo.delete_tag(session, target.repository_id, tag)
        await self.hooks.after_manifest_removal(session, removal)

    async def add_tag(
        self,
        session: AsyncSession,
        target: repo.RepositoryRef,
        artifact: Artifact,
        tag: str | None,
        actor: Actor = SYSTEM_ACTOR,
        *,
        artifact_is_new: bool = False,
    ) -> None:
        """Point ``tag`` at an artifact already in ``target`` inside ``session``, through
        the push hooks, as a push of that tag would. With no tag, announce an artifact
        whose rows arrived without a push (a copy) to the same hooks."""
        previous = None
        if tag is not None:
            found = await repo.tag_target(session, target.repository_id, tag)
            previous = found[1] if found is not None else None
        push = ManifestPush(
            actor,
            target.project_id,
            target.repository_id,
            target.name,
            artifact.id,
            artifact.digest,
            tag,
            previous,
            artifact_is_new,
        )
        await self.hooks.before_manifest_push(session, push)
        if tag is not None:
            await repo.set_tag(session, target.repository_id, tag, artifact.id)
        await self.hooks.after_manifest_push(session, push)

    async def link_blobs(
        self,
        session: AsyncSession,
        target: repo.RepositoryRef,
        blobs: Sequence[tuple[int, int]],
        actor: Actor = SYSTEM_ACTOR,
    ) -> None:
        """Let ``target`` read existing blobs ((id, size) pairs) inside ``session``; the
        ones new to its project reach ``blobs_linked`` (quotas may refuse them)."""
        linked = []
        for blob_id, size in blobs:
            if await repo.link_blob(session, target.repository_id, target.project_id, blob_id):
                linked.append((blob_id, size))
        if linked:
            await self.hooks.blobs_linked(
                session, BlobsLinked(actor, target.project_id, target.name, tuple(linked))
            )

    def record_pull(self, actor: Actor, repository: str, digest: str, reference: str) -> None:
        """A manifest was served by GET: tell the hooks (pull time, count, audit)."""
        tag = None if is_digest(reference) else reference
        self.hooks.manifest_pulled(ManifestPull(actor, repository, digest, tag))

    # --- listings ---------------------------------------------------------------------

    async def list_tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        async with self.db.read() as session:
            target = await self._existing_repository(session, repository)
            return await repo.list_tags(session, target.repository_id, limit, last)

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        async with self.db.read() as session:
            return await repo.list_repositories(session, limit, last)

    async def referrers(
        self, repository: str, subject: str, artifact_type: str | None
    ) -> list[dict[str, Any]]:
        digest = str(Digest.parse(subject))
        if artifact_type is not None and "\x00" in artifact_type:
            return []  # stored artifact types never hold NUL (and PostgreSQL refuses it)
        async with self.db.read() as session:
            found = await repo.referrers(session, repository, digest, artifact_type)
        out = []
        for artifact, manifest_size in found:
            descriptor: dict[str, Any] = {
                "mediaType": artifact.manifest_media_type,
                "digest": artifact.digest,
                "size": manifest_size,
            }
            if artifact.artifact_type:
                descriptor["artifactType"] = artifact.artifact_type
            if artifact.annotations:
                descriptor["annotations"] = json.loads(artifact.annotations)
            out.append(descriptor)
        return out


async def _project_of(session: AsyncSession, repository: str) -> Project:
    """The project a repository belongs in; refused clearly when it does not exist."""
    project_name, _ = split_repository(repository)
    project = await projects.find_project_by_name(session, project_name)
    if project is None:
        raise ProjectNotFoundError(
            f"project {project_name} does not exist; create it first "
            f"(`dockyard project create {project_name}`)"
        )
    return project


async def _check_references(
    session: AsyncSession, repository_id: int | None, repository: str, parsed: ParsedManifest
) -> dict[str, Artifact]:
    """Raise unless the repository holds every blob and child manifest ``parsed`` names,
    each of the size its descriptor declares (a subject is checked where it is stored).

    Returns the index's children by digest.
    """
    wanted = [str(b.digest) for b in parsed.required_blobs]
    have = await repo.linked_blob_sizes(session, repository_id, wanted) if repository_id else {}
    for digest in wanted:
        if digest not in have:
            raise ManifestBlobUnknownError(
                f"blob {digest} referenced by the manifest is not in {repository}; push it first",
                detail={"digest": digest},
            )
    if parsed.config is not None:
        _check_sizes(have, (("config", parsed.config),))
        _check_sizes(have, ((f"layers[{i}]", d) for i, d in enumerate(parsed.layers)))
    child_digests = [str(m.digest) for m in parsed.manifests]
    children = (
        await repo.artifacts_by_digest(session, repository_id, child_digests)
        if repository_id
        else {}
    )
    for digest in child_digests:
        if digest not in children:
            raise ManifestBlobUnknownError(
                f"manifest {digest} listed by the index is not in {repository}; push it first",
                detail={"digest": digest},
            )
    named = [(f"manifests[{i}]", d) for i, d in enumerate(parsed.manifests)]
    if parsed.subject is not None:
        named.append(("subject", parsed.subject))
    if named:
        stored = await repo.blob_sizes(session, sorted({str(d.digest) for _, d in named}))
        _check_sizes(stored, named)
    return children


def _sizes_match(touched: dict[str, int], wanted: set[str], parsed: ParsedManifest) -> bool:
    """Whether ``touched`` (size by digest) holds every blob ``wanted`` and, for an image,
    each of the size its descriptor declares (``_check_references``'s rule)."""
    if set(touched) != wanted:
        return False
    named = [] if parsed.config is None else [parsed.config, *parsed.layers]
    return all(touched.get(str(d.digest), d.size) == d.size for d in named)


def _check_sizes(stored: dict[str, int], named: Iterable[tuple[str, Descriptor]]) -> None:
    """Refuse a descriptor whose size differs from the stored object's, as distribution
    does: a wrong size would make clients fail to pull, and it would count in quotas
    and in the artifact's size as declared (a layer can claim exabytes)."""
    for where, descriptor in named:
        digest = str(descriptor.digest)
        size = stored.get(digest)
        if size is not None and size != descriptor.size:
            raise ManifestInvalidError(
                f"{where} declares {descriptor.size} bytes for {digest}, "
                f"but the stored object holds {size} bytes",
                detail={"digest": digest, "declared": descriptor.size, "stored": size},
            )


async def _adopt_accessories(
    session: AsyncSession, target: repo.RepositoryRef, artifact: Artifact
) -> None:
    """Accessories pushed before their subject: referrers that name this digest get its
    id, and cosign tags already naming it (``sha256-<hex>.sig``) become accessories."""
    await repo.adopt_referrers(session, target.repository_id, artifact.id, artifact.digest)
    algorithm, _, hex_digest = artifact.digest.partition(":")
    names = [f"{algorithm}-{hex_digest}.{suffix}" for suffix in ("sig", "att", "sbom")]
    for name, accessory in await repo.tagged(session, target.repository_id, names):
        await _record_cosign_accessory(session, target, accessory, name)


async def _record_cosign_accessory(
    session: AsyncSession, target: repo.RepositoryRef, artifact: Artifact, tag: str
) -> None:
    """A cosign tag (``sha256-<hex>.sig``) makes its artifact an accessory of the artifact
    ``sha256:<hex>`` in the same repository, as Harbor records it (once)."""
    found = facts.cosign_subject(tag)
    if found is None:
        return
    subject_digest, kind = found
    subject = await repo.find_artifact(session, target.repository_id, subject_digest)
    if subject is None or subject.id == artifact.id:
        return
    await repo.add_accessory(
        session,
        artifact_id=artifact.id,
        subject_artifact_id=subject.id,
        subject_artifact_digest=subject_digest,
        subject_artifact_repo=target.name,
        type=kind,
        size=artifact.size,
        digest=artifact.digest,
    )


async def _shielded(coro: Any) -> None:
    """Run clean-up even when the request that needs it was cancelled."""
    with anyio.CancelScope(shield=True):
        await coro


async def _prepended(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk
