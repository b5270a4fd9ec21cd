"""``/api/v2.0/jobservice/*`` and ``/schedules``: the job service dashboard.

System administrators (and robots granted ``jobservice-monitor``) see the
queues of every job type with their pending counts and waits, pause, resume or
empty them, see the worker pools and what each worker runs, stop a job and read
its log, and list every schedule.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from dockyard.errors import BadRequestError, NotFoundError, UnprocessableError
from dockyard.http.api import ApiRequest, Operation, empty_response, json_response, operation
from dockyard.iam.policy import Action, Resource, can
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.schemas import (
    ActionRequest,
    JobQueue,
    SchedulerStatus,
    ScheduleTask,
    Worker,
    WorkerPool,
)

ALL = "all"
_QUEUE_ACTIONS = ("stop", "pause", "resume")
HARBOR_JOB_TYPES = frozenset(
    {
        "AUDIT_LOGS_GDPR_COMPLIANT",
        "EXECUTION_SWEEP",
        "GARBAGE_COLLECTION",
        "IMAGE_SCAN",
        "P2P_PREHEAT",
        "PURGE_AUDIT_LOG",
        "REPLICATION",
        "RETENTION",
        "SCAN_DATA_EXPORT",
        "SCHEDULER",
        "SLACK",
        "SYSTEM_ARTIFACT_CLEANUP",
        "WEBHOOK",
    }
)
"""The queues Harbor's dashboard lists. Those of features Dockyard lacks are listed
too, always empty, so dashboards and scripts written for Harbor find every one."""


def _known_types(api: ApiRequest) -> list[str]:
    return sorted(set(api.state.job_types) | HARBOR_JOB_TYPES)


async def _monitor(api: ApiRequest, action: Action) -> None:
    principal = await api.principal()
    await api.require(
        can(principal, action, Resource.JOBSERVICE_MONITOR, None),
        f"{action.value} the job service",
    )


def _job_type(api: ApiRequest) -> str | None:
    """``{job_type}``: a known job type, or ``all`` (``None``)."""
    name = api.path("job_type")
    if name.lower() == ALL:
        return None
    if name not in api.state.job_types and name not in HARBOR_JOB_TYPES:
        known = ", ".join(_known_types(api))
        raise NotFoundError(f"no job type {name[:64]!r}; job types: {known}, or all")
    return name


def _job_id(api: ApiRequest) -> int:
    """``{job_id}``: Harbor's ids are strings; Dockyard's are task ids, so any other
    string names no job (404, not a 400 for its shape)."""
    raw = api.path("job_id")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"no job {raw[:64]!r}")
    return int(raw)


@operation("GET", "/jobservice/queues", "listJobQueues", response=list[JobQueue])
async def list_job_queues(api: ApiRequest) -> Response:
    """Each job type's queue: pending tasks, the oldest one's wait (seconds), paused."""
    await _monitor(api, Action.LIST)
    async with api.state.db.read() as session:
        states = await jobs.queues(session, _known_types(api))
    return json_response(
        [
            JobQueue(job_type=s.job_type, count=s.count, latency=s.latency, paused=s.paused)
            for s in states
        ]
    )


@operation("PUT", "/jobservice/queues/{job_type}", "actionPendingJobs", body=ActionRequest)
async def action_pending_jobs(api: ApiRequest) -> Response:
    """``stop`` (every pending task of the type stops), ``pause`` or ``resume`` a queue;
    ``all`` for every job type."""
    await _monitor(api, Action.STOP)
    body = await api.json(ActionRequest)
    if body.action not in _QUEUE_ACTIONS:
        raise UnprocessableError("action must be stop, pause or resume")
    job_type = _job_type(api)
    targets = [job_type] if job_type is not None else _known_types(api)
    async with api.state.db.write() as session:
        if body.action == "stop":
            await jobs.stop_pending(session, job_type)
        else:
            for name in targets:
                await jobs.set_paused(session, name, body.action == "pause")
    return empty_response()


@operation("GET", "/jobservice/pools", "getWorkerPools", response=list[WorkerPool])
async def get_worker_pools(api: ApiRequest) -> Response:
    """The live worker pools: one per ``dockyard serve`` or ``dockyard worker`` process."""
    await _monitor(api, Action.LIST)
    async with api.state.db.read() as session:
        pools = await jobs.worker_pools(session)
    return json_response(
        [
            WorkerPool(
                pid=p.pid,
                worker_pool_id=p.pool_id,
                start_at=p.start_time,
                heartbeat_at=p.heartbeat_time,
                concurrency=p.concurrency,
                host=p.host,
            )
            for p in pools
        ]
    )


@operation("GET", "/jobservice/pools/{pool_id}/workers", "getWorkers", response=list[Worker])
async def get_workers(api: ApiRequest) -> Response:
    """The workers of a pool (``all``: of every pool) and the job each one runs; an
    unknown pool has none (``[]``, as Harbor answers)."""
    await _monitor(api, Action.LIST)
    pool_id = api.path("pool_id")
    every = pool_id.lower() == ALL
    if not every and not pool_id.isprintable():
        return json_response([])
    async with api.state.db.read() as session:
        rows = await jobs.workers(session, None if every else pool_id)
    return json_response(
        [
            Worker(
                id=row.id,
                pool_id=row.pool_id,
                job_name=row.job_type or "",
                job_id=str(row.task_id) if row.task_id is not None else "",
                start_at=row.task_start_time,
                check_in="",
                checkin_at=row.heartbeat_time,
            )
            for row in rows
        ]
    )


@operation("PUT", "/jobservice/jobs/{job_id}", "stopRunningJob")
async def stop_running_job(api: ApiRequest) -> Response:
    """Stop one job (a task): now when it waits, at its next checkpoint when it runs.
    ``all`` asks every running job to stop, as in Harbor."""
    await _monitor(api, Action.STOP)
    if api.path("job_id").lower() == ALL:
        async with api.state.db.write() as session:
            await jobs.stop_running(session)
        return empty_response()
    task_id = _job_id(api)
    async with api.state.db.write() as session:
        task = await jobs.get_task(session, task_id)
        await jobs.stop_task(session, task)
    return empty_response()


@operation("GET", "/jobservice/jobs/{job_id}/log", "actionGetJobLog", response=str)
async def action_get_job_log(api: ApiRequest) -> Response:
    await _monitor(api, Action.LIST)
    task_id = _job_id(api)
    async with api.state.db.read() as session:
        await jobs.get_task(session, task_id)
        text = await jobs.task_log(session, task_id)
    return PlainTextResponse(text)


@operation(
    "GET", "/schedules", "listSchedules", query=("page", "page_size"), response=list[ScheduleTask]
)
async def list_schedules(api: ApiRequest) -> Response:
    """Every schedule of every feature, with its cron."""
    await _monitor(api, Action.LIST)
    page = api.page()
    async with api.state.db.read() as session:
        rows = await schedules.list_schedules(session)
    chosen = rows[page.offset : page.offset + page.page_size]
    items = [
        ScheduleTask(
            id=row.id,
            vendor_type=row.vendor_type,
            vendor_id=row.vendor_id,
            cron=row.cron,
            update_time=row.update_time,
        )
        for row in chosen
    ]
    return json_response(items, headers={"X-Total-Count": str(len(rows))})


@operation("GET", "/schedules/{job_type}/paused", "getSchedulePaused", response=SchedulerStatus)
async def get_schedule_paused(api: ApiRequest) -> Response:
    """Whether every queue is paused; Harbor takes only ``all`` here (anything else is
    400 "job_type can only be 'all'")."""
    await _monitor(api, Action.LIST)
    if api.path("job_type").lower() != ALL:
        raise BadRequestError("job_type can only be 'all'")
    async with api.state.db.read() as session:
        paused = set(await jobs.paused_types(session))
    state = bool(api.state.job_types) and set(api.state.job_types) <= paused
    return json_response(SchedulerStatus(paused=state))


operations: list[Operation] = [
    list_job_queues,
    action_pending_jobs,
    get_worker_pools,
    get_workers,
    stop_running_job,
    action_get_job_log,
    list_schedules,
    get_schedule_paused,
]
