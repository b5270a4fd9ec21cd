"""Purging old audit events (Harbor's ``/system/purgeaudit``): parameters, runs, schedule.

A purge deletes the events older than ``audit_retention_hour`` hours whose type is
listed in ``include_event_types`` (``create_artifact,pull_artifact``…, Harbor
2.13's parameter; Harbor's older ``include_operations`` — ``create,delete,pull``,
every event of those operations — is read too). Nothing listed purges nothing,
as in Harbor. ``dry_run`` only counts. A purge is a job (``PURGE_AUDIT_LOG``,
``audit.jobs``) started by hand (``Manual``) or by the one purge schedule; each
run's parameters and count (``purged_count``) are its execution's attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import repository as repo
from dockyard.audit.events import EVENT_TYPES, event_kind, parse_event_types
from dockyard.db.listing import PageRequest, condition_clause, parse_q, parse_sort
from dockyard.errors import BadRequestError
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Schedule

VENDOR_TYPE = "PURGE_AUDIT_LOG"
RETENTION_HOUR = "audit_retention_hour"
INCLUDE_EVENT_TYPES = "include_event_types"
INCLUDE_OPERATIONS = "include_operations"
DRY_RUN = "dry_run"
PURGED_COUNT = "purged_count"
"""Execution attribute: events deleted (in a dry run: the events that would be)."""
MAX_RETENTION_HOURS = 24 * 365 * 100
OPERATIONS = ("create", "update", "delete", "pull", "login", "logout")
_MAX_TYPES = 200
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_INTEGER = re.compile(r"-?[0-9]{1,18}")

_HISTORY_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Execution.id.expression,
    "job_status": Execution.status.expression,
    "job_kind": Execution.trigger.expression,
    "creation_time": Execution.start_time.expression,
    "update_time": Execution.update_time.expression,
}


@dataclass(frozen=True, slots=True)
class PurgeParams:
    """What one purge does, checked."""

    retention_hours: int
    event_types: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Harbor's parameter names, as kept in the schedule and the execution."""
        params: dict[str, Any] = {
            RETENTION_HOUR: self.retention_hours,
            INCLUDE_EVENT_TYPES: ",".join(self.event_types),
            DRY_RUN: self.dry_run,
        }
        if self.operations:
            params[INCLUDE_OPERATIONS] = ",".join(self.operations)
        return params

    def kinds(self) -> set[tuple[str, str]]:
        return {kind for name in self.event_types if (kind := event_kind(name)) is not None}

    def clause(self, before: datetime) -> ColumnElement[bool]:
        """The events this purge removes, given its cut-off time ``before``."""
        return repo.purge_clause(before, self.kinds(), self.operations)

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(hours=self.retention_hours)


def _integer(raw: Any, name: str) -> int:
    if isinstance(raw, bool):
        raise BadRequestError(f"{name} must be an integer")
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw)
    raise BadRequestError(f"{name} must be an integer")


def _names(raw: Any, name: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, str):
        raise BadRequestError(f"{name} must be a comma-separated string")
    names = parse_event_types(raw)
    if len(names) > _MAX_TYPES or not all(_NAME.fullmatch(n) for n in names):
        raise BadRequestError(f"{name} must be a comma-separated list of names")
    return tuple(sorted(names))


def parse_params(raw: Mapping[str, Any] | None) -> PurgeParams:
    """Harbor's purge ``parameters`` checked: hours from 1 to 100 years, known operations,
    well-formed event types (``check_event_types`` says whether they exist)."""
    if not isinstance(raw, Mapping):
        raise BadRequestError(f"parameters are required: {{{RETENTION_HOUR!r}: hours, ...}}")
    if RETENTION_HOUR not in raw:
        raise BadRequestError(f"parameters.{RETENTION_HOUR} is required")
    hours = _integer(raw[RETENTION_HOUR], RETENTION_HOUR)
    if not 1 <= hours <= MAX_RETENTION_HOURS:
        raise BadRequestError(f"{RETENTION_HOUR} must be between 1 and {MAX_RETENTION_HOURS}")
    dry_run = raw.get(DRY_RUN, False)
    if isinstance(dry_run, str) and dry_run.lower() in ("true", "false"):
        dry_run = dry_run.lower() == "true"
    if not isinstance(dry_run, bool):
        raise BadRequestError(f"{DRY_RUN} must be true or false")
    operations = _names(raw.get(INCLUDE_OPERATIONS), INCLUDE_OPERATIONS)
    unknown = sorted(set(operations) - set(OPERATIONS))
    if unknown:
        raise BadRequestError(
            f"{INCLUDE_OPERATIONS}: unknown operation {unknown[0]!r}; "
            f"operations: {', '.join(OPERATIONS)}"
        )
    event_types = _names(raw.get(INCLUDE_EVENT_TYPES), INCLUDE_EVENT_TYPES)
    if any(event_kind(n) is None for n in event_types):
        bad = next(n for n in event_types if event_kind(n) is None)
        raise BadRequestError(f"{INCLUDE_EVENT_TYPES}: {bad!r} is not an event type")
    return PurgeParams(hours, event_types, operations, dry_run)


async def check_event_types(session: AsyncSession, params: PurgeParams) -> None:
    """Every listed event type is one Dockyard records or one the log holds (refusals
    of other kinds); a typo is a 400 that lists the known types."""
    unknown = [name for name in params.event_types if name not in EVENT_TYPES]
    if not unknown:
        return
    held = await repo.event_kinds(session)
    for name in unknown:
        if event_kind(name) not in held:
            raise BadRequestError(
                f"{INCLUDE_EVENT_TYPES}: unknown event type {name!r}; "
                f"event types: {', '.join(EVENT_TYPES)}"
            )


async def validated(session: AsyncSession, raw: Mapping[str, Any] | None) -> PurgeParams:
    params = parse_params(raw)
    await check_event_types(session, params)
    return params


# --- runs -------------------------------------------------------------------------------


async def start(
    session: AsyncSession, params: PurgeParams, trigger: str = jobs.MANUAL
) -> Execution:
    """Start a purge in the caller's transaction."""
    return await jobs.enqueue(
        session,
        VENDOR_TYPE,
        trigger=trigger,
        extra_attrs=params.as_dict(),
        tasks=[jobs.TaskSpec(params=params.as_dict())],
    )


async def history(
    session: AsyncSession, q: str | None, sort: str | None, page: PageRequest
) -> tuple[list[Execution], int]:
    """Purge runs, newest first; ``q`` and ``sort`` over id, job_status, job_kind,
    creation_time and update_time."""
    where = []
    for condition in parse_q(q):
        column = _HISTORY_COLUMNS.get(condition.key)
        if column is None:
            raise BadRequestError(
                f"q cannot filter on {condition.key!r}; keys: {', '.join(sorted(_HISTORY_COLUMNS))}"
            )
        where.append(condition_clause(condition, column))
    order = parse_sort(sort, _HISTORY_COLUMNS)
    return await jobs.list_executions(session, VENDOR_TYPE, page, order=order, where=where)


async def get_run(session: AsyncSession, purge_id: int) -> Execution:
    return await jobs.get_execution(session, purge_id, vendor_type=VENDOR_TYPE)


async def stop(session: AsyncSession, purge_id: int) -> None:
    """Stop a purge; stopping one that already ended does nothing (as Harbor)."""
    execution = await get_run(session, purge_id)
    if execution.status not in jobs.FINAL_STATUSES:
        await jobs.stop_execution(session, execution)


async def run_log(session: AsyncSession, purge_id: int) -> str:
    execution = await get_run(session, purge_id)
    return await jobs.execution_log(session, execution.id)


# --- the schedule -----------------------------------------------------------------------


async def find_schedule(session: AsyncSession) -> Schedule | None:
    return await schedules.find_schedule(session, VENDOR_TYPE)


async def set_schedule(
    session: AsyncSession, obj: Mapping[str, Any] | None, raw_params: Mapping[str, Any] | None
) -> Execution | None:
    """Apply a Harbor ``Schedule`` body: ``Manual`` starts a purge now (returned),
    ``None`` removes the schedule, other types set it with these parameters."""
    spec = schedules.parse_schedule_obj(obj)
    if spec.cron_type == schedules.NONE:
        await schedules.remove_schedule(session, VENDOR_TYPE)
        return None
    params = await validated(session, raw_params)
    if spec.cron_type == schedules.MANUAL:
        return await start(session, params)
    await schedules.set_schedule(session, VENDOR_TYPE, spec, params.as_dict())
    return None
