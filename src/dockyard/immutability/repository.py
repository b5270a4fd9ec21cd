"""Queries on ``immutable_tag_rule``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Select, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.immutability.models import ImmutableTagRule
from dockyard.projects.models import Project

_MAX_ID = 2**63 - 1


async def enabled_rules(session: AsyncSession, project_id: int) -> Sequence[ImmutableTagRule]:
    """The project's enabled rules, by priority then age (one query on the project index)."""
    stmt = (
        select(ImmutableTagRule)
        .where(ImmutableTagRule.project_id == project_id, ImmutableTagRule.disabled == false())
        .order_by(ImmutableTagRule.priority, ImmutableTagRule.id)
    )
    return (await session.scalars(stmt)).all()


def rules_query(project_id: int) -> Select[Any]:
    """Every rule of the project (listings add ``q``, order and paging)."""
    return cast(
        "Select[Any]",
        select(ImmutableTagRule).where(ImmutableTagRule.project_id == project_id),
    )


async def rules_of_project(session: AsyncSession, project_id: int) -> Sequence[ImmutableTagRule]:
    stmt = select(ImmutableTagRule).where(ImmutableTagRule.project_id == project_id)
    return (await session.scalars(stmt)).all()


async def count_rules(session: AsyncSession, project_id: int) -> int:
    stmt = select(func.count()).where(ImmutableTagRule.project_id == project_id)
    return int(await session.scalar(stmt) or 0)


async def find_rule(session: AsyncSession, rule_id: int) -> ImmutableTagRule | None:
    if not 0 < rule_id <= _MAX_ID:
        return None
    return await session.get(ImmutableTagRule, rule_id)


async def lock_project_rules(session: AsyncSession, project_id: int) -> None:
    """Serialise rule creation in a project (the count limit and the duplicate check),
    by writing its project row: PostgreSQL locks it, SQLite has one writer anyway."""
    await session.execute(
        update(Project)
        .where(Project.project_id == project_id)
        .values(update_time=Project.update_time)
    )
