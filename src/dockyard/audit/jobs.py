"""The audit job types the workers run: ``PURGE_AUDIT_LOG``.

A purge deletes the selected events in batches of ``PURGE_BATCH``, each in a
short transaction of its own that also adds the batch to the execution's
``purged_count``, so the count is exact whatever happens later. Between batches
it checkpoints: a stop request ends it there, and a run taken over after a
worker died resumes with the same cut-off time (saved in the first checkpoint)
and the count so far. A dry run only counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dockyard.audit import purge
from dockyard.audit import repository as repo
from dockyard.db.base import utcnow
from dockyard.errors import BadRequestError
from dockyard.jobs import service as jobs
from dockyard.jobs.runner import JobContext, JobType, PermanentJobError

PURGE_BATCH = 1000
"""Events deleted per transaction (short enough never to hold other writers up)."""


async def purge_audit_log(ctx: JobContext) -> Mapping[str, Any] | None:
    try:
        params = purge.parse_params(ctx.params)
    except BadRequestError as exc:
        raise PermanentJobError(f"bad purge parameters: {exc.message}") from None
    db = ctx.env.db
    ctx.log("Purge audit job start")  # Harbor's first line; scripts grep for it
    if ctx.progress and "before" in ctx.progress:
        before = datetime.fromisoformat(str(ctx.progress["before"]))
        async with db.read() as session:
            execution = await jobs.get_execution(session, ctx.execution_id)
        purged = int(jobs.loads(execution.extra_attrs).get(purge.PURGED_COUNT, 0))
        ctx.log(f"resuming after {purged} events (attempt {ctx.attempt})")
    else:
        before = params.cutoff(utcnow())
        purged = 0
    which = params.event_types + tuple(f"every {o}" for o in params.operations)
    ctx.log(
        f"{'dry run: counting' if params.dry_run else 'purging'} audit events older than "
        f"{params.retention_hours} hours (before {before.isoformat()}) of types: "
        f"{', '.join(which) or 'none (nothing to purge)'}"
    )
    await ctx.checkpoint(progress={"before": before.isoformat()})
    where = params.clause(before)
    if params.dry_run:
        async with db.write() as session:
            purged = await repo.count_events(session, where)
            await jobs.merge_execution_attrs(
                session, ctx.execution_id, {purge.PURGED_COUNT: purged}
            )
        ctx.log(f"dry run: {purged} events would be purged")
        ctx.log(f"Dry run: {purged} rows of audit logs would be purged")  # Harbor's wording
        return {purge.PURGED_COUNT: purged}
    while True:
        async with db.write() as session:
            deleted = await repo.delete_events(session, where, PURGE_BATCH)
            purged += deleted
            await jobs.merge_execution_attrs(
                session, ctx.execution_id, {purge.PURGED_COUNT: purged}
            )
        if deleted:
            ctx.log(f"purged {deleted} events ({purged} in all)")
        await ctx.checkpoint(
            progress={"before": before.isoformat()}, extra_attrs={purge.PURGED_COUNT: purged}
        )
        if deleted < PURGE_BATCH:
            break
    ctx.log(f"done: {purged} events purged")
    ctx.log(f"Purged {purged} rows of audit logs")  # Harbor's wording
    return {purge.PURGED_COUNT: purged}


job_types: list[JobType] = [JobType(purge.VENDOR_TYPE, purge_audit_log)]
