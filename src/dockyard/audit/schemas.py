"""Harbor's audit log shapes (swagger definitions of the same names)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from dockyard.jobs.schemas import ScheduleObj


class AuditLog(BaseModel):
    """The legacy shape (``listAuditLogs``, ``getLogs``)."""

    id: int
    username: str
    resource: str
    resource_type: str
    operation: str
    op_time: datetime


class AuditLogExt(BaseModel):
    """Harbor 2.13's shape, with the description and the outcome."""

    id: int
    username: str
    resource: str
    resource_type: str
    operation: str
    operation_description: str
    operation_result: bool
    op_time: datetime


class AuditLogEventType(BaseModel):
    event_type: str


class PurgeSchedule(BaseModel):
    """Harbor's ``ExecHistory`` as ``getPurgeSchedule`` fills it: the schedule, and the
    parameters each scheduled purge runs with (a JSON string). Only ``schedule`` when
    there is none (``{"type": "None"}``)."""

    id: int | None = None
    job_name: str | None = None
    job_kind: str | None = None
    job_parameters: str | None = None
    schedule: ScheduleObj | None = None
    job_status: str | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None
