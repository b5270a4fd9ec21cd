"""Queries of the ``quota`` table and of the blob links its numbers are counted over.

A project's usage is the total size of the blobs its ``project_blob`` rows name
(each blob once per project). The stored ``used_storage`` is kept in step
incrementally; ``usages`` recomputes it from the links for ``dockyard quota
recompute``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Select, String, case, delete, exists, func, literal, select, true, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import dialect_insert, insert_ignore
from dockyard.iam.models import User
from dockyard.projects.models import Project
from dockyard.quota.models import Quota
from dockyard.registry.models import Artifact, ArtifactBlob, Blob, ProjectBlob

PROJECT_REFERENCE = "project"
UNLIMITED = -1


def reference_id(project_id: int) -> str:
    return str(project_id)


def _of_project(project_id: int) -> Any:
    return (Quota.reference == PROJECT_REFERENCE) & (Quota.reference_id == reference_id(project_id))


# --- one project's row ---------------------------------------------------------------------


async def find_quota(
    session: AsyncSession, project_id: int, *, for_update: bool = False
) -> Quota | None:
    """The project's quota row; ``for_update`` locks it (PostgreSQL) until the transaction ends."""
    # populate_existing: the conditional updates bypass the session's copy of the row.
    stmt = select(Quota).where(_of_project(project_id)).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_quota_by_id(session: AsyncSession, quota_id: int) -> Quota | None:
    return await session.get(Quota, quota_id)


async def insert_quota(
    session: AsyncSession, project_id: int, hard: int, *, excluding: Collection[int] = ()
) -> None:
    """Create the project's row unless it exists (a concurrent creator wins quietly).

    Its usage starts as what the project's links already hold, leaving out the
    blobs ``excluding`` names (those being charged in this very transaction)."""
    used = await usage_of(session, project_id, excluding=excluding)
    now = utcnow()
    values = {
        "reference": PROJECT_REFERENCE,
        "reference_id": reference_id(project_id),
        "hard_storage": hard,
        "used_storage": used,
        "creation_time": now,
        "update_time": now,
    }
    await session.execute(insert_ignore(session, Quota, values, ["reference", "reference_id"]))


async def charge(
    session: AsyncSession, project_id: int, size: int, *, enforce: bool = True
) -> bool:
    """Add ``size`` bytes to the project's usage if the limit allows it, atomically.

    One conditional ``UPDATE``: on PostgreSQL a concurrent charger waits for the
    row and re-checks the condition on its new value, and SQLite runs one writer
    at a time, so two charges can never both pass a limit only one fits under.
    False when the limit refuses (nothing changed). ``enforce=False`` counts
    whatever the limit (limits switched off)."""
    room = (Quota.hard_storage == UNLIMITED) | (Quota.used_storage + size <= Quota.hard_storage)
    result = await session.execute(
        update(Quota)
        .where(_of_project(project_id), room if enforce else true())
        .values(used_storage=Quota.used_storage + size, update_time=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def refund(session: AsyncSession, project_id: int, size: int) -> None:
    """Take ``size`` bytes off the project's usage (never below zero)."""
    remaining = Quota.used_storage - size
    await session.execute(
        update(Quota)
        .where(_of_project(project_id))
        .values(used_storage=case((remaining < 0, 0), else_=remaining), update_time=utcnow())
        .execution_options(synchronize_session=False)
    )


async def set_usage(session: AsyncSession, quota_id: int, used: int) -> None:
    await session.execute(
        update(Quota)
        .where(Quota.id == quota_id)
        .values(used_storage=used, update_time=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- the links usage is counted over -----------------------------------------------------


async def usage_of(
    session: AsyncSession, project_id: int, *, excluding: Collection[int] = ()
) -> int:
    """The size of the unique blobs the project's links name, recomputed."""
    stmt = (
        select(func.coalesce(func.sum(Blob.size), 0))
        .select_from(ProjectBlob)
        .join(Blob, Blob.id == ProjectBlob.blob_id)
        .where(ProjectBlob.project_id == project_id)
    )
    if excluding:
        stmt = stmt.where(ProjectBlob.blob_id.not_in(list(excluding)))
    return int(await session.scalar(stmt) or 0)


async def blobs_of_manifest(session: AsyncSession, digest: str) -> dict[int, int]:
    """{blob id: size} of every blob the manifest needs, its own bytes included."""
    rows = await session.execute(
        select(Blob.id, Blob.size)
        .join(ArtifactBlob, ArtifactBlob.digest_blob == Blob.digest)
        .where(ArtifactBlob.digest_af == digest)
    )
    return dict(rows.all())


async def link_manifest_blobs(
    session: AsyncSession, project_id: int, digest: str
) -> list[tuple[int, int]]:
    """Link to the project the blobs the manifest needs that it does not hold (any more);
    returns (blob id, size) of each link made.

    A repository keeps reading a layer after the last artifact of the project that
    needed it went (and the project stopped counting it), so a manifest may name it
    again without uploading it again."""
    # One INSERT … SELECT: a push names blobs its project holds already (their uploads
    # linked them), so the sizes are read only for the rare links this makes.
    needed = (
        select(literal(project_id), Blob.id, literal(utcnow(), ProjectBlob.creation_time.type))
        .join(ArtifactBlob, ArtifactBlob.digest_blob == Blob.digest)
        .where(ArtifactBlob.digest_af == digest)
        .order_by(Blob.id)  # rows locked in id order (PostgreSQL), as everywhere
    )
    statement = (
        dialect_insert(session, ProjectBlob)
        .from_select(["project_id", "blob_id", "creation_time"], needed)
        .on_conflict_do_nothing(index_elements=["project_id", "blob_id"])
        .returning(ProjectBlob.blob_id)
    )
    linked = sorted((await session.execute(statement)).scalars())
    if not linked:
        return []
    sizes = dict(
        (await session.execute(select(Blob.id, Blob.size).where(Blob.id.in_(linked)))).all()
    )
    return [(blob_id, int(sizes[blob_id])) for blob_id in linked]


async def blobs_still_needed(
    session: AsyncSession, project_id: int, blob_ids: Collection[int]
) -> set[int]:
    """Those of ``blob_ids`` some artifact of the project still needs."""
    if not blob_ids:
        return set()
    needing = exists().where(
        Artifact.project_id == project_id, Artifact.digest == ArtifactBlob.digest_af
    )
    rows = await session.execute(
        select(Blob.id)
        .join(ArtifactBlob, ArtifactBlob.digest_blob == Blob.digest)
        .where(Blob.id.in_(list(blob_ids)), needing)
        .distinct()
    )
    return set(rows.scalars())


async def unlink_project_blobs(
    session: AsyncSession, project_id: int, blob_ids: Collection[int]
) -> set[int]:
    """Drop the project's links to ``blob_ids``; returns the ids that were linked."""
    if not blob_ids:
        return set()
    rows = await session.execute(
        delete(ProjectBlob)
        .where(ProjectBlob.project_id == project_id, ProjectBlob.blob_id.in_(list(blob_ids)))
        .returning(ProjectBlob.blob_id)
        .execution_options(synchronize_session=False)
    )
    return set(rows.scalars())


# --- listing and recomputing --------------------------------------------------------------

_PROJECT_JOIN = (Quota.reference == PROJECT_REFERENCE) & (
    Quota.reference_id == sql_cast(Project.project_id, String)
)


def quota_listing() -> Select[Any]:
    """(Quota, project id, project name, owner name) of every live project's quota."""
    return cast(
        "Select[Any]",
        select(Quota, Project.project_id, Project.name, User.username)
        .join(Project, _PROJECT_JOIN)
        .join(User, User.user_id == Project.owner_id, isouter=True)
        .where(Project.deleted.is_(False)),
    )


async def quota_with_ref(
    session: AsyncSession, quota_id: int
) -> tuple[Quota, int, str, str | None] | None:
    row = (await session.execute(quota_listing().where(Quota.id == quota_id))).first()
    return None if row is None else as_quota_row(row)


def as_quota_row(row: Any) -> tuple[Quota, int, str, str | None]:
    """A row of ``quota_listing`` as (quota, project id, project name, owner name)."""
    return cast(tuple[Quota, int, str, str | None], tuple(row))


async def projects_without_quota(session: AsyncSession) -> list[int]:
    """Live projects that have no quota row yet (created before quotas existed)."""
    has_row = exists().where(_PROJECT_JOIN)
    rows = await session.execute(
        select(Project.project_id)
        .where(Project.deleted.is_(False), ~has_row)
        .order_by(Project.project_id)
    )
    return list(rows.scalars())


async def live_projects(
    session: AsyncSession, names: Sequence[str] | None = None
) -> list[tuple[int, str]]:
    """(id, name) of live projects, by id; only those named when ``names`` is given."""
    stmt = select(Project.project_id, Project.name).where(Project.deleted.is_(False))
    if names is not None:
        stmt = stmt.where(Project.name.in_(list(names)))
    rows = await session.execute(stmt.order_by(Project.project_id))
    return [(project_id, name) for project_id, name in rows]


async def stored_and_recomputed(
    session: AsyncSession, project_ids: Sequence[int]
) -> dict[int, tuple[int | None, int]]:
    """{project id: (stored usage or None without a row, recomputed usage)}, read in one
    statement so both numbers come from the same snapshot."""
    if not project_ids:
        return {}
    recomputed = (
        select(
            ProjectBlob.project_id.label("project_id"),
            func.sum(Blob.size).label("used"),
        )
        .join(Blob, Blob.id == ProjectBlob.blob_id)
        .where(ProjectBlob.project_id.in_(list(project_ids)))
        .group_by(ProjectBlob.project_id)
        .subquery()
    )
    rows = await session.execute(
        select(Project.project_id, Quota.used_storage, func.coalesce(recomputed.c.used, 0))
        .select_from(Project)
        .join(Quota, _PROJECT_JOIN, isouter=True)
        .join(recomputed, recomputed.c.project_id == Project.project_id, isouter=True)
        .where(Project.project_id.in_(list(project_ids)))
    )
    return {pid: (stored, int(used)) for pid, stored, used in rows}
