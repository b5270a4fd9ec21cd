"""Queries on projects, their metadata and members."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.listing import PageRequest, fetch_page
from dockyard.iam.groupsync import dn_key
from dockyard.iam.models import User, UserGroup
from dockyard.immutability.models import ImmutableTagRule
from dockyard.labels.models import Label
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.quota.models import Quota
from dockyard.registry.models import Repository
from dockyard.retention.models import RetentionPolicy
from dockyard.webhooks.models import WebhookPolicy

USER_MEMBER = "u"
GROUP_MEMBER = "g"

# --- projects ------------------------------------------------------------------------------


async def find_project_by_name(session: AsyncSession, name: str) -> Project | None:
    result = await session.execute(
        select(Project).where(Project.name == name, Project.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def find_project(
    session: AsyncSession, project_id: int, *, for_update: bool = False
) -> Project | None:
    """The live project with ``project_id``; ``for_update`` locks its row (PostgreSQL)."""
    stmt = select(Project).where(Project.project_id == project_id, Project.deleted.is_(False))
    if for_update:
        stmt = stmt.with_for_update()
    result = await session.execute(stmt)
    return result.scalar_one_or_none()


def public_clause() -> ColumnElement[bool]:
    """True for a project whose ``public`` metadata is ``"true"``."""
    return exists().where(
        ProjectMetadata.project_id == Project.project_id,
        ProjectMetadata.name == "public",
        ProjectMetadata.value == "true",
    )


def _role_holders(user_id: int | None, group_ids: Collection[int]) -> list[ColumnElement[bool]]:
    """``project_member`` conditions for the user's own rows and its groups' rows."""
    holders = []
    if user_id is not None:
        holders.append(
            and_(ProjectMember.entity_type == USER_MEMBER, ProjectMember.entity_id == user_id)
        )
    if group_ids:
        holders.append(
            and_(
                ProjectMember.entity_type == GROUP_MEMBER,
                ProjectMember.entity_id.in_(sorted(group_ids)),
            )
        )
    return holders


def member_clause(user_id: int | None, group_ids: Collection[int]) -> ColumnElement[bool]:
    """True for a project where the user, or one of the groups, holds a role."""
    holders = _role_holders(user_id, group_ids)
    if not holders:
        return literal(False)
    return exists().where(ProjectMember.project_id == Project.project_id, or_(*holders))


async def holds_role_anywhere(
    session: AsyncSession, user_id: int | None, group_ids: Collection[int], role: int
) -> bool:
    """Whether the user (directly or through a group) holds ``role`` in any live project."""
    holders = _role_holders(user_id, group_ids)
    if not holders:
        return False
    found = await session.scalar(
        select(ProjectMember.id)
        .join(Project, Project.project_id == ProjectMember.project_id)
        .where(ProjectMember.role == role, Project.deleted.is_(False), or_(*holders))
        .limit(1)
    )
    return found is not None


def project_listing() -> Select[Any]:
    """Live projects with their owner's name; callers add filters and order."""
    return cast(
        "Select[Any]",
        select(Project, User.username)
        .outerjoin(User, User.user_id == Project.owner_id)
        .where(Project.deleted.is_(False)),
    )


async def fetch_projects(
    session: AsyncSession,
    stmt: Select[Any],
    page: PageRequest,
    order: list[ColumnElement[Any]],
) -> tuple[list[tuple[Project, str | None]], int]:
    rows, total = await fetch_page(session, stmt, page, order, Project.project_id.asc())
    return [_pair(row) for row in rows], total


def _pair(row: Any) -> tuple[Any, Any]:
    first, second = tuple(row)
    return first, second


async def owner_name(session: AsyncSession, owner_id: int) -> str | None:
    name: str | None = await session.scalar(select(User.username).where(User.user_id == owner_id))
    return name


async def first_admin_id(session: AsyncSession) -> int | None:
    """The lowest-numbered system administrator (owner of projects robots create)."""
    found: int | None = await session.scalar(
        select(func.min(User.user_id)).where(User.sysadmin_flag.is_(True), User.deleted.is_(False))
    )
    return found


async def repository_counts(session: AsyncSession, project_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(set(project_ids))
    if not ids:
        return {}
    result = await session.execute(
        select(Repository.project_id, func.count())
        .where(Repository.project_id.in_(ids))
        .group_by(Repository.project_id)
    )
    return {int(pid): int(count) for pid, count in result}


async def repository_count(session: AsyncSession, project_id: int) -> int:
    return (await repository_counts(session, [project_id])).get(project_id, 0)


async def soft_delete_project(session: AsyncSession, project: Project) -> None:
    """Mark deleted and free the name (``name#id``, as Harbor); drop members and metadata."""
    suffix = f"#{project.project_id}"
    project.name = project.name[: 255 - len(suffix)] + suffix
    project.deleted = True
    await session.execute(
        delete(ProjectMember).where(ProjectMember.project_id == project.project_id)
    )
    await session.execute(
        delete(ProjectMetadata).where(ProjectMetadata.project_id == project.project_id)
    )
    # What hangs off the project goes with it (the row stays, so no cascade fires):
    # its labels (and their links), tag rules, quota, webhook and retention policies
    # (a retention schedule left behind removes itself when it next fires).
    await session.execute(
        delete(Label).where(Label.scope == "p", Label.project_id == project.project_id)
    )
    await session.execute(
        delete(ImmutableTagRule).where(ImmutableTagRule.project_id == project.project_id)
    )
    await session.execute(
        delete(WebhookPolicy).where(WebhookPolicy.project_id == project.project_id)
    )
    await session.execute(
        delete(RetentionPolicy).where(RetentionPolicy.project_id == project.project_id)
    )
    await session.execute(
        delete(Quota).where(
            Quota.reference == "project", Quota.reference_id == str(project.project_id)
        )
    )
    await session.flush()


# --- metadata ------------------------------------------------------------------------------


async def project_metadata(session: AsyncSession, project_id: int) -> dict[str, str]:
    return (await metadata_of(session, [project_id])).get(project_id, {})


async def metadata_of(
    session: AsyncSession, project_ids: Iterable[int]
) -> dict[int, dict[str, str]]:
    ids = sorted(set(project_ids))
    if not ids:
        return {}
    result = await session.execute(
        select(ProjectMetadata.project_id, ProjectMetadata.name, ProjectMetadata.value).where(
            ProjectMetadata.project_id.in_(ids)
        )
    )
    found: dict[int, dict[str, str]] = {}
    for project_id, name, value in result:
        found.setdefault(project_id, {})[name] = value
    return found


async def set_metadata(session: AsyncSession, project_id: int, values: Mapping[str, str]) -> None:
    """Insert or overwrite each key."""
    if not values:
        return
    existing = {
        row.name: row
        for row in (
            await session.execute(
                select(ProjectMetadata).where(
                    ProjectMetadata.project_id == project_id,
                    ProjectMetadata.name.in_(sorted(values)),
                )
            )
        ).scalars()
    }
    for name, value in values.items():
        if name in existing:
            existing[name].value = value
        else:
            session.add(ProjectMetadata(project_id=project_id, name=name, value=value))
    await session.flush()


async def delete_metadata(session: AsyncSession, project_id: int, name: str) -> bool:
    result = await session.execute(
        delete(ProjectMetadata).where(
            ProjectMetadata.project_id == project_id, ProjectMetadata.name == name
        )
    )
    return bool(getattr(result, "rowcount", 0))


# --- roles and members ---------------------------------------------------------------------


async def user_roles(
    session: AsyncSession, project_id: int, user_id: int, group_ids: Collection[int] = ()
) -> list[int]:
    """Roles the user holds in the project, directly or through one of ``group_ids``."""
    found = await roles_in_projects(session, [project_id], user_id, group_ids)
    return sorted(found.get(project_id, set()))


async def roles_in_projects(
    session: AsyncSession,
    project_ids: Iterable[int],
    user_id: int | None,
    group_ids: Collection[int],
) -> dict[int, set[int]]:
    """For each project, the roles the user holds directly or through ``group_ids``."""
    ids = sorted(set(project_ids))
    holders = _role_holders(user_id, group_ids)
    if not ids or not holders:
        return {}
    result = await session.execute(
        select(ProjectMember.project_id, ProjectMember.role).where(
            ProjectMember.project_id.in_(ids), or_(*holders)
        )
    )
    found: dict[int, set[int]] = {}
    for project_id, role in result:
        found.setdefault(project_id, set()).add(role)
    return found


_entity_name = func.coalesce(User.username, UserGroup.group_name)


def _member_listing(project_id: int) -> Select[Any]:
    """Members with the name of the user or group each stands for (gone entities left out)."""
    return cast(
        "Select[Any]",
        select(ProjectMember, _entity_name.label("entity_name"))
        .outerjoin(
            User,
            and_(
                ProjectMember.entity_type == USER_MEMBER,
                User.user_id == ProjectMember.entity_id,
                User.deleted.is_(False),
            ),
        )
        .outerjoin(
            UserGroup,
            and_(
                ProjectMember.entity_type == GROUP_MEMBER,
                UserGroup.id == ProjectMember.entity_id,
            ),
        )
        .where(ProjectMember.project_id == project_id, _entity_name.is_not(None)),
    )


async def list_members(
    session: AsyncSession, project_id: int, entity_name: str | None, page: PageRequest
) -> tuple[list[tuple[ProjectMember, str]], int]:
    stmt = _member_listing(project_id)
    if entity_name:
        stmt = stmt.where(_entity_name == entity_name)
    rows, total = await fetch_page(
        session, stmt, page, [_entity_name.asc()], ProjectMember.id.asc()
    )
    return [_pair(row) for row in rows], total


async def find_member(
    session: AsyncSession, project_id: int, member_id: int
) -> tuple[ProjectMember, str] | None:
    row = (
        await session.execute(_member_listing(project_id).where(ProjectMember.id == member_id))
    ).first()
    return None if row is None else _pair(row)


async def find_member_of_entity(
    session: AsyncSession, project_id: int, entity_type: str, entity_id: int
) -> ProjectMember | None:
    result = await session.execute(
        select(ProjectMember).where(
            ProjectMember.project_id == project_id,
            ProjectMember.entity_type == entity_type,
            ProjectMember.entity_id == entity_id,
        )
    )
    return result.scalar_one_or_none()


async def member_counts_by_role(session: AsyncSession, project_id: int) -> dict[int, int]:
    result = await session.execute(
        select(ProjectMember.role, func.count())
        .where(ProjectMember.project_id == project_id)
        .group_by(ProjectMember.role)
    )
    return {int(role): int(count) for role, count in result}


# --- users and groups a member may stand for -----------------------------------------------


async def find_live_user(session: AsyncSession, user_id: int) -> User | None:
    result = await session.execute(
        select(User).where(User.user_id == user_id, User.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def find_group(session: AsyncSession, group_id: int) -> UserGroup | None:
    return await session.get(UserGroup, group_id)


async def find_group_by(
    session: AsyncSession,
    *,
    name: str | None = None,
    group_type: int | None = None,
    ldap_dn: str | None = None,
) -> UserGroup | None:
    """The first group (lowest id) matching every criterion given."""
    stmt = select(UserGroup)
    if name is not None:
        stmt = stmt.where(UserGroup.group_name == name)
    if group_type:
        stmt = stmt.where(UserGroup.group_type == group_type)
    if ldap_dn is not None:  # any spelling of the DN (groupsync.dn_key)
        stmt = stmt.where(func.lower(UserGroup.ldap_group_dn) == dn_key(ldap_dn))
    result = await session.execute(stmt.order_by(UserGroup.id).limit(1))
    return result.scalar_one_or_none()
