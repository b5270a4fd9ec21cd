"""Job tables, shaped as Harbor's job service shows them.

An ``execution`` is one run of a feature (a GC, a retention run, one webhook
event) and owns ``task`` rows, the units a worker runs. The task row *is* the
queue: a worker claims it by setting ``lease_owner``/``lease_expires`` and
renews the lease while it works, so a task whose worker died becomes claimable
again when its lease runs out. ``schedule`` rows fire executions on a cron;
``job_queue`` holds the per-job-type pause switch and ``job_worker`` the live
workers (one row per slot, refreshed by heartbeats).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class Execution(Base):
    __tablename__ = "execution"
    __table_args__ = (
        Index("ix_execution_vendor_type_vendor_id_id", "vendor_type", "vendor_id", "id"),
        Index("ix_execution_status_end_time", "status", "end_time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor_type: Mapped[str] = mapped_column(String(64))
    vendor_id: Mapped[int] = mapped_column(BigInteger, default=-1)
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    trigger: Mapped[str] = mapped_column(String(16), default="MANUAL")
    extra_attrs: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: the parameters it was started with and what it reports (Harbor's ``extra_attrs``)."""
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_execution_id_id", "execution_id", "id"),
        # An execution's status when a task ends: does it still have tasks in a status.
        Index("ix_task_execution_id_status", "execution_id", "status"),
        # The claim query: pending tasks due now, and running tasks whose lease ran out.
        Index("ix_task_status_run_at", "status", "run_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("execution.id", ondelete="CASCADE"))
    vendor_type: Mapped[str] = mapped_column(String(64))
    """The job type: which handler runs it and which queue it waits in."""
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    params: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: what the handler is asked to do."""
    extra_attrs: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: what the handler reports (shown by the API)."""
    progress: Mapped[str | None] = mapped_column(Text)
    """JSON checkpoint a handler saved, so a retried run resumes instead of starting over."""
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """Not claimed before this time (retries back off by moving it)."""
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskLog(Base):
    """One line of a task's log."""

    __tablename__ = "task_log"
    __table_args__ = (Index("ix_task_log_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    log_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    line: Mapped[str] = mapped_column(Text)


class Schedule(Base):
    """A cron that starts an execution of ``vendor_type`` for ``vendor_id``."""

    __tablename__ = "schedule"
    __table_args__ = (
        Index("ix_schedule_vendor_type_vendor_id", "vendor_type", "vendor_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor_type: Mapped[str] = mapped_column(String(64))
    vendor_id: Mapped[int] = mapped_column(BigInteger, default=-1)
    cron_type: Mapped[str] = mapped_column(String(16))
    """Harbor's ``ScheduleObj.type``: Hourly, Daily, Weekly or Custom."""
    cron: Mapped[str] = mapped_column(String(128))
    params: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: the parameters each execution it starts gets."""
    next_fire: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JobQueue(Base):
    """A job type's queue switch: paused queues are not claimed from."""

    __tablename__ = "job_queue"

    job_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JobWorker(Base):
    """One worker slot of a running process (a pool); gone when its heartbeat stops."""

    __tablename__ = "job_worker"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    pool_id: Mapped[str] = mapped_column(String(64), index=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    job_type: Mapped[str | None] = mapped_column(String(64))
    task_start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
