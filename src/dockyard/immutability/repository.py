"""Queries on ``immutable_tag_rule``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import false, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.immutability.models import ImmutableTagRule


async def enabled_rules(session: AsyncSession, project_id: int) -> Sequence[ImmutableTagRule]:
    """The project's enabled rules, by priority then age (one query on the project index)."""
    stmt = (
        select(ImmutableTagRule)
        .where(ImmutableTagRule.project_id == project_id, ImmutableTagRule.disabled == false())
        .order_by(ImmutableTagRule.priority, ImmutableTagRule.id)
    )
    return (await session.scalars(stmt)).all()
