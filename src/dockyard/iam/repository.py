"""Queries on users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.iam.accounts import AccountLogin
from dockyard.iam.models import User, UserGroupMembership
from dockyard.iam.passwords import verify_password
from dockyard.iam.policy import Principal


async def find_user_by_name(session: AsyncSession, username: str) -> User | None:
    result = await session.execute(
        select(User).where(User.username == username, User.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def find_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def user_group_ids(session: AsyncSession, user_id: int) -> frozenset[int]:
    result = await session.execute(
        select(UserGroupMembership.group_id).where(UserGroupMembership.user_id == user_id)
    )
    return frozenset(result.scalars())


def user_principal(user: User, group_ids: frozenset[int] = frozenset()) -> Principal:
    return Principal(
        kind="user",
        name=user.username,
        user_id=user.user_id,
        sysadmin=user.sysadmin_flag,
        group_ids=group_ids,
    )


async def find_user_login(session: AsyncSession, username: str) -> AccountLogin | None:
    """A (not deleted) user as a password login sees it, or None."""
    user = await find_user_by_name(session, username)
    if user is None:
        return None
    principal = user_principal(user, await user_group_ids(session, user.user_id))
    return AccountLogin(principal, user.password, _verify_user_password)


def _verify_user_password(stored_hash: str, offered: str) -> bool:
    return verify_password(stored_hash or None, offered)
