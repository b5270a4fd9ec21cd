"""Queries behind Harbor's repository and artifact browsing, named for what they answer.

Listings load one page of rows, then the page's tags, labels, accessories and
index children in one query each (never one query per row).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.registry.models import Artifact, Repository, Tag


def is_digest_reference(reference: str) -> bool:
    """A reference that names a digest (``algorithm:encoded``) rather than a tag."""
    return ":" in reference


async def find_repository(session: AsyncSession, project_id: int, name: str) -> Repository | None:
    """The repository called ``name`` (full name, project included) in the project."""
    result = await session.execute(
        select(Repository).where(Repository.name == name, Repository.project_id == project_id)
    )
    return result.scalar_one_or_none()


async def find_artifact_by_reference(
    session: AsyncSession, repository_id: int, reference: str
) -> Artifact | None:
    """The artifact a tag or a digest names in the repository, or None.

    ``reference`` is taken as a digest when it holds a ``:`` (tags never do);
    the caller validates its shape before asking.
    """
    if is_digest_reference(reference):
        query = select(Artifact).where(
            Artifact.repository_id == repository_id, Artifact.digest == reference
        )
    else:
        query = (
            select(Artifact)
            .join(Tag, Tag.artifact_id == Artifact.id)
            .where(Tag.repository_id == repository_id, Tag.name == reference)
        )
    return (await session.execute(query)).scalar_one_or_none()
