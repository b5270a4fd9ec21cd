"""System facts: settings shown to clients, statistics, the storage volume.

Knows nothing of HTTP; reads through the caller's session. Health and readiness live in
``system/health.py``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.errors import NotFoundError
from dockyard.iam.policy import ALL_PROJECTS_SCOPE, Principal
from dockyard.projects.models import Project, ProjectMember, ProjectMetadata
from dockyard.registry.models import Blob, ProjectBlob, Repository
from dockyard.system import config, readonly

log = logging.getLogger("dockyard.system")


def dockyard_version() -> str:
    """The installed package's version, Harbor-style (``v0.1.0``)."""
    try:
        return "v" + version("dockyard")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "dev"


# --- volumes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeUsage:
    total: int
    free: int


async def storage_volumes(root: Path | None) -> list[VolumeUsage]:
    """Size and free space of the file system holding the blob store (``getVolumes``).

    ``root`` is ``None`` for an object store (S3): it has no volume whose size or free
    space could be told, so the list is empty rather than the figures of some local disk
    that holds no blob (``docs/health.md``)."""
    if root is None:
        return []
    try:
        usage = await asyncio.to_thread(shutil.disk_usage, root)
    except OSError as exc:
        raise NotFoundError(f"the storage volume cannot be measured: {exc.strerror}") from None
    return [VolumeUsage(total=usage.total, free=usage.free)]


# --- system properties -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SystemProperties:
    """Settings kept in the ``properties`` table that ``/systeminfo`` shows."""

    self_registration: bool
    banner_message: str
    project_creation_restriction: str
    notification_enable: bool
    read_only: bool


async def system_properties(session: AsyncSession) -> SystemProperties:
    return SystemProperties(
        self_registration=await config.value(session, config.SELF_REGISTRATION) is True,
        banner_message=str(await config.value(session, config.BANNER_MESSAGE)),
        project_creation_restriction=str(
            await config.value(session, config.PROJECT_CREATION_RESTRICTION)
        ),
        notification_enable=await config.value(session, config.NOTIFICATION_ENABLE) is True,
        read_only=await readonly.read(session),
    )


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statistics:
    """Harbor's ``Statistic``, counted over the projects the caller can see."""

    private_project_count: int
    private_repo_count: int
    public_project_count: int
    public_repo_count: int
    total_project_count: int
    total_repo_count: int
    total_storage_consumption: int


async def statistics(session: AsyncSession, principal: Principal) -> Statistics:
    """Public projects count for everyone; private ones for admins (all) or members (theirs).

    ``total_storage_consumption`` is shown to system admins only, as Harbor does:
    the size of the distinct blobs live projects hold. Others see 0.
    """
    public = Project.project_id.in_(_public_project_ids())
    public_projects = await _count_projects(session, public)
    public_repos = await _count_repositories(session, public)
    if principal.sysadmin:
        total_projects = await _count_projects(session)
        total_repos = await _count_repositories(session)
        storage = await _storage_consumption(session)
    else:
        private = and_(Project.project_id.in_(_member_project_ids(principal)), ~public)
        total_projects = public_projects + await _count_projects(session, private)
        total_repos = public_repos + await _count_repositories(session, private)
        storage = 0
    return Statistics(
        private_project_count=total_projects - public_projects,
        private_repo_count=total_repos - public_repos,
        public_project_count=public_projects,
        public_repo_count=public_repos,
        total_project_count=total_projects,
        total_repo_count=total_repos,
        total_storage_consumption=storage,
    )


def _public_project_ids() -> Select[int]:
    return select(ProjectMetadata.project_id).where(
        ProjectMetadata.name == "public", ProjectMetadata.value == "true"
    )


def _member_project_ids(principal: Principal) -> Select[int]:
    """Projects ``principal`` holds a role in (users, through groups too) or is granted (robots)."""
    if principal.is_robot:
        scopes = {grant.scope for grant in principal.grants}
        if ALL_PROJECTS_SCOPE in scopes:
            return select(Project.project_id)
        ids = [int(s.removeprefix("/project/")) for s in scopes if _is_project_scope(s)]
        return select(Project.project_id).where(Project.project_id.in_(ids))
    if principal.user_id is None:
        return select(Project.project_id).where(false())
    as_user = and_(ProjectMember.entity_type == "u", ProjectMember.entity_id == principal.user_id)
    as_group = and_(
        ProjectMember.entity_type == "g", ProjectMember.entity_id.in_(principal.group_ids)
    )
    return select(ProjectMember.project_id).where(or_(as_user, as_group))


def _is_project_scope(scope: str) -> bool:
    rest = scope.removeprefix("/project/")
    return rest != scope and rest.isascii() and rest.isdigit() and len(rest) <= 18


async def _count_projects(session: AsyncSession, *where: ColumnElement[bool]) -> int:
    stmt = select(func.count()).select_from(Project).where(Project.deleted.is_(False), *where)
    return int(await session.scalar(stmt) or 0)


async def _count_repositories(session: AsyncSession, *where: ColumnElement[bool]) -> int:
    stmt = (
        select(func.count())
        .select_from(Repository)
        .join(Project, Project.project_id == Repository.project_id)
        .where(Project.deleted.is_(False), *where)
    )
    return int(await session.scalar(stmt) or 0)


async def _storage_consumption(session: AsyncSession) -> int:
    held = (
        select(ProjectBlob.blob_id)
        .join(Project, Project.project_id == ProjectBlob.project_id)
        .where(Project.deleted.is_(False))
    )
    stmt = select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.id.in_(held))
    return int(await session.scalar(stmt) or 0)


# --- configuration ---------------------------------------------------------------------


async def update_configuration(
    session: AsyncSession, actor: Actor, changes: Mapping[str, Any]
) -> dict[str, config.ConfigValue]:
    """Change editable configuration items, all or nothing (``config.update`` checks
    each), and record one audit event naming the keys changed — the keys only, as a
    later item may hold a secret. The REST API and the console both change settings here."""
    changed = await config.update(session, changes)
    if config.READ_ONLY in changed:
        readonly.forget()
    if changed.keys() & audit.SETTING_KEYS:
        audit.settings_changed(session)
    if changed:
        await audit.record(
            session,
            actor,
            AuditEvent(
                "update", "configuration", "configurations", 0, "set " + ", ".join(sorted(changed))
            ),
        )
    return changed
