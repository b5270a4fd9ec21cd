"""Recording audit events: in the transaction of the change they describe."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit.events import Actor, AuditEvent
from dockyard.audit.models import AuditLog
from dockyard.db.base import utcnow
from dockyard.db.engine import Database

log = logging.getLogger("dockyard.audit")
_MAX_RESOURCE = 1024
_MAX_DESCRIPTION = 4096


def _row(actor: Actor, event: AuditEvent) -> AuditLog:
    return AuditLog(
        project_id=event.project_id,
        operation=event.operation,
        operation_description=event.description[:_MAX_DESCRIPTION],
        operation_result=event.succeeded,
        resource_type=event.resource_type,
        resource=event.resource[:_MAX_RESOURCE],
        username=actor.name[:255],
        client_ip=actor.source_ip[:64],
        op_time=utcnow(),
    )


async def record(session: AsyncSession, actor: Actor, event: AuditEvent) -> None:
    """Add one event to ``session``: it commits (or rolls back) with the change itself."""
    session.add(_row(actor, event))


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
    try:
        async with db.write() as session:
            session.add(_row(actor, failed))
    except Exception:
        log.exception("could not record a failed %s", event)
