"""Recording audit events (in the transaction of the change they describe) and reading them.

Each change users make records exactly one event with ``record`` inside its own
transaction, so the event commits or rolls back with the change. A refused
change is recorded with ``record_failure``: queued for the audit hooks' background
writer when the app runs (bounded, see ``audit.refusals``), else in a transaction
of its own (a command-line tool). Event
types an administrator listed in ``disabled_audit_log_event_types`` are not
written. Events carry names, never passwords or secrets.

When ``audit_log_forward_endpoint`` is set, every event written is also sent to
that syslog endpoint once its transaction commits (``audit.forwarding``); with
``skip_audit_log_database`` it is only sent, not stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from dockyard.audit import forwarding
from dockyard.audit import repository as repo
from dockyard.audit.events import Actor, AuditEvent, parse_event_types
from dockyard.audit.models import AuditLog
from dockyard.audit.syslog import Endpoint, EndpointError, SyslogEvent, parse_endpoint
from dockyard.db.base import utcnow
from dockyard.db.engine import Database, PerDatabase
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


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """What the configuration says about writing events (read once per change or batch)."""

    disabled: frozenset[str] = frozenset()
    """``disabled_audit_log_event_types``: event types neither stored nor forwarded."""
    endpoint: Endpoint | None = None
    """``audit_log_forward_endpoint``: where events are also sent (None: nowhere)."""
    skip_database: bool = False
    """``skip_audit_log_database``: forward only (never without an endpoint)."""


SETTING_KEYS = (
    config.DISABLED_AUDIT_LOG_EVENT_TYPES,
    config.AUDIT_LOG_FORWARD_ENDPOINT,
    config.SKIP_AUDIT_LOG_DATABASE,
)


async def audit_settings(session: AsyncSession) -> AuditSettings:
    """The three audit items, in one query."""
    stored = await repo.properties(session, SETTING_KEYS)

    def item(key: str) -> config.ConfigValue:
        raw = stored.get(key)
        return config.ITEMS[key].default if raw is None else config.ITEMS[key].decode(raw)

    try:
        endpoint = parse_endpoint(str(item(config.AUDIT_LOG_FORWARD_ENDPOINT)))
    except EndpointError:  # stored before it was checked; forward nowhere rather than fail
        endpoint = None
    return AuditSettings(
        disabled=parse_event_types(str(item(config.DISABLED_AUDIT_LOG_EVENT_TYPES))),
        endpoint=endpoint,
        skip_database=endpoint is not None and bool(item(config.SKIP_AUDIT_LOG_DATABASE)),
    )


SETTINGS_SECONDS = 2.0
"""How stale another process's view of the three audit items may get (as read-only mode's)."""
# Per engine (two apps in one process keep theirs apart): when the items were read, the
# change count then, and what they said; and how many changes this process committed.
_settings_seen: WeakKeyDictionary[Engine, tuple[float, int, AuditSettings]] = WeakKeyDictionary()
_changes: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()
_CHANGE_HOOKED = "dockyard.audit_settings_hooked"


async def current_settings(session: AsyncSession) -> AuditSettings:
    """``audit_settings``, read at most every ``SETTINGS_SECONDS``: every change recorded
    (a push) would otherwise pay a query for them. A change committed by this process
    is seen at once (``settings_changed``)."""
    engine = session.get_bind()
    if not isinstance(engine, Engine):
        return await audit_settings(session)
    changes = _changes.get(engine, 0)
    seen = _settings_seen.get(engine)
    now = time.monotonic()
    if seen is not None and seen[1] == changes and now - seen[0] < SETTINGS_SECONDS:
        return seen[2]
    settings = await audit_settings(session)
    _settings_seen[engine] = (now, changes, settings)  # changes as counted before the read
    return settings


def _settings_committed(session: Session) -> None:
    session.info.pop(_CHANGE_HOOKED, None)
    engine = session.get_bind()
    if isinstance(engine, Engine):
        _changes[engine] = _changes.get(engine, 0) + 1


def settings_changed(session: AsyncSession) -> None:
    """The audit items change in ``session``'s transaction: once it commits, this
    process reads them again before its next record."""
    sync = session.sync_session
    if not sync.info.get(_CHANGE_HOOKED):
        sync.info[_CHANGE_HOOKED] = True
        event.listen(sync, "after_commit", _settings_committed, once=True)


async def disabled_event_types(session: AsyncSession) -> frozenset[str]:
    """The event types an administrator switched off (``disabled_audit_log_event_types``)."""
    return (await audit_settings(session)).disabled


def _syslog_event(row: AuditLog) -> SyslogEvent:
    return SyslogEvent(
        time=row.op_time,
        event_type=AuditEvent(row.operation, row.resource_type, "").event_type,
        operation=row.operation,
        resource_type=row.resource_type,
        resource=row.resource,
        project_id=row.project_id,
        username=row.username,
        client_ip=row.client_ip,
        description=row.operation_description,
        succeeded=row.operation_result,
    )


def _write(session: AsyncSession, settings: AuditSettings, rows: list[AuditLog]) -> None:
    if not rows:
        return
    if settings.endpoint is not None:
        forwarding.after_commit(session, settings.endpoint, [_syslog_event(r) for r in rows])
    if not settings.skip_database:
        session.add_all(rows)


async def record(session: AsyncSession, actor: Actor, event: AuditEvent) -> None:
    """Add one event to ``session``: it commits (or rolls back) with the change itself,
    and is forwarded only if it commits."""
    settings = await current_settings(session)
    if event.event_type in settings.disabled:
        return
    _write(session, settings, [_row(actor, event)])


def add_rows(
    session: AsyncSession,
    settings: AuditSettings,
    events: Collection[tuple[Actor, AuditEvent, datetime]],
) -> None:
    """Add many events that happened at the times given (the pull batch, refusals),
    leaving out the disabled types."""
    _write(
        session,
        settings,
        [
            _row(actor, event, when)
            for actor, event, when in events
            if event.event_type not in settings.disabled
        ],
    )


async def record_alone(db: Database, actor: Actor, event: AuditEvent) -> None:
    """Record an event that has no transaction of its own (a login) in a new one.

    Never raises: a failed audit write is logged and must not fail the caller.
    """
    try:
        async with db.write() as session:
            await record(session, actor, event)
    except Exception:
        log.exception("could not record %s", event.event_type)


class RefusalSink(Protocol):
    """Where a running app queues refusals (``hooks.RegistryHooks``)."""

    def refused(self, actor: Actor, event: AuditEvent) -> None: ...


_REFUSAL_SINKS: PerDatabase[RefusalSink] = PerDatabase()


def attach_refusals(db: Database, sink: RefusalSink) -> bool:
    """Make ``sink`` take the refusals recorded on ``db``; False when another does."""
    return _REFUSAL_SINKS.attach(db, sink)


def detach_refusals(db: Database, sink: RefusalSink) -> None:
    _REFUSAL_SINKS.detach(db, sink)


async def record_failure(
    db: Database, actor: Actor, event: AuditEvent, *, reason: str = ""
) -> None:
    """Record a refused or failed change (its own transaction rolled back), with
    ``reason`` (the refusal's message) after its description when given.

    In a running app the event is only queued (no database work on the request
    path; repeats coalesced and a flood rate-limited, see ``audit.refusals``);
    without one it is written in a transaction of its own. Never raises: a failed
    audit write must not hide the original error."""
    failed = replace(event, succeeded=False)
    if reason:
        said = f"{event.description} (refused: {reason})" if event.description else ""
        failed = replace(failed, description=said or f"refused: {reason}")
    sink = _REFUSAL_SINKS.find(db.write_engine.sync_engine)
    if sink is not None:
        sink.refused(actor, failed)
        return
    await record_alone(db, actor, failed)


@asynccontextmanager
async def failure_recorded(db: Database, actor: Actor, event: AuditEvent) -> AsyncIterator[None]:
    """Around a change: when it is refused (``DeniedError``, ``PreconditionFailedError``),
    record ``event`` as failed, then let the refusal through."""
    try:
        yield
    except (DeniedError, PreconditionFailedError) as refusal:
        await record_failure(db, actor, event, reason=refusal.message)
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
