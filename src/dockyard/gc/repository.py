"""Garbage collection's queries: every one a batch, every change conditional.

A blob is *referenced* while an ``artifact_blob`` row names it for a manifest some
artifact holds (the manifest's own bytes included). A blob is *collectable* when it
is not referenced and was last touched (uploaded, linked, mounted, named by a
pushed manifest, or found by a HEAD/GET) before the run's cut-off. Every change
below re-checks that in the statement that makes it, so a push that touches a blob
between two steps of a collection always wins (see docs/gc.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import dialect_insert
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution
from dockyard.oci.mediatypes import SUPPORTED_MANIFEST_TYPES
from dockyard.quota import repository as quotas
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    ArtifactBlob,
    ArtifactReference,
    Blob,
    BlobUpload,
    ProjectBlob,
    Tag,
)
from dockyard.registry.repository import BLOB_DELETING, BLOB_LIVE, BLOB_MARKED

# Small enough for every database's bound-parameter limit, large enough to be fast.
BATCH = 1000


@dataclass(frozen=True, slots=True)
class BlobRow:
    id: int
    digest: str
    size: int
    content_type: str
    version: int = 0
    status: str = BLOB_LIVE

    @property
    def is_manifest(self) -> bool:
        return self.content_type in SUPPORTED_MANIFEST_TYPES


def _referenced() -> Any:
    """The blob is named by a manifest that an artifact holds."""
    return exists().where(
        ArtifactBlob.digest_blob == Blob.digest,
        exists().where(Artifact.digest == ArtifactBlob.digest_af),
    )


def _collectable(cutoff: datetime) -> Any:
    return and_(Blob.update_time < cutoff, ~_referenced())


async def _lock_in_order(session: AsyncSession, ids: Sequence[int]) -> None:
    """Lock these blob rows in id order (PostgreSQL), as the registry's touches lock
    them, so a collection and a push never deadlock. A statement of its own: as a
    subquery of the UPDATE, the planner re-ran it for every row."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            select(Blob.id).where(Blob.id.in_(list(ids))).order_by(Blob.id).with_for_update()
        )


def _with_versions(rows: Sequence[BlobRow]) -> Any:
    """Each row still has the version it was read with: ``version = v AND id IN (…)`` per
    version (a batch has one or two), not a row-value list SQLite would scan per row."""
    by_version: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        by_version[row.version].append(row.id)
    return or_(*(and_(Blob.version == v, Blob.id.in_(ids)) for v, ids in by_version.items()))


def _blob_row(row: Any) -> BlobRow:
    return BlobRow(*row)  # _BLOB_COLUMNS are BlobRow's fields, in order


_BLOB_COLUMNS = (
    Blob.id,
    Blob.digest,
    Blob.size,
    Blob.content_type,
    Blob.version,
    Blob.status,
)


async def collectable_page(
    session: AsyncSession, cutoff: datetime, after_id: int, limit: int = BATCH
) -> list[BlobRow]:
    """Collectable blobs with ids above ``after_id``, in id order."""
    result = await session.execute(
        select(*_BLOB_COLUMNS)
        .where(Blob.id > after_id, Blob.status != BLOB_DELETING, _collectable(cutoff))
        .order_by(Blob.id)
        .limit(limit)
    )
    return [_blob_row(r) for r in result]


async def mark(session: AsyncSession, ids: Sequence[int], cutoff: datetime) -> int:
    """Mark blobs as deletion candidates (status ``delete``, version bumped) if they are
    still collectable; returns how many. ``update_time`` is kept as it is: it is what a
    concurrent push moves to rescue a blob."""
    if not ids:
        return 0
    await _lock_in_order(session, ids)
    result = await session.execute(
        update(Blob)
        .where(
            Blob.id.in_(list(ids)),
            Blob.status.in_((BLOB_LIVE, BLOB_MARKED)),
            _collectable(cutoff),
        )
        .values(status=BLOB_MARKED, version=Blob.version + 1, update_time=Blob.update_time)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def marked_page(session: AsyncSession, after_id: int, limit: int = BATCH) -> list[BlobRow]:
    """Blobs marked (``delete``) or claimed (``deleting``, left by an interrupted run)."""
    result = await session.execute(
        select(*_BLOB_COLUMNS)
        .where(Blob.id > after_id, Blob.status.in_((BLOB_MARKED, BLOB_DELETING)))
        .order_by(Blob.id)
        .limit(limit)
    )
    return [_blob_row(r) for r in result]


async def claim(session: AsyncSession, rows: Sequence[BlobRow], cutoff: datetime) -> list[BlobRow]:
    """Claim marked blobs for deletion (status ``deleting``): only those still marked with
    the version the mark gave them, still untouched since the cut-off and still
    unreferenced. After this no registry path links them; their bytes may go."""
    if not rows:
        return []
    await _lock_in_order(session, [r.id for r in rows])
    result = await session.execute(
        update(Blob)
        .where(
            _with_versions(rows),
            Blob.status == BLOB_MARKED,
            _collectable(cutoff),
        )
        .values(status=BLOB_DELETING, update_time=Blob.update_time)
        .returning(*_BLOB_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    return [_blob_row(r) for r in result]


async def purge(session: AsyncSession, rows: Sequence[BlobRow]) -> list[BlobRow]:
    """Delete the rows of claimed blobs (their bytes are gone) with their repository and
    project links, taking each project's share off its quota usage. Only rows still
    ``deleting`` go; returns those."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    links = (
        await session.execute(
            select(ProjectBlob.project_id, ProjectBlob.blob_id).where(ProjectBlob.blob_id.in_(ids))
        )
    ).all()
    # The quota module's lock order: a project's quota row before any registry row.
    for project_id in sorted({project_id for project_id, _ in links}):
        await quotas.find_quota(session, project_id, for_update=True)
    gone = {
        r.id: r
        for r in (
            await session.execute(
                delete(Blob)
                .where(Blob.id.in_(ids), Blob.status == BLOB_DELETING)
                .returning(*_BLOB_COLUMNS)
                .execution_options(synchronize_session=False)
            )
        )
    }
    if not gone:
        return []
    refunds: dict[int, int] = defaultdict(int)
    for project_id, blob_id in links:
        if blob_id in gone:
            refunds[project_id] += gone[blob_id].size
    # Their repository and project links went with them (foreign keys cascade; the
    # engine turns them on for every SQLite connection).
    for project_id, size in sorted(refunds.items()):
        if size:
            await quotas.refund(session, project_id, size)
    return [_blob_row(r) for r in gone.values()]


async def unmark_all(session: AsyncSession) -> int:
    """Give up the marks of a stopped run (claimed blobs stay claimed: their bytes may be
    half gone, so the next run finishes them)."""
    result = await session.execute(
        update(Blob)
        .where(Blob.status == BLOB_MARKED)
        .values(status=BLOB_LIVE, version=Blob.version + 1, update_time=Blob.update_time)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- what a dry run with delete_untagged would free ---------------------------------


async def blobs_of_manifests(session: AsyncSession, digests: Sequence[str]) -> set[str]:
    """Digests of the blobs these manifests name (themselves included)."""
    found: set[str] = set()
    for start in range(0, len(digests), BATCH):
        chunk = list(digests[start : start + BATCH])
        found.update(
            (
                await session.execute(
                    select(ArtifactBlob.digest_blob).where(ArtifactBlob.digest_af.in_(chunk))
                )
            ).scalars()
        )
    return found


async def holders(session: AsyncSession, blob_digests: Sequence[str]) -> dict[str, set[int]]:
    """Blob digest -> ids of the artifacts whose manifests name it."""
    out: dict[str, set[int]] = defaultdict(set)
    for start in range(0, len(blob_digests), BATCH):
        chunk = list(blob_digests[start : start + BATCH])
        rows = await session.execute(
            select(ArtifactBlob.digest_blob, Artifact.id)
            .join(Artifact, Artifact.digest == ArtifactBlob.digest_af)
            .where(ArtifactBlob.digest_blob.in_(chunk))
        )
        for digest, artifact_id in rows:
            out[digest].add(artifact_id)
    return out


async def blobs_by_digest(
    session: AsyncSession, digests: Sequence[str], cutoff: datetime
) -> list[BlobRow]:
    """Rows of these blobs untouched since the cut-off and not being deleted."""
    out: list[BlobRow] = []
    for start in range(0, len(digests), BATCH):
        chunk = list(digests[start : start + BATCH])
        rows = await session.execute(
            select(*_BLOB_COLUMNS).where(
                Blob.digest.in_(chunk), Blob.update_time < cutoff, Blob.status != BLOB_DELETING
            )
        )
        out.extend(_blob_row(r) for r in rows)
    return out


# --- untagged artifacts ---------------------------------------------------------------


@dataclass(slots=True)
class UntaggedArtifact:
    id: int
    repository_id: int
    digest: str
    parents: set[int]
    """Indexes that list it."""
    subjects: set[int]
    """Artifacts it is an accessory of (recorded, or by ``subject`` in its repository)."""


async def untagged_artifacts(
    session: AsyncSession, pushed_before: datetime
) -> dict[int, UntaggedArtifact]:
    """Every artifact without a tag pushed before ``pushed_before`` (a younger one may be
    the child of an index being pushed), with the indexes listing it and its subjects."""
    rows = await session.execute(
        select(Artifact.id, Artifact.repository_id, Artifact.digest, Artifact.subject_digest)
        .where(~exists().where(Tag.artifact_id == Artifact.id), Artifact.push_time < pushed_before)
        .order_by(Artifact.id)
    )
    found: dict[int, UntaggedArtifact] = {}
    subject_digests: dict[int, tuple[int, str]] = {}
    for artifact_id, repository_id, digest, subject in rows:
        found[artifact_id] = UntaggedArtifact(artifact_id, repository_id, digest, set(), set())
        if subject:
            subject_digests[artifact_id] = (repository_id, subject)
    ids = list(found)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        for parent, child in await session.execute(
            select(ArtifactReference.parent_id, ArtifactReference.child_id).where(
                ArtifactReference.child_id.in_(chunk)
            )
        ):
            found[child].parents.add(parent)
        for accessory, subject_id in await session.execute(
            select(ArtifactAccessory.artifact_id, ArtifactAccessory.subject_artifact_id).where(
                ArtifactAccessory.artifact_id.in_(chunk),
                ArtifactAccessory.subject_artifact_id.is_not(None),
            )
        ):
            if subject_id is not None:
                found[accessory].subjects.add(subject_id)
    for artifact_id, (repository_id, subject) in subject_digests.items():
        subject_id = await session.scalar(
            select(Artifact.id).where(
                Artifact.repository_id == repository_id, Artifact.digest == subject
            )
        )
        if subject_id is not None:
            found[artifact_id].subjects.add(subject_id)
    return found


async def artifact_digests(session: AsyncSession, artifact_ids: Sequence[int]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(artifact_ids), BATCH):
        chunk = list(artifact_ids[start : start + BATCH])
        found.update(
            (await session.execute(select(Artifact.digest).where(Artifact.id.in_(chunk)))).scalars()
        )
    return found


async def find_artifact(session: AsyncSession, artifact_id: int) -> Artifact | None:
    return await session.get(Artifact, artifact_id)


async def has_tags(session: AsyncSession, artifact_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Tag.artifact_id == artifact_id))))


# --- stale upload sessions --------------------------------------------------------------


def _stale(cutoff: datetime, now: datetime) -> Any:
    return and_(
        BlobUpload.update_time < cutoff,
        BlobUpload.busy_until.is_(None) | (BlobUpload.busy_until < now),
    )


async def stale_uploads(
    session: AsyncSession, cutoff: datetime, now: datetime, limit: int = BATCH
) -> list[tuple[str, str]]:
    """(id, driver state) of upload sessions idle since before the cut-off."""
    rows = await session.execute(
        select(BlobUpload.id, BlobUpload.state)
        .where(_stale(cutoff, now))
        .order_by(BlobUpload.id)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


async def count_stale_uploads(session: AsyncSession, cutoff: datetime, now: datetime) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(BlobUpload).where(_stale(cutoff, now))
        )
        or 0
    )


async def delete_stale_uploads(
    session: AsyncSession, ids: Sequence[str], cutoff: datetime, now: datetime
) -> list[tuple[str, str]]:
    """Delete the sessions still stale (a chunk may have arrived meanwhile)."""
    if not ids:
        return []
    result = await session.execute(
        delete(BlobUpload)
        .where(BlobUpload.id.in_(list(ids)), _stale(cutoff, now))
        .returning(BlobUpload.id, BlobUpload.state)
        .execution_options(synchronize_session=False)
    )
    return [(r[0], r[1]) for r in result]


# --- orphan bytes -------------------------------------------------------------------------


async def claim_orphans(
    session: AsyncSession, orphans: Sequence[tuple[str, int]], now: datetime
) -> list[tuple[int, str]]:
    """Claim blob files no row names ((digest, size) pairs) for deletion: a row in state
    ``deleting`` is inserted for each digest that still has none; returns the (id,
    digest) of those inserted. A push that relies on an existing file holds a row first
    (``registry.service``), so a digest claimed here has no push relying on its file,
    and every push that comes later waits for the claim to go (bytes first, then this
    row). A digest a push got a row for first is skipped."""
    if not orphans:
        return []
    result = await session.execute(
        dialect_insert(session, Blob)
        .values(
            [
                {
                    "digest": digest,
                    "size": size,
                    "content_type": "",
                    "status": BLOB_DELETING,
                    "version": 0,
                    "creation_time": now,
                    "update_time": now,
                }
                for digest, size in orphans
            ]
        )
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(Blob.id, Blob.digest)
    )
    return [(r[0], r[1]) for r in result]


async def release_orphans(session: AsyncSession, ids: Sequence[int]) -> int:
    """Delete the claims of orphan files whose bytes are gone; returns how many."""
    if not ids:
        return 0
    result = await session.execute(
        delete(Blob)
        .where(Blob.id.in_(list(ids)), Blob.status == BLOB_DELETING)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def existing_uploads(session: AsyncSession, upload_ids: Sequence[str]) -> set[str]:
    """The ids among ``upload_ids`` an upload session row has."""
    if not upload_ids:
        return set()
    result = await session.execute(select(BlobUpload.id).where(BlobUpload.id.in_(list(upload_ids))))
    return set(result.scalars())


async def existing_digests(session: AsyncSession, digests: Sequence[str]) -> set[str]:
    if not digests:
        return set()
    result = await session.execute(select(Blob.digest).where(Blob.digest.in_(list(digests))))
    return set(result.scalars())


# --- the execution's running totals -----------------------------------------------------


async def add_to_execution(
    session: AsyncSession, execution_id: int, counts: dict[str, int]
) -> dict[str, Any]:
    """Add ``counts`` to the execution's totals (``extra_attrs``) in the caller's
    transaction, so the totals commit with the work they count; returns the totals."""
    execution = await session.get(Execution, execution_id, with_for_update=True)
    if execution is None:
        return {}
    attrs = jobs.loads(execution.extra_attrs)
    for key, value in counts.items():
        attrs[key] = int(attrs.get(key, 0)) + value
    execution.extra_attrs = jobs.dumps(attrs)
    return attrs


async def set_on_execution(
    session: AsyncSession, execution_id: int, values: dict[str, Any]
) -> None:
    await jobs.merge_execution_attrs(session, execution_id, values)
