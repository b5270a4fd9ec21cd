"""Harbor's ``GCHistory``: a run of garbage collection, or (``getGCSchedule``) its schedule."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel

from dockyard.gc.service import JOB_TYPE
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution as ExecutionRow
from dockyard.jobs.models import Schedule as ScheduleRow
from dockyard.jobs.schemas import ScheduleObj, exec_history, schedule_obj


class GCHistory(BaseModel):
    id: int | None = None
    job_name: str | None = None
    job_kind: str | None = None
    job_parameters: str | None = None
    schedule: ScheduleObj | None = None
    job_status: str | None = None
    deleted: bool | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None


def gc_history(row: ExecutionRow, schedule: ScheduleRow | None) -> GCHistory:
    """A run: ``job_parameters`` is a JSON string of its parameters and counts."""
    return GCHistory(**exec_history(row, JOB_TYPE, schedule).model_dump())


def schedule_history(row: ScheduleRow | None) -> GCHistory:
    """The schedule as Harbor shows it: type ``None`` when unset."""
    if row is None:
        return GCHistory(schedule=schedule_obj(None))
    return GCHistory(
        id=row.id,
        job_name=JOB_TYPE,
        job_kind=jobs.SCHEDULE,
        job_parameters=json.dumps(jobs.loads(row.params), sort_keys=True),
        schedule=schedule_obj(row),
        job_status="Scheduled",
        deleted=False,
        creation_time=row.creation_time,
        update_time=row.update_time,
    )
