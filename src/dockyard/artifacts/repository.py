"""Queries behind Harbor's repository and artifact browsing, named for what they answer.

Listings load one page of rows, then the page's tags, labels, accessories and
index children in one query each (never one query per row). The artifact list
walks ``artifact(repository_id, push_time, id)`` and loads tags through
``tag(artifact_id)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.labels.models import Label, LabelReference
from dockyard.projects.models import Project
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    ArtifactReference,
    Repository,
    Tag,
)


def is_digest_reference(reference: str) -> bool:
    """A reference that names a digest (``algorithm:encoded``) rather than a tag."""
    return ":" in reference


# --- repositories ----------------------------------------------------------------------------


async def find_repository(session: AsyncSession, project_id: int, name: str) -> Repository | None:
    """The repository called ``name`` (full name, project included) in the project."""
    result = await session.execute(
        select(Repository).where(Repository.name == name, Repository.project_id == project_id)
    )
    return result.scalar_one_or_none()


def repository_listing(project_id: int | None) -> Select[Any]:
    """Repositories of one live project, or of every live project (``None``)."""
    stmt = select(Repository).join(Project, Project.project_id == Repository.project_id)
    stmt = stmt.where(Project.deleted.is_(False))
    if project_id is not None:
        stmt = stmt.where(Repository.project_id == project_id)
    return stmt


async def count_project_artifacts(session: AsyncSession, project_id: int, cap: int) -> int:
    """How many top-level artifacts (:func:`top_level`; accessories count, as in
    ``artifact_count``) the project holds, counting no further than ``cap``: a bounded walk
    of the ``(project_id, …)`` index however large the project is."""
    capped = (
        select(Artifact.id)
        .where(Artifact.project_id == project_id, top_level())
        .limit(cap)
        .subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(capped)) or 0)


async def artifact_counts(session: AsyncSession, repository_ids: Collection[int]) -> dict[int, int]:
    """How many top-level artifacts (:func:`top_level`) each repository holds, Harbor's
    ``artifact_count``: an index's children are not counted, accessories are (one grouped
    query)."""
    if not repository_ids:
        return {}
    result = await session.execute(
        select(Artifact.repository_id, func.count())
        .where(Artifact.repository_id.in_(list(repository_ids)), top_level())
        .group_by(Artifact.repository_id)
    )
    return {repository_id: int(count) for repository_id, count in result.all()}


# --- artifacts ---------------------------------------------------------------------------------


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


def not_accessory(repository_name: str | None = None) -> ColumnElement[bool]:
    """True for an artifact that is no accessory of another (accessories are listed with
    their subject). ``NOT IN`` a subquery, as Harbor asks: the database hashes the
    accessory ids once instead of probing per row; ``repository_name`` bounds the set
    to one repository's accessories (an accessory lives beside its subject)."""
    accessories = select(ArtifactAccessory.artifact_id)
    if repository_name is not None:
        accessories = accessories.where(ArtifactAccessory.subject_artifact_repo == repository_name)
    return Artifact.id.not_in(accessories)


def top_level() -> ColumnElement[bool]:
    """Harbor's rule for what a listing shows: an artifact no index lists (an indexed
    ``NOT EXISTS`` on ``artifact_reference(child_id)``). The children of an index are
    shown under it (its ``references``), not as rows of their own, tagged or not."""
    return ~exists().where(ArtifactReference.child_id == Artifact.id)


def artifact_listing(repository: Repository | None, project_id: int | None) -> Select[Any]:
    """Ids of the top-level artifacts (:func:`top_level`) of a repository (or of a whole
    project) that are not accessories.

    Only the id is selected so that a page is found on the index alone (``artifact
    (repository_id, push_time, id)``); ``artifacts_by_id`` then loads the page's rows.
    """
    stmt = select(Artifact.id)
    if repository is not None:
        stmt = stmt.where(
            Artifact.repository_id == repository.repository_id,
            not_accessory(repository.name),
            top_level(),
        )
    else:
        stmt = stmt.where(not_accessory(), top_level())
    if project_id is not None:
        stmt = stmt.where(Artifact.project_id == project_id)
    return stmt


async def artifacts_by_id(session: AsyncSession, ids: Sequence[int]) -> list[Artifact]:
    """The artifacts with ``ids``, in that order (one primary-key query)."""
    if not ids:
        return []
    result = await session.execute(select(Artifact).where(Artifact.id.in_(list(ids))))
    found = {a.id: a for a in result.scalars()}
    return [found[i] for i in ids if i in found]


def has_tag(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The artifact has a tag meeting ``conditions`` (any tag when none are given)."""
    return exists().where(Tag.artifact_id == Artifact.id, *conditions)


def has_label(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(LabelReference.artifact_id == Artifact.id, *conditions)


async def tags_of(session: AsyncSession, artifact_ids: Collection[int]) -> dict[int, list[Tag]]:
    """Tags of each artifact, newest first (one query)."""
    found: dict[int, list[Tag]] = defaultdict(list)
    if artifact_ids:
        result = await session.execute(
            select(Tag)
            .where(Tag.artifact_id.in_(list(artifact_ids)))
            .order_by(Tag.push_time.desc(), Tag.id.desc())
        )
        for tag in result.scalars():
            found[tag.artifact_id].append(tag)
    return found


async def tag_names(session: AsyncSession, artifact_ids: Collection[int]) -> dict[int, list[str]]:
    """The tag names of each artifact, newest first (``tags_of``'s order); untagged absent."""
    found = await tags_of(session, artifact_ids)
    return {artifact_id: [tag.name for tag in tags] for artifact_id, tags in found.items()}


async def labels_of(session: AsyncSession, artifact_ids: Collection[int]) -> dict[int, list[Label]]:
    """Live labels attached to each artifact (one query)."""
    found: dict[int, list[Label]] = defaultdict(list)
    if artifact_ids:
        result = await session.execute(
            select(LabelReference.artifact_id, Label)
            .join(Label, Label.id == LabelReference.label_id)
            .where(LabelReference.artifact_id.in_(list(artifact_ids)), Label.deleted.is_(False))
            .order_by(Label.name, Label.id)
        )
        for artifact_id, label in result.all():
            found[artifact_id].append(label)
    return found


async def accessories_of(
    session: AsyncSession, artifact_ids: Collection[int]
) -> dict[int, list[ArtifactAccessory]]:
    """Accessories whose subject is each artifact (one query)."""
    found: dict[int, list[ArtifactAccessory]] = defaultdict(list)
    if artifact_ids:
        result = await session.execute(
            select(ArtifactAccessory)
            .where(ArtifactAccessory.subject_artifact_id.in_(list(artifact_ids)))
            .order_by(ArtifactAccessory.creation_time.desc(), ArtifactAccessory.id.desc())
        )
        for accessory in result.scalars():
            if accessory.subject_artifact_id is not None:
                found[accessory.subject_artifact_id].append(accessory)
    return found


async def references_of(
    session: AsyncSession, artifact_ids: Collection[int]
) -> dict[int, list[ArtifactReference]]:
    """The children each index lists, in the index's order (one query)."""
    found: dict[int, list[ArtifactReference]] = defaultdict(list)
    if artifact_ids:
        result = await session.execute(
            select(ArtifactReference)
            .where(ArtifactReference.parent_id.in_(list(artifact_ids)))
            .order_by(ArtifactReference.id)
        )
        for reference in result.scalars():
            found[reference.parent_id].append(reference)
    return found


def tag_listing(artifact_id: int) -> Select[Any]:
    return select(Tag).where(Tag.artifact_id == artifact_id)


def accessory_listing(artifact_id: int) -> Select[Any]:
    return select(ArtifactAccessory).where(ArtifactAccessory.subject_artifact_id == artifact_id)


def scalars(rows: Sequence[Any]) -> list[Any]:
    """The first column of each row ``fetch_page`` returned."""
    return [row[0] for row in rows]
