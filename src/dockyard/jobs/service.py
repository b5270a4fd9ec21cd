"""Executions and tasks: enqueue in the caller's transaction, read, stop, prune.

A feature starts work with ``enqueue(session, ...)`` inside the transaction of
the change that causes it, so the job commits or rolls back with the change.
Workers (``jobs.runner``) pick the tasks up; nothing else needs to be told.

Statuses are Harbor's: ``Pending``, ``Running``, ``Success``, ``Error``,
``Stopped``. An execution's status follows its tasks' (``refresh_execution``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import JOBS_ENQUEUED
from dockyard.db.listing import PageRequest, fetch_page
from dockyard.errors import NotFoundError, PreconditionFailedError
from dockyard.jobs.models import Execution, JobQueue, JobWorker, Task, TaskLog

PENDING = "Pending"
RUNNING = "Running"
SUCCESS = "Success"
ERROR = "Error"
STOPPED = "Stopped"
FINAL_STATUSES = (SUCCESS, ERROR, STOPPED)

MANUAL = "MANUAL"
SCHEDULE = "SCHEDULE"
EVENT = "EVENT"
TRIGGERS = (MANUAL, SCHEDULE, EVENT)

DEFAULT_MAX_ATTEMPTS = 3
_WAITING_COUNT_CAP = 1000
_MAX_MESSAGE = 2048


class ExecutionNotFoundError(NotFoundError):
    pass


class TaskNotFoundError(NotFoundError):
    pass


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a new execution: what its handler is asked to do."""

    params: Mapping[str, Any] = field(default_factory=dict)
    extra_attrs: Mapping[str, Any] = field(default_factory=dict)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True, slots=True)
class Metrics:
    """Harbor's execution ``metrics``: how many tasks are in each status."""

    task_count: int = 0
    success_task_count: int = 0
    error_task_count: int = 0
    pending_task_count: int = 0
    running_task_count: int = 0
    scheduled_task_count: int = 0
    stopped_task_count: int = 0

    @classmethod
    def from_counts(cls, counts: Mapping[str, int]) -> Metrics:
        return cls(
            task_count=sum(counts.values()),
            success_task_count=counts.get(SUCCESS, 0),
            error_task_count=counts.get(ERROR, 0),
            pending_task_count=counts.get(PENDING, 0),
            running_task_count=counts.get(RUNNING, 0),
            stopped_task_count=counts.get(STOPPED, 0),
        )

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- starting work ------------------------------------------------------------


async def enqueue(
    session: AsyncSession,
    vendor_type: str,
    *,
    vendor_id: int = -1,
    trigger: str = MANUAL,
    extra_attrs: Mapping[str, Any] | None = None,
    tasks: Sequence[TaskSpec] | None = None,
) -> Execution:
    """Add an execution and its tasks to ``session`` (default: one task with
    ``extra_attrs`` as its params). They commit with the caller's transaction.

    An execution with no tasks is finished at once (``Success``): nothing to do.
    """
    attrs = dict(extra_attrs or {})
    specs = list(tasks) if tasks is not None else [TaskSpec(params=attrs)]
    now = utcnow()
    execution = Execution(
        vendor_type=vendor_type,
        vendor_id=vendor_id,
        trigger=trigger,
        status=PENDING if specs else SUCCESS,
        extra_attrs=dumps(attrs),
        start_time=now,
        update_time=now,
        end_time=None if specs else now,
    )
    session.add(execution)
    await session.flush()
    if specs:
        session.add_all(
            Task(
                execution_id=execution.id,
                vendor_type=vendor_type,
                params=dumps(spec.params),
                extra_attrs=dumps(spec.extra_attrs),
                max_attempts=max(1, spec.max_attempts),
                run_at=now,
                creation_time=now,
                update_time=now,
            )
            for spec in specs
        )
        await session.flush()
        session.info[JOBS_ENQUEUED] = True
    return execution


async def add_tasks(
    session: AsyncSession, execution: Execution, specs: Sequence[TaskSpec]
) -> list[Task]:
    """More tasks for a running execution (a planner task fanning out); the new rows,
    in the order of ``specs``, with their ids."""
    now = utcnow()
    rows = [
        Task(
            execution_id=execution.id,
            vendor_type=execution.vendor_type,
            params=dumps(spec.params),
            extra_attrs=dumps(spec.extra_attrs),
            max_attempts=max(1, spec.max_attempts),
            run_at=now,
            creation_time=now,
            update_time=now,
        )
        for spec in specs
    ]
    session.add_all(rows)
    if specs:
        await session.flush()
        session.info[JOBS_ENQUEUED] = True
    return rows


# --- reading ------------------------------------------------------------------


async def get_execution(
    session: AsyncSession,
    execution_id: int,
    *,
    vendor_type: str | None = None,
    vendor_id: int | None = None,
) -> Execution:
    """The execution, or ``ExecutionNotFoundError`` (also when it belongs to another
    vendor: ids are not a way to read another feature's or project's jobs)."""
    execution = await session.get(Execution, execution_id)
    if (
        execution is None
        or (vendor_type is not None and execution.vendor_type != vendor_type)
        or (vendor_id is not None and execution.vendor_id != vendor_id)
    ):
        raise ExecutionNotFoundError(f"execution {execution_id} not found")
    return execution


async def list_executions(
    session: AsyncSession,
    vendor_type: str,
    page: PageRequest,
    *,
    vendor_id: int | None = None,
    order: Sequence[Any] = (),
    where: Sequence[Any] = (),
) -> tuple[list[Execution], int]:
    """One page of a feature's executions, newest first unless ``order`` says otherwise."""
    stmt = select(Execution).where(Execution.vendor_type == vendor_type, *where)
    if vendor_id is not None:
        stmt = stmt.where(Execution.vendor_id == vendor_id)
    rows, total = await fetch_page(
        session, stmt, page, list(order) or [Execution.id.desc()], Execution.id.desc()
    )
    return [row[0] for row in rows], total


async def latest_execution(
    session: AsyncSession, vendor_type: str, vendor_id: int | None = None
) -> Execution | None:
    stmt = select(Execution).where(Execution.vendor_type == vendor_type)
    if vendor_id is not None:
        stmt = stmt.where(Execution.vendor_id == vendor_id)
    return await session.scalar(stmt.order_by(Execution.id.desc()).limit(1))


async def metrics(session: AsyncSession, execution_ids: Sequence[int]) -> dict[int, Metrics]:
    """Task counts per status for each execution (one query)."""
    if not execution_ids:
        return {}
    rows = await session.execute(
        select(Task.execution_id, Task.status, func.count())
        .where(Task.execution_id.in_(execution_ids))
        .group_by(Task.execution_id, Task.status)
    )
    counts: dict[int, dict[str, int]] = {eid: {} for eid in execution_ids}
    for execution_id, status, count in rows:
        counts[execution_id][status] = int(count)
    return {eid: Metrics.from_counts(c) for eid, c in counts.items()}


async def list_tasks(
    session: AsyncSession, execution_id: int, page: PageRequest | None = None
) -> tuple[list[Task], int]:
    stmt = select(Task).where(Task.execution_id == execution_id)
    if page is None:
        tasks = list(await session.scalars(stmt.order_by(Task.id)))
        return tasks, len(tasks)
    rows, total = await fetch_page(session, stmt, page, [Task.id.asc()], Task.id.asc())
    return [row[0] for row in rows], total


async def get_task(session: AsyncSession, task_id: int, *, execution_id: int | None = None) -> Task:
    task = await session.get(Task, task_id)
    if task is None or (execution_id is not None and task.execution_id != execution_id):
        raise TaskNotFoundError(f"task {task_id} not found")
    return task


async def task_log(session: AsyncSession, task_id: int) -> str:
    """The task's log as text, one line per entry, each stamped with its UTC time."""
    rows = await session.execute(
        select(TaskLog.log_time, TaskLog.line)
        .where(TaskLog.task_id == task_id)
        .order_by(TaskLog.id)
    )
    return "".join(f"{when.strftime('%Y-%m-%dT%H:%M:%SZ')} {line}\n" for when, line in rows)


async def execution_log(session: AsyncSession, execution_id: int) -> str:
    """The logs of all the execution's tasks, in order (one-task features show this)."""
    task_ids = list(
        await session.scalars(
            select(Task.id).where(Task.execution_id == execution_id).order_by(Task.id)
        )
    )
    parts = [await task_log(session, task_id) for task_id in task_ids]
    return "".join(parts)


# --- changing state -----------------------------------------------------------


async def stop_execution(session: AsyncSession, execution: Execution) -> None:
    """Stop ``execution``: pending tasks stop now; running ones are asked to stop and
    do so at their next checkpoint. Stopping a finished execution is a 412."""
    if execution.status in FINAL_STATUSES:
        raise PreconditionFailedError(
            f"execution {execution.id} already finished ({execution.status}); nothing to stop"
        )
    now = utcnow()
    await session.execute(
        update(Task)
        .where(Task.execution_id == execution.id, Task.status == PENDING)
        .values(status=STOPPED, end_time=now, update_time=now, status_message="stopped by user")
    )
    await session.execute(
        update(Task)
        .where(Task.execution_id == execution.id, Task.status == RUNNING)
        .values(stop_requested=True, update_time=now)
    )
    await refresh_execution(session, execution.id)


async def refresh_execution(session: AsyncSession, execution_id: int) -> None:
    """Derive the execution's status from its tasks' (after any task changed).

    The execution row is locked first: two tasks finishing at once in different
    transactions would otherwise each see the other as still running, and the
    execution would stay ``Running`` for ever. Under the lock, the read (a new
    statement, so a new snapshot on PostgreSQL) sees every finish committed before.
    The read asks only whether tasks in each status exist (probes of the
    ``execution_id, status`` index), never counts them: a task's end costs the same
    in an execution of ten tasks as in one of ten thousand.
    """
    await session.execute(
        select(Execution.id).where(Execution.id == execution_id).with_for_update()
    )

    def having(*statuses: str, other_than: bool = False) -> Exists:
        chosen = Task.status.not_in(statuses) if other_than else Task.status.in_(statuses)
        return exists().where(Task.execution_id == execution_id, chosen)

    found = (
        await session.execute(
            select(
                having(RUNNING),
                having(PENDING),
                having(PENDING, other_than=True),
                having(ERROR),
                having(STOPPED),
            )
        )
    ).one()
    running, pending, not_pending, error, stopped = (bool(v) for v in found)
    now = utcnow()
    if not (pending or not_pending):
        return  # no tasks
    if running or pending:
        status, end_time = (RUNNING if running or not_pending else PENDING), None
    elif error:
        status, end_time = ERROR, now
    elif stopped:
        status, end_time = STOPPED, now
    else:
        status, end_time = SUCCESS, now
    message = ""
    if status == ERROR:
        message = (
            await session.scalar(
                select(Task.status_message)
                .where(Task.execution_id == execution_id, Task.status == ERROR)
                .order_by(Task.id)
                .limit(1)
            )
            or ""
        )
    await session.execute(
        update(Execution)
        .where(Execution.id == execution_id)
        .values(
            status=status,
            end_time=end_time,
            update_time=now,
            status_message=message[:_MAX_MESSAGE],
        )
    )


async def merge_execution_attrs(
    session: AsyncSession, execution_id: int, attrs: Mapping[str, Any]
) -> None:
    execution = await session.get(Execution, execution_id, with_for_update=True)
    if execution is None:
        return
    merged = loads(execution.extra_attrs)
    merged.update(attrs)
    execution.extra_attrs = dumps(merged)


# --- queues -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueState:
    job_type: str
    count: int
    latency: int
    """Seconds the oldest pending task has waited."""
    paused: bool


async def queues(session: AsyncSession, job_types: Sequence[str]) -> list[QueueState]:
    """Every known job type's queue: pending count, oldest wait, paused switch."""
    now = utcnow()
    rows = await session.execute(
        select(Task.vendor_type, func.count(), func.min(Task.run_at))
        .where(Task.status == PENDING)
        .group_by(Task.vendor_type)
    )
    pending = {vendor: (int(count), oldest) for vendor, count, oldest in rows}
    paused = {row.job_type: row.paused for row in await session.scalars(select(JobQueue))}
    result = []
    for job_type in sorted(set(job_types) | set(pending)):
        count, oldest = pending.get(job_type, (0, None))
        latency = max(0, int((now - oldest).total_seconds())) if oldest is not None else 0
        result.append(QueueState(job_type, count, latency, paused.get(job_type, False)))
    return result


async def set_paused(session: AsyncSession, job_type: str, paused: bool) -> None:
    row = await session.get(JobQueue, job_type, with_for_update=True)
    if row is None:
        session.add(JobQueue(job_type=job_type, paused=paused))
    else:
        row.paused = paused
    await session.flush()


async def paused_types(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(JobQueue.job_type).where(JobQueue.paused)))


async def stop_pending(session: AsyncSession, job_type: str | None) -> list[int]:
    """Stop every pending task of ``job_type`` (every type when ``None``); returns the
    executions touched, whose statuses are refreshed."""
    now = utcnow()
    where = [Task.status == PENDING]
    if job_type is not None:
        where.append(Task.vendor_type == job_type)
    execution_ids = sorted(set(await session.scalars(select(Task.execution_id).where(*where))))
    await session.execute(
        update(Task)
        .where(*where)
        .values(status=STOPPED, end_time=now, update_time=now, status_message="stopped by user")
    )
    for execution_id in execution_ids:
        await refresh_execution(session, execution_id)
    return execution_ids


# --- pruning ------------------------------------------------------------------


async def prune_executions(
    session: AsyncSession, *, keep_count: int, max_age: timedelta, batch: int = 1000
) -> list[tuple[int, str]]:
    """Delete finished executions beyond the newest ``keep_count`` of each (vendor type,
    vendor id), and any finished longer than ``max_age`` ago. Tasks and logs go with
    them (foreign keys cascade). Returns the deleted ones' (id, vendor type), at most
    ``batch``."""
    ranked = select(
        Execution.id,
        Execution.vendor_type,
        func.row_number()
        .over(
            partition_by=(Execution.vendor_type, Execution.vendor_id),
            order_by=Execution.id.desc(),
        )
        .label("rank"),
        Execution.end_time,
    ).where(Execution.status.in_(FINAL_STATUSES))
    ranked_sq = ranked.subquery()
    cutoff: datetime = utcnow() - max_age
    chosen = [
        (int(execution_id), str(vendor_type))
        for execution_id, vendor_type in await session.execute(
            select(ranked_sq.c.id, ranked_sq.c.vendor_type)
            .where((ranked_sq.c.rank > keep_count) | (ranked_sq.c.end_time < cutoff))
            .limit(batch)
        )
    ]
    if not chosen:
        return []
    doomed = [execution_id for execution_id, _ in chosen]
    # Children first: SQLite only cascades with foreign_keys=ON, which we set, but
    # deleting explicitly keeps the work (and its locks) predictable on both.
    task_ids = select(Task.id).where(Task.execution_id.in_(doomed))
    await session.execute(delete(TaskLog).where(TaskLog.task_id.in_(task_ids)))
    await session.execute(delete(Task).where(Task.execution_id.in_(doomed)))
    await session.execute(delete(Execution).where(and_(Execution.id.in_(doomed))))
    return chosen


async def stop_task(session: AsyncSession, task: Task) -> None:
    """Stop one task (the job service dashboard's "stop job"): a pending task stops now,
    a running one at its next checkpoint; a finished one stays as it ended."""
    if task.status in FINAL_STATUSES:
        return
    now = utcnow()
    if task.status == PENDING:
        task.status = STOPPED
        task.end_time = now
        task.status_message = "stopped by user"
    else:
        task.stop_requested = True
    task.update_time = now
    await session.flush()
    await refresh_execution(session, task.execution_id)


async def stop_running(session: AsyncSession) -> int:
    """Ask every running task to stop at its next checkpoint (Harbor's stop job ``all``);
    returns how many were asked."""
    running = list(
        await session.scalars(select(Task).where(Task.status == RUNNING).with_for_update())
    )
    for task in running:
        await stop_task(session, task)
    return len(running)


@dataclass(frozen=True, slots=True)
class PoolState:
    pool_id: str
    host: str
    pid: int
    concurrency: int
    start_time: datetime
    heartbeat_time: datetime


async def worker_pools(session: AsyncSession) -> list[PoolState]:
    rows = await session.execute(
        select(
            JobWorker.pool_id,
            func.min(JobWorker.host),
            func.min(JobWorker.pid),
            func.min(JobWorker.concurrency),
            func.min(JobWorker.start_time),
            func.max(JobWorker.heartbeat_time),
        )
        .group_by(JobWorker.pool_id)
        .order_by(JobWorker.pool_id)
    )
    return [PoolState(*row) for row in rows]


async def workers(session: AsyncSession, pool_id: str | None) -> list[JobWorker]:
    stmt = select(JobWorker).order_by(JobWorker.id)
    if pool_id is not None:
        stmt = stmt.where(JobWorker.pool_id == pool_id)
    return list(await session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """Whether the cluster's workers keep up: for the health check (``system/health.py``)."""

    live_workers: int
    """Worker slots whose heartbeat is more recent than the lease."""
    waiting_tasks: int
    """Tasks due for longer than a lease, in queues that are not paused (counted up to
    1,000: a probe never counts a huge backlog)."""


async def worker_health(session: AsyncSession, lease: timedelta) -> WorkerHealth:
    """Two indexed counts: live worker slots, and tasks left waiting (due for more than
    ``lease`` in an unpaused queue). Workers write their heartbeat every third of a lease,
    so a live one is never older than that."""
    since = utcnow() - lease
    live = await session.scalar(
        select(func.count()).select_from(JobWorker).where(JobWorker.heartbeat_time >= since)
    )
    left = (
        select(Task.id)
        .where(
            Task.status == PENDING,
            Task.run_at <= since,
            Task.vendor_type.not_in(select(JobQueue.job_type).where(JobQueue.paused)),
        )
        .limit(_WAITING_COUNT_CAP)
    )
    waiting = await session.scalar(select(func.count()).select_from(left.subquery()))
    return WorkerHealth(live_workers=int(live or 0), waiting_tasks=int(waiting or 0))
