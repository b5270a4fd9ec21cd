"""Recording audit events (in the transaction of the change they describe) and reading them.

Each change users make records exactly one event with ``record`` inside its own
transaction, so the event commits or rolls back with the change. A refused
change is recorded with ``record_failure`` in a transaction of its own. Event
types an administrator listed in ``disabled_audit_log_event_types`` are not
written. Events carry names, never passwords or secrets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import repository as repo
from dockyard.audit.events import Actor, AuditEvent, parse_event_types
from dockyard.audit.models import AuditLog
from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.db.listing import PageRequest, parse_q
from dockyard.errors import BadRequestError, DeniedError, PreconditionFailedError
from dockyard.iam.policy import Action, Principal, ProjectContext, Resource, Role, can
from dockyard.system import config

log = logging.getLogger("dockyard.audit")
_MAX_RESOURCE = 1024
_MAX_DESCRIPTION = 4096
_MAX_SORT = 256


def _row(actor: Actor, event: AuditEvent, when: datetime | None = None) -> AuditLog:
    return AuditLog(
        project_id=event.project_id,
        operation=event.operation,
        operation_description=event.description[:_MAX_DESCRIPTION],
        operation_result=event.succeeded,
        resource_type=event.resource_type,
        resource=event.resource[:_MAX_RESOURCE],
        username=actor.name[:255],
        client_ip=actor.source_ip[:64],
        op_time=when or utcnow(),
    )


async def disabled_event_types(session: AsyncSession) -> frozenset[str]:
    """The event types an administrator switched off (``disabled_audit_log_event_types``)."""
    value = await config.value(session, config.DISABLED_AUDIT_LOG_EVENT_TYPES)
    return parse_event_types(str(value))


async def record(session: AsyncSession, actor: Actor, event: AuditEvent) -> None:
    """Add one event to ``session``: it commits (or rolls back) with the change itself."""
    if event.event_type in await disabled_event_types(session):
        return
    session.add(_row(actor, event))


def add_rows(session: AsyncSession, events: Collection[tuple[Actor, AuditEvent, datetime]]) -> None:
    """Add many events that happened at the times given (the pull batch); the caller
    checked the disabled types."""
    session.add_all(_row(actor, event, when) for actor, event, when in events)


async def record_alone(db: Database, actor: Actor, event: AuditEvent) -> None:
    """Record an event that has no transaction of its own (a login) in a new one.

    Never raises: a failed audit write is logged and must not fail the caller.
    """
    try:
        async with db.write() as session:
            await record(session, actor, event)
    except Exception:
        log.exception("could not record %s", event.event_type)


async def record_failure(db: Database, actor: Actor, event: AuditEvent) -> None:
    """Record a refused or failed change in a transaction of its own (the change's
    transaction rolled back). Never raises: a failed audit write must not hide
    the original error."""
    failed = AuditEvent(
        event.operation,
        event.resource_type,
        event.resource,
        event.project_id,
        event.description,
        succeeded=False,
    )
    await record_alone(db, actor, failed)


@asynccontextmanager
async def failure_recorded(db: Database, actor: Actor, event: AuditEvent) -> AsyncIterator[None]:
    """Around a change: when it is refused (``DeniedError``, ``PreconditionFailedError``),
    record ``event`` as failed, then let the refusal through."""
    try:
        yield
    except (DeniedError, PreconditionFailedError) as refusal:
        await record_failure(db, actor, event)
        refusal.audited = True
        raise


def login_event(username: str, how: str) -> AuditEvent:
    """A login by ``username`` (the name given, never the password)."""
    return AuditEvent("login", "user", username, 0, f"login through {how}")


# --- reading ------------------------------------------------------------------------------


def _check_sort(sort: str | None) -> str | None:
    if sort is not None and len(sort) > _MAX_SORT:
        raise BadRequestError(f"sort is longer than {_MAX_SORT} characters")
    return sort


async def readable_projects(session: AsyncSession, principal: Principal) -> set[int] | None:
    """The projects whose events ``principal`` may list; None for every event.

    System ``audit-log:list`` (administrators, robots granted it) reads everything;
    a user reads the projects where a role grants ``log:list`` (project admins);
    anyone else reads nothing.
    """
    if can(principal, Action.LIST, Resource.AUDIT_LOG, None):
        return None
    if principal.is_robot or principal.user_id is None:
        return set()
    roles = await repo.member_project_roles(session, principal.user_id, principal.group_ids)
    readable = set()
    for project_id, found in roles.items():
        context = ProjectContext(
            project_id=project_id,
            name="",
            public=False,
            roles=frozenset(Role(r) for r in found if r in Role._value2member_map_),
        )
        if can(principal, Action.LIST, Resource.LOG, context):
            readable.add(project_id)
    return readable


async def list_logs(
    session: AsyncSession,
    principal: Principal,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[AuditLog], int]:
    """``listAuditLogs``/``listAuditLogExts``: every event for administrators, the events
    of the projects a user administers otherwise (as Harbor)."""
    conditions = parse_q(q)
    project_ids = await readable_projects(session, principal)
    return await repo.list_logs(session, conditions, _check_sort(sort), page, project_ids)


async def list_project_logs(
    session: AsyncSession,
    project_id: int,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[AuditLog], int]:
    """``getLogs``/``getLogExts``: one project's events (the caller checked ``log:list``)."""
    conditions = parse_q(q)
    return await repo.list_logs(session, conditions, _check_sort(sort), page, {project_id})
