"""Console pages of the job features: garbage collection, the job service dashboard and
the audit log's purge and forwarding settings (administration), plus the routes of the
project tabs for tag retention (``console/retention.py``) and webhooks
(``console/webhooks.py``).

Each handler asks ``can`` first (``require_system``), as the REST API's handlers do,
then calls the same service functions (``gc.service``, ``jobs.service``,
``jobs.schedules``, ``audit.purge``, ``system.config``); the templates get booleans
to hide the buttons a caller may not use. A run's log opens as a page of its own,
or inside the page through HTMX (the ``log-panel`` target).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from dockyard.audit import purge
from dockyard.audit.events import EVENT_TYPES as AUDIT_EVENT_TYPES
from dockyard.audit.events import parse_event_types
from dockyard.console.admin import ADMIN, require_system
from dockyard.console.projects import pages_of
from dockyard.console.web import Handler, Page, with_query
from dockyard.db.base import utcnow
from dockyard.errors import BadRequestError, PreconditionFailedError
from dockyard.gc import service as gc
from dockyard.iam.policy import Action, Resource, can
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution
from dockyard.jobs.models import Schedule as ScheduleRow
from dockyard.system import config
from dockyard.system import service as system_service

GC = ADMIN + "/gc"
JOB_SERVICE = ADMIN + "/job-service"
AUDIT_SETTINGS = ADMIN + "/audit-log-settings"
SCHEDULE_TYPES = (
    schedules.NONE,
    schedules.HOURLY,
    schedules.DAILY,
    schedules.WEEKLY,
    schedules.CUSTOM,
)
LOG_PANEL = "log-panel"
"""The HTMX target a run's log is loaded into; any other request gets the log page."""
QUEUE_FLASHES = {
    "pause": "flash.queue_paused",
    "resume": "flash.queue_resumed",
    "stop": "flash.queue_stopped",
}
DEFAULT_PURGE_HOURS = 24 * 30
SCHEDULES_PER_PAGE = 25
"""The dashboard pages the schedules (one per retention policy: there may be thousands)."""


# --- shared pieces -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """What the schedule form shows: the type, its cron and when it fires next."""

    type: str
    cron: str = ""
    next_fire: datetime | None = None
    params: Mapping[str, Any] | None = None


def schedule_view(row: ScheduleRow | None) -> ScheduleView:
    if row is None:
        return ScheduleView(schedules.NONE, params={})
    return ScheduleView(
        row.cron_type, row.cron, schedules.next_fire(row.cron, utcnow()), jobs.loads(row.params)
    )


def cron_view(cron: str) -> ScheduleView:
    """A bare cron (tag retention keeps only that) as the form's type: a preset's name when
    it is one, else ``Custom``."""
    if not cron:
        return ScheduleView(schedules.NONE)
    kind = next((k for k, v in schedules.PRESETS.items() if v == cron), schedules.CUSTOM)
    return ScheduleView(kind, cron, schedules.next_fire(cron, utcnow()))


def schedule_field(page: Page) -> schedules.CronSpec:
    """The schedule form's choice (``schedule_type`` and, for Custom, ``cron``)."""
    kind = page.field("schedule_type", schedules.NONE)
    if kind not in SCHEDULE_TYPES:
        raise BadRequestError(f"choose a schedule: {', '.join(SCHEDULE_TYPES)}")
    return schedules.parse_schedule_obj({"type": kind, "cron": page.field("cron").strip()})


@dataclass(frozen=True, slots=True)
class RunView:
    """One execution as the history tables show it."""

    id: int
    status: str
    status_message: str
    trigger: str
    attrs: Mapping[str, Any]
    start_time: datetime
    end_time: datetime | None
    update_time: datetime

    @property
    def finished(self) -> bool:
        return self.status in jobs.FINAL_STATUSES


def run_view(row: Execution) -> RunView:
    return RunView(
        row.id,
        row.status,
        row.status_message,
        row.trigger,
        jobs.loads(row.extra_attrs),
        row.start_time,
        row.end_time,
        row.update_time,
    )


def log_page(page: Page, kind: str, number: int, text: str, back: str) -> Response:
    """A log (``kind`` names its title: gc, purge, job, retention, webhook) as the
    fragment when HTMX asks for the log panel, else as a page."""
    log = {"kind": kind, "id": number, "text": text}
    if page.request.headers.get("hx-target") == LOG_PANEL:
        return page.render("jobs/_log.html", log=log)
    return page.render("jobs/log.html", log=log, back=back)


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# --- garbage collection ------------------------------------------------------------------


async def gc_page(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.GARBAGE_COLLECTION)
    request = page.page_request()
    async with page.state.db.read() as session:
        schedule = await schedules.find_schedule(session, gc.JOB_TYPE)
        rows, total = await jobs.list_executions(session, gc.JOB_TYPE, request)
    view = schedule_view(schedule)
    params = dict(view.params or {})
    return page.render(
        "jobs/gc.html",
        section="gc",
        schedule=view,
        schedule_types=SCHEDULE_TYPES,
        params={
            "delete_untagged": _flag(params.get("delete_untagged", False)),
            "workers": params.get("workers", 1),
        },
        max_workers=gc.MAX_WORKERS,
        runs=[run_view(r) for r in rows],
        paging=pages_of(total, request),
        may_run=can(page.principal, Action.CREATE, Resource.GARBAGE_COLLECTION, None),
        may_schedule=can(page.principal, Action.UPDATE, Resource.GARBAGE_COLLECTION, None),
        may_stop=can(page.principal, Action.STOP, Resource.GARBAGE_COLLECTION, None),
        list_url=lambda **p: with_query(GC, **p),
    )


def _gc_params(page: Page, *, dry_run: bool) -> gc.GcParams:
    raw: dict[str, Any] = {
        "delete_untagged": page.checked("delete_untagged"),
        "workers": page.int_field("workers", 1),
        "dry_run": dry_run,
    }
    return gc.parse_params(raw, page.state.settings.gc_time_window_hours)


async def gc_schedule(page: Page) -> Response:
    """Set or remove the schedule with the parameters its runs get (never a dry run)."""
    require_system(page, Action.UPDATE, Resource.GARBAGE_COLLECTION)
    spec = schedule_field(page)
    if spec.cron_type == schedules.MANUAL:
        raise BadRequestError("choose a schedule, or start a run with “GC now”")
    params = _gc_params(page, dry_run=False)
    async with page.state.db.write() as session:
        if spec.cron_type == schedules.NONE:
            await schedules.remove_schedule(session, gc.JOB_TYPE)
        else:
            await schedules.set_schedule(session, gc.JOB_TYPE, spec, params.as_dict())
    return page.redirect(GC, "flash.gc_schedule_saved")


async def gc_run(page: Page) -> Response:
    """Start a run now (``dry_run`` from the button pressed); one at a time."""
    require_system(page, Action.CREATE, Resource.GARBAGE_COLLECTION)
    params = _gc_params(page, dry_run=page.field("dry_run") == "true")
    async with page.state.db.write() as session:
        execution = await gc.start(session, params)
        run_id = execution.id if execution is not None else None
    if run_id is None:
        return page.redirect(GC, "flash.gc_busy", "error")
    return page.redirect(GC, "flash.gc_started", id=str(run_id))


async def gc_stop(page: Page) -> Response:
    require_system(page, Action.STOP, Resource.GARBAGE_COLLECTION)
    run_id = page.id_field("execution", "a run's id")
    async with page.state.db.write() as session:
        row = await jobs.get_execution(session, run_id, vendor_type=gc.JOB_TYPE)
        with contextlib.suppress(PreconditionFailedError):  # finished: nothing to stop
            await jobs.stop_execution(session, row)
    return page.redirect(GC, "flash.run_stop_requested", id=str(run_id))


async def gc_log(page: Page) -> Response:
    require_system(page, Action.READ, Resource.GARBAGE_COLLECTION)
    run_id = page.path_int("execution")
    async with page.state.db.read() as session:
        await jobs.get_execution(session, run_id, vendor_type=gc.JOB_TYPE)
        text = await jobs.execution_log(session, run_id)
    return log_page(page, "gc", run_id, text, GC)


# --- the job service dashboard -----------------------------------------------------------


async def job_service(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.JOBSERVICE_MONITOR)
    request = page.page_request(SCHEDULES_PER_PAGE)
    async with page.state.db.read() as session:
        queues = await jobs.queues(session, list(page.state.job_types))
        pools = await jobs.worker_pools(session)
        workers = await jobs.workers(session, None)
        every_schedule = await schedules.list_schedules(session)
    shown = every_schedule[request.offset : request.offset + request.page_size]
    return page.render(
        "jobs/dashboard.html",
        section="jobservice",
        queues=queues,
        pools=pools,
        workers=workers,
        schedules=[(row, schedule_view(row)) for row in shown],
        paging=pages_of(len(every_schedule), request),
        list_url=lambda **p: with_query(JOB_SERVICE, **p),
        may_act=can(page.principal, Action.STOP, Resource.JOBSERVICE_MONITOR, None),
    )


async def queue_action(page: Page) -> Response:
    """Pause, resume or stop (every pending task of) one job type's queue, or all of them."""
    require_system(page, Action.STOP, Resource.JOBSERVICE_MONITOR)
    action = page.field("action")
    if action not in QUEUE_FLASHES:
        raise BadRequestError("action must be pause, resume or stop")
    name = page.field("job_type")
    known = sorted(page.state.job_types)
    if name != "all" and name not in known:
        raise BadRequestError(f"no job type {name[:64]!r}")
    job_type = None if name == "all" else name
    async with page.state.db.write() as session:
        if action == "stop":
            await jobs.stop_pending(session, job_type)
        else:
            for each in [job_type] if job_type is not None else known:
                await jobs.set_paused(session, each, action == "pause")
    return page.redirect(JOB_SERVICE, QUEUE_FLASHES[action], job_type=name)


async def stop_job(page: Page) -> Response:
    """Stop one task (what a worker runs): now when it waits, at its next checkpoint when
    it runs."""
    require_system(page, Action.STOP, Resource.JOBSERVICE_MONITOR)
    task_id = page.id_field("task", "a job's id")
    async with page.state.db.write() as session:
        task = await jobs.get_task(session, task_id)
        await jobs.stop_task(session, task)
    return page.redirect(JOB_SERVICE, "flash.job_stop_requested", id=str(task_id))


async def job_log(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.JOBSERVICE_MONITOR)
    task_id = page.path_int("task")
    async with page.state.db.read() as session:
        await jobs.get_task(session, task_id)
        text = await jobs.task_log(session, task_id)
    return log_page(page, "job", task_id, text, JOB_SERVICE)


# --- audit log: purge and forwarding -----------------------------------------------------


async def audit_settings(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.PURGE_AUDIT)
    request = page.page_request()
    async with page.state.db.read() as session:
        schedule = await purge.find_schedule(session)
        rows, total = await purge.history(session, None, None, request)
        items = await config.current(session, page.state.settings)
    view = schedule_view(schedule)
    params = dict(view.params or {})
    chosen = set(parse_event_types(str(params.get(purge.INCLUDE_EVENT_TYPES) or "")))
    may_configure = page.principal.sysadmin and not page.principal.is_robot
    return page.render(
        "jobs/audit_settings.html",
        section="audit_settings",
        schedule=view,
        schedule_types=SCHEDULE_TYPES,
        retention_hours=params.get(purge.RETENTION_HOUR, DEFAULT_PURGE_HOURS),
        event_types=AUDIT_EVENT_TYPES,
        chosen=chosen if schedule is not None else set(AUDIT_EVENT_TYPES),
        runs=[run_view(r) for r in rows],
        paging=pages_of(total, request),
        may_run=can(page.principal, Action.CREATE, Resource.PURGE_AUDIT, None),
        may_schedule=can(page.principal, Action.UPDATE, Resource.PURGE_AUDIT, None),
        may_stop=can(page.principal, Action.STOP, Resource.PURGE_AUDIT, None),
        may_configure=may_configure,
        forward_endpoint=items[config.AUDIT_LOG_FORWARD_ENDPOINT][0] if may_configure else "",
        skip_database=bool(items[config.SKIP_AUDIT_LOG_DATABASE][0]) if may_configure else False,
        list_url=lambda **p: with_query(AUDIT_SETTINGS, **p),
    )


def _purge_params(page: Page, *, dry_run: bool) -> dict[str, Any]:
    """Harbor's purge ``parameters`` from the form (``audit.purge`` checks them)."""
    picked = [name for name in page.fields("event_type") if name]
    return {
        purge.RETENTION_HOUR: page.field("retention_hours").strip(),
        purge.INCLUDE_EVENT_TYPES: ",".join(picked),
        purge.DRY_RUN: dry_run,
    }


async def purge_schedule(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.PURGE_AUDIT)
    spec = schedule_field(page)
    if spec.cron_type == schedules.MANUAL:
        raise BadRequestError("choose a schedule, or start a purge with “Purge now”")
    obj = {"type": spec.cron_type, "cron": spec.cron}
    async with page.state.db.write() as session:
        await purge.set_schedule(session, obj, _purge_params(page, dry_run=False))
    return page.redirect(AUDIT_SETTINGS, "flash.purge_schedule_saved")


async def purge_run(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.PURGE_AUDIT)
    dry_run = page.field("dry_run") == "true"
    async with page.state.db.write() as session:
        started = await purge.set_schedule(
            session, {"type": schedules.MANUAL}, _purge_params(page, dry_run=dry_run)
        )
        run_id = started.id if started is not None else 0
    return page.redirect(AUDIT_SETTINGS, "flash.purge_started", id=str(run_id))


async def purge_stop(page: Page) -> Response:
    require_system(page, Action.STOP, Resource.PURGE_AUDIT)
    run_id = page.id_field("execution", "a run's id")
    async with page.state.db.write() as session:
        await purge.stop(session, run_id)
    return page.redirect(AUDIT_SETTINGS, "flash.run_stop_requested", id=str(run_id))


async def purge_log(page: Page) -> Response:
    require_system(page, Action.READ, Resource.PURGE_AUDIT)
    run_id = page.path_int("execution")
    async with page.state.db.read() as session:
        text = await purge.run_log(session, run_id)
    return log_page(page, "purge", run_id, text, AUDIT_SETTINGS)


async def save_settings(page: Page, changes: Mapping[str, object]) -> None:
    """Configuration items through ``config.update`` (all or nothing), audited by key as
    ``PUT /configurations`` does."""
    async with page.state.db.write() as session:
        await system_service.update_configuration(session, page.actor(), changes)


async def audit_forwarding(page: Page) -> Response:
    """The syslog endpoint audit events are forwarded to, and whether the database keeps
    them too (configuration items: system administrators, as ``/configurations``)."""
    require_system(page, Action.UPDATE, Resource.USER)
    await save_settings(
        page,
        {
            config.AUDIT_LOG_FORWARD_ENDPOINT: page.field("endpoint").strip(),
            config.SKIP_AUDIT_LOG_DATABASE: page.checked("skip_database"),
        },
    )
    return page.redirect(AUDIT_SETTINGS, "flash.configuration_saved")


# --- routes ------------------------------------------------------------------------------


def jobs_routes(
    get: Callable[[str, Handler], Route], post: Callable[[str, Handler], Route]
) -> Sequence[Route]:
    """The routes of every page here, of tag retention and of webhooks (``console_routes``
    adds them before its catch-all). POST paths carry no ids: the form does, so the
    console's CSRF and authorisation sweeps walk them as they are."""
    from dockyard.console import retention, webhooks

    return [
        get(GC, gc_page),
        post(GC + "/schedule", gc_schedule),
        post(GC + "/run", gc_run),
        post(GC + "/stop", gc_stop),
        get(GC + "/{execution}/log", gc_log),
        get(JOB_SERVICE, job_service),
        post(JOB_SERVICE + "/queues", queue_action),
        post(JOB_SERVICE + "/stop-job", stop_job),
        get(JOB_SERVICE + "/jobs/{task}/log", job_log),
        get(AUDIT_SETTINGS, audit_settings),
        post(AUDIT_SETTINGS + "/purge-schedule", purge_schedule),
        post(AUDIT_SETTINGS + "/purge", purge_run),
        post(AUDIT_SETTINGS + "/purge-stop", purge_stop),
        post(AUDIT_SETTINGS + "/forwarding", audit_forwarding),
        get(AUDIT_SETTINGS + "/purges/{execution}/log", purge_log),
        *retention.routes(get, post),
        *webhooks.routes(get, post),
    ]
