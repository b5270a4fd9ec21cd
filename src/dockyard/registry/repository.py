"""Queries of the registry tables, named for what they answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    bindparam,
    delete,
    exists,
    literal,
    literal_column,
    select,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dockyard.db.base import Base, utcnow
from dockyard.db.engine import insert_ignore
from dockyard.projects.models import Project, ProjectMetadata
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
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


@dataclass(frozen=True, slots=True)
class RepositoryRef:
    """What the write paths need to know of a repository."""

    repository_id: int
    project_id: int
    name: str


async def find_repository_ref(db: Executor, name: str) -> RepositoryRef | None:
    row = (await db.execute(_REPOSITORY_REF, {"repository": name})).first()
    return RepositoryRef(row[0], row[1], name) if row is not None else None


async def ensure_repository(
    session: AsyncSession, name: str, project_id: int, *, looked: bool = False
) -> RepositoryRef:
    """The repository row, created on first use (safe against a concurrent creator);
    ``looked``: the caller found no row already, so the first lookup is skipped."""
    found = None if looked else await find_repository_ref(session, name)
    if found is not None:
        return found
    await create_repository(session, name, project_id)
    created = await find_repository_ref(session, name)
    assert created is not None
    return created


async def create_repository(session: AsyncSession, name: str, project_id: int) -> None:
    """Insert the repository row unless it exists (safe against a concurrent creator)."""
    await session.execute(
        insert_ignore(session, Repository, {"name": name, "project_id": project_id}, ["name"])
    )


async def find_linked_blob(session: AsyncSession, repository: str, digest: str) -> Blob | None:
    """The blob when ``repository`` may read it."""
    result = await session.execute(
        select(Blob)
        .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
        .join(Repository, Repository.repository_id == RepositoryBlob.repository_id)
        .where(Repository.name == repository, Blob.digest == digest)
    )
    return result.scalar_one_or_none()


async def linked_blob_sizes(
    session: AsyncSession, repository_id: int, digests: Sequence[str]
) -> dict[str, int]:
    """Stored size by digest of the ``digests`` the repository may read."""
    if not digests:
        return {}
    result = await session.execute(
        _LINKED_DIGESTS, {"repository_id": repository_id, "digests": list(digests)}
    )
    return {str(digest): int(size) for digest, size in result.all()}


async def linked_blob_sizes_by_name(
    db: Executor, repository: str, digests: Sequence[str]
) -> dict[str, int]:
    """``linked_blob_sizes`` of the repository called ``repository`` (empty when it does
    not exist), in one statement."""
    if not digests:
        return {}
    result = await db.execute(
        _LINKED_DIGESTS_BY_NAME, {"repository": repository, "digests": list(digests)}
    )
    return {str(digest): int(size) for digest, size in result.all()}


async def blob_sizes(session: AsyncSession, digests: Sequence[str]) -> dict[str, int]:
    """Stored size by digest of the blobs (manifests included) among ``digests``."""
    if not digests:
        return {}
    result = await session.execute(_BLOB_SIZES, {"digests": list(digests)})
    return {str(digest): int(size) for digest, size in result.all()}


class BlobBeingDeletedError(Exception):
    """Garbage collection is deleting this blob's bytes; it cannot be linked now."""


# Garbage collection's blob states (Harbor's): ``none`` (live), ``delete`` (marked as a
# candidate; any link or touch rescues it), ``deleting`` (claimed: its bytes are going).
BLOB_LIVE = "none"
BLOB_MARKED = "delete"
BLOB_DELETING = "deleting"


async def ensure_blob(session: AsyncSession, digest: str, size: int, content_type: str) -> int:
    """The blob's id: the row is inserted on its first copy, touched on later ones.

    Touching is garbage collection's compare-and-set: it resets a ``delete`` mark and
    moves ``update_time`` past any running collection's cut-off, so the collector's
    conditional claim of the row fails. A row the collector already claimed
    (``deleting``) is not touched and ``BlobBeingDeletedError`` is raised."""
    statement = _upload_statements(session).upsert_blob
    params = {
        "v_digest": digest,
        "v_size": size,
        "v_content_type": content_type,
        "v_now": utcnow(),
    }
    blob_id: int | None = (await session.execute(statement, params)).scalar_one_or_none()
    if blob_id is None:
        raise BlobBeingDeletedError(digest)
    return blob_id


async def hold_blob(session: AsyncSession, digest: str, size: int, content_type: str) -> bool:
    """``ensure_blob`` for a push about to rely on the blob's bytes: the row is inserted or
    touched; ``False`` (nothing changed) while garbage collection is deleting the blob."""
    try:
        await ensure_blob(session, digest, size, content_type)
    except BlobBeingDeletedError:
        return False
    return True


async def touch_blobs(session: AsyncSession, digests: Sequence[str]) -> set[str]:
    """Rescue blobs from garbage collection: the ones not being deleted are marked live
    and touched (so no running collection may claim them); returns their digests."""
    if not digests:
        return set()
    result = await session.execute(_TOUCH_BLOBS, {"digests": sorted(set(digests)), "now": utcnow()})
    return set(result.scalars())


async def touch_linked_blobs(
    session: AsyncSession, repository_id: int, digests: Sequence[str]
) -> dict[str, int]:
    """``touch_blobs`` of the ``digests`` the repository may read, in one statement;
    returns the stored size by digest of those touched (a manifest push's check and GC
    rescue at once: a digest missing from the answer is unlinked or being deleted)."""
    if not digests:
        return {}
    result = await session.execute(
        _TOUCH_LINKED_BLOBS,
        {"repository_id": repository_id, "digests": sorted(set(digests)), "now": utcnow()},
    )
    return {str(digest): int(size) for digest, size in result.all()}


async def link_blob(
    session: AsyncSession, repository_id: int, project_id: int, blob_id: int
) -> bool:
    """Let the repository read the blob, and count it in its project.

    True when the blob is new to the project (quotas charge it then)."""
    statements = _upload_statements(session)
    now = utcnow()
    await session.execute(
        statements.link_repository_blob,
        {"v_repository_id": repository_id, "v_blob_id": blob_id, "v_now": now},
    )
    result = await session.execute(
        statements.link_project_blob,
        {"v_project_id": project_id, "v_blob_id": blob_id, "v_now": now},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def tag_target(
    session: AsyncSession, repository_id: int, name: str
) -> tuple[int, str] | None:
    """(artifact id, digest) the tag points at, or None."""
    result = await session.execute(
        select(Artifact.id, Artifact.digest)
        .join(Tag, Tag.artifact_id == Artifact.id)
        .where(Tag.repository_id == repository_id, Tag.name == name)
    )
    row = result.first()
    return (row[0], row[1]) if row is not None else None


async def tags_of_artifact(session: AsyncSession, artifact_id: int) -> tuple[str, ...]:
    result = await session.execute(
        select(Tag.name).where(Tag.artifact_id == artifact_id).order_by(Tag.name)
    )
    return tuple(result.scalars())


async def link_artifact_blobs(session: AsyncSession, manifest: str, blobs: set[str]) -> None:
    """Record which blobs a manifest needs (shared by every repository holding it)."""
    now = utcnow()
    await session.execute(
        _upload_statements(session).link_artifact_blob,
        [{"v_manifest": manifest, "v_blob": b, "v_now": now} for b in sorted(blobs)],
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
    project_id: int


async def claim_upload(
    session: AsyncSession,
    upload_id: str,
    repository: str,
    start: int | None,
    lease_until: datetime,
    holder: str,
    *,
    take_from: str | None = None,
) -> ClaimedUpload | None:
    """Take the upload for ``holder`` (a process, ``registry/claims.py``), in one statement.

    None when it is unknown (in that repository), held by another writer, or
    (with ``start``) not ``start`` bytes long. With ``take_from``, a claim still
    held by that (dead) holder is taken over; compare-and-set, so of two
    requests taking over the same claim one wins.
    """
    params = {
        "upload_id": upload_id,
        "repository": repository,
        "now": utcnow(),
        "lease": lease_until,
        "holder": holder,
        # A holder id never matches "": without take_from only free claims are taken.
        "take_from": take_from or "",
    }
    if start is None:
        result = await session.execute(_CLAIM_UPLOAD, params)
    else:
        result = await session.execute(_CLAIM_UPLOAD_AT, {**params, "expected_size": start})
    row = result.first()
    return ClaimedUpload(row[0], row[1], row[2], row[3]) if row is not None else None


async def release_upload(
    session: AsyncSession,
    upload_id: str,
    *,
    size: int | None = None,
    state: str | None = None,
    keep_claim: bool = False,
) -> None:
    """Record the upload's new size and state; give up the claim unless ``keep_claim``."""
    now = utcnow()
    if size is None or state is None:
        await session.execute(_RELEASE_UPLOAD, {"upload_id": upload_id, "now": now})
        return
    statement = _GROW_UPLOAD if keep_claim else _GROW_AND_RELEASE_UPLOAD
    await session.execute(
        statement, {"upload_id": upload_id, "now": now, "new_size": size, "new_state": state}
    )


@dataclass(frozen=True, slots=True)
class UploadStart:
    """What a chunk needs to know before it is written: whether it may be the first."""

    size: int
    state: str
    free: bool
    """No live claim: no request is writing to it now."""


async def upload_start(
    conn: AsyncConnection, upload_id: str, repository: str, now: datetime
) -> UploadStart | None:
    """The upload (in that repository) as a chunk finds it, in one autocommit read."""
    row = (
        await conn.execute(_UPLOAD_START, {"upload_id": upload_id, "repository": repository})
    ).first()
    if row is None:
        return None
    busy_until = row[2]
    if busy_until is not None and busy_until.tzinfo is None:
        busy_until = busy_until.replace(tzinfo=now.tzinfo)
    return UploadStart(int(row[0]), str(row[1]), busy_until is None or busy_until < now)


async def record_first_chunk(
    session: AsyncSession, upload_id: str, repository: str, size: int, state: str
) -> bool:
    """Make the object a request wrote on its own (``state``, ``size`` bytes) the upload's
    first chunk, in one statement: only while the upload is still empty and no request
    holds its claim (compare-and-set, so of two first chunks one wins). False when
    another got there first, the upload went, or a claim is held."""
    now = utcnow()
    result = await session.execute(
        _RECORD_FIRST_CHUNK,
        {
            "upload_id": upload_id,
            "repository": repository,
            "now": now,
            "take_from": "",
            "new_size": size,
            "new_state": state,
        },
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish_upload(
    session: AsyncSession, upload_id: str, repository: str, size: int
) -> tuple[int, int] | None:
    """Delete the upload row, in one statement, only if it is still ``size`` bytes long and
    no request holds its claim (compare-and-set: nothing was appended since its bytes
    were read); returns its (repository id, project id), None when it changed or went."""
    result = await session.execute(
        _FINISH_UPLOAD,
        {
            "upload_id": upload_id,
            "repository": repository,
            "now": utcnow(),
            "take_from": "",
            "size": size,
        },
    )
    row = result.first()
    return (int(row[0]), int(row[1])) if row is not None else None


async def insert_upload_by_name(
    session: AsyncSession, upload_id: str, repository: str, state: str
) -> bool:
    """Insert the upload row (empty) for the repository called ``repository``, in one
    statement; False (nothing inserted) when no such repository exists yet."""
    result = await session.execute(
        _INSERT_UPLOAD_BY_NAME,
        {"v_id": upload_id, "repository": repository, "v_state": state, "v_now": utcnow()},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_claimed_upload(session: AsyncSession, upload_id: str) -> bool:
    """Delete the upload row; False when it is gone already (cancelled, or its
    repository deleted, which takes its uploads with it)."""
    result = await session.execute(_DELETE_UPLOAD, {"upload_id": upload_id})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_upload(session: AsyncSession, upload_id: str) -> None:
    await session.execute(_DELETE_UPLOAD, {"upload_id": upload_id})


# The upload path's statements, built once: building a statement costs more
# than running it, several times per pushed blob.
_UPLOADS = cast(Table, BlobUpload.__table__)
_REPOSITORIES = cast(Table, Repository.__table__)
_REPOSITORY_ID_BY_NAME = (
    select(_REPOSITORIES.c.repository_id)
    .where(_REPOSITORIES.c.name == bindparam("repository"))
    .scalar_subquery()
)
_CLAIMABLE = (
    _UPLOADS.c.id == bindparam("upload_id"),
    _UPLOADS.c.repository_id == _REPOSITORY_ID_BY_NAME,
    _UPLOADS.c.busy_until.is_(None)
    | (_UPLOADS.c.busy_until < bindparam("now"))
    | (_UPLOADS.c.holder == bindparam("take_from")),
)
# What a claim returns: the upload's size and state, its repository and project (so the
# request that completes it needs no lookup of its own). The GC status of the blob an
# upload becomes is read when it completes, not here: it may change in between.
_CLAIMED = (
    _UPLOADS.c.size,
    _UPLOADS.c.state,
    _UPLOADS.c.repository_id,
    # Spelt out: SQLite's RETURNING drops table names, and a bare ``repository_id``
    # inside the subquery would name the repository's own column.
    select(_REPOSITORIES.c.project_id)
    .where(_REPOSITORIES.c.repository_id == literal_column("blob_upload.repository_id"))
    .scalar_subquery(),
)
_CLAIM_UPLOAD = (
    update(_UPLOADS)
    .where(*_CLAIMABLE)
    .values(busy_until=bindparam("lease"), holder=bindparam("holder"))
    .returning(*_CLAIMED)
)
_CLAIM_UPLOAD_AT = (
    update(_UPLOADS)
    .where(*_CLAIMABLE, _UPLOADS.c.size == bindparam("expected_size"))
    .values(busy_until=bindparam("lease"), holder=bindparam("holder"))
    .returning(*_CLAIMED)
)
_RELEASE_UPLOAD = (
    update(_UPLOADS)
    .where(_UPLOADS.c.id == bindparam("upload_id"))
    .values(busy_until=None, holder=None, update_time=bindparam("now"))
)
_GROW_UPLOAD = (
    update(_UPLOADS)
    .where(_UPLOADS.c.id == bindparam("upload_id"))
    .values(size=bindparam("new_size"), state=bindparam("new_state"), update_time=bindparam("now"))
)
_GROW_AND_RELEASE_UPLOAD = _GROW_UPLOAD.values(busy_until=None, holder=None)
_UPLOAD_START = select(_UPLOADS.c.size, _UPLOADS.c.state, _UPLOADS.c.busy_until).where(
    _UPLOADS.c.id == bindparam("upload_id"),
    _UPLOADS.c.repository_id == _REPOSITORY_ID_BY_NAME,
)
_RECORD_FIRST_CHUNK = (
    update(_UPLOADS)
    .where(*_CLAIMABLE, _UPLOADS.c.size == 0)
    .values(
        size=bindparam("new_size"),
        state=bindparam("new_state"),
        update_time=bindparam("now"),
        busy_until=None,
        holder=None,
    )
)
_FINISH_UPLOAD = (
    delete(_UPLOADS)
    .where(*_CLAIMABLE, _UPLOADS.c.size == bindparam("size"))
    .returning(*_CLAIMED[2:])
)
_DELETE_UPLOAD = delete(_UPLOADS).where(_UPLOADS.c.id == bindparam("upload_id"))
_REPOSITORY_REF = select(_REPOSITORIES.c.repository_id, _REPOSITORIES.c.project_id).where(
    _REPOSITORIES.c.name == bindparam("repository")
)
_INSERT_UPLOAD_BY_NAME = _UPLOADS.insert().from_select(
    ["id", "repository_id", "size", "state", "creation_time", "update_time"],
    select(
        bindparam("v_id"),
        _REPOSITORIES.c.repository_id,
        literal(0),
        bindparam("v_state"),
        bindparam("v_now"),
        bindparam("v_now"),
    ).where(_REPOSITORIES.c.name == bindparam("repository")),
)
_PROJECT_CREATED = select(Project.creation_time).where(
    Project.name == bindparam("project"), Project.deleted.is_(False)
)


_BLOB_SIZES = select(Blob.digest, Blob.size).where(
    Blob.digest.in_(bindparam("digests", expanding=True))
)
_LINKED_DIGESTS = (
    select(Blob.digest, Blob.size)
    .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
    .where(
        RepositoryBlob.repository_id == bindparam("repository_id"),
        Blob.digest.in_(bindparam("digests", expanding=True)),
    )
)
_LINKED_DIGESTS_BY_NAME = (
    select(Blob.digest, Blob.size)
    .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
    .where(
        RepositoryBlob.repository_id == _REPOSITORY_ID_BY_NAME,
        Blob.digest.in_(bindparam("digests", expanding=True)),
    )
)
_TOUCH_BLOBS = (
    update(Blob)
    .where(
        # Rows are locked in id order (PostgreSQL), so concurrent pushes naming the same
        # layers, and garbage collection's batches, never deadlock one another.
        Blob.id.in_(
            select(Blob.id)
            .where(
                Blob.digest.in_(bindparam("digests", expanding=True)),
                Blob.status != BLOB_DELETING,
            )
            .order_by(Blob.id)
            .with_for_update()
        ),
        Blob.status != BLOB_DELETING,
    )
    .values(status=BLOB_LIVE, version=Blob.version + 1, update_time=bindparam("now"))
    .returning(Blob.digest)
    .execution_options(synchronize_session=False)
)
_TOUCH_LINKED_BLOBS = (
    update(Blob)
    .where(
        Blob.id.in_(
            select(Blob.id)
            .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
            .where(
                RepositoryBlob.repository_id == bindparam("repository_id"),
                Blob.digest.in_(bindparam("digests", expanding=True)),
                Blob.status != BLOB_DELETING,
            )
            .order_by(Blob.id)  # the lock order of _TOUCH_BLOBS
            .with_for_update(of=Blob)
        ),
        Blob.status != BLOB_DELETING,
    )
    .values(status=BLOB_LIVE, version=Blob.version + 1, update_time=bindparam("now"))
    .returning(Blob.digest, Blob.size)
    .execution_options(synchronize_session=False)
)
_ARTIFACTS_BY_DIGEST = select(Artifact).where(
    Artifact.repository_id == bindparam("repository_id"),
    Artifact.digest.in_(bindparam("digests", expanding=True)),
)


@dataclass(frozen=True)
class _DialectStatements:
    upsert_blob: Any
    link_repository_blob: Any
    link_project_blob: Any
    link_artifact_blob: Any
    upsert_tag: Any


def _build_upload_statements(dialect: str) -> _DialectStatements:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    blobs = cast(Table, Blob.__table__)
    upsert_blob = (
        insert(blobs)
        .values(
            digest=bindparam("v_digest"),
            size=bindparam("v_size"),
            content_type=bindparam("v_content_type"),
            creation_time=bindparam("v_now"),
            update_time=bindparam("v_now"),
            status="none",
            version=0,
        )
        .on_conflict_do_update(
            index_elements=["digest"],
            # GC's rescue (see ensure_blob): live again and touched, unless being deleted.
            set_={
                "update_time": bindparam("v_now"),
                "status": BLOB_LIVE,
                "version": blobs.c.version + 1,
            },
            where=blobs.c.status != BLOB_DELETING,
        )
        .returning(blobs.c.id)
    )

    def link(model: type[Base], left: str, right: str, left_param: str, right_param: str) -> Any:
        """An insert-if-absent of one (left, right) link row."""
        return (
            insert(cast(Table, model.__table__))
            .values(
                {
                    left: bindparam(left_param),
                    right: bindparam(right_param),
                    "creation_time": bindparam("v_now"),
                }
            )
            .on_conflict_do_nothing(index_elements=[left, right])
        )

    link_repository_blob = link(
        RepositoryBlob, "repository_id", "blob_id", "v_repository_id", "v_blob_id"
    )
    link_project_blob = link(ProjectBlob, "project_id", "blob_id", "v_project_id", "v_blob_id")
    link_artifact_blob = link(ArtifactBlob, "digest_af", "digest_blob", "v_manifest", "v_blob")
    tags = cast(Table, Tag.__table__)
    upsert_tag = (
        insert(tags)
        .values(
            repository_id=bindparam("v_repository_id"),
            name=bindparam("v_name"),
            artifact_id=bindparam("v_artifact_id"),
            push_time=bindparam("v_now"),
        )
        .on_conflict_do_update(
            index_elements=["repository_id", "name"],
            set_={"artifact_id": bindparam("v_artifact_id"), "push_time": bindparam("v_now")},
        )
    )
    return _DialectStatements(
        upsert_blob, link_repository_blob, link_project_blob, link_artifact_blob, upsert_tag
    )


_DIALECT_STATEMENTS = {name: _build_upload_statements(name) for name in ("sqlite", "postgresql")}


def _upload_statements(session: AsyncSession) -> _DialectStatements:
    return _DIALECT_STATEMENTS[session.get_bind().dialect.name]


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
    select(Blob.size, Blob.status, Blob.update_time)
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


@dataclass(frozen=True, slots=True)
class ManifestPullLookups:
    """The manifest lookups of a client's pull: by tag and by digest, each also saying,
    per pull policy, whether one of its switches is on in the artifact's project."""

    by_tag: Select[Any]
    by_digest: Select[Any]


def manifest_pull_lookups(switches: Sequence[Sequence[str]]) -> ManifestPullLookups:
    """Built once per service from the policies' switches (``registry/pull_policy.py``):
    one ``EXISTS`` on ``project_metadata``'s unique (project, name) key per policy, in the
    lookup's own statement, so the switches cost no statement and are never stale."""
    on = [
        exists().where(
            ProjectMetadata.project_id == Artifact.project_id,
            ProjectMetadata.name.in_(tuple(names)),
            ProjectMetadata.value == "true",
        )
        for names in switches
    ]
    return ManifestPullLookups(
        _MANIFEST_BY_TAG.add_columns(*on), _MANIFEST_BY_DIGEST.add_columns(*on)
    )


async def find_manifest_for_pull(
    db: Executor, lookups: ManifestPullLookups, repository: str, reference: str, *, digest: bool
) -> tuple[str, str, tuple[bool, ...]] | None:
    """(digest, manifest media type, per policy whether it is on) of the manifest
    ``reference`` (a digest when ``digest``, else a tag) names."""
    if digest:
        query, params = lookups.by_digest, {"repository": repository, "digest": reference}
    else:
        query, params = lookups.by_tag, {"repository": repository, "tag": reference}
    row = (await db.execute(query, params)).first()
    if row is None:
        return None
    return row[0], row[1], tuple(bool(value) for value in row[2:])


async def project_creation_time(db: Executor, project: str) -> datetime | None:
    """When the live project called ``project`` was created (None: no such project)."""
    result = await db.execute(_PROJECT_CREATED, {"project": project})
    created: datetime | None = result.scalar_one_or_none()
    return created


async def find_linked_blob_size(
    db: Executor, repository: str, digest: str
) -> tuple[int, str, datetime] | None:
    """(size, GC status, last touch) of the blob when ``repository`` may read it."""
    result = await db.execute(_LINKED_BLOB_SIZE, {"repository": repository, "digest": digest})
    row = result.first()
    return (row[0], row[1], row[2]) if row is not None else None


async def artifacts_by_digest(
    session: AsyncSession, repository_id: int, digests: Sequence[str]
) -> dict[str, Artifact]:
    if not digests:
        return {}
    result = await session.execute(
        _ARTIFACTS_BY_DIGEST, {"repository_id": repository_id, "digests": list(digests)}
    )
    return {a.digest: a for a in result.scalars()}


async def set_tag(session: AsyncSession, repository_id: int, name: str, artifact_id: int) -> None:
    """Point ``name`` at the artifact, creating the tag or moving it."""
    await session.execute(
        _upload_statements(session).upsert_tag,
        {
            "v_repository_id": repository_id,
            "v_name": name,
            "v_artifact_id": artifact_id,
            "v_now": utcnow(),
        },
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


_COSIGN_SUFFIXES = ("sig", "att", "sbom")


def cosign_tags(digest: str) -> frozenset[str]:
    """The tags cosign gives the signature, attestation and SBOM of ``digest``."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm != "sha256":
        return frozenset()
    return frozenset(f"sha256-{encoded}.{suffix}" for suffix in _COSIGN_SUFFIXES)


async def accessory_artifacts(session: AsyncSession, artifact: Artifact) -> list[Artifact]:
    """Artifacts that are accessories of ``artifact`` in its repository: recorded as such,
    pointing at it as their ``subject``, or tagged as its cosign signature/attestation/SBOM."""
    ids = [
        select(ArtifactAccessory.artifact_id).where(
            ArtifactAccessory.subject_artifact_id == artifact.id
        )
    ]
    ids.append(
        select(Artifact.id).where(
            Artifact.repository_id == artifact.repository_id,
            Artifact.subject_digest == artifact.digest,
        )
    )
    names = cosign_tags(artifact.digest)
    if names:
        ids.append(
            select(Tag.artifact_id).where(
                Tag.repository_id == artifact.repository_id, Tag.name.in_(sorted(names))
            )
        )
    query = (
        select(Artifact)
        .where(Artifact.id.in_(union(*ids).scalar_subquery()), Artifact.id != artifact.id)
        .order_by(Artifact.id)
    )
    return list((await session.execute(query)).scalars())


async def children_of(session: AsyncSession, artifact: Artifact) -> list[ArtifactReference]:
    """The references an index holds to its children, in the index's order."""
    query = (
        select(ArtifactReference)
        .where(ArtifactReference.parent_id == artifact.id)
        .order_by(ArtifactReference.id)
    )
    return list((await session.execute(query)).scalars())


async def adopt_referrers(
    session: AsyncSession, repository_id: int, artifact_id: int, digest: str
) -> None:
    """Point the accessory rows of referrers pushed before their subject ``digest`` at it
    (found through ``artifact(repository_id, subject_digest)``)."""
    referrers = select(Artifact.id).where(
        Artifact.repository_id == repository_id, Artifact.subject_digest == digest
    )
    await session.execute(
        update(ArtifactAccessory)
        .where(
            ArtifactAccessory.artifact_id.in_(referrers),
            ArtifactAccessory.subject_artifact_digest == digest,
            ArtifactAccessory.subject_artifact_id.is_(None),
        )
        .values(subject_artifact_id=artifact_id)
    )


async def tagged(
    session: AsyncSession, repository_id: int, names: Sequence[str]
) -> list[tuple[str, Artifact]]:
    """(tag, artifact) for each of the tags ``names`` present in the repository."""
    result = await session.execute(
        select(Tag.name, Artifact)
        .join(Artifact, Artifact.id == Tag.artifact_id)
        .where(Tag.repository_id == repository_id, Tag.name.in_(list(names)))
    )
    return [(name, artifact) for name, artifact in result.all()]


async def add_accessory(session: AsyncSession, **values: Any) -> None:
    """Record an accessory row unless the same (artifact, subject digest) pair exists."""
    values.setdefault("creation_time", utcnow())
    await session.execute(
        insert_ignore(
            session, ArtifactAccessory, values, ["artifact_id", "subject_artifact_digest"]
        )
    )


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


async def blob_status(db: Executor, digest: str) -> str | None:
    """The blob row's GC status (``none``, ``delete``, ``deleting``), ``None`` without a row."""
    status: str | None = await db.scalar(select(Blob.status).where(Blob.digest == digest))
    return status
