"""Queries on users, user groups, their memberships and console sessions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.listing import (
    Condition,
    PageRequest,
    apply_q,
    condition_clause,
    fetch_page,
    parse_sort,
)
from dockyard.iam.accounts import AccountLogin
from dockyard.iam.models import (
    GroupType,
    LoginSession,
    OidcUser,
    User,
    UserGroup,
    UserGroupMembership,
)
from dockyard.iam.passwords import verify_password
from dockyard.iam.policy import Principal
from dockyard.projects.models import Project, ProjectMember


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
        sysadmin=user.sysadmin_flag or bool(user.admin_role_in_auth),
        group_ids=group_ids,
    )


async def find_user_login(
    session: AsyncSession, username: str, cli_secret_max_age_days: int = 0
) -> AccountLogin | None:
    """A (not deleted) user as a password login sees it, or None. An OIDC user's
    password is their CLI secret (``oidc_user``), valid until regenerated or, when
    ``cli_secret_max_age_days`` is set, until it is that many days old."""
    row = (
        await session.execute(
            select(User, OidcUser.secret_hash, OidcUser.secret_time)
            .outerjoin(OidcUser, OidcUser.user_id == User.user_id)
            .where(User.username == username, User.deleted.is_(False))
        )
    ).one_or_none()
    if row is None:
        return None
    user, secret_hash, secret_time = row
    groups = await user_group_ids(session, user.user_id)
    if secret_time is None:
        return user_login(user, groups)
    days = cli_secret_max_age_days
    valid_until = secret_time.timestamp() + days * 86400 if days else None
    refusal = None
    if valid_until is not None and valid_until <= time.time():
        refusal = (
            f"the CLI secret is more than {days} days old (oidc_cli_secret_max_age_days): "
            "sign in to the console and regenerate it on the profile page"
        )
    principal = dataclasses.replace(user_principal(user, groups), valid_until=valid_until)
    return AccountLogin(principal, secret_hash or "", _verify_user_password, refusal)


def user_login(user: User, group_ids: frozenset[int]) -> AccountLogin:
    """``user`` (with the ids of its groups) as a password login sees it."""
    return AccountLogin(user_principal(user, group_ids), user.password, _verify_user_password)


def _verify_user_password(stored_hash: str, offered: str) -> bool:
    return verify_password(stored_hash or None, offered)


# --- the user and group administration API ---------------------------------------------

# Keys ``q`` and ``sort`` of listUsers accept, and the columns behind them.
USER_LISTING_COLUMNS: dict[str, ColumnElement[Any]] = {
    "user_id": User.user_id.expression,
    "username": User.username.expression,
    "email": User.email.expression,
    "realname": User.realname.expression,
    "comment": User.comment.expression,
    "sysadmin_flag": User.sysadmin_flag.expression,
    "creation_time": User.creation_time.expression,
    "update_time": User.update_time.expression,
}


def _fuzzy(column: ColumnElement[Any], fragment: str) -> ColumnElement[bool]:
    """``column`` contains ``fragment``, case-insensitively (LIKE wildcards escaped)."""
    return condition_clause(Condition("name", "fuzzy", (fragment,)), column)


async def find_live_user(session: AsyncSession, user_id: int) -> User | None:
    """A user that is not (soft-)deleted."""
    result = await session.execute(
        select(User).where(User.user_id == user_id, User.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email, User.deleted.is_(False)))
    return result.scalar_one_or_none()


async def list_users(
    session: AsyncSession, conditions: Sequence[Condition], sort: str | None, page: PageRequest
) -> tuple[list[User], int]:
    """A page of the users that are not deleted, filtered by Harbor's ``q``."""
    stmt: Select[Any] = select(User).where(User.deleted.is_(False))
    stmt = apply_q(stmt, conditions, USER_LISTING_COLUMNS)
    order = parse_sort(sort, USER_LISTING_COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, User.user_id.asc())
    return [row[0] for row in rows], total


async def search_users(
    session: AsyncSession, fragment: str, page: PageRequest
) -> tuple[list[tuple[int, str]], int]:
    """(user_id, username) of live users whose name contains ``fragment``."""
    stmt: Select[Any] = select(User).where(
        User.deleted.is_(False), _fuzzy(User.username.expression, fragment)
    )
    rows, total = await fetch_page(session, stmt, page, [User.username.asc()], User.user_id.asc())
    return [(row[0].user_id, row[0].username) for row in rows], total


async def forget_user_memberships(session: AsyncSession, user_id: int) -> None:
    """Remove a user's project roles, group memberships and console sessions."""
    await session.execute(
        delete(ProjectMember).where(
            ProjectMember.entity_type == "u", ProjectMember.entity_id == user_id
        )
    )
    await session.execute(delete(UserGroupMembership).where(UserGroupMembership.user_id == user_id))
    await session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))


async def find_group(session: AsyncSession, group_id: int) -> UserGroup | None:
    return await session.get(UserGroup, group_id)


async def any_group(session: AsyncSession, group_type: int) -> bool:
    """Whether a user group of ``group_type`` exists (one indexed row read)."""
    found = await session.scalar(
        select(UserGroup.id).where(UserGroup.group_type == group_type).limit(1)
    )
    return found is not None


async def find_group_by(
    session: AsyncSession, *, group_type: int, ldap_dn_key: str
) -> UserGroup | None:
    """The group of ``group_type`` whose DN is ``ldap_dn_key`` (``groupsync.dn_key``) in
    any case."""
    result = await session.execute(
        select(UserGroup)
        .where(
            UserGroup.group_type == group_type,
            func.lower(UserGroup.ldap_group_dn) == ldap_dn_key,
        )
        .order_by(UserGroup.id)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def known_ldap_dn_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` (``groupsync.dn_key``) are the DNs of LDAP user groups: one query
    for a page of directory search results."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return set()
    stored = func.lower(UserGroup.ldap_group_dn)
    result = await session.execute(
        select(stored).where(UserGroup.group_type == int(GroupType.LDAP), stored.in_(wanted))
    )
    return set(result.scalars())


async def find_group_by_name(
    session: AsyncSession, group_type: int, group_name: str
) -> UserGroup | None:
    result = await session.execute(
        select(UserGroup).where(
            UserGroup.group_type == group_type, UserGroup.group_name == group_name
        )
    )
    return result.scalar_one_or_none()


async def list_groups(
    session: AsyncSession,
    page: PageRequest,
    *,
    name_fragment: str | None = None,
    ldap_group_dn: str | None = None,
) -> tuple[list[UserGroup], int]:
    stmt: Select[Any] = select(UserGroup)
    if name_fragment:
        stmt = stmt.where(_fuzzy(UserGroup.group_name.expression, name_fragment))
    if ldap_group_dn:
        stmt = stmt.where(UserGroup.ldap_group_dn == ldap_group_dn)
    rows, total = await fetch_page(session, stmt, page, [], UserGroup.id.asc())
    return [row[0] for row in rows], total


async def forget_group(session: AsyncSession, group_id: int) -> None:
    """Delete a group with its project roles and its members' memberships."""
    await session.execute(
        delete(ProjectMember).where(
            ProjectMember.entity_type == "g", ProjectMember.entity_id == group_id
        )
    )
    await session.execute(
        delete(UserGroupMembership).where(UserGroupMembership.group_id == group_id)
    )
    await session.execute(delete(UserGroup).where(UserGroup.id == group_id))


async def find_project_name(session: AsyncSession, project_id: int) -> str | None:
    """The name of a (not deleted) project, by id."""
    result = await session.execute(
        select(Project.name).where(Project.project_id == project_id, Project.deleted.is_(False))
    )
    return result.scalar_one_or_none()


# --- console sessions ----------------------------------------------------------------------


async def find_login_session(session: AsyncSession, session_id: str) -> LoginSession | None:
    return await session.get(LoginSession, session_id)


async def delete_login_session(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(LoginSession).where(LoginSession.id == session_id))


async def delete_expired_login_sessions(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(LoginSession).where(LoginSession.expires_at < now))


async def delete_user_login_sessions(
    session: AsyncSession, user_id: int, keep: str | None = None
) -> None:
    """End a user's console sessions, except ``keep`` (the caller's own) if given."""
    stmt = delete(LoginSession).where(LoginSession.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(LoginSession.id != keep)
    await session.execute(stmt)


async def extend_login_session(
    session: AsyncSession, session_id: str, expires_at: datetime
) -> None:
    await session.execute(
        update(LoginSession).where(LoginSession.id == session_id).values(expires_at=expires_at)
    )
