"""Cron schedules that start executions, firing once per period across all processes.

Crons are Harbor's six fields with seconds first (``0 0 0 * * *``: daily at
midnight UTC); ``Hourly``, ``Daily`` and ``Weekly`` are presets. Each schedule
row holds its next firing time. Every worker process looks for due rows; one
moves ``next_fire`` forward with a compare-and-set (``WHERE next_fire = <the
value it read>``) and enqueues the execution in that same transaction, so
exactly one process wins each firing, whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from croniter import croniter
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.errors import BadRequestError
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Schedule

HOURLY = "Hourly"
DAILY = "Daily"
WEEKLY = "Weekly"
CUSTOM = "Custom"
MANUAL = "Manual"
NONE = "None"
PRESETS = {HOURLY: "0 0 * * * *", DAILY: "0 0 0 * * *", WEEKLY: "0 0 0 * * 0"}
_MAX_CRON = 128

Launcher = Callable[[AsyncSession, int, Mapping[str, Any], str], Awaitable[Execution]]
"""Starts an execution of one job type: (session, vendor_id, params, trigger)."""


def validate_cron(cron: str) -> str:
    """``cron`` normalised, or a 400 saying what a valid one looks like."""
    text = " ".join(cron.split())
    fields = text.split(" ")
    if (
        len(text) > _MAX_CRON
        or len(fields) != 6
        or not croniter.is_valid(text, second_at_beginning=True)
    ):
        raise BadRequestError(
            f"invalid cron {cron[:_MAX_CRON]!r}: give six fields, seconds first "
            "(e.g. '0 0 0 * * *' for daily at midnight UTC)"
        )
    return text


def next_fire(cron: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` names (UTC)."""
    result: datetime = croniter(cron, after, second_at_beginning=True).get_next(datetime)
    return result


@dataclass(frozen=True, slots=True)
class CronSpec:
    """What a Harbor ``ScheduleObj`` asks for: a type and, for ``Custom``, a cron."""

    cron_type: str
    cron: str


def parse_schedule_obj(obj: Mapping[str, Any] | None) -> CronSpec:
    """Harbor's ``ScheduleObj`` (``{"type": "Daily"}``, ``{"type": "Custom", "cron": …}``,
    ``Manual`` to run once now, ``None`` for no schedule) as a ``CronSpec``."""
    if not isinstance(obj, Mapping):
        raise BadRequestError(
            'schedule is required: {"type": "Hourly|Daily|Weekly|Custom|Manual|None"}'
        )
    kind = obj.get("type")
    if kind in PRESETS:
        return CronSpec(str(kind), PRESETS[str(kind)])
    if kind in (CUSTOM, "Schedule"):
        cron = obj.get("cron")
        if not isinstance(cron, str) or not cron.strip():
            raise BadRequestError("a Custom schedule needs a cron (six fields, seconds first)")
        return CronSpec(CUSTOM, validate_cron(cron))
    if kind in (MANUAL, NONE):
        return CronSpec(str(kind), "")
    raise BadRequestError(
        "schedule.type must be one of Hourly, Daily, Weekly, Custom, Manual, None"
    )


async def find_schedule(
    session: AsyncSession, vendor_type: str, vendor_id: int = -1
) -> Schedule | None:
    return await session.scalar(
        select(Schedule).where(Schedule.vendor_type == vendor_type, Schedule.vendor_id == vendor_id)
    )


async def set_schedule(
    session: AsyncSession,
    vendor_type: str,
    spec: CronSpec,
    params: Mapping[str, Any],
    *,
    vendor_id: int = -1,
) -> Schedule:
    """Create or replace the schedule of (vendor type, vendor id)."""
    cron = validate_cron(spec.cron)
    now = utcnow()
    row = await find_schedule(session, vendor_type, vendor_id)
    if row is None:
        row = Schedule(vendor_type=vendor_type, vendor_id=vendor_id, creation_time=now)
        session.add(row)
    row.cron_type = spec.cron_type
    row.cron = cron
    row.params = jobs.dumps(params)
    row.next_fire = next_fire(cron, now)
    row.update_time = now
    await session.flush()
    return row


async def remove_schedule(session: AsyncSession, vendor_type: str, vendor_id: int = -1) -> bool:
    result = await session.execute(
        delete(Schedule).where(Schedule.vendor_type == vendor_type, Schedule.vendor_id == vendor_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def list_schedules(session: AsyncSession) -> list[Schedule]:
    return list(await session.scalars(select(Schedule).order_by(Schedule.id)))


async def default_launch(
    session: AsyncSession,
    vendor_type: str,
    vendor_id: int,
    params: Mapping[str, Any],
    trigger: str,
) -> Execution:
    return await jobs.enqueue(
        session, vendor_type, vendor_id=vendor_id, trigger=trigger, extra_attrs=params
    )


async def fire_due(
    db: Database, launchers: Mapping[str, Launcher], now: datetime | None = None
) -> int:
    """Start an execution for each schedule that is due; returns how many this process
    started. Safe to call from any number of processes at once."""
    now = now or utcnow()
    async with db.read() as session:
        due = list(
            (
                await session.execute(
                    select(
                        Schedule.id,
                        Schedule.vendor_type,
                        Schedule.vendor_id,
                        Schedule.cron,
                        Schedule.params,
                        Schedule.next_fire,
                    ).where(Schedule.next_fire <= now)
                )
            ).all()
        )
    fired = 0
    for schedule_id, vendor_type, vendor_id, cron, params, planned in due:
        async with db.write() as session:
            claimed = await session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id, Schedule.next_fire == planned)
                .values(next_fire=next_fire(cron, max(now, planned)))
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue  # another process fired it (or it was changed meanwhile)
            launcher = launchers.get(vendor_type)
            arguments = jobs.loads(params)
            if launcher is None:
                await default_launch(session, vendor_type, vendor_id, arguments, jobs.SCHEDULE)
            else:
                await launcher(session, vendor_id, arguments, jobs.SCHEDULE)
            fired += 1
    return fired
