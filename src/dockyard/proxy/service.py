"""Making proxy cache projects: the endpoint check and Harbor's default retention policy.

A project created with ``registry_id`` (``createProject``) is a proxy cache of that
registry endpoint. The endpoint must exist and be of a kind that can proxy; the project
gets Harbor's retention policy for proxies (keep what was pulled within 7 days, daily),
which its owners may edit like any other.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit.events import Actor
from dockyard.errors import BadRequestError
from dockyard.iam.policy import Principal
from dockyard.projects.models import Project
from dockyard.remotes import repository as remotes
from dockyard.remotes.models import RegistryEndpoint
from dockyard.retention import rules
from dockyard.retention import service as retention
from dockyard.retention.schemas import (
    RetentionPolicy,
    RetentionPolicyScope,
    RetentionRule,
    RetentionRuleTrigger,
    RetentionSelector,
)

PROXY_KINDS = ("docker-hub", "docker-registry", "harbor")
"""The endpoint kinds a proxy cache project can pull through (Harbor's list is longer)."""
DEFAULT_RETENTION_DAYS = 7
DEFAULT_RETENTION_CRON = "0 0 0 * * *"


async def check_endpoint(session: AsyncSession, registry_id: int) -> int:
    """The endpoint's id when a proxy cache project may use it, else a 400 saying why."""
    row = await remotes.find_endpoint(session, registry_id)
    if row is None:
        raise BadRequestError(f"registry {registry_id} does not exist; create the endpoint first")
    if row.type not in PROXY_KINDS:
        raise BadRequestError(
            f"registry {row.name} is of type {row.type}, which cannot be proxied; "
            f"types: {', '.join(PROXY_KINDS)}"
        )
    return row.id


async def proxy_endpoints(session: AsyncSession) -> list[tuple[int, str, str]]:
    """(id, name, type) of the endpoints a proxy cache project may use, by name."""
    rows = await session.execute(
        select(RegistryEndpoint.id, RegistryEndpoint.name, RegistryEndpoint.type)
        .where(RegistryEndpoint.type.in_(PROXY_KINDS))
        .order_by(RegistryEndpoint.name)
    )
    return [(int(i), str(n), str(t)) for i, n, t in rows]


def default_retention(project_id: int) -> RetentionPolicy:
    """Harbor's policy for a new proxy cache project: artifacts not pulled for 7 days go."""
    return RetentionPolicy(
        algorithm=rules.ALGORITHM,
        rules=[
            RetentionRule(
                priority=1,
                disabled=False,
                action="retain",
                template=rules.DAYS_SINCE_PULL,
                params={rules.DAYS_SINCE_PULL: DEFAULT_RETENTION_DAYS},
                tag_selectors=[
                    RetentionSelector(kind="doublestar", decoration="matches", pattern="**")
                ],
                scope_selectors={
                    "repository": [
                        RetentionSelector(kind="doublestar", decoration="repoMatches", pattern="**")
                    ]
                },
            )
        ],
        trigger=RetentionRuleTrigger(kind="Schedule", settings={"cron": DEFAULT_RETENTION_CRON}),
        scope=RetentionPolicyScope(level="project", ref=project_id),
    )


async def set_up_project(
    session: AsyncSession, principal: Principal, actor: Actor, project: Project
) -> None:
    """What a new proxy cache project gets beyond a project: its default retention policy."""
    await retention.create_policy(session, principal, actor, default_retention(project.project_id))
