"""Queries on ``registry`` (registry endpoints)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.remotes.models import RegistryEndpoint


def endpoints_query() -> Select[Any]:
    """Every endpoint (listings add ``q``, order and paging)."""
    return select(RegistryEndpoint)


async def find_endpoint(session: AsyncSession, registry_id: int) -> RegistryEndpoint | None:
    if not 0 < registry_id < 2**63:
        return None
    return await session.get(RegistryEndpoint, registry_id)


async def find_endpoint_by_name(session: AsyncSession, name: str) -> RegistryEndpoint | None:
    stmt = select(RegistryEndpoint).where(RegistryEndpoint.name == name)
    return cast("RegistryEndpoint | None", await session.scalar(stmt))
