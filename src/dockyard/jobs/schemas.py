"""Harbor's job shapes (swagger definitions of the same names) and their builders.

Features with a job (GC, audit purge, retention, webhooks) show their runs in
these shapes; the builders here turn rows into them once, for all of them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dockyard.db.base import utcnow
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution as ExecutionRow
from dockyard.jobs.models import Schedule as ScheduleRow
from dockyard.jobs.models import Task as TaskRow
from dockyard.jobs.schedules import NONE, next_fire


class Metrics(BaseModel):
    task_count: int = 0
    success_task_count: int = 0
    error_task_count: int = 0
    pending_task_count: int = 0
    running_task_count: int = 0
    scheduled_task_count: int = 0
    stopped_task_count: int = 0


class Execution(BaseModel):
    id: int
    vendor_type: str
    vendor_id: int
    status: str
    status_message: str = ""
    metrics: Metrics | None = None
    trigger: str
    extra_attrs: dict[str, Any] = Field(default_factory=dict)
    start_time: datetime
    end_time: datetime | None = None


class Task(BaseModel):
    id: int
    execution_id: int
    status: str
    status_message: str = ""
    run_count: int
    extra_attrs: dict[str, Any] = Field(default_factory=dict)
    creation_time: datetime
    update_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None


class ScheduleObj(BaseModel):
    type: str | None = None
    cron: str | None = None
    next_scheduled_time: datetime | None = None


class Schedule(BaseModel):
    """A feature's schedule (``/system/gc/schedule``…), also the body that sets it."""

    id: int | None = None
    status: str | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None
    schedule: ScheduleObj | None = None
    parameters: dict[str, Any] | None = None


class ExecHistory(BaseModel):
    """One run of a system job (Harbor's ``GCHistory``/``ExecHistory``)."""

    id: int
    job_name: str
    job_kind: str
    job_parameters: str
    schedule: ScheduleObj | None = None
    job_status: str
    deleted: bool = False
    creation_time: datetime
    update_time: datetime


class JobQueue(BaseModel):
    job_type: str
    count: int
    latency: int
    paused: bool


class WorkerPool(BaseModel):
    pid: int
    worker_pool_id: str
    start_at: datetime
    heartbeat_at: datetime
    concurrency: int
    host: str


class Worker(BaseModel):
    id: str
    pool_id: str
    job_name: str = ""
    job_id: str = ""
    start_at: datetime | None = None
    check_in: str = ""
    checkin_at: datetime | None = None


class ScheduleTask(BaseModel):
    id: int
    vendor_type: str
    vendor_id: int
    cron: str
    update_time: datetime


class SchedulerStatus(BaseModel):
    paused: bool


class ActionRequest(BaseModel):
    action: str


# --- builders -----------------------------------------------------------------


def execution_view(row: ExecutionRow, metrics: jobs.Metrics | None = None) -> Execution:
    return Execution(
        id=row.id,
        vendor_type=row.vendor_type,
        vendor_id=row.vendor_id,
        status=row.status,
        status_message=row.status_message,
        metrics=Metrics(**metrics.as_dict()) if metrics is not None else None,
        trigger=row.trigger,
        extra_attrs=jobs.loads(row.extra_attrs),
        start_time=row.start_time,
        end_time=row.end_time,
    )


def task_view(row: TaskRow) -> Task:
    return Task(
        id=row.id,
        execution_id=row.execution_id,
        status=row.status,
        status_message=row.status_message,
        run_count=row.run_count,
        extra_attrs=jobs.loads(row.extra_attrs),
        creation_time=row.creation_time,
        update_time=row.update_time,
        start_time=row.start_time,
        end_time=row.end_time,
    )


def schedule_obj(row: ScheduleRow | None) -> ScheduleObj:
    if row is None:
        return ScheduleObj(type=NONE)
    return ScheduleObj(
        type=row.cron_type, cron=row.cron, next_scheduled_time=next_fire(row.cron, utcnow())
    )


def schedule_view(row: ScheduleRow | None) -> Schedule:
    """Harbor's ``Schedule`` for a feature's schedule row (type ``None`` when unset)."""
    if row is None:
        return Schedule(schedule=ScheduleObj(type=NONE))
    return Schedule(
        id=row.id,
        status="Scheduled",
        creation_time=row.creation_time,
        update_time=row.update_time,
        schedule=schedule_obj(row),
        parameters=jobs.loads(row.params),
    )


def exec_history(row: ExecutionRow, job_name: str, schedule: ScheduleRow | None) -> ExecHistory:
    """An execution as a ``GCHistory``/``ExecHistory`` row: its parameters as a JSON string,
    ``job_kind`` its trigger, ``schedule`` the schedule when it was started by one."""
    params = jobs.loads(row.extra_attrs)
    return ExecHistory(
        id=row.id,
        job_name=job_name,
        job_kind=row.trigger,
        job_parameters=json.dumps(params, sort_keys=True),
        schedule=schedule_obj(schedule) if row.trigger == jobs.SCHEDULE else None,
        job_status=row.status,
        deleted=False,
        creation_time=row.start_time,
        update_time=row.update_time,
    )
