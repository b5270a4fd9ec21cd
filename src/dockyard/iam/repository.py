"""Queries on users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.iam.models import User


async def find_user_by_name(session: AsyncSession, username: str) -> User | None:
    result = await session.execute(
        select(User).where(User.username == username, User.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def find_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)
