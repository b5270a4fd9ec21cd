"""The proxy cache's one query of its own: which registry endpoint a project proxies."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.projects.models import Project


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
