"""The garbage collection job type the workers run (``GARBAGE_COLLECTION``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import BadRequestError
from dockyard.gc import service
from dockyard.jobs.models import Execution
from dockyard.jobs.runner import JobType


async def launch_scheduled(
    session: AsyncSession, vendor_id: int, params: Mapping[str, Any], trigger: str
) -> Execution:
    """A schedule's run; while a run is pending or running, that one stands for it."""
    del vendor_id  # GC is system-wide
    running = await service.running_execution(session)
    if running is not None:
        return running
    try:
        parsed = service.parse_params(params, float(params.get("time_window", 2)))
    except (BadRequestError, TypeError, ValueError):
        parsed = service.GcParams()  # stored parameters were checked when the schedule was set
    started = await service.start(session, parsed, trigger)
    assert started is not None
    return started


job_types: list[JobType] = [
    JobType(service.JOB_TYPE, service.run_gc, launcher=launch_scheduled),
]
