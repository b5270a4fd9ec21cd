"""Retention's queries: policies, a project's repositories, a repository's candidates."""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.jobs.models import Execution, Task, TaskLog
from dockyard.registry.models import (
    Artifact,
    ArtifactAccessory,
    ArtifactReference,
    Repository,
    Tag,
)
from dockyard.retention.models import RetentionPolicy
from dockyard.retention.rules import Candidate, TagFacts


async def find_policy(
    session: AsyncSession, policy_id: int, *, for_update: bool = False
) -> RetentionPolicy | None:
    stmt = select(RetentionPolicy).where(RetentionPolicy.id == policy_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def policy_of_project(session: AsyncSession, project_id: int) -> RetentionPolicy | None:
    return await session.scalar(
        select(RetentionPolicy).where(RetentionPolicy.project_id == project_id)
    )


async def repositories_of_project(session: AsyncSession, project_id: int) -> list[tuple[int, str]]:
    """(id, full name) of every repository of the project, by name."""
    rows = await session.execute(
        select(Repository.repository_id, Repository.name)
        .where(Repository.project_id == project_id)
        .order_by(Repository.name)
    )
    return [(int(repository_id), str(name)) for repository_id, name in rows]


async def candidates(session: AsyncSession, repository_id: int) -> list[Candidate]:
    """The repository's artifacts retention may remove: not an index's child (it goes with
    its index) and not an accessory (it goes with its subject), each with its tags.
    Oldest first."""
    child = exists().where(ArtifactReference.child_id == Artifact.id)
    accessory = exists().where(ArtifactAccessory.artifact_id == Artifact.id)
    artifacts = (
        await session.execute(
            select(Artifact.id, Artifact.digest, Artifact.push_time, Artifact.pull_time)
            .where(
                Artifact.repository_id == repository_id,
                Artifact.subject_digest.is_(None),
                ~child,
                ~accessory,
            )
            .order_by(Artifact.push_time, Artifact.id)
        )
    ).all()
    tags: dict[int, list[TagFacts]] = {}
    for artifact_id, name, push_time, pull_time in await session.execute(
        select(Tag.artifact_id, Tag.name, Tag.push_time, Tag.pull_time)
        .where(Tag.repository_id == repository_id)
        .order_by(Tag.name)
    ):
        tags.setdefault(int(artifact_id), []).append(TagFacts(name, push_time, pull_time))
    return [
        Candidate(int(a.id), a.digest, a.push_time, a.pull_time, tuple(tags.get(int(a.id), ())))
        for a in artifacts
    ]


async def delete_executions(session: AsyncSession, vendor_type: str, policy_id: int) -> None:
    """Forget a deleted policy's executions, tasks and logs (as Harbor does): SQLite may
    give the next policy the same id, which must not inherit them."""
    executions = select(Execution.id).where(
        Execution.vendor_type == vendor_type, Execution.vendor_id == policy_id
    )
    tasks = select(Task.id).where(Task.execution_id.in_(executions))
    await session.execute(delete(TaskLog).where(TaskLog.task_id.in_(tasks)))
    await session.execute(delete(Task).where(Task.execution_id.in_(executions)))
    await session.execute(
        delete(Execution).where(
            Execution.vendor_type == vendor_type, Execution.vendor_id == policy_id
        )
    )
