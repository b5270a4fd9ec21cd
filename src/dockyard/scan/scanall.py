"""Scan all: every image in the registry scanned by its project's scanner, now or on a
schedule (Harbor's ``scanAll`` API).

A run is one execution of vendor type ``SCAN_ALL``. Its first task is the **planner**:
it walks the artifacts in id order, ``BATCH`` at a time, and in one transaction per
batch adds a scan task per image to the same execution (``jobs.add_tasks``), begins
their report rows (``reports.begin_many``) and saves how far it got, so a retried
planner resumes after the last committed batch and never enqueues an artifact twice.
The scan tasks are the ordinary scan job (``scan/jobs.py``), so workers start scanning
while the planner is still walking. Indexes are not scanned themselves (their children
are artifacts of their own), nor are signatures, SBOMs and other non-image artifacts,
nor artifacts of projects without a usable scanner.

Functions the console may call with a session and plain arguments:
``start_scan_all``, ``running_scan_all``, ``scan_all_metrics``, ``stop_scan_all``,
``scan_all_schedule``, ``set_scan_all_schedule``; each checks ``scan-all`` permission
of the principal it is given (system admins, robots granted it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.errors import BadRequestError, ConflictError, PreconditionFailedError
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task
from dockyard.jobs.runner import JobContext
from dockyard.jobs.schemas import Schedule, schedule_view
from dockyard.oci.mediatypes import INDEX_TYPES
from dockyard.projects.service import require
from dockyard.registry.models import Artifact
from dockyard.scan import registrations, reports
from dockyard.scan.client import SCAN_TYPES, VULNERABILITY
from dockyard.scan.models import ScanReport
from dockyard.scan.schemas import Stats
from dockyard.scan.service import SCAN_ALL_JOB, new_scans, tags_of, task_spec

JOB_TYPE = SCAN_ALL_JOB
BATCH = 500
"""Artifacts enqueued per transaction by the planner."""
_TRIGGER_NAMES = {jobs.MANUAL: "Manual", jobs.SCHEDULE: "Schedule", jobs.EVENT: "Event"}


def _allow(principal: Principal, action: Action) -> None:
    require(principal, action, Resource.SCAN_ALL, None)


async def _require_scanner(session: AsyncSession) -> None:
    if await registrations.default_registration(session) is None:
        raise PreconditionFailedError(
            "no scanner is registered; a system admin adds one under /scanners"
        )


# --- starting and stopping ---------------------------------------------------------------


async def running_scan_all(session: AsyncSession) -> Execution | None:
    """The scan all run that is pending or running, if any."""
    latest = await jobs.latest_execution(session, JOB_TYPE)
    if latest is not None and latest.status not in jobs.FINAL_STATUSES:
        return latest
    return None


async def launch(session: AsyncSession, requester: str, trigger: str) -> Execution | None:
    """Enqueue a run (no permission check: the caller decided); ``None`` when one is
    pending or running already."""
    if await running_scan_all(session) is not None:
        return None
    plan = {"plan": True, "requester": requester}
    return await jobs.enqueue(
        session,
        JOB_TYPE,
        trigger=trigger,
        extra_attrs={"requester": requester},
        tasks=[jobs.TaskSpec(params=plan, max_attempts=3)],
    )


async def start_scan_all(session: AsyncSession, principal: Principal) -> Execution:
    """Run scan all now (``createScanAllSchedule`` with type ``Manual``): 412 without a
    scanner, 409 while a run is pending or running. The scans pull with a token of
    ``principal``."""
    _allow(principal, Action.CREATE)
    await _require_scanner(session)
    started = await launch(session, principal.name, jobs.MANUAL)
    if started is None:
        raise ConflictError("a scan all is already pending or running; stop it first")
    return started


async def stop_scan_all(session: AsyncSession, principal: Principal) -> Execution:
    """``stopScanAll``: pending scans stop now, running ones at their next poll; 400 when
    no run is going on."""
    _allow(principal, Action.STOP)
    execution = await running_scan_all(session)
    if execution is None:
        raise BadRequestError("no scan all is running")
    await jobs.stop_execution(session, execution)
    await _stop_pending_reports(session, execution.id)
    return execution


async def _stop_pending_reports(session: AsyncSession, execution_id: int) -> None:
    """Reports of scans stopped before they started say so (running ones end themselves)."""
    stopped = select(Task.id).where(Task.execution_id == execution_id, Task.status == jobs.STOPPED)
    await session.execute(
        update(ScanReport)
        .where(
            ScanReport.execution_id == execution_id,
            ScanReport.status == reports.PENDING,
            ScanReport.task_id.in_(stopped),
        )
        .values(status=reports.STOPPED, status_message="stopped by user", end_time=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- the schedule ------------------------------------------------------------------------


async def scan_all_schedule(session: AsyncSession, principal: Principal) -> Schedule:
    """``getScanAllSchedule``: Harbor's ``Schedule`` (type ``None`` when there is none)."""
    _allow(principal, Action.READ)
    view = schedule_view(await schedules.find_schedule(session, JOB_TYPE))
    if view.parameters is not None:
        view.parameters = {}  # the requester it scans as is not a parameter
    return view


def parse_body(obj: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> str | None:
    """The schedule type a body asks for (``None``: a body without a type, which Harbor's
    update treats as no change); scan all takes no parameters."""
    if parameters:
        raise BadRequestError("scan all takes no parameters")
    if obj is not None and not obj.get("type"):
        return None
    return schedules.parse_schedule_obj(obj).cron_type


async def set_scan_all_schedule(
    session: AsyncSession,
    principal: Principal,
    obj: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None = None,
    *,
    create: bool,
) -> Execution | None:
    """``createScanAllSchedule`` (``create``) and ``updateScanAllSchedule``: type
    ``Manual`` runs now (the run is returned; 409 while one goes on), ``None`` removes
    the schedule, a preset or ``Custom`` cron sets it. Creating over an existing schedule
    is a 409 (update it instead); a body without a type changes nothing (Harbor's
    update). The schedule's runs pull as ``principal``."""
    _allow(principal, Action.CREATE if create else Action.UPDATE)
    kind = parse_body(obj, parameters)
    if kind is None:
        if create:
            raise BadRequestError(
                'schedule is required: {"type": "Hourly|Daily|Weekly|Custom|Manual|None"}'
            )
        return None
    spec = schedules.parse_schedule_obj(obj)
    if spec.cron_type == schedules.MANUAL:
        return await start_scan_all(session, principal)
    if spec.cron_type == schedules.NONE:
        if not create:
            await schedules.remove_schedule(session, JOB_TYPE)
        return None
    await _require_scanner(session)
    if create and await schedules.find_schedule(session, JOB_TYPE) is not None:
        raise ConflictError("scan all is scheduled already; update it with PUT")
    await schedules.set_schedule(session, JOB_TYPE, spec, {"requester": principal.name})
    return None


async def launch_scheduled(
    session: AsyncSession, vendor_id: int, params: Mapping[str, Any], trigger: str
) -> Execution:
    """A schedule's run; while a run is pending or running, that one stands for it."""
    del vendor_id  # scan all is system-wide
    running = await running_scan_all(session)
    if running is not None:
        return running
    started = await launch(session, str(params.get("requester") or "admin"), trigger)
    assert started is not None
    return started


# --- metrics -----------------------------------------------------------------------------


async def scan_all_metrics(
    session: AsyncSession, principal: Principal, *, scheduled_only: bool = False
) -> Stats:
    """``getLatestScanAllMetrics`` (``getLatestScheduledScanAllMetrics`` with
    ``scheduled_only``): the scans of the latest run counted by status (the planner
    is not a scan and is not counted); zeros when there has been no run."""
    _allow(principal, Action.READ)
    stmt = select(Execution).where(Execution.vendor_type == JOB_TYPE)
    if scheduled_only:
        stmt = stmt.where(Execution.trigger == jobs.SCHEDULE)
    execution = await session.scalar(stmt.order_by(Execution.id.desc()).limit(1))
    if execution is None:
        return Stats()
    planner = select(func.min(Task.id)).where(Task.execution_id == execution.id)
    rows = await session.execute(
        select(Task.status, func.count())
        .where(Task.execution_id == execution.id, Task.id != planner.scalar_subquery())
        .group_by(Task.status)
    )
    counts = {status: int(count) for status, count in rows}
    return Stats(
        total=sum(counts.values()),
        completed=sum(counts.get(s, 0) for s in jobs.FINAL_STATUSES),
        metrics=counts,
        ongoing=execution.status not in jobs.FINAL_STATUSES,
        trigger=_TRIGGER_NAMES.get(execution.trigger, execution.trigger.capitalize()),
    )


# --- the planner -------------------------------------------------------------------------


class _Scanners:
    """Each project's usable scanner (its uuid), looked up once per run."""

    def __init__(self) -> None:
        self._of: dict[int, str | None] = {}

    async def of(self, session: AsyncSession, project_id: int) -> str | None:
        if project_id not in self._of:
            row = await registrations.registration_of_project(session, project_id)
            self._of[project_id] = None if row is None or row.disabled else row.uuid
        return self._of[project_id]


async def _plan_batch(
    ctx: JobContext, after: int, planned: int, requester: str, scanners: _Scanners
) -> tuple[int, int] | None:
    """Enqueue the next batch after artifact id ``after``: (last id read, scans added),
    or ``None`` when there is nothing left or a stop was asked."""
    async with ctx.env.db.write() as session:
        planner = await session.get(Task, ctx.task_id, with_for_update=True)
        if planner is None or planner.stop_requested:
            return None  # the checkpoint that follows raises the stop
        artifacts = list(
            await session.scalars(
                select(Artifact).where(Artifact.id > after).order_by(Artifact.id).limit(BATCH)
            )
        )
        if not artifacts:
            return None
        wanted: list[tuple[Artifact, str]] = []
        for artifact in artifacts:
            if artifact.manifest_media_type in INDEX_TYPES or artifact.type != "IMAGE":
                continue
            uuid = await scanners.of(session, artifact.project_id)
            if uuid is not None:
                wanted.append((artifact, uuid))
        tags = await tags_of(session, [a.id for a, _ in wanted])
        specs = [
            task_spec(a, tags.get(a.id, ""), uuid, VULNERABILITY, requester) for a, uuid in wanted
        ]
        execution = await session.get(Execution, ctx.execution_id)
        assert execution is not None
        tasks = await jobs.add_tasks(session, execution, specs)
        await reports.begin_many(
            session,
            new_scans(specs, [t.id for t in tasks]),
            SCAN_TYPES[VULNERABILITY],
            ctx.execution_id,
        )
        last = artifacts[-1].id
        # Saved with the batch, so a retried planner resumes after it.
        planner.progress = jobs.dumps({"after": last, "planned": planned + len(specs)})
        return last, len(specs)


async def plan(ctx: JobContext) -> Mapping[str, Any]:
    """The planner task: enqueue a scan of every image, ``BATCH`` per transaction."""
    requester = str(ctx.params.get("requester") or "admin")
    after = int((ctx.progress or {}).get("after", 0))
    planned = int((ctx.progress or {}).get("planned", 0))
    scanners = _Scanners()
    ctx.log(f"scan all: enqueueing scans as {requester}" + (f" after {after}" if after else ""))
    while True:
        batch = await _plan_batch(ctx, after, planned, requester, scanners)
        if batch is None:
            break
        after, added = batch
        planned += added
        await ctx.checkpoint(extra_attrs={"planned": planned})
    await ctx.checkpoint()  # raises JobStopped when the stop ended the walk
    ctx.log(f"scan all: {planned} scans enqueued")
    return {"planned": planned}
