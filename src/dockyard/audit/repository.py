"""Queries of the audit log and the pull bookkeeping; no access decisions here."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit.models import AuditLog
from dockyard.db.listing import Condition, PageRequest, apply_q, fetch_page, parse_sort
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import Project
from dockyard.registry.models import Artifact, Repository, Tag
from dockyard.system.models import Property

Q_COLUMNS: dict[str, ColumnElement[Any]] = {
    "operation": AuditLog.operation.expression,
    "resource_type": AuditLog.resource_type.expression,
    "resource": AuditLog.resource.expression,
    "username": AuditLog.username.expression,
    "op_time": AuditLog.op_time.expression,
    "operation_result": AuditLog.operation_result.expression,
}
SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "op_time": AuditLog.op_time.expression,
    "id": AuditLog.id.expression,
}


async def list_logs(
    session: AsyncSession,
    conditions: list[Condition],
    sort: str | None,
    page: PageRequest,
    project_ids: Collection[int] | None,
) -> tuple[list[AuditLog], int]:
    """A page of events, newest first unless ``sort`` says otherwise.

    ``project_ids`` limits the events to those projects (None: every event).
    """
    order = parse_sort(sort, SORT_COLUMNS) or [AuditLog.op_time.desc()]
    # Events of the same instant keep the order they were written in, either way.
    ascending = bool(sort) and not (sort or "").lstrip().startswith("-")
    tiebreak = AuditLog.id.asc() if ascending else AuditLog.id.desc()
    stmt: Select[Any] = select(AuditLog)
    stmt = apply_q(stmt, conditions, Q_COLUMNS)
    if project_ids is not None:
        stmt = stmt.where(AuditLog.project_id.in_(sorted(project_ids)))
    rows, total = await fetch_page(session, stmt, page, order, tiebreak)
    return [row[0] for row in rows], total


async def member_project_roles(
    session: AsyncSession, user_id: int | None, group_ids: Collection[int]
) -> dict[int, set[int]]:
    """The live projects a user belongs to (directly or through a group), with its roles."""
    ids = await session.scalars(
        select(Project.project_id).where(
            Project.deleted.is_(False), projects_repo.member_clause(user_id, group_ids)
        )
    )
    return await projects_repo.roles_in_projects(session, list(ids), user_id, group_ids)


async def repositories_by_name(
    session: AsyncSession, names: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """(repository id, project id) of each repository named that exists."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Repository.name, Repository.repository_id, Repository.project_id).where(
            Repository.name.in_(wanted)
        )
    )
    return {name: (repository_id, project_id) for name, repository_id, project_id in rows}


async def project_ids_by_name(session: AsyncSession, names: Iterable[str]) -> dict[str, int]:
    """The ids of the live projects named."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Project.name, Project.project_id).where(
            Project.name.in_(wanted), Project.deleted.is_(False)
        )
    )
    return {str(name): int(project_id) for name, project_id in rows}


async def record_pulls(
    session: AsyncSession,
    counts: Mapping[int, int],
    artifacts: Mapping[tuple[int, str], datetime],
    tags: Mapping[tuple[int, str], datetime],
) -> None:
    """Add to repositories' pull counts and move artifacts' and tags' pull times forward."""
    for repository_id, count in sorted(counts.items()):
        await session.execute(
            update(Repository)
            .where(Repository.repository_id == repository_id)
            .values(pull_count=Repository.pull_count + count)
            .execution_options(synchronize_session=False)
        )
    for (repository_id, digest), when in sorted(artifacts.items()):
        await session.execute(
            update(Artifact)
            .where(Artifact.repository_id == repository_id, Artifact.digest == digest)
            .values(pull_time=when)
            .execution_options(synchronize_session=False)
        )
    for (repository_id, name), when in sorted(tags.items()):
        await session.execute(
            update(Tag)
            .where(Tag.repository_id == repository_id, Tag.name == name)
            .values(pull_time=when)
            .execution_options(synchronize_session=False)
        )


async def properties(session: AsyncSession, keys: Collection[str]) -> dict[str, str]:
    """The stored values of some system properties (keys never set are absent)."""
    rows = await session.execute(select(Property.k, Property.v).where(Property.k.in_(list(keys))))
    return {str(key): str(value) for key, value in rows}


# --- purging ------------------------------------------------------------------------------


def purge_clause(
    before: datetime, kinds: Collection[tuple[str, str]], operations: Collection[str]
) -> ColumnElement[bool]:
    """Events older than ``before`` that are of one of ``kinds`` ((operation, resource
    type) pairs) or one of ``operations``; nothing when both are empty."""
    which = [
        and_(AuditLog.operation == operation, AuditLog.resource_type == resource_type)
        for operation, resource_type in sorted(kinds)
    ]
    if operations:
        which.append(AuditLog.operation.in_(sorted(operations)))
    if not which:
        return false()
    return and_(AuditLog.op_time < before, or_(*which))


async def count_events(session: AsyncSession, where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(AuditLog).where(where)) or 0)


async def delete_events(session: AsyncSession, where: ColumnElement[bool], limit: int) -> int:
    """Delete at most ``limit`` of the events ``where`` selects, oldest ids first."""
    ids = select(AuditLog.id).where(where).order_by(AuditLog.id).limit(limit).scalar_subquery()
    result = await session.execute(
        delete(AuditLog).where(AuditLog.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def event_kinds(session: AsyncSession) -> set[tuple[str, str]]:
    """Every (operation, resource type) pair the log holds."""
    rows = await session.execute(select(AuditLog.operation, AuditLog.resource_type).distinct())
    return {(str(operation), str(resource_type)) for operation, resource_type in rows}
