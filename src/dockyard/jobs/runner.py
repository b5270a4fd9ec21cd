"""Workers: claim tasks with leases, run their handlers, retry, stop, fire schedules.

Every ``dockyard serve`` process runs a ``JobRunner`` (``job_workers`` slots;
0 turns it off) and so does every ``dockyard worker`` process. They share
nothing but the database:

- **Claiming** is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``
  on PostgreSQL (on SQLite the write lock serialises claimers), which sets the
  task ``Running`` with this worker's lease. Two workers never claim one task.
- **Leases** are renewed by a heartbeat; a task whose lease ran out (its worker
  died) is put back to ``Pending`` by whichever worker notices, and run again
  while it has attempts left. Handlers are written to be idempotent and save
  checkpoints (``JobContext.checkpoint``) so a retried run resumes.
- **Retries** back off exponentially; a ``PermanentJobError`` is not retried.
- **Stopping** sets ``stop_requested``; the handler sees it at its next
  checkpoint (``JobStopped``) and the task ends ``Stopped``.
- The same heartbeat fires due schedules (once across processes, see
  ``jobs.schedules``), removes workers that stopped beating and prunes old
  executions (``job_execution_retention_count``/``_days``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, JobQueue, JobWorker, Task, TaskLog
from dockyard.settings import Settings
from dockyard.storage import Storage

if TYPE_CHECKING:
    from dockyard.registry.service import RegistryService

log = logging.getLogger("dockyard.jobs")

_MAX_LOG_LINE = 4096
_MAX_LOG_LINES = 20_000
_MAX_BACKOFF_SECONDS = 600.0
_PRUNE_INTERVAL_SECONDS = 600.0


class JobStopped(Exception):
    """Raised by ``JobContext.checkpoint`` when someone asked the task to stop."""


class LeaseLost(Exception):
    """This worker no longer holds the task's lease (it expired and was retried
    elsewhere): stop working on it and write nothing more."""


class PermanentJobError(Exception):
    """A failure that retrying cannot fix (bad parameters): the task ends ``Error``."""


@dataclass
class JobEnvironment:
    """What handlers may use: the process's settings, database, blob storage and registry."""

    settings: Settings
    db: Database
    storage: Storage
    registry: RegistryService
    """The registry with its hooks, for jobs that change artifacts (retention) through
    the same seam as the API, so immutability, quotas and the audit log apply."""


Handler = Callable[["JobContext"], Awaitable[Mapping[str, Any] | None]]
FinishedHook = Callable[[AsyncSession, Execution], Awaitable[None]]
"""Called with an execution that a task's end has just finished (any final status)."""
PrunedHook = Callable[["JobEnvironment", list[int]], Awaitable[None]]
"""Called, after their rows are gone, with the ids of executions pruned for their age
or number (what the job kept outside the database goes with them: an export's file)."""


@dataclass(frozen=True)
class JobType:
    """A kind of job: the handler that runs one task; optionally how a schedule
    starts an execution of it (default: one task with the schedule's parameters)
    and what to do, in the same transaction, when a task's end finishes its
    execution (a retention run's ``TAG_RETENTION`` webhook, say)."""

    name: str
    handler: Handler
    launcher: schedules.Launcher | None = None
    on_finished: FinishedHook | None = None
    on_pruned: PrunedHook | None = None


class JobContext:
    """One run of one task, as its handler sees it."""

    def __init__(
        self,
        runner: JobRunner,
        *,
        task_id: int,
        execution_id: int,
        job_type: str,
        params: dict[str, Any],
        progress: dict[str, Any] | None,
        attempt: int,
    ) -> None:
        self._runner = runner
        self.env = runner.env
        self.task_id = task_id
        self.execution_id = execution_id
        self.job_type = job_type
        self.params = params
        self.progress = progress
        """The checkpoint the previous attempt saved (``None`` on a first run)."""
        self.attempt = attempt
        self.stop_requested = False
        self.lease_lost = False
        self._lines: list[tuple[datetime, str]] = []
        self._logged = 0

    def log(self, message: str) -> None:
        """Add a line to the task's log (written at the next checkpoint or at the end)."""
        if self._logged >= _MAX_LOG_LINES:
            return
        self._logged += 1
        if self._logged == _MAX_LOG_LINES:
            message = f"(log truncated after {_MAX_LOG_LINES} lines)"
        self._lines.append((utcnow(), message[:_MAX_LOG_LINE]))

    def take_lines(self) -> list[tuple[datetime, str]]:
        lines, self._lines = self._lines, []
        return lines

    def raise_if_stopping(self) -> None:
        if self.lease_lost:
            raise LeaseLost
        if self.stop_requested:
            raise JobStopped

    async def checkpoint(
        self,
        progress: Mapping[str, Any] | None = None,
        extra_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Save ``progress`` (handed to a retried run) and ``extra_attrs`` (shown by the
        API), write buffered log lines and renew the lease, in one short transaction.
        Raises ``JobStopped`` when a stop was asked and ``LeaseLost`` when the task was
        taken away from this worker."""
        runner = self._runner
        now = utcnow()
        async with runner.env.db.write() as session:
            task = await session.get(Task, self.task_id, with_for_update=True)
            if task is None or task.lease_owner != runner.worker_id or task.status != jobs.RUNNING:
                self.lease_lost = True
            else:
                _add_log_rows(session, self.task_id, self.take_lines())
                if progress is not None:
                    task.progress = jobs.dumps(progress)
                    self.progress = dict(progress)
                if extra_attrs is not None:
                    merged = jobs.loads(task.extra_attrs)
                    merged.update(extra_attrs)
                    task.extra_attrs = jobs.dumps(merged)
                task.lease_expires = now + runner.lease
                task.update_time = now
                self.stop_requested = self.stop_requested or task.stop_requested
        self.raise_if_stopping()


def _add_log_rows(session: AsyncSession, task_id: int, lines: list[tuple[datetime, str]]) -> None:
    if lines:
        session.add_all(TaskLog(task_id=task_id, log_time=when, line=line) for when, line in lines)


def backoff_seconds(base: float, attempt: int) -> float:
    """Wait before attempt ``attempt + 1``: ``base``, then doubling, at most 10 minutes."""
    return float(min(_MAX_BACKOFF_SECONDS, base * (2 ** max(0, attempt - 1))))


@dataclass
class _Running:
    context: JobContext
    job: asyncio.Task[None]
    slot: int
    started: datetime = field(default_factory=utcnow)


class JobRunner:
    """A pool of worker slots in this process, leasing tasks from the shared database."""

    def __init__(
        self,
        env: JobEnvironment,
        job_types: Mapping[str, JobType],
        *,
        concurrency: int | None = None,
        run_scheduler: bool = True,
    ) -> None:
        settings = env.settings
        self.env = env
        self.job_types = dict(job_types)
        self.concurrency = max(1, concurrency if concurrency is not None else settings.job_workers)
        self.lease = timedelta(seconds=settings.job_lease_seconds)
        self.poll_seconds = settings.job_poll_seconds
        self.retry_base_seconds = settings.job_retry_base_seconds
        self.run_scheduler = run_scheduler
        self.host = socket.gethostname()[:255]
        self.pool_id = f"{self.host[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.worker_id = self.pool_id
        self.started_at = utcnow()
        self._running: dict[int, _Running] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._loops: list[asyncio.Task[None]] = []
        self._last_prune = 0.0
        self._last_renew = 0.0
        self._launchers: dict[str, schedules.Launcher] = {
            name: job.launcher for name, job in self.job_types.items() if job.launcher is not None
        }

    # --- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        async with self.env.db.write() as session:
            session.add_all(
                JobWorker(
                    id=f"{self.pool_id}:{slot}",
                    pool_id=self.pool_id,
                    host=self.host,
                    pid=os.getpid(),
                    concurrency=self.concurrency,
                    start_time=self.started_at,
                    heartbeat_time=self.started_at,
                )
                for slot in range(self.concurrency)
            )
        self.env.db.job_listeners.append(self.wake)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="dockyard-jobs-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="dockyard-jobs-heartbeat"),
        ]
        log.info("job worker pool %s started with %d slots", self.pool_id, self.concurrency)

    async def close(self) -> None:
        """Stop claiming; hand running tasks back (they are retried elsewhere without
        costing an attempt) and remove this pool's worker rows."""
        self._closing = True
        if self.wake in self.env.db.job_listeners:
            self.env.db.job_listeners.remove(self.wake)
        for loop in self._loops:
            loop.cancel()
        running = list(self._running.values())
        for item in running:
            item.job.cancel()
        await asyncio.gather(*self._loops, *(item.job for item in running), return_exceptions=True)
        try:
            async with self.env.db.write() as session:
                if running:
                    await session.execute(
                        update(Task)
                        .where(
                            Task.id.in_([item.context.task_id for item in running]),
                            Task.lease_owner == self.worker_id,
                            Task.status == jobs.RUNNING,
                        )
                        .values(
                            status=jobs.PENDING,
                            lease_owner=None,
                            lease_expires=None,
                            run_count=Task.run_count - 1,
                            run_at=utcnow(),
                        )
                    )
                await session.execute(delete(JobWorker).where(JobWorker.pool_id == self.pool_id))
        except Exception:
            log.exception("could not hand back the tasks of pool %s", self.pool_id)

    def wake(self) -> None:
        """Look for work now (called when this process committed new tasks)."""
        self._wake.set()

    # --- claiming -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._closing:
            free = self.concurrency - len(self._running)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("claiming tasks failed; retrying")
            if free > 0 and claimed == free:
                continue  # there may be more waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _claim(self, limit: int) -> int:
        now = utcnow()
        db = self.env.db
        # Idle workers poll often: look with a read first, and take the write lock
        # (SQLite has one writer) only when something is there to claim.
        async with db.read() as session:
            waiting = await session.scalar(
                select(Task.id).where(Task.status == jobs.PENDING, Task.run_at <= now).limit(1)
            )
        if waiting is None:
            return 0
        async with db.write() as session:
            candidates = (
                select(Task.id)
                .where(
                    Task.status == jobs.PENDING,
                    Task.run_at <= now,
                    Task.vendor_type.in_(list(self.job_types)),
                    Task.vendor_type.not_in(select(JobQueue.job_type).where(JobQueue.paused)),
                )
                .order_by(Task.run_at, Task.id)
                .limit(limit)
            )
            if db.is_postgres:
                candidates = candidates.with_for_update(skip_locked=True)
            rows = (
                await session.execute(
                    update(Task)
                    .where(Task.id.in_(candidates.scalar_subquery()))
                    .values(
                        status=jobs.RUNNING,
                        lease_owner=self.worker_id,
                        lease_expires=now + self.lease,
                        run_count=Task.run_count + 1,
                        start_time=func.coalesce(Task.start_time, now),
                        update_time=now,
                    )
                    .returning(
                        Task.id,
                        Task.execution_id,
                        Task.vendor_type,
                        Task.params,
                        Task.progress,
                        Task.run_count,
                        Task.stop_requested,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            for execution_id in sorted({row.execution_id for row in rows}):
                await jobs.refresh_execution(session, execution_id)
        free_slots = [s for s in range(self.concurrency) if s not in self._slots_in_use()]
        for row, slot in zip(rows, free_slots, strict=False):
            context = JobContext(
                self,
                task_id=row.id,
                execution_id=row.execution_id,
                job_type=row.vendor_type,
                params=jobs.loads(row.params),
                progress=jobs.loads(row.progress) if row.progress else None,
                attempt=row.run_count,
            )
            context.stop_requested = bool(row.stop_requested)
            job = asyncio.create_task(self._run(context), name=f"dockyard-task-{row.id}")
            self._running[row.id] = _Running(context, job, slot)
        return len(rows)

    def _slots_in_use(self) -> set[int]:
        return {item.slot for item in self._running.values()}

    # --- running --------------------------------------------------------------

    async def _run(self, ctx: JobContext) -> None:
        job_type = self.job_types[ctx.job_type]
        status, message, attrs = jobs.SUCCESS, "", None
        retry_at: datetime | None = None
        try:
            ctx.raise_if_stopping()
            attrs = await job_type.handler(ctx)
        except JobStopped:
            status, message = jobs.STOPPED, "stopped by user"
            ctx.log("stopped by user")
        except LeaseLost:
            log.warning("task %d: lease lost; another worker runs it now", ctx.task_id)
            self._running.pop(ctx.task_id, None)
            return
        except asyncio.CancelledError:
            self._running.pop(ctx.task_id, None)
            raise
        except PermanentJobError as exc:
            status, message = jobs.ERROR, str(exc) or type(exc).__name__
            ctx.log(f"failed: {message}")
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.warning("task %d (%s) failed: %s", ctx.task_id, ctx.job_type, message)
            ctx.log(f"attempt {ctx.attempt} failed: {message}")
            status = jobs.ERROR
            retry_at = utcnow() + timedelta(
                seconds=backoff_seconds(self.retry_base_seconds, ctx.attempt)
            )
        try:
            await self._finish(ctx, status, message, attrs, retry_at)
        except Exception:
            log.exception("task %d: could not record its end; its lease will expire", ctx.task_id)
        finally:
            self._running.pop(ctx.task_id, None)
            self._wake.set()

    async def _finish(
        self,
        ctx: JobContext,
        status: str,
        message: str,
        attrs: Mapping[str, Any] | None,
        retry_at: datetime | None,
    ) -> None:
        now = utcnow()
        async with self.env.db.write() as session:
            task = await session.get(Task, ctx.task_id, with_for_update=True)
            if task is None or task.lease_owner != self.worker_id or task.status != jobs.RUNNING:
                return  # no longer ours: whoever has it now records the end
            _add_log_rows(session, ctx.task_id, ctx.take_lines())
            if attrs:
                merged = jobs.loads(task.extra_attrs)
                merged.update(attrs)
                task.extra_attrs = jobs.dumps(merged)
            if (
                retry_at is not None
                and task.run_count < task.max_attempts
                and not task.stop_requested
            ):
                task.status = jobs.PENDING
                task.run_at = retry_at
                task.status_message = f"retrying: {message}"[:2048]
            else:
                task.status = status
                task.end_time = now
                task.status_message = message[:2048]
            task.lease_owner = None
            task.lease_expires = None
            task.update_time = now
            await session.flush()
            await jobs.refresh_execution(session, ctx.execution_id)
            on_finished = self.job_types[ctx.job_type].on_finished
            if on_finished is not None:
                execution = await session.get(Execution, ctx.execution_id, populate_existing=True)
                if execution is not None and execution.status in jobs.FINAL_STATUSES:
                    await on_finished(session, execution)

    # --- heartbeat ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # Schedules and dead workers are looked for every poll (reads); leases and
        # worker rows are written every third of a lease.
        interval = max(0.2, min(self.lease.total_seconds() / 3, self.poll_seconds))
        while not self._closing:
            try:
                await self.tick()
            except Exception:
                log.exception("job heartbeat failed; retrying")
            await asyncio.sleep(interval)

    async def tick(self) -> None:
        """Renew leases, pass stop requests on, reap dead workers' tasks, fire due
        schedules and, now and then, prune old executions."""
        if time.monotonic() - self._last_renew >= self.lease.total_seconds() / 3:
            self._last_renew = time.monotonic()
            await self._renew()
        await self._reap()
        if self.run_scheduler:
            await schedules.fire_due(self.env.db, self._launchers)
        if time.monotonic() - self._last_prune > _PRUNE_INTERVAL_SECONDS:
            self._last_prune = time.monotonic()
            await self.prune()

    async def _renew(self) -> None:
        now = utcnow()
        running = list(self._running.values())
        async with self.env.db.write() as session:
            if running:
                ids = [item.context.task_id for item in running]
                await session.execute(
                    update(Task)
                    .where(
                        Task.id.in_(ids),
                        Task.lease_owner == self.worker_id,
                        Task.status == jobs.RUNNING,
                    )
                    .values(lease_expires=now + self.lease)
                    .execution_options(synchronize_session=False)
                )
                held = {
                    row.id: row.stop_requested
                    for row in await session.execute(
                        select(Task.id, Task.stop_requested).where(
                            Task.id.in_(ids),
                            Task.lease_owner == self.worker_id,
                            Task.status == jobs.RUNNING,
                        )
                    )
                }
                for item in running:
                    ctx = item.context
                    if ctx.task_id not in held:
                        ctx.lease_lost = True
                        continue
                    ctx.stop_requested = ctx.stop_requested or bool(held[ctx.task_id])
                    _add_log_rows(session, ctx.task_id, ctx.take_lines())
            by_slot = {item.slot: item for item in running}
            for slot in range(self.concurrency):
                busy = by_slot.get(slot)
                await session.execute(
                    update(JobWorker)
                    .where(JobWorker.id == f"{self.pool_id}:{slot}")
                    .values(
                        heartbeat_time=now,
                        task_id=busy.context.task_id if busy else None,
                        job_type=busy.context.job_type if busy else None,
                        task_start_time=busy.started if busy else None,
                    )
                )
            await session.execute(
                delete(JobWorker).where(JobWorker.heartbeat_time < now - 3 * self.lease)
            )

    async def _reap(self) -> None:
        """Tasks whose worker stopped renewing their lease: retry, or fail when out of
        attempts, or stop when a stop was asked."""
        now = utcnow()
        expired = and_(Task.status == jobs.RUNNING, Task.lease_expires < now)
        async with self.env.db.read() as session:
            stale = (
                await session.execute(select(Task.id, Task.execution_id).where(expired).limit(500))
            ).all()
        if not stale:
            return
        ids = [row.id for row in stale]
        async with self.env.db.write() as session:
            mine = and_(expired, Task.id.in_(ids))
            await session.execute(
                update(Task)
                .where(mine, Task.stop_requested)
                .values(
                    status=jobs.STOPPED,
                    end_time=now,
                    lease_owner=None,
                    lease_expires=None,
                    status_message="stopped by user (its worker was lost)",
                )
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Task)
                .where(mine, Task.run_count >= Task.max_attempts)
                .values(
                    status=jobs.ERROR,
                    end_time=now,
                    lease_owner=None,
                    lease_expires=None,
                    status_message="its worker was lost and no attempts are left",
                )
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Task)
                .where(mine)
                .values(
                    status=jobs.PENDING,
                    run_at=now,
                    lease_owner=None,
                    lease_expires=None,
                    status_message="its worker was lost; retrying",
                )
                .execution_options(synchronize_session=False)
            )
            for execution_id in sorted({row.execution_id for row in stale}):
                await jobs.refresh_execution(session, execution_id)
        log.warning("re-queued %d task(s) whose worker stopped renewing its lease", len(ids))

    async def prune(self) -> int:
        settings = self.env.settings
        total = 0
        while True:
            async with self.env.db.write() as session:
                deleted = await jobs.prune_executions(
                    session,
                    keep_count=settings.job_execution_retention_count,
                    max_age=timedelta(days=settings.job_execution_retention_days),
                )
            if not deleted:
                return total
            total += len(deleted)
            for job_type, ids in _by_type(deleted).items():
                known = self.job_types.get(job_type)
                if known is None or known.on_pruned is None:
                    continue
                try:
                    await known.on_pruned(self.env, ids)
                except Exception:  # the rows are gone; the next start must not fail on it
                    log.exception("cleaning up after %d pruned %s execution(s)", len(ids), job_type)


def _by_type(executions: list[tuple[int, str]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for execution_id, job_type in executions:
        grouped.setdefault(job_type, []).append(execution_id)
    return grouped
