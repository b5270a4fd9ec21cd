"""Job types for the job system's own tests, loaded through the ``job_plugins`` setting.

``TEST_RECORD`` appends ``<task id> <pid> <phase>`` lines to the file named by its
``path`` parameter (``start`` when it begins, ``done`` when it ends), after
sleeping ``sleep`` seconds, and can be told to fail its first ``fail_times`` attempts
(``error``), or to fail for good (``permanent``); when its execution ends,
``finish_path`` (an execution attribute) gets ``finished <id> <status>``.
``TEST_STEPS`` counts to ``steps`` with a checkpoint after each step, resuming
from the saved count.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution
from dockyard.jobs.runner import JobContext, JobType, PermanentJobError


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


async def record(ctx: JobContext) -> Mapping[str, Any] | None:
    path = str(ctx.params["path"])
    _append(path, f"{ctx.task_id} {os.getpid()} start {ctx.attempt}")
    ctx.log(f"attempt {ctx.attempt} on {os.getpid()}")
    await asyncio.sleep(float(ctx.params.get("sleep", 0)))
    if ctx.params.get("permanent"):
        raise PermanentJobError("told to fail")
    if ctx.attempt <= int(ctx.params.get("fail_times", 0)):
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    _append(path, f"{ctx.task_id} {os.getpid()} done {ctx.attempt}")
    return {"recorded_by": os.getpid()}


async def steps(ctx: JobContext) -> Mapping[str, Any] | None:
    done = int((ctx.progress or {}).get("done", 0))
    total = int(ctx.params.get("steps", 10))
    while done < total:
        await asyncio.sleep(float(ctx.params.get("sleep", 0.05)))
        done += 1
        ctx.log(f"step {done}")
        await ctx.checkpoint({"done": done}, {"done": done})
    return {"done": done, "attempt": ctx.attempt}


async def record_finished(session: AsyncSession, execution: Execution) -> None:
    """Appends ``finished <execution id> <status>`` to the execution's ``finish_path``."""
    path = jobs.loads(execution.extra_attrs).get("finish_path")
    if path:
        _append(str(path), f"finished {execution.id} {execution.status}")


job_types = [
    JobType("TEST_RECORD", record, on_finished=record_finished),
    JobType("TEST_STEPS", steps),
]
