"""Health (``/api/v2.0/health``) and readiness (``/readyz``) of this node and what it needs.

Each check asks one thing cheaply — the database answers ``SELECT 1``, the storage
driver's ``check()`` (a probe file written and removed, or one bucket listing), the job
workers keep up — and all run at once, each cut off after ``CHECK_TIMEOUT_SECONDS``, so
an answer never waits on a hung dependency. An answer is kept ``CACHE_SECONDS`` and
callers arriving while it is computed share the one computation: a flood of probes costs
one set of checks a second, not one per probe.

External services (LDAP, scanners, replication endpoints) are added with
:meth:`HealthMonitor.add_component` by ``create_app`` when they are configured; none
exist yet, so none are listed.

Errors shown to callers name what failed and the kind of failure, never a path, a host
or a credential (the health endpoint is anonymous, as Harbor's is); the details go to
the log. :class:`HealthProblem` carries a message written to be shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from sqlalchemy import text

from dockyard.db.engine import Database
from dockyard.db.migrate import head_revision
from dockyard.jobs import service as jobs
from dockyard.storage import Storage

log = logging.getLogger("dockyard.health")

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
CHECK_TIMEOUT_SECONDS = 3.0
CACHE_SECONDS = 1.0

Check = Callable[[], Awaitable[None]]
"""A check passes by returning and fails by raising."""

T = TypeVar("T")


class HealthProblem(Exception):
    """A check's failure whose message may be shown to anyone."""


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    problems: tuple[str, ...]
    """Empty when this node may take traffic; else one line per reason."""

    @property
    def ready(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Component:
    name: str
    check: Check
    failure: str
    """What an unexpected failure is shown as (``<failure> (<kind of error>)``)."""


class _Shared(Generic[T]):
    """One computation at a time, its result kept ``CACHE_SECONDS``."""

    def __init__(self, compute: Callable[[], Awaitable[T]]) -> None:
        self._compute = compute
        self._value: tuple[float, T] | None = None
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._value[0] < CACHE_SECONDS:
            return self._value[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._compute())
            self._running.add_done_callback(self._keep)
        # shield: a caller that goes away does not cancel the others' answer.
        return await asyncio.shield(self._running)

    def _keep(self, task: asyncio.Task[T]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is None:
            self._value = (time.monotonic(), task.result())


class HealthMonitor:
    """The checks of one process; built in ``create_app`` and kept in the app's state."""

    def __init__(self, db: Database, storage: Storage, *, job_lease: timedelta) -> None:
        self.db = db
        self.storage = storage
        self.job_lease = job_lease
        self.shutting_down = False
        """Set when the process starts shutting down: readiness fails from then on."""
        self._components = [
            _Component("core", _nothing, "the core does not answer"),
            _Component("database", self._ping_database, "the database does not answer"),
            _Component("storage", self._check_storage, "the storage does not work"),
            _Component("jobservice", self._check_workers, "the job queue cannot be read"),
        ]
        self._head: str | None = None
        self._health = _Shared(self._check_components)
        self._readiness = _Shared(self._check_readiness)

    def add_component(self, name: str, check: Check, failure: str) -> None:
        """Check one more service (a configured LDAP server, scanner, endpoint…)."""
        self._components.append(_Component(name, check, failure))

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    # --- answers ---------------------------------------------------------------------

    async def components(self) -> list[ComponentHealth]:
        """Every component's health, in a fixed order (Harbor's ``components``)."""
        return await self._health.get()

    async def readiness(self) -> Readiness:
        """Whether this node may take traffic: not shutting down, the database reachable
        and migrated to this build's head, the storage working."""
        if self.shutting_down:
            return Readiness(("shutting down",))
        return await self._readiness.get()

    # --- computations ----------------------------------------------------------------

    async def _check_components(self) -> list[ComponentHealth]:
        return list(await asyncio.gather(*(_run(c) for c in self._components)))

    async def _check_readiness(self) -> Readiness:
        results = await asyncio.gather(
            _run(_Component("database", self._check_schema, "the database does not answer")),
            _run(_Component("storage", self._check_storage, "the storage does not work")),
        )
        return Readiness(tuple(f"{r.name}: {r.error}" for r in results if r.error is not None))

    # --- checks ----------------------------------------------------------------------

    async def _ping_database(self) -> None:
        async with self.db.read_connection() as conn:
            await conn.execute(text("SELECT 1"))

    async def _check_schema(self) -> None:
        if self._head is None:
            self._head = await asyncio.to_thread(head_revision)
        async with self.db.read_connection() as conn:
            current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        if current != self._head:
            raise HealthProblem(
                f"the schema is at revision {current}, this build needs {self._head} "
                "(run dockyard migrate)"
            )

    async def _check_storage(self) -> None:
        await self.storage.check()

    async def _check_workers(self) -> None:
        async with self.db.read() as session:
            state = await jobs.worker_health(session, self.job_lease)
        if state.waiting_tasks and not state.live_workers:
            seconds = int(self.job_lease.total_seconds())
            raise HealthProblem(
                f"{state.waiting_tasks} task(s) have waited more than {seconds} s and no job "
                f"worker was seen in that time (start dockyard worker, or job_workers > 0)"
            )


async def _nothing() -> None:
    """The core is this process: that it runs this, it answers."""


async def _run(component: _Component) -> ComponentHealth:
    name = component.name
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await component.check()
    except HealthProblem as exc:
        log.warning("health check of %s failed: %s", name, exc)
        return ComponentHealth(name, UNHEALTHY, str(exc))
    except TimeoutError:
        log.warning("health check of %s got no answer in %s s", name, CHECK_TIMEOUT_SECONDS)
        return ComponentHealth(
            name, UNHEALTHY, f"{component.failure} (no answer within {CHECK_TIMEOUT_SECONDS:g} s)"
        )
    except Exception as exc:  # any failure means unhealthy; the details go to the log
        log.warning("health check of %s failed: %s: %s", name, type(exc).__name__, exc)
        return ComponentHealth(name, UNHEALTHY, f"{component.failure} ({type(exc).__name__})")
    return ComponentHealth(name, HEALTHY)
