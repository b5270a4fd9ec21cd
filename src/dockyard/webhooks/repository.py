"""Queries on ``notification_policy`` and on the webhook executions of the job tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.jobs.models import Execution
from dockyard.oci.mediatypes import INDEX_TYPES
from dockyard.projects.models import Project, ProjectMetadata
from dockyard.registry.models import Artifact, Repository
from dockyard.webhooks.models import WebhookPolicy

VENDOR_TYPE = "WEBHOOK"
"""The executions of a policy are ``execution`` rows of this vendor type, vendor id the policy's."""


def policies_query(project_id: int) -> Select[Any]:
    """Every policy of the project (listings add ``q``, order and paging)."""
    return cast("Select[Any]", select(WebhookPolicy).where(WebhookPolicy.project_id == project_id))


async def policies_of_project(
    session: AsyncSession, project_id: int, *, enabled_only: bool = False
) -> Sequence[WebhookPolicy]:
    """The project's policies by id (one query on the project index)."""
    stmt = select(WebhookPolicy).where(WebhookPolicy.project_id == project_id)
    if enabled_only:
        stmt = stmt.where(WebhookPolicy.enabled == true())
    return (await session.scalars(stmt.order_by(WebhookPolicy.id))).all()


async def announced_by_digest(session: AsyncSession, artifact_id: int) -> bool:
    """Whether a push by digest of this artifact is announced on its own: an index, or an
    artifact with a subject (a referrer) — not an image manifest, an index's child to be."""
    row = (
        await session.execute(
            select(Artifact.manifest_media_type, Artifact.subject_digest).where(
                Artifact.id == artifact_id
            )
        )
    ).first()
    if row is None:
        return False
    return row[0] in INDEX_TYPES or row[1] is not None


async def find_policy(session: AsyncSession, policy_id: int) -> WebhookPolicy | None:
    if not 0 < policy_id < 2**63:
        return None
    return await session.get(WebhookPolicy, policy_id)


async def find_policy_by_name(
    session: AsyncSession, project_id: int, name: str
) -> WebhookPolicy | None:
    stmt = select(WebhookPolicy).where(
        WebhookPolicy.project_id == project_id, WebhookPolicy.name == name
    )
    return cast("WebhookPolicy | None", await session.scalar(stmt))


async def projects_subscribed_to(session: AsyncSession, event_type: str) -> set[str]:
    """Names of live projects with an enabled policy naming ``event_type`` (one query)."""
    stmt = (
        select(Project.name)
        .join(WebhookPolicy, WebhookPolicy.project_id == Project.project_id)
        .where(
            Project.deleted.is_(False),
            WebhookPolicy.enabled == true(),
            WebhookPolicy.event_types.contains(f'"{event_type}"'),
        )
        .distinct()
    )
    return set(await session.scalars(stmt))


async def repository_facts(
    session: AsyncSession, names: Iterable[str]
) -> dict[str, tuple[int, datetime, bool]]:
    """(project id, creation time, public) of each named repository that still exists."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    public = (
        select(ProjectMetadata.project_id)
        .where(ProjectMetadata.name == "public", ProjectMetadata.value == "true")
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            Repository.name,
            Repository.project_id,
            Repository.creation_time,
            Repository.project_id.in_(public),
        ).where(Repository.name.in_(wanted))
    )
    return {name: (project_id, created, bool(pub)) for name, project_id, created, pub in rows}


async def last_triggers(
    session: AsyncSession, policy_ids: Sequence[int], event_type: str
) -> dict[int, datetime]:
    """When each policy last started a delivery of ``event_type`` (one grouped query;
    the event type is in each execution's ``extra_attrs``, written with sorted keys)."""
    if not policy_ids:
        return {}
    rows = await session.execute(
        select(Execution.vendor_id, func.max(Execution.start_time))
        .where(
            Execution.vendor_type == VENDOR_TYPE,
            Execution.vendor_id.in_(policy_ids),
            Execution.extra_attrs.contains(f'"event_type":"{event_type}"'),
        )
        .group_by(Execution.vendor_id)
    )
    return {int(policy_id): when for policy_id, when in rows if when is not None}
