"""Queries of replication beyond its own table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.labels.models import Label, LabelReference
from dockyard.registry.models import Artifact, Repository


async def label_names(session: AsyncSession, repository: str, digest: str) -> set[str]:
    """The names of the labels on the artifact ``repository@digest`` (for label filters)."""
    rows = await session.scalars(
        select(Label.name)
        .join(LabelReference, LabelReference.label_id == Label.id)
        .join(Artifact, Artifact.id == LabelReference.artifact_id)
        .join(Repository, Repository.repository_id == Artifact.repository_id)
        .where(Repository.name == repository, Artifact.digest == digest, Label.deleted.is_(False))
    )
    return set(rows)
