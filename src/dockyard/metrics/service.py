"""The business gauges: projects, repositories, quotas, pulls, the job queue, health.

Read at scrape time with a handful of aggregate statements whatever the number of projects
(one ``GROUP BY`` per family, never a query per project), and kept for
``metrics_cache_seconds`` so that several scrapers (two Prometheus replicas, a federation)
share one read. Names and labels are Harbor's exporter's (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.jobs.models import JobWorker, Task
from dockyard.projects.models import Project
from dockyard.projects.repository import public_clause
from dockyard.quota.models import Quota
from dockyard.registry.models import Repository
from dockyard.system import config
from dockyard.system.service import dockyard_version

log = logging.getLogger("dockyard.metrics")

PENDING = "Pending"


@dataclass(frozen=True, slots=True)
class ProjectRow:
    name: str
    public: bool
    repositories: int
    pulls: int
    quota_used: int | None
    quota_hard: int | None


@dataclass(frozen=True, slots=True)
class QueueRow:
    job_type: str
    size: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the database said at one moment; ``database_up`` False leaves the rest empty."""

    database_up: bool
    projects: Sequence[ProjectRow] = ()
    queues: Sequence[QueueRow] = ()
    concurrency: Sequence[tuple[str, str, int]] = ()
    """(job type, worker pool, tasks running)."""
    workers: int = 0
    auth_mode: str = "db_auth"
    self_registration: bool = False
    taken_at: datetime = field(default_factory=utcnow)


async def read_snapshot(session: AsyncSession) -> Snapshot:
    """Every business figure in five statements (plus two for the system's properties)."""
    repos = (
        select(
            Repository.project_id.label("project_id"),
            func.count().label("repositories"),
            func.coalesce(func.sum(Repository.pull_count), 0).label("pulls"),
        )
        .group_by(Repository.project_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            Project.project_id,
            Project.name,
            public_clause().label("public"),
            func.coalesce(repos.c.repositories, 0),
            func.coalesce(repos.c.pulls, 0),
        )
        .outerjoin(repos, repos.c.project_id == Project.project_id)
        .where(Project.deleted.is_(False))
    )
    projects = [
        (int(pid), str(name), bool(public), int(n), int(p)) for pid, name, public, n, p in rows
    ]
    quotas = {
        str(ref): (int(used), int(hard))
        for ref, used, hard in await session.execute(
            select(Quota.reference_id, Quota.used_storage, Quota.hard_storage).where(
                Quota.reference == "project"
            )
        )
    }
    queues = [
        QueueRow(str(job_type), int(size), oldest)
        for job_type, size, oldest in await session.execute(
            select(Task.vendor_type, func.count(), func.min(Task.run_at))
            .where(Task.status == PENDING)
            .group_by(Task.vendor_type)
        )
    ]
    concurrency = [
        (str(job_type), str(pool), int(running))
        for job_type, pool, running in await session.execute(
            select(JobWorker.job_type, JobWorker.pool_id, func.count())
            .where(JobWorker.task_id.is_not(None))
            .group_by(JobWorker.job_type, JobWorker.pool_id)
        )
    ]
    workers = int(await session.scalar(select(func.count()).select_from(JobWorker)) or 0)
    auth_mode = await config.value(session, "auth_mode")
    self_registration = await config.value(session, config.SELF_REGISTRATION)
    return Snapshot(
        database_up=True,
        projects=[
            ProjectRow(
                name,
                public,
                repositories,
                pulls,
                *quotas.get(str(project_id), (None, None)),
            )
            for project_id, name, public, repositories, pulls in projects
        ],
        queues=queues,
        concurrency=concurrency,
        workers=workers,
        auth_mode=str(auth_mode),
        self_registration=self_registration is True,
    )


def families(snapshot: Snapshot, now: datetime | None = None) -> list[Metric]:
    """The snapshot as Prometheus metric families, named and labelled as Harbor's exporter."""
    now = now or utcnow()
    up = GaugeMetricFamily(
        "harbor_up", "Whether a component answers (1) or not (0)", labels=["component"]
    )
    up.add_metric(["core"], 1)
    up.add_metric(["database"], 1 if snapshot.database_up else 0)
    health = GaugeMetricFamily(
        "harbor_health", "Whether the registry can serve requests (1: its database answers)"
    )
    health.add_metric([], 1 if snapshot.database_up else 0)
    info = GaugeMetricFamily(
        "harbor_system_info",
        "The system's version and authentication settings (value always 1)",
        labels=["auth_mode", "harbor_version", "self_registration"],
    )
    info.add_metric(
        [snapshot.auth_mode, dockyard_version(), str(snapshot.self_registration).lower()], 1
    )
    out: list[Metric] = [up, health, info]
    if not snapshot.database_up:
        return out
    up.add_metric(["jobservice"], 1 if snapshot.workers else 0)

    total = GaugeMetricFamily("harbor_project_total", "Projects", labels=["public"])
    repo_total = GaugeMetricFamily(
        "harbor_project_repo_total", "Repositories of a project", labels=["project_name", "public"]
    )
    pulled = GaugeMetricFamily(
        "harbor_artifact_pulled", "Pulls of a project's artifacts", labels=["project_name"]
    )
    usage = GaugeMetricFamily(
        "harbor_project_quota_usage_byte", "Storage a project uses", labels=["project_name"]
    )
    hard = GaugeMetricFamily(
        "harbor_project_quota_byte",
        "A project's storage quota (-1: unlimited)",
        labels=["project_name"],
    )
    public_count = sum(1 for p in snapshot.projects if p.public)
    total.add_metric(["true"], public_count)
    total.add_metric(["false"], len(snapshot.projects) - public_count)
    for project in snapshot.projects:
        public = "true" if project.public else "false"
        repo_total.add_metric([project.name, public], project.repositories)
        pulled.add_metric([project.name], project.pulls)
        if project.quota_used is not None:
            usage.add_metric([project.name], project.quota_used)
        if project.quota_hard is not None:
            hard.add_metric([project.name], project.quota_hard)

    size = GaugeMetricFamily(
        "harbor_task_queue_size", "Tasks waiting in a job type's queue", labels=["type"]
    )
    latency = GaugeMetricFamily(
        "harbor_task_queue_latency",
        "Seconds the oldest waiting task of a job type has been due",
        labels=["type"],
    )
    for queue in snapshot.queues:
        size.add_metric([queue.job_type], queue.size)
        waited = (now - queue.oldest).total_seconds() if queue.oldest else 0.0
        latency.add_metric([queue.job_type], max(0.0, waited))
    concurrency = GaugeMetricFamily(
        "harbor_task_concurrency",
        "Tasks running now, by job type and worker pool",
        labels=["type", "pool"],
    )
    for job_type, pool, running in snapshot.concurrency:
        concurrency.add_metric([job_type, pool], running)
    return [*out, total, repo_total, pulled, usage, hard, size, latency, concurrency]


class BusinessMetrics:
    """A ``prometheus_client`` collector over a cached snapshot.

    ``refresh()`` (async, before a scrape is rendered) reads the database when the cached
    snapshot is older than ``cache_seconds``; concurrent scrapes wait for one read.
    ``collect()`` (sync, called by the exposition) turns the snapshot into families."""

    def __init__(self, db: Database, cache_seconds: float) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> Snapshot:
        async with self._lock:
            if self._snapshot is not None and time.monotonic() - self._read_at < self.cache_seconds:
                return self._snapshot
            try:
                async with self.db.read() as session:
                    snapshot = await read_snapshot(session)
            except Exception:  # the scrape still answers, saying the database is down
                log.exception("metrics: reading the database failed")
                snapshot = Snapshot(database_up=False)
            self._snapshot, self._read_at = snapshot, time.monotonic()
            return snapshot

    def collect(self) -> list[Metric]:
        return families(self._snapshot or Snapshot(database_up=False))
