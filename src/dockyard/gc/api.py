"""``/api/v2.0/system/gc``: run garbage collection now or on a schedule, its history,
its log, and stopping a run. System administrators, and robots granted the system
resource ``garbage-collection``."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import ColumnElement
from starlette.responses import PlainTextResponse, Response

from dockyard.db.listing import condition_clause, parse_q, parse_sort
from dockyard.errors import BadRequestError, ConflictError, PreconditionFailedError
from dockyard.gc import service
from dockyard.gc.schemas import GCHistory, gc_history, schedule_history
from dockyard.http.api import (
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
from dockyard.jobs.models import Execution
from dockyard.jobs.schemas import Schedule

_LISTING = ("q", "sort", "page", "page_size")
_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Execution.id,  # type: ignore[dict-item]
    "job_status": Execution.status,  # type: ignore[dict-item]
    "job_kind": Execution.trigger,  # type: ignore[dict-item]
    "creation_time": Execution.start_time,  # type: ignore[dict-item]
    "update_time": Execution.update_time,  # type: ignore[dict-item]
}


async def _allow(api: ApiRequest, action: Action) -> None:
    principal = await api.principal()
    await api.require(
        can(principal, action, Resource.GARBAGE_COLLECTION, None),
        f"{action.value} garbage collection",
    )


@operation("GET", "/system/gc", "getGCHistory", query=_LISTING, response=list[GCHistory])
async def get_gc_history(api: ApiRequest) -> Response:
    """Runs of garbage collection, newest first, with their parameters and results."""
    await _allow(api, Action.LIST)
    page = api.page()
    where = [condition_clause(c, _column(c.key)) for c in parse_q(api.query("q"))]
    order = parse_sort(api.query("sort"), _COLUMNS)
    async with api.state.db.read() as session:
        rows, total = await jobs.list_executions(
            session, service.JOB_TYPE, page, order=order, where=where
        )
        schedule = await schedules.find_schedule(session, service.JOB_TYPE)
    return paged_response(api, [gc_history(r, schedule) for r in rows], total, page)


def _column(key: str) -> ColumnElement[Any]:
    column = _COLUMNS.get(key)
    if column is None:
        raise BadRequestError(f"q cannot filter on {key!r}; keys: {', '.join(sorted(_COLUMNS))}")
    return column


@operation("GET", "/system/gc/{gc_id}", "getGC", response=GCHistory)
async def get_gc(api: ApiRequest) -> Response:
    """One run; ``job_parameters`` holds its parameters and, as it goes, its counts
    (``freed_space``, ``purged_blobs``, ``purged_manifests``…)."""
    await _allow(api, Action.READ)
    gc_id = api.path_int("gc_id")
    async with api.state.db.read() as session:
        row = await jobs.get_execution(session, gc_id, vendor_type=service.JOB_TYPE)
        schedule = await schedules.find_schedule(session, service.JOB_TYPE)
    return json_response(gc_history(row, schedule))


@operation("PUT", "/system/gc/{gc_id}", "stopGC")
async def stop_gc(api: ApiRequest) -> Response:
    """Stop a run: at once when it waits, at its next checkpoint when it runs (its marks
    are given up). Stopping a finished run changes nothing."""
    await _allow(api, Action.STOP)
    gc_id = api.path_int("gc_id")
    async with api.state.db.write() as session:
        row = await jobs.get_execution(session, gc_id, vendor_type=service.JOB_TYPE)
        with contextlib.suppress(PreconditionFailedError):  # finished: nothing to stop
            await jobs.stop_execution(session, row)
    return empty_response()


@operation("GET", "/system/gc/{gc_id}/log", "getGCLog", response=str)
async def get_gc_log(api: ApiRequest) -> Response:
    await _allow(api, Action.READ)
    gc_id = api.path_int("gc_id")
    async with api.state.db.read() as session:
        await jobs.get_execution(session, gc_id, vendor_type=service.JOB_TYPE)
        text = await jobs.execution_log(session, gc_id)
    return PlainTextResponse(text)


@operation("GET", "/system/gc/schedule", "getGCSchedule", response=GCHistory)
async def get_gc_schedule(api: ApiRequest) -> Response:
    """The schedule (type ``None`` when there is none) and the parameters it runs with."""
    await _allow(api, Action.READ)
    async with api.state.db.read() as session:
        schedule = await schedules.find_schedule(session, service.JOB_TYPE)
    return json_response(schedule_history(schedule))


def _body_params(api: ApiRequest, body: Schedule) -> service.GcParams:
    return service.parse_params(body.parameters, api.state.settings.gc_time_window_hours)


@operation("POST", "/system/gc/schedule", "createGCSchedule", body=Schedule, status=201)
async def create_gc_schedule(api: ApiRequest) -> Response:
    """Type ``Manual``: run now (409 while a run is pending or running). Otherwise set
    the schedule (409 when there is one already: update it with PUT)."""
    await _allow(api, Action.CREATE)
    body = await api.json(Schedule)
    spec = schedules.parse_schedule_obj(_schedule_obj(body))
    params = _body_params(api, body)
    async with api.state.db.write() as session:
        if spec.cron_type == schedules.MANUAL:
            execution = await service.start(session, params)
            if execution is None:
                raise ConflictError("a garbage collection is already pending or running")
            return created_response(f"/api/v2.0/system/gc/{execution.id}")
        if await schedules.find_schedule(session, service.JOB_TYPE) is not None:
            raise ConflictError("garbage collection is scheduled already; update it with PUT")
        if spec.cron_type != schedules.NONE:
            await schedules.set_schedule(session, service.JOB_TYPE, spec, params.as_dict())
    return created_response("/api/v2.0/system/gc/schedule")


@operation("PUT", "/system/gc/schedule", "updateGCSchedule", body=Schedule)
async def update_gc_schedule(api: ApiRequest) -> Response:
    """Replace the schedule (type ``None`` removes it). As Harbor: type ``Manual`` runs
    now (409 while a run is pending or running) and a schedule without a type (the
    portal's ``{"cron": ""}``) changes nothing."""
    await _allow(api, Action.UPDATE)
    body = await api.json(Schedule)
    obj = _schedule_obj(body)
    if obj is not None and not obj.get("type"):
        return empty_response()
    spec = schedules.parse_schedule_obj(obj)
    params = _body_params(api, body)
    async with api.state.db.write() as session:
        if spec.cron_type == schedules.MANUAL:
            if await service.start(session, params) is None:
                raise ConflictError("a garbage collection is already pending or running")
        elif spec.cron_type == schedules.NONE:
            await schedules.remove_schedule(session, service.JOB_TYPE)
        else:
            await schedules.set_schedule(session, service.JOB_TYPE, spec, params.as_dict())
    return empty_response()


def _schedule_obj(body: Schedule) -> dict[str, Any] | None:
    if body.schedule is None:
        return None
    return body.schedule.model_dump(exclude_none=True)


operations: list[Operation] = [
    get_gc_history,
    get_gc_schedule,
    create_gc_schedule,
    update_gc_schedule,
    get_gc,
    stop_gc,
    get_gc_log,
]
