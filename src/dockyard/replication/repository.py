"""Queries of replication beyond its own table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.labels.models import Label, LabelReference
from dockyard.registry.models import Artifact, Repository, Tag

_IN_BATCH = 500
"""Repository names one ``IN (…)`` lists."""


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


async def tagged(session: AsyncSession, repositories: Sequence[str]) -> dict[str, dict[str, str]]:
    """The tags of ``repositories`` with the digest each names: ``{repository: {tag:
    digest}}`` (a plan's listing of this registry, in one query instead of a read per tag)."""
    found: dict[str, dict[str, str]] = {name: {} for name in repositories}
    for first in range(0, len(repositories), _IN_BATCH):
        names = repositories[first : first + _IN_BATCH]
        rows = await session.execute(
            select(Repository.name, Tag.name, Artifact.digest)
            .join(Tag, Tag.repository_id == Repository.repository_id)
            .join(Artifact, Artifact.id == Tag.artifact_id)
            .where(Repository.name.in_(names))
        )
        for repository, tag, digest in rows:
            found[repository][tag] = digest
    return found


async def referred(session: AsyncSession, repositories: Sequence[str]) -> set[tuple[str, str]]:
    """``(repository, digest)`` of the artifacts in ``repositories`` that have referrers
    (an artifact there whose ``subject`` they are)."""
    found: set[tuple[str, str]] = set()
    for first in range(0, len(repositories), _IN_BATCH):
        names = repositories[first : first + _IN_BATCH]
        rows = await session.execute(
            select(Repository.name, Artifact.subject_digest)
            .join(Artifact, Artifact.repository_id == Repository.repository_id)
            .where(Repository.name.in_(names), Artifact.subject_digest.is_not(None))
            .distinct()
        )
        found.update((repository, str(digest)) for repository, digest in rows)
    return found


async def labelled(
    session: AsyncSession, repositories: Sequence[str]
) -> dict[tuple[str, str], set[str]]:
    """The label names on the artifacts of ``repositories``, by ``(repository, digest)``
    (artifacts without labels are left out)."""
    found: dict[tuple[str, str], set[str]] = {}
    for first in range(0, len(repositories), _IN_BATCH):
        names = repositories[first : first + _IN_BATCH]
        rows = await session.execute(
            select(Repository.name, Artifact.digest, Label.name)
            .join(Artifact, Artifact.repository_id == Repository.repository_id)
            .join(LabelReference, LabelReference.artifact_id == Artifact.id)
            .join(Label, Label.id == LabelReference.label_id)
            .where(Repository.name.in_(names), Label.deleted.is_(False))
        )
        for repository, digest, label in rows:
            found.setdefault((repository, digest), set()).add(label)
    return found
