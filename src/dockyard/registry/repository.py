"""Queries of the registry tables, named for what they answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import dialect_insert, insert_ignore
from dockyard.registry.models import (
    Artifact,
    ArtifactBlob,
    ArtifactReference,
    Blob,
    BlobUpload,
    ProjectBlob,
    Repository,
    RepositoryBlob,
    Tag,
)

# Read-only lookups take a session or a bare connection (cheaper on hot paths).
Executor = AsyncSession | AsyncConnection


async def find_repository(session: AsyncSession, name: str) -> Repository | None:
    result = await session.execute(select(Repository).where(Repository.name == name))
    return result.scalar_one_or_none()


async def ensure_repository(session: AsyncSession, name: str, project_id: int) -> Repository:
    """The repository row, created on first use (safe against a concurrent creator)."""
    found = await find_repository(session, name)
    if found is not None:
        return found
    await session.execute(
        insert_ignore(session, Repository, {"name": name, "project_id": project_id}, ["name"])
    )
    created = await find_repository(session, name)
    assert created is not None
    return created


async def find_linked_blob(session: AsyncSession, repository: str, digest: str) -> Blob | None:
    """The blob when ``repository`` may read it."""
    result = await session.execute(
        select(Blob)
        .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
        .join(Repository, Repository.repository_id == RepositoryBlob.repository_id)
        .where(Repository.name == repository, Blob.digest == digest)
    )
    return result.scalar_one_or_none()


async def linked_digests(
    session: AsyncSession, repository_id: int, digests: Sequence[str]
) -> set[str]:
    if not digests:
        return set()
    result = await session.execute(
        select(Blob.digest)
        .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
        .where(RepositoryBlob.repository_id == repository_id, Blob.digest.in_(digests))
    )
    return set(result.scalars())


async def ensure_blob(session: AsyncSession, digest: str, size: int, content_type: str) -> int:
    """The blob's id: the row is inserted on its first copy, touched on later ones."""
    now = utcnow()
    statement = (
        dialect_insert(session, Blob)
        .values(
            digest=digest,
            size=size,
            content_type=content_type,
            creation_time=now,
            update_time=now,
            status="none",
            version=0,
        )
        .on_conflict_do_update(index_elements=["digest"], set_={"update_time": now})
        .returning(Blob.id)
    )
    blob_id: int = (await session.execute(statement)).scalar_one()
    return blob_id


async def link_blob(
    session: AsyncSession, repository_id: int, project_id: int, blob_id: int
) -> None:
    """Let the repository read the blob, and count it in its project."""
    now = utcnow()
    await session.execute(
        insert_ignore(
            session,
            RepositoryBlob,
            {"repository_id": repository_id, "blob_id": blob_id, "creation_time": now},
            ["repository_id", "blob_id"],
        )
    )
    await session.execute(
        insert_ignore(
            session,
            ProjectBlob,
            {"project_id": project_id, "blob_id": blob_id, "creation_time": now},
            ["project_id", "blob_id"],
        )
    )


async def project_of_repository(session: AsyncSession, repository_id: int) -> int | None:
    project_id: int | None = await session.scalar(
        select(Repository.project_id).where(Repository.repository_id == repository_id)
    )
    return project_id


async def link_artifact_blobs(session: AsyncSession, manifest: str, blobs: set[str]) -> None:
    """Record which blobs a manifest needs (shared by every repository holding it)."""
    now = utcnow()
    await session.execute(
        insert_ignore(
            session,
            ArtifactBlob,
            [
                {"digest_af": manifest, "digest_blob": b, "creation_time": now}
                for b in sorted(blobs)
            ],
            ["digest_af", "digest_blob"],
        )
    )


async def unlink_blob(session: AsyncSession, repository: str, digest: str) -> bool:
    repo_id = select(Repository.repository_id).where(Repository.name == repository)
    blob_id = select(Blob.id).where(Blob.digest == digest)
    result = await session.execute(
        delete(RepositoryBlob).where(
            RepositoryBlob.repository_id == repo_id.scalar_subquery(),
            RepositoryBlob.blob_id == blob_id.scalar_subquery(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- uploads -------------------------------------------------------------------


async def find_upload(session: AsyncSession, upload_id: str, repository: str) -> BlobUpload | None:
    result = await session.execute(
        select(BlobUpload)
        .join(Repository, Repository.repository_id == BlobUpload.repository_id)
        .where(BlobUpload.id == upload_id, Repository.name == repository)
    )
    return result.scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class ClaimedUpload:
    size: int
    state: str
    repository_id: int


async def claim_upload(
    session: AsyncSession,
    upload_id: str,
    repository: str,
    start: int | None,
    lease_until: datetime,
) -> ClaimedUpload | None:
    """Take the upload for one writer, in one statement.

    None when it is unknown (in that repository), held by another writer, or
    (with ``start``) not ``start`` bytes long.
    """
    now = utcnow()
    conditions = [
        BlobUpload.id == upload_id,
        BlobUpload.repository_id
        == select(Repository.repository_id).where(Repository.name == repository).scalar_subquery(),
        (BlobUpload.busy_until.is_(None)) | (BlobUpload.busy_until < now),
    ]
    if start is not None:
        conditions.append(BlobUpload.size == start)
    result = await session.execute(
        update(BlobUpload)
        .where(*conditions)
        .values(busy_until=lease_until)
        .returning(BlobUpload.size, BlobUpload.state, BlobUpload.repository_id)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return ClaimedUpload(row[0], row[1], row[2]) if row is not None else None


async def release_upload(
    session: AsyncSession,
    upload_id: str,
    *,
    size: int | None = None,
    state: str | None = None,
    keep_claim: bool = False,
) -> None:
    values: dict[str, object] = {"update_time": utcnow()}
    if not keep_claim:
        values["busy_until"] = None
    if size is not None:
        values["size"] = size
    if state is not None:
        values["state"] = state
    await session.execute(update(BlobUpload).where(BlobUpload.id == upload_id).values(**values))


async def delete_upload(session: AsyncSession, upload_id: str) -> None:
    await session.execute(delete(BlobUpload).where(BlobUpload.id == upload_id))


# --- manifests and tags -------------------------------------------------------------


async def find_artifact(session: AsyncSession, repository_id: int, digest: str) -> Artifact | None:
    result = await session.execute(
        select(Artifact).where(Artifact.repository_id == repository_id, Artifact.digest == digest)
    )
    return result.scalar_one_or_none()


# The pull path's lookups are built once, with bound parameters: building a
# statement costs more than running it on an indexed table.
_MANIFEST_BY_TAG = (
    select(Artifact.digest, Artifact.manifest_media_type)
    .join(Tag, Tag.artifact_id == Artifact.id)
    .join(Repository, Repository.repository_id == Tag.repository_id)
    .where(Repository.name == bindparam("repository"), Tag.name == bindparam("tag"))
)
_MANIFEST_BY_DIGEST = (
    select(Artifact.digest, Artifact.manifest_media_type)
    .join(Repository, Repository.repository_id == Artifact.repository_id)
    .where(Repository.name == bindparam("repository"), Artifact.digest == bindparam("digest"))
)
_LINKED_BLOB_SIZE = (
    select(Blob.size)
    .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
    .join(Repository, Repository.repository_id == RepositoryBlob.repository_id)
    .where(Repository.name == bindparam("repository"), Blob.digest == bindparam("digest"))
)


async def find_manifest_by_tag(db: Executor, repository: str, tag: str) -> tuple[str, str] | None:
    """(digest, manifest media type) of the manifest ``tag`` points at."""
    result = await db.execute(_MANIFEST_BY_TAG, {"repository": repository, "tag": tag})
    row = result.first()
    return (row[0], row[1]) if row is not None else None


async def find_manifest_by_digest(
    db: Executor, repository: str, digest: str
) -> tuple[str, str] | None:
    result = await db.execute(_MANIFEST_BY_DIGEST, {"repository": repository, "digest": digest})
    row = result.first()
    return (row[0], row[1]) if row is not None else None


async def find_linked_blob_size(db: Executor, repository: str, digest: str) -> int | None:
    """The blob's size when ``repository`` may read it."""
    result = await db.execute(_LINKED_BLOB_SIZE, {"repository": repository, "digest": digest})
    return result.scalar_one_or_none()


async def artifacts_by_digest(
    session: AsyncSession, repository_id: int, digests: Sequence[str]
) -> dict[str, Artifact]:
    if not digests:
        return {}
    result = await session.execute(
        select(Artifact).where(
            Artifact.repository_id == repository_id, Artifact.digest.in_(digests)
        )
    )
    return {a.digest: a for a in result.scalars()}


async def set_tag(session: AsyncSession, repository_id: int, name: str, artifact_id: int) -> None:
    """Point ``name`` at the artifact, creating the tag or moving it."""
    now = utcnow()
    await session.execute(
        insert_ignore(
            session,
            Tag,
            {
                "repository_id": repository_id,
                "name": name,
                "artifact_id": artifact_id,
                "push_time": now,
            },
            ["repository_id", "name"],
        )
    )
    await session.execute(
        update(Tag)
        .where(Tag.repository_id == repository_id, Tag.name == name)
        .values(artifact_id=artifact_id, push_time=now)
    )


async def delete_tag(session: AsyncSession, repository_id: int, name: str) -> bool:
    result = await session.execute(
        delete(Tag).where(Tag.repository_id == repository_id, Tag.name == name)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def referencing_index(session: AsyncSession, artifact_id: int) -> str | None:
    """The digest of an index that lists this artifact, if any."""
    parent = Artifact.__table__.alias("parent")
    result = await session.execute(
        select(parent.c.digest)
        .join(ArtifactReference, ArtifactReference.parent_id == parent.c.id)
        .where(ArtifactReference.child_id == artifact_id)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def delete_artifact(session: AsyncSession, artifact: Artifact) -> None:
    await session.execute(delete(Tag).where(Tag.artifact_id == artifact.id))
    await session.execute(
        delete(ArtifactReference).where(ArtifactReference.parent_id == artifact.id)
    )
    await session.execute(delete(Artifact).where(Artifact.id == artifact.id))
    still_used = await session.scalar(select(exists().where(Artifact.digest == artifact.digest)))
    if not still_used:
        await session.execute(delete(ArtifactBlob).where(ArtifactBlob.digest_af == artifact.digest))


def _bytewise(session: AsyncSession, column: Any) -> Any:
    """The column compared byte by byte (the spec's lexical order), whatever the collation.

    SQLite's default BINARY collation already is; PostgreSQL's depends on the
    database's locale, so it is asked for "C" explicitly.
    """
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


async def list_tags(
    session: AsyncSession, repository_id: int, limit: int | None, last: str | None
) -> list[str]:
    name = _bytewise(session, Tag.name)
    query = select(Tag.name).where(Tag.repository_id == repository_id).order_by(name)
    if last:
        query = query.where(name > last)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.execute(query)).scalars())


async def list_repositories(
    session: AsyncSession, limit: int | None, last: str | None
) -> list[str]:
    name = _bytewise(session, Repository.name)
    query = (
        select(Repository.name)
        .where(exists().where(Artifact.repository_id == Repository.repository_id))
        .order_by(name)
    )
    if last:
        query = query.where(name > last)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.execute(query)).scalars())


async def referrers(
    session: AsyncSession, repository: str, subject: str, artifact_type: str | None
) -> list[tuple[Artifact, int]]:
    """Artifacts whose subject is ``subject``, with each manifest's own size."""
    query = (
        select(Artifact, Blob.size)
        .join(Repository, Repository.repository_id == Artifact.repository_id)
        .join(Blob, Blob.digest == Artifact.digest)
        .where(Repository.name == repository, Artifact.subject_digest == subject)
        .order_by(Artifact.push_time, Artifact.id)
    )
    if artifact_type is not None:
        query = query.where(Artifact.artifact_type == artifact_type)
    return [(a, size) for a, size in (await session.execute(query)).all()]
