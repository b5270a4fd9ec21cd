"""Queries on robots and their permission rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.listing import PageRequest, fetch_page
from dockyard.projects.models import Project
from dockyard.robots.models import Robot, RobotPermission

# What ``sort`` may name on a robot listing.
SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    key: Robot.__table__.c[key]
    for key in ("id", "name", "level", "duration", "expires_at", "creation_time", "update_time")
}
NAME_COLUMN: ColumnElement[Any] = Robot.__table__.c.name


async def find_robot(session: AsyncSession, robot_id: int) -> Robot | None:
    return await session.get(Robot, robot_id)


async def find_login_robot(
    session: AsyncSession, name: str, prefix: str, default_prefix: str
) -> Robot | None:
    """The visible robot whose stored name is ``name``, created with ``prefix`` (a robot
    with no stored prefix has ``default_prefix``); a project robot only while its
    project exists."""
    live_project = (
        select(Project.project_id)
        .where(Project.project_id == Robot.project_id, Project.deleted.is_(False))
        .exists()
    )
    result = await session.execute(
        select(Robot).where(
            Robot.name == name,
            Robot.name_prefix == prefix
            if prefix != default_prefix
            else or_(Robot.name_prefix == prefix, Robot.name_prefix.is_(None)),
            Robot.visible.is_(True),
            (Robot.level == "system") | live_project,
        )
    )
    return result.scalars().first()


async def name_prefixes(session: AsyncSession) -> set[str]:
    """Every prefix a robot was created with (NULL, the start-time one, left out)."""
    found = await session.scalars(
        select(Robot.name_prefix).where(Robot.name_prefix.is_not(None)).distinct()
    )
    return {p for p in found if p}


async def robot_name_taken(session: AsyncSession, name: str, project_id: int) -> bool:
    found = await session.scalar(
        select(Robot.id).where(Robot.name == name, Robot.project_id == project_id)
    )
    return found is not None


async def permission_rows(session: AsyncSession, robot_id: int) -> list[RobotPermission]:
    result = await session.execute(
        select(RobotPermission)
        .where(RobotPermission.robot_id == robot_id)
        .order_by(RobotPermission.id)
    )
    return list(result.scalars())


async def permission_rows_of(
    session: AsyncSession, robot_ids: Sequence[int]
) -> dict[int, list[RobotPermission]]:
    """The permission rows of several robots in one query."""
    rows: dict[int, list[RobotPermission]] = {robot_id: [] for robot_id in robot_ids}
    if not robot_ids:
        return rows
    result = await session.execute(
        select(RobotPermission)
        .where(RobotPermission.robot_id.in_(robot_ids))
        .order_by(RobotPermission.id)
    )
    for row in result.scalars():
        rows[row.robot_id].append(row)
    return rows


async def replace_permissions(
    session: AsyncSession, robot_id: int, rows: Iterable[RobotPermission]
) -> None:
    await session.execute(delete(RobotPermission).where(RobotPermission.robot_id == robot_id))
    session.add_all(rows)
    await session.flush()


async def delete_robot(session: AsyncSession, robot: Robot) -> None:
    await session.execute(delete(RobotPermission).where(RobotPermission.robot_id == robot.id))
    await session.delete(robot)
    await session.flush()


async def delete_robots_of_project(session: AsyncSession, project_id: int) -> int:
    ids = list(
        await session.scalars(
            select(Robot.id).where(Robot.project_id == project_id, Robot.level == "project")
        )
    )
    if ids:
        await session.execute(delete(RobotPermission).where(RobotPermission.robot_id.in_(ids)))
        await session.execute(delete(Robot).where(Robot.id.in_(ids)))
    return len(ids)


def robots_query() -> Select[Robot]:
    """Every visible robot; the listing adds its filters."""
    return select(Robot).where(Robot.visible.is_(True))


async def fetch_robots(
    session: AsyncSession,
    stmt: Select[Robot],
    page: PageRequest,
    order: Sequence[ColumnElement[Any]],
) -> tuple[list[Robot], int]:
    """One page of ``stmt``, newest first unless ``order`` says otherwise."""
    if not order:
        order = [Robot.creation_time.desc()]
    rows, total = await fetch_page(session, stmt, page, order, Robot.id.desc())
    return [row[0] for row in rows], total


async def find_project_name(session: AsyncSession, project_id: int) -> str | None:
    """The name of a (not deleted) project, to reach the project's access facts."""
    name: str | None = await session.scalar(
        select(Project.name).where(Project.project_id == project_id, Project.deleted.is_(False))
    )
    return name
