"""``/api/v2.0`` audit log: Harbor's legacy ``AuditLog`` and 2.13's ``AuditLogExt`` listings.

Administrators (and robots granted the system ``audit-log:list``) read every
event; other signed-in users read the events of the projects where they may
list logs (project admins), as Harbor does. Per-project listings need
``log:list`` in that project.
"""

from __future__ import annotations

from starlette.responses import Response

from dockyard.audit import service
from dockyard.audit.events import EVENT_TYPES
from dockyard.audit.models import AuditLog as AuditRow
from dockyard.audit.schemas import AuditLog, AuditLogEventType, AuditLogExt
from dockyard.http.api import ApiRequest, Operation, json_response, operation, paged_response
from dockyard.iam.policy import Action, Resource, can
from dockyard.projects import service as projects

_LISTING = ("q", "sort", "page", "page_size")


def _legacy(row: AuditRow) -> AuditLog:
    return AuditLog(
        id=row.id,
        username=row.username,
        resource=row.resource,
        resource_type=row.resource_type,
        operation=row.operation,
        op_time=row.op_time,
    )


def _ext(row: AuditRow) -> AuditLogExt:
    return AuditLogExt(
        id=row.id,
        username=row.username,
        resource=row.resource,
        resource_type=row.resource_type,
        operation=row.operation,
        operation_description=row.operation_description,
        operation_result=row.operation_result,
        op_time=row.op_time,
    )


async def _all_logs(api: ApiRequest) -> tuple[list[AuditRow], int]:
    principal = await api.user()
    page = api.page()
    async with api.state.db.read() as session:
        return await service.list_logs(session, principal, api.query("q"), api.query("sort"), page)


async def _project_logs(api: ApiRequest) -> tuple[list[AuditRow], int]:
    principal = await api.principal()
    page = api.page()
    async with api.state.db.read() as session:
        project, context = await projects.resolve_project(
            session, principal, api.path("project_name"), by_name=True
        )
        projects.require(principal, Action.LIST, Resource.LOG, context)
        return await service.list_project_logs(
            session, project.project_id, api.query("q"), api.query("sort"), page
        )


@operation("GET", "/audit-logs", "listAuditLogs", query=_LISTING, response=list[AuditLog])
async def list_audit_logs(api: ApiRequest) -> Response:
    """Audit events (legacy shape): all for administrators, else the projects one administers."""
    rows, total = await _all_logs(api)
    return paged_response(api, [_legacy(r) for r in rows], total, api.page())


@operation("GET", "/auditlog-exts", "listAuditLogExts", query=_LISTING, response=list[AuditLogExt])
async def list_audit_log_exts(api: ApiRequest) -> Response:
    """Audit events with description and outcome (Harbor 2.13)."""
    rows, total = await _all_logs(api)
    return paged_response(api, [_ext(r) for r in rows], total, api.page())


@operation(
    "GET", "/auditlog-exts/events", "listAuditLogEventTypes", response=list[AuditLogEventType]
)
async def list_audit_log_event_types(api: ApiRequest) -> Response:
    """The event types Dockyard records (for those who may list the audit log)."""
    principal = await api.principal()
    await api.require(
        can(principal, Action.LIST, Resource.AUDIT_LOG, None), "list audit log event types"
    )
    return json_response([AuditLogEventType(event_type=t) for t in EVENT_TYPES])


@operation(
    "GET", "/projects/{project_name}/logs", "getLogs", query=_LISTING, response=list[AuditLog]
)
async def get_logs(api: ApiRequest) -> Response:
    """One project's audit events (legacy shape); needs ``log:list`` there."""
    rows, total = await _project_logs(api)
    return paged_response(api, [_legacy(r) for r in rows], total, api.page())


@operation(
    "GET",
    "/projects/{project_name}/auditlog-exts",
    "getLogExts",
    query=_LISTING,
    response=list[AuditLogExt],
)
async def get_log_exts(api: ApiRequest) -> Response:
    """One project's audit events with description and outcome; needs ``log:list`` there."""
    rows, total = await _project_logs(api)
    return paged_response(api, [_ext(r) for r in rows], total, api.page())


operations: list[Operation] = [
    list_audit_logs,
    list_audit_log_exts,
    list_audit_log_event_types,
    get_logs,
    get_log_exts,
]
