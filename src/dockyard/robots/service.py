"""Robot accounts: creation, secrets, permissions, and how a robot logs in."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.iam.accounts import AccountLogin


async def find_robot_login(session: AsyncSession, name: str, prefix: str) -> AccountLogin | None:
    """The robot called ``prefix + name`` as a login sees it, or None."""
    return None
