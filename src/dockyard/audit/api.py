"""``/api/v2.0`` audit log: Harbor's legacy ``AuditLog`` and 2.13's ``AuditLogExt`` listings,
and the purge of old events (``/system/purgeaudit``).

Administrators (and robots granted the system ``audit-log:list``) read every
event; other signed-in users read the events of the projects where they may
list logs (project admins), as Harbor does. Per-project listings need
``log:list`` in that project. Purges need the system ``purge-audit`` permission
(administrators, or robots granted it).
"""

from __future__ import annotations

import json

from starlette.responses import PlainTextResponse, Response

from dockyard.audit import purge, service
from dockyard.audit.events import EVENT_TYPES
from dockyard.audit.models import AuditLog as AuditRow
from dockyard.audit.schemas import AuditLog, AuditLogEventType, AuditLogExt, PurgeSchedule
from dockyard.errors import BadRequestError, NotFoundError
from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.iam.policy import Action, Resource, can
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Schedule as ScheduleRow
from dockyard.jobs.schemas import ExecHistory, Schedule, ScheduleObj, exec_history, schedule_obj
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


# --- purging old events ------------------------------------------------------------------

_PURGE_PATH = "/system/purgeaudit"


async def _purge_allowed(api: ApiRequest, action: Action, what: str) -> None:
    principal = await api.principal()
    await api.require(can(principal, action, Resource.PURGE_AUDIT, None), what)


def _purge_id(api: ApiRequest) -> int:
    """``{purge_id}``; one that is no number names no purge (404, as swagger declares)."""
    try:
        return api.path_int("purge_id")
    except BadRequestError:
        raise NotFoundError(f"no audit log purge {api.path('purge_id')[:64]!r}") from None


def _schedule_view(row: ScheduleRow | None) -> PurgeSchedule:
    if row is None:
        return PurgeSchedule(schedule=ScheduleObj(type=schedules.NONE))
    return PurgeSchedule(
        id=row.id,
        job_name=purge.VENDOR_TYPE,
        job_kind=jobs.SCHEDULE,
        job_parameters=json.dumps(jobs.loads(row.params), sort_keys=True),
        schedule=schedule_obj(row),
        job_status="Scheduled",
        creation_time=row.creation_time,
        update_time=row.update_time,
    )


def _schedule_body(body: Schedule) -> dict[str, object] | None:
    return body.schedule.model_dump(exclude_none=True) if body.schedule is not None else None


@operation("GET", "/system/purgeaudit/schedule", "getPurgeSchedule", response=PurgeSchedule)
async def get_purge_schedule(api: ApiRequest) -> Response:
    """The purge schedule and the parameters it runs with (type ``None`` when unset)."""
    await _purge_allowed(api, Action.READ, "read the audit log purge schedule")
    async with api.state.db.read() as session:
        row = await purge.find_schedule(session)
    return json_response(_schedule_view(row))


@operation("POST", "/system/purgeaudit/schedule", "createPurgeSchedule", body=Schedule, status=201)
async def create_purge_schedule(api: ApiRequest) -> Response:
    """``Manual``: purge now (``Location`` is the run); other types set the schedule."""
    await _purge_allowed(api, Action.CREATE, "purge the audit log")
    body = await api.json(Schedule)
    async with api.state.db.write() as session:
        started = await purge.set_schedule(session, _schedule_body(body), body.parameters)
    if started is not None:
        return created_response(f"{API_PREFIX}{_PURGE_PATH}/{started.id}")
    return created_response(f"{API_PREFIX}{_PURGE_PATH}/schedule")


@operation("PUT", "/system/purgeaudit/schedule", "updatePurgeSchedule", body=Schedule)
async def update_purge_schedule(api: ApiRequest) -> Response:
    """Change the schedule (``None`` removes it). As Harbor: ``Manual`` purges now and a
    schedule without a type (the portal's ``{"cron": ""}``) changes nothing."""
    await _purge_allowed(api, Action.UPDATE, "change the audit log purge schedule")
    body = await api.json(Schedule)
    obj = _schedule_body(body)
    if obj is not None and not obj.get("type"):
        return empty_response()
    async with api.state.db.write() as session:
        await purge.set_schedule(session, obj, body.parameters)
    return empty_response()


@operation(
    "GET",
    "/system/purgeaudit",
    "getPurgeHistory",
    query=_LISTING,
    response=list[ExecHistory],
)
async def get_purge_history(api: ApiRequest) -> Response:
    """Purge runs, newest first, with their parameters and ``purged_count``."""
    await _purge_allowed(api, Action.LIST, "list audit log purges")
    page = api.page()
    async with api.state.db.read() as session:
        rows, total = await purge.history(session, api.query("q"), api.query("sort"), page)
        schedule = await purge.find_schedule(session)
    return paged_response(
        api, [exec_history(r, purge.VENDOR_TYPE, schedule) for r in rows], total, page
    )


@operation("GET", "/system/purgeaudit/{purge_id}", "getPurgeJob", response=ExecHistory)
async def get_purge_job(api: ApiRequest) -> Response:
    """One purge run."""
    await _purge_allowed(api, Action.READ, "read audit log purges")
    purge_id = _purge_id(api)
    async with api.state.db.read() as session:
        row = await purge.get_run(session, purge_id)
        schedule = await purge.find_schedule(session)
    return json_response(exec_history(row, purge.VENDOR_TYPE, schedule))


@operation("PUT", "/system/purgeaudit/{purge_id}", "stopPurge")
async def stop_purge(api: ApiRequest) -> Response:
    """Stop a purge (it ends after its current batch); one already ended stays as it is."""
    await _purge_allowed(api, Action.STOP, "stop audit log purges")
    purge_id = _purge_id(api)
    async with api.state.db.write() as session:
        await purge.stop(session, purge_id)
    return empty_response()


@operation("GET", "/system/purgeaudit/{purge_id}/log", "getPurgeJobLog")
async def get_purge_job_log(api: ApiRequest) -> Response:
    """A purge run's log, as text."""
    await _purge_allowed(api, Action.READ, "read audit log purges")
    purge_id = _purge_id(api)
    async with api.state.db.read() as session:
        text = await purge.run_log(session, purge_id)
    return PlainTextResponse(text)


operations: list[Operation] = [
    list_audit_logs,
    list_audit_log_exts,
    list_audit_log_event_types,
    get_logs,
    get_log_exts,
    # The schedule's literal path before the {purge_id} ones that would also match it.
    get_purge_schedule,
    create_purge_schedule,
    update_purge_schedule,
    get_purge_history,
    get_purge_job,
    stop_purge,
    get_purge_job_log,
]
