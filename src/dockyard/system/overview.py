"""The console's landing overview: a signed-in user's projects, their recent pushes and the
storage they use; for system administrators also the system's totals (``statistics``).

Few, indexed queries whatever the size of the registry: the projects are one page of the
caller's projects (members' projects; every project for administrators) with their quota
rows; the recent pushes are one ``UNION ALL`` of a newest-first slice per shown project,
each read from ``ix_artifact_project_id_push_time_id``; the storage is one sum over quota
rows (kept incrementally by the quota hooks, never recomputed here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.iam.models import User
from dockyard.iam.policy import Principal
from dockyard.projects.models import Project
from dockyard.projects.repository import repository_counts
from dockyard.quota.models import Quota
from dockyard.registry.models import Artifact, Tag

# The same membership rule as ``statistics`` (users, their groups, robots' grants).
from dockyard.system.service import _member_project_ids

PROJECTS_SHOWN = 8
RECENT_SHOWN = 8


@dataclass(frozen=True, slots=True)
class ProjectLine:
    name: str
    repositories: int
    used: int
    hard: int


@dataclass(frozen=True, slots=True)
class Push:
    project: str
    repository: str
    digest: str
    push_time: datetime
    size: int
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Overview:
    projects: list[ProjectLine]
    project_total: int
    pushes: list[Push]
    storage_used: int
    users: int | None
    """Active users: administrators only."""


def _mine(principal: Principal) -> ColumnElement[bool]:
    live = Project.deleted.is_(False)
    if principal.sysadmin:
        return live
    return live & Project.project_id.in_(_member_project_ids(principal))


async def overview(session: AsyncSession, principal: Principal) -> Overview:
    """What the landing page shows ``principal`` (a signed-in user or an administrator)."""
    mine = _mine(principal)
    quota_join = (Quota.reference == "project") & (
        Quota.reference_id == func.cast(Project.project_id, Quota.reference_id.type)
    )
    rows = (
        await session.execute(
            select(Project.project_id, Project.name, Quota.used_storage, Quota.hard_storage)
            .outerjoin(Quota, quota_join)
            .where(mine)
            .order_by(Project.update_time.desc(), Project.project_id.desc())
            .limit(PROJECTS_SHOWN)
        )
    ).all()
    totals = (
        await session.execute(
            select(func.count(Project.project_id), func.coalesce(func.sum(Quota.used_storage), 0))
            .select_from(Project)
            .outerjoin(Quota, quota_join)
            .where(mine)
        )
    ).one()
    ids = [int(row.project_id) for row in rows]
    counts = await repository_counts(session, ids)
    projects = [
        ProjectLine(
            name=row.name,
            repositories=counts.get(int(row.project_id), 0),
            used=int(row.used_storage or 0),
            hard=int(row.hard_storage if row.hard_storage is not None else -1),
        )
        for row in rows
    ]
    names = {int(row.project_id): str(row.name) for row in rows}
    pushes = await _recent_pushes(session, names)
    users = None
    if principal.sysadmin:
        users = int(
            await session.scalar(
                select(func.count()).select_from(User).where(User.deleted.is_(False))
            )
            or 0
        )
    return Overview(
        projects=projects,
        project_total=int(totals[0]),
        pushes=pushes,
        storage_used=int(totals[1]),
        users=users,
    )


def _newest(project_id: int) -> Select[int, int, str, str, datetime, int]:
    return (
        select(
            Artifact.id,
            Artifact.project_id,
            Artifact.repository_name,
            Artifact.digest,
            Artifact.push_time,
            Artifact.size,
        )
        .where(Artifact.project_id == project_id)
        .order_by(Artifact.push_time.desc(), Artifact.id.desc())
        .limit(RECENT_SHOWN)
    )


async def _recent_pushes(session: AsyncSession, names: dict[int, str]) -> list[Push]:
    if not names:
        return []
    # Each branch is a bounded index scan; SQLite wants them wrapped as subqueries.
    branches = [select(_newest(pid).subquery()) for pid in names]
    combined = union_all(*branches).subquery()
    found = (
        await session.execute(
            select(combined)
            .order_by(combined.c.push_time.desc(), combined.c.id.desc())
            .limit(RECENT_SHOWN)
        )
    ).all()
    tags: dict[int, list[str]] = {}
    if found:
        for artifact_id, name in await session.execute(
            select(Tag.artifact_id, Tag.name)
            .where(Tag.artifact_id.in_([row.id for row in found]))
            .order_by(Tag.push_time.desc())
        ):
            tags.setdefault(int(artifact_id), []).append(str(name))
    return [
        Push(
            project=names[int(row.project_id)],
            repository=str(row.repository_name),
            digest=str(row.digest),
            push_time=row.push_time,
            size=int(row.size),
            tags=tuple(tags.get(int(row.id), [])[:3]),
        )
        for row in found
    ]
