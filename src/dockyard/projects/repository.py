"""Queries on projects, their metadata and members."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.projects.models import Project, ProjectMember, ProjectMetadata


async def find_project_by_name(session: AsyncSession, name: str) -> Project | None:
    result = await session.execute(
        select(Project).where(Project.name == name, Project.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def project_metadata(session: AsyncSession, project_id: int) -> dict[str, str]:
    result = await session.execute(
        select(ProjectMetadata.name, ProjectMetadata.value).where(
            ProjectMetadata.project_id == project_id
        )
    )
    return {row[0]: row[1] for row in result}


async def user_roles(session: AsyncSession, project_id: int, user_id: int) -> list[int]:
    result = await session.execute(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id,
            ProjectMember.entity_type == "u",
            ProjectMember.entity_id == user_id,
        )
    )
    return list(result.scalars())
