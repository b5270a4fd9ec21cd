"""The proxy cache's own queries: which endpoint a project proxies, and pull times."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dockyard.projects.models import Project
from dockyard.registry.models import Artifact, Repository, Tag


async def proxied_endpoint(conn: AsyncConnection, project: str) -> tuple[int, int] | None:
    """(project id, registry endpoint id) of the live proxy cache project ``project``;
    None when there is no such project or it is not a proxy cache."""
    result = await conn.execute(
        select(Project.project_id, Project.registry_id).where(
            Project.name == project, Project.deleted.is_(False), Project.registry_id != 0
        )
    )
    row = result.first()
    return (int(row[0]), int(row[1])) if row is not None else None


async def mark_pulled(
    session: AsyncSession, repository: str, digest: str, tag: str | None, when: datetime
) -> None:
    """Give a manifest stored behind a pull the pull time of that pull (where it has none
    yet): the pull was answered before the artifact existed, so the audit's pull record
    found nothing to date, and the proxy's default retention keeps only what was pulled."""
    repository_id = select(Repository.repository_id).where(Repository.name == repository)
    await session.execute(
        update(Artifact)
        .where(
            Artifact.repository_id == repository_id.scalar_subquery(),
            Artifact.digest == digest,
            Artifact.pull_time.is_(None),
        )
        .values(pull_time=when)
        .execution_options(synchronize_session=False)
    )
    if tag is not None:
        await session.execute(
            update(Tag)
            .where(
                Tag.repository_id == repository_id.scalar_subquery(),
                Tag.name == tag,
                Tag.pull_time.is_(None),
            )
            .values(pull_time=when)
            .execution_options(synchronize_session=False)
        )
