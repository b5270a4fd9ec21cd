"""Replication policies and their executions.

A policy copies between this registry and one registry endpoint (``remotes/``): push-based
(source is this registry, id 0) or pull-based (destination is this registry). It selects
repositories and tags with filters (``filters.py``), maps names with a destination
namespace and flattening level, and runs on a trigger: ``manual``, ``scheduled`` (a cron,
through ``jobs/schedules.py``) or ``event_based`` (a push or deletion here, through the
registry hooks in ``hooks.py``, enqueued in the transaction of the change).

An execution (job type ``REPLICATION``) starts with one ``plan`` task that lists the
source, leaves out what the destination has, and adds ``copy`` tasks of up to
``BATCH_ARTIFACTS`` artifacts each (each artifact's outcome in the task's log); an event
adds the one ``copy`` or ``delete`` task it needs directly. Tasks copy with
``remotes/copy.py`` between two adapters, the local side being ``local.LocalAdapter``
over the registry service.
No transaction is held while a remote is reached.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import PageRequest, apply_q, fetch_page, parse_q, parse_sort
from dockyard.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
)
from dockyard.http.egress import EgressPolicy
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task, TaskLog
from dockyard.jobs.runner import JobContext, PermanentJobError
from dockyard.oci.digest import Digest
from dockyard.oci.mediatypes import INDEX_TYPES, OCI_INDEX
from dockyard.projects import repository as projects_repo
from dockyard.remotes import service as remotes
from dockyard.remotes.adapter import Adapter, Manifest, fallback_tag
from dockyard.remotes.client import RemoteAuthError, RemoteError, RemoteUnsupported
from dockyard.remotes.copy import BlobLocations, concurrently, copy_artifact, locations_for
from dockyard.remotes.harbor import HarborAdapter
from dockyard.remotes.schemas import Registry
from dockyard.replication import filters as flt
from dockyard.replication import repository as repo
from dockyard.replication.local import LocalAdapter, Throttle
from dockyard.replication.models import ReplicationPolicy
from dockyard.replication.schemas import (
    ReplicationExecution,
    ReplicationFilter,
    ReplicationTask,
    ReplicationTrigger,
    ReplicationTriggerSettings,
)
from dockyard.replication.schemas import (
    ReplicationPolicy as PolicyBody,
)
from dockyard.webhooks import service as webhooks
from dockyard.webhooks.payloads import REPLICATION

JOB_TYPE = "REPLICATION"
LOCAL_ID = 0
MANUAL = "manual"
SCHEDULED = "scheduled"
EVENT_BASED = "event_based"
TRIGGER_TYPES = (MANUAL, SCHEDULED, EVENT_BASED)
OP_PLAN = "plan"
OP_COPY = "copy"
OP_DELETE = "delete"
MAX_TASKS = 10_000
"""Artifacts one execution may plan; the rest is logged as not planned."""
ARTIFACTS_LISTED = 100
"""Artifacts a ``REPLICATION`` webhook event lists per outcome (the first ones)."""
BATCH_ARTIFACTS = 16
"""Artifacts one copy task of a plan copies at most."""
BATCH_SPREAD = 8
"""Copy tasks a plan spreads its artifacts over, while each has fewer than
``BATCH_ARTIFACTS`` (so a small plan still runs side by side in the job slots)."""
ARTIFACT_CONCURRENCY = 4
"""Artifacts of one copy task copied at once."""
CHUNK_BYTES = 8 * 1024 * 1024
"""Piece size of a chunked upload (``copy_by_chunk``)."""
MAX_SPEED_KB = 10 * 1024 * 1024
PLAN_CHECKPOINT_SECONDS = 1.0
"""How often a plan saves its log and looks for a stop while it asks the destination."""
PLAN_CONCURRENCY = 16
"""Repositories (remote source) or artifacts (at the destination) a plan asks about at once."""
_MAX_NAME = 255
_MAX_DESCRIPTION = 1024
_NAMESPACE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_IMAGE_CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)

_T = TypeVar("_T")

_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": ReplicationPolicy.id.expression,
    "name": ReplicationPolicy.name.expression,
    "enabled": ReplicationPolicy.enabled.expression,
    "creation_time": ReplicationPolicy.creation_time.expression,
    "update_time": ReplicationPolicy.update_time.expression,
}


class PolicyNotFoundError(NotFoundError):
    pass


# --- validation ----------------------------------------------------------------------------


def _text(value: str | None, what: str, limit: int, *, required: bool = False) -> str:
    value = (value or "").strip() if required else (value or "")
    if required and not value:
        raise BadRequestError(f"{what} is required")
    if len(value) > limit:
        raise BadRequestError(f"{what} is longer than {limit} characters")
    if any((ord(ch) < 0x20 and ch not in "\t\n\r") or ord(ch) == 0x7F for ch in value):
        raise BadRequestError(f"{what} contains control characters")
    return value


def _filters(given: Sequence[ReplicationFilter] | None) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = []
    for item in given or []:
        value = item.value if item.value is not None else ""
        if not isinstance(value, (str, list)):
            raise BadRequestError(f"filter {item.type!r}: value must be a string or a list")
        stored.append(
            {"type": item.type or "", "value": value, "decoration": item.decoration or flt.MATCHES}
        )
    flt.parse([flt.Filter(f["type"], f["value"], f["decoration"]) for f in stored])
    return stored


def selection_of(row: ReplicationPolicy) -> flt.Selection:
    stored = json.loads(row.filters or "[]")
    return flt.parse([flt.Filter(f["type"], f["value"], f["decoration"]) for f in stored])


def _trigger(given: ReplicationTrigger | None) -> dict[str, Any]:
    kind = (given.type if given is not None else None) or MANUAL
    if kind not in TRIGGER_TYPES:
        raise BadRequestError(f"trigger.type must be one of {', '.join(TRIGGER_TYPES)}")
    cron = ""
    if kind == SCHEDULED:
        settings = given.trigger_settings if given is not None else None
        if settings is None or not settings.cron:
            raise BadRequestError("a scheduled trigger needs trigger_settings.cron (six fields)")
        cron = schedules.validate_cron(settings.cron)
    return {"type": kind, "trigger_settings": {"cron": cron}}


async def _registry_id(session: AsyncSession, given: Registry | None, side: str) -> int:
    if given is None or not given.id:
        return LOCAL_ID
    try:
        await remotes.get_endpoint(session, given.id)
    except NotFoundError:
        raise BadRequestError(f"{side}: registry {given.id} does not exist") from None
    return given.id


async def _apply(session: AsyncSession, row: ReplicationPolicy, body: PolicyBody) -> None:
    """Check every field of ``body`` and set them on ``row`` (nothing is set on a 400)."""
    name = _text(body.name, "name", _MAX_NAME, required=True)
    description = _text(body.description, "description", _MAX_DESCRIPTION)
    src = await _registry_id(session, body.src_registry, "src_registry")
    dest = await _registry_id(session, body.dest_registry, "dest_registry")
    if src != LOCAL_ID and dest != LOCAL_ID:
        raise BadRequestError(
            "one side of a policy must be this registry: leave src_registry (push-based) "
            "or dest_registry (pull-based) empty"
        )
    if src == LOCAL_ID and dest == LOCAL_ID:
        raise BadRequestError("a policy needs a remote registry as src_registry or dest_registry")
    namespace = _text(body.dest_namespace, "dest_namespace", _MAX_NAME).strip("/")
    if namespace and not _NAMESPACE.fullmatch(namespace):
        raise BadRequestError(f"dest_namespace {namespace[:100]!r} is not a repository path")
    count = -1 if body.dest_namespace_replace_count is None else body.dest_namespace_replace_count
    if not -1 <= count <= 16:
        raise BadRequestError("dest_namespace_replace_count must be between -1 and 16")
    speed = -1 if body.speed is None else body.speed
    if not -1 <= speed <= MAX_SPEED_KB:
        raise BadRequestError(f"speed is KB/s between -1 (no limit) and {MAX_SPEED_KB}")
    stored_filters = _filters(body.filters)
    if src != LOCAL_ID and any(f["type"] == flt.LABEL for f in stored_filters):
        raise BadRequestError(
            "label filters apply to push-based policies: remote adapters list no labels"
        )
    if src != LOCAL_ID and body.copy_by_chunk:
        raise BadRequestError(
            "copy_by_chunk applies to push-based policies: a pull-based one writes into this "
            "registry, which takes each blob whole"
        )
    trigger = _trigger(body.trigger)
    other = await session.scalar(select(ReplicationPolicy).where(ReplicationPolicy.name == name))
    if other is not None and other.id != row.id:
        raise ConflictError(f"replication policy {name!r} already exists")
    row.name = name
    row.description = description
    row.src_registry_id = src
    row.dest_registry_id = dest
    row.dest_namespace = namespace
    row.dest_namespace_replace_count = count
    row.filters = json.dumps(stored_filters)
    row.trigger = json.dumps(trigger)
    deletion = body.replicate_deletion if body.replicate_deletion is not None else body.deletion
    row.replicate_deletion = bool(deletion)
    row.override = True if body.override is None else body.override
    row.enabled = True if body.enabled is None else body.enabled
    row.speed = speed
    row.copy_by_chunk = bool(body.copy_by_chunk)
    row.single_active_replication = bool(body.single_active_replication)
    row.update_time = utcnow()


async def _sync_schedule(session: AsyncSession, row: ReplicationPolicy) -> None:
    trigger = json.loads(row.trigger)
    if trigger.get("type") == SCHEDULED and row.enabled:
        cron = trigger["trigger_settings"]["cron"]
        await schedules.set_schedule(
            session, JOB_TYPE, schedules.CronSpec(schedules.CUSTOM, cron), {}, vendor_id=row.id
        )
    else:
        await schedules.remove_schedule(session, JOB_TYPE, row.id)


async def _record(
    session: AsyncSession, operator: Actor, operation: str, row: ReplicationPolicy
) -> None:
    await audit.record(
        session,
        operator,
        AuditEvent(
            operation,
            "replication_policy",
            row.name,
            0,
            f"{operation} replication policy {row.name}",
        ),
    )


# --- policies ------------------------------------------------------------------------------


async def _get(session: AsyncSession, policy_id: int) -> ReplicationPolicy:
    row = await session.get(ReplicationPolicy, policy_id)
    if row is None:
        raise PolicyNotFoundError(f"replication policy {policy_id} not found")
    return row


async def _registry_view(session: AsyncSession, registry_id: int) -> Registry:
    if registry_id == LOCAL_ID:
        return Registry(id=0, name="Local", type="harbor", url="", insecure=True, status="healthy")
    try:
        return await remotes.get_endpoint(session, registry_id)
    except NotFoundError:
        return Registry(id=registry_id, name="", status="unhealthy")


async def policy_view(session: AsyncSession, row: ReplicationPolicy) -> PolicyBody:
    trigger = json.loads(row.trigger or "{}")
    return PolicyBody(
        id=row.id,
        name=row.name,
        description=row.description,
        src_registry=await _registry_view(session, row.src_registry_id),
        dest_registry=await _registry_view(session, row.dest_registry_id),
        dest_namespace=row.dest_namespace,
        dest_namespace_replace_count=row.dest_namespace_replace_count,
        trigger=ReplicationTrigger(
            type=trigger.get("type", MANUAL),
            trigger_settings=ReplicationTriggerSettings(
                cron=(trigger.get("trigger_settings") or {}).get("cron", "")
            ),
        ),
        filters=[ReplicationFilter(**f) for f in json.loads(row.filters or "[]")],
        replicate_deletion=row.replicate_deletion,
        deletion=row.replicate_deletion,
        override=row.override,
        enabled=row.enabled,
        creation_time=row.creation_time,
        update_time=row.update_time,
        speed=row.speed,
        copy_by_chunk=row.copy_by_chunk,
        single_active_replication=row.single_active_replication,
    )


async def list_policies(
    session: AsyncSession, q: str | None, sort: str | None, name: str | None, page: PageRequest
) -> tuple[list[PolicyBody], int]:
    query: Select[Any] = select(ReplicationPolicy)
    stmt = apply_q(query, parse_q(q), _COLUMNS)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(ReplicationPolicy.name.like(f"%{escaped}%", escape="\\"))
    order = parse_sort(sort, _COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, ReplicationPolicy.id.expression)
    return [await policy_view(session, row[0]) for row in rows], total


async def get_policy(session: AsyncSession, policy_id: int) -> PolicyBody:
    return await policy_view(session, await _get(session, policy_id))


async def create_policy(session: AsyncSession, operator: Actor, body: PolicyBody) -> int:
    row = ReplicationPolicy(creation_time=utcnow())
    await _apply(session, row, body)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"replication policy {row.name!r} already exists") from None
    await _sync_schedule(session, row)
    await _record(session, operator, "create", row)
    return row.id


async def update_policy(
    session: AsyncSession, operator: Actor, policy_id: int, body: PolicyBody
) -> None:
    row = await _get(session, policy_id)
    await _apply(session, row, body)
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"replication policy {row.name!r} already exists") from None
    await _sync_schedule(session, row)
    await _record(session, operator, "update", row)


async def _active(session: AsyncSession, policy_id: int) -> Execution | None:
    return await session.scalar(
        select(Execution)
        .where(
            Execution.vendor_type == JOB_TYPE,
            Execution.vendor_id == policy_id,
            Execution.status.in_((jobs.PENDING, jobs.RUNNING)),
        )
        .limit(1)
    )


async def delete_policy(session: AsyncSession, operator: Actor, policy_id: int) -> None:
    """Refused (412) while an execution of the policy runs, as Harbor does."""
    row = await _get(session, policy_id)
    if await _active(session, policy_id) is not None:
        raise PreconditionFailedError(
            f"replication policy {row.name!r} has a running execution; stop it first"
        )
    await schedules.remove_schedule(session, JOB_TYPE, row.id)
    # Its (finished) executions go with it, as in Harbor: a later policy may get its id.
    executions = select(Execution.id).where(
        Execution.vendor_type == JOB_TYPE, Execution.vendor_id == row.id
    )
    task_ids = select(Task.id).where(Task.execution_id.in_(executions))
    await session.execute(delete(TaskLog).where(TaskLog.task_id.in_(task_ids)))
    await session.execute(delete(Task).where(Task.execution_id.in_(executions)))
    await session.execute(
        delete(Execution).where(Execution.vendor_type == JOB_TYPE, Execution.vendor_id == row.id)
    )
    await _record(session, operator, "delete", row)
    await session.delete(row)


async def check_endpoint_unused(session: AsyncSession, registry_id: int) -> None:
    """412 while a policy uses the registry endpoint (``deleteRegistry`` asks first)."""
    names = list(
        await session.scalars(
            select(ReplicationPolicy.name)
            .where(
                or_(
                    ReplicationPolicy.src_registry_id == registry_id,
                    ReplicationPolicy.dest_registry_id == registry_id,
                )
            )
            .order_by(ReplicationPolicy.name)
            .limit(5)
        )
    )
    if names:
        raise PreconditionFailedError(
            f"registry {registry_id} is used by replication policies ({', '.join(names)}); "
            "delete or change them first"
        )


# --- executions ----------------------------------------------------------------------------


def _mode(row: ReplicationPolicy) -> str:
    return "push" if row.src_registry_id == LOCAL_ID else "pull"


async def start(
    session: AsyncSession,
    row: ReplicationPolicy,
    trigger: str,
    tasks: Sequence[jobs.TaskSpec] | None = None,
) -> Execution:
    """Enqueue an execution of the policy (a plan task, unless ``tasks`` are given)."""
    specs = (
        list(tasks)
        if tasks is not None
        else [
            jobs.TaskSpec(
                params={"op": OP_PLAN}, extra_attrs={"operation": OP_PLAN}, max_attempts=1
            )
        ]
    )
    return await jobs.enqueue(
        session,
        JOB_TYPE,
        vendor_id=row.id,
        trigger=trigger,
        extra_attrs={"policy_id": row.id, "mode": _mode(row)},
        tasks=specs,
    )


async def start_manual(session: AsyncSession, operator: Actor, policy_id: int | None) -> int:
    """``startReplication``: 400 for a policy that does not exist (Harbor's answer), a
    disabled one, or one whose single active execution is still running."""
    if policy_id is None:
        raise BadRequestError("policy_id is required")
    row = await session.get(ReplicationPolicy, policy_id)
    if row is None:
        raise BadRequestError(f"replication policy {policy_id} does not exist")
    if not row.enabled:
        raise BadRequestError(f"replication policy {row.name!r} is disabled")
    if row.single_active_replication and await _active(session, row.id) is not None:
        raise BadRequestError(
            f"replication policy {row.name!r} allows one active execution and one is running"
        )
    execution = await start(session, row, jobs.MANUAL)
    await audit.record(
        session,
        operator,
        AuditEvent("create", "replication", row.name, 0, f"start replication policy {row.name}"),
    )
    return execution.id


async def launch_scheduled(
    session: AsyncSession, vendor_id: int, params: Mapping[str, Any], trigger: str
) -> Execution:
    """A schedule's firing; a disabled policy or a running single-active one is skipped
    (the running execution stands for it)."""
    del params
    row = await session.get(ReplicationPolicy, vendor_id)
    if row is None or not row.enabled:
        return await jobs.enqueue(session, JOB_TYPE, vendor_id=vendor_id, trigger=trigger, tasks=[])
    if row.single_active_replication:
        running = await _active(session, row.id)
        if running is not None:
            return running
    return await start(session, row, trigger)


def execution_view(row: Execution, metrics: jobs.Metrics) -> ReplicationExecution:
    return ReplicationExecution(
        id=row.id,
        policy_id=row.vendor_id,
        status="InProgress"
        if row.status in (jobs.PENDING, jobs.RUNNING)
        else _harbor_status(row.status),
        trigger=row.trigger.lower(),
        start_time=row.start_time,
        end_time=row.end_time,
        status_text=row.status_message,
        total=metrics.task_count,
        failed=metrics.error_task_count,
        succeed=metrics.success_task_count,
        in_progress=metrics.pending_task_count + metrics.running_task_count,
        stopped=metrics.stopped_task_count,
    )


def _harbor_status(status: str) -> str:
    return {jobs.SUCCESS: "Succeed", jobs.ERROR: "Failed"}.get(status, status)


def task_view(row: Task) -> ReplicationTask:
    attrs = jobs.loads(row.extra_attrs)
    return ReplicationTask(
        id=row.id,
        execution_id=row.execution_id,
        status=row.status,
        job_id=str(row.id),
        operation=str(attrs.get("operation", OP_COPY)),
        resource_type=str(attrs.get("resource_type", "artifact")),
        src_resource=str(attrs.get("src_resource", "")),
        dst_resource=str(attrs.get("dst_resource", "")),
        start_time=row.start_time,
        end_time=row.end_time,
    )


_STATUS_FILTER = {
    "InProgress": (jobs.PENDING, jobs.RUNNING),
    "Succeed": (jobs.SUCCESS,),
    "Failed": (jobs.ERROR,),
    "Stopped": (jobs.STOPPED,),
}


async def list_executions(
    session: AsyncSession,
    page: PageRequest,
    policy_id: int | None,
    status: str | None,
    trigger: str | None,
) -> tuple[list[ReplicationExecution], int]:
    where: list[Any] = []
    if status:
        wanted = _STATUS_FILTER.get(status, (status,))
        where.append(Execution.status.in_(wanted))
    if trigger:
        where.append(Execution.trigger == trigger.upper())
    rows, total = await jobs.list_executions(
        session, JOB_TYPE, page, vendor_id=policy_id, where=where
    )
    counts = await jobs.metrics(session, [r.id for r in rows])
    return [execution_view(r, counts.get(r.id, jobs.Metrics())) for r in rows], total


async def get_execution(session: AsyncSession, execution_id: int) -> ReplicationExecution:
    row = await jobs.get_execution(session, execution_id, vendor_type=JOB_TYPE)
    counts = await jobs.metrics(session, [row.id])
    return execution_view(row, counts.get(row.id, jobs.Metrics()))


async def stop_execution(session: AsyncSession, operator: Actor, execution_id: int) -> None:
    """Stop an execution; one that already finished stays as it ended (200, as Harbor)."""
    row = await jobs.get_execution(session, execution_id, vendor_type=JOB_TYPE)
    if row.status in jobs.FINAL_STATUSES:
        return
    await jobs.stop_execution(session, row)
    await audit.record(
        session,
        operator,
        AuditEvent(
            "update", "replication", str(row.vendor_id), 0, f"stop replication execution {row.id}"
        ),
    )


async def list_tasks(
    session: AsyncSession,
    execution_id: int,
    page: PageRequest,
    status: str | None,
    resource_type: str | None,
) -> tuple[list[ReplicationTask], int]:
    """The execution's tasks; an execution that is not a replication's is a 404."""
    await jobs.get_execution(session, execution_id, vendor_type=JOB_TYPE)
    items, _ = await jobs.list_tasks(session, execution_id)
    views = [task_view(t) for t in items]
    if status:
        views = [v for v in views if v.status == status]
    if resource_type:
        views = [v for v in views if v.resource_type == resource_type]
    start_at = (page.page - 1) * page.page_size
    return views[start_at : start_at + page.page_size], len(views)


async def task_log(session: AsyncSession, execution_id: int, task_id: int) -> str:
    await jobs.get_execution(session, execution_id, vendor_type=JOB_TYPE)
    await jobs.get_task(session, task_id, execution_id=execution_id)
    return await jobs.task_log(session, task_id)


# --- events --------------------------------------------------------------------------------


def _event_policy_clauses() -> tuple[ColumnElement[bool], ...]:
    return (
        ReplicationPolicy.enabled.is_(True),
        ReplicationPolicy.src_registry_id == LOCAL_ID,
        ReplicationPolicy.trigger.like('%"event_based"%'),
    )


async def any_event_policy(session: AsyncSession) -> bool:
    """Whether any enabled push-based policy has an event trigger (one indexed probe)."""
    found = await session.scalar(
        select(ReplicationPolicy.id).where(*_event_policy_clauses()).limit(1)
    )
    return found is not None


async def event_policies(session: AsyncSession) -> list[ReplicationPolicy]:
    """Enabled push-based policies with an event trigger."""
    rows = await session.scalars(select(ReplicationPolicy).where(*_event_policy_clauses()))
    return list(rows)


def destination_name(row: ReplicationPolicy, repository: str) -> str:
    return flt.flatten(repository, row.dest_namespace, row.dest_namespace_replace_count)


def copy_spec(
    row: ReplicationPolicy,
    repository: str,
    digest: str,
    tags: Sequence[str],
    cosign_tags: Sequence[str] | None = None,
) -> jobs.TaskSpec:
    """A copy task of one artifact; ``cosign_tags``: the source's cosign tags of
    ``digest`` when a plan listed them already (else the task looks for each kind)."""
    item: dict[str, Any] = {"repository": repository, "digest": digest, "tags": list(tags)}
    if cosign_tags is not None:
        item["cosign_tags"] = list(cosign_tags)
    return batch_spec(row, [item])


def _shown(item: Mapping[str, Any]) -> str:
    tags = [str(t) for t in item.get("tags") or []]
    return ",".join(tags) if tags else str(item["digest"])


def batch_spec(row: ReplicationPolicy, items: Sequence[Mapping[str, Any]]) -> jobs.TaskSpec:
    """A copy task of one or more artifacts (``_artifacts`` reads them back); its
    ``src_resource``/``dst_resource`` list each as ``repository:[tags]``."""
    sources: list[str] = []
    targets: list[str] = []
    for item in items:
        repository = str(item["repository"])
        try:
            target = destination_name(row, repository)
        except ValueError:
            target = repository  # the task reports the flattening error
        sources.append(f"{repository}:[{_shown(item)}]")
        targets.append(f"{target}:[{_shown(item)}]")
    return jobs.TaskSpec(
        params={"op": OP_COPY, "artifacts": [dict(item) for item in items]},
        extra_attrs={
            "operation": OP_COPY,
            "resource_type": "artifact",
            "src_resource": " ".join(sources),
            "dst_resource": " ".join(targets),
        },
        max_attempts=2,
    )


def _artifacts(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The artifacts of a copy task (one task of an older release names one artifact)."""
    listed = params.get("artifacts")
    if isinstance(listed, list):
        return [dict(item) for item in listed if isinstance(item, dict)]
    item = {k: params[k] for k in ("repository", "digest", "tags", "cosign_tags") if k in params}
    return [item]


def delete_spec(
    row: ReplicationPolicy, repository: str, digest: str, tags: Sequence[str], whole: bool
) -> jobs.TaskSpec:
    try:
        target = destination_name(row, repository)
    except ValueError:
        target = repository
    shown = digest if whole else ",".join(tags)
    return jobs.TaskSpec(
        params={
            "op": OP_DELETE,
            "repository": repository,
            "digest": digest,
            "tags": list(tags),
            "whole": whole,
        },
        extra_attrs={
            "operation": "deletion",
            "resource_type": "artifact",
            "src_resource": f"{repository}:[{shown}]",
            "dst_resource": f"{target}:[{shown}]",
        },
        max_attempts=2,
    )


# --- running tasks -------------------------------------------------------------------------


class _Sides:
    def __init__(
        self,
        source: Adapter,
        destination: Adapter,
        row: ReplicationPolicy,
        locations: BlobLocations,
    ) -> None:
        self.source = source
        self.destination = destination
        self.row = row
        self.locations = locations
        """Where the destination is known to hold blobs, for cross-repository mounts."""

    async def aclose(self) -> None:
        await self.source.aclose()
        await self.destination.aclose()


async def _open(ctx: JobContext) -> _Sides:
    async with ctx.env.db.read() as session:
        execution = await session.get(Execution, ctx.execution_id)
        policy_id = execution.vendor_id if execution is not None else -1
        row = await session.get(ReplicationPolicy, policy_id)
        if row is None:
            raise PermanentJobError(f"replication policy {policy_id} no longer exists")
        session.expunge(row)
        remote_id = row.dest_registry_id if row.src_registry_id == LOCAL_ID else row.src_registry_id
        try:
            kind, endpoint = await remotes.open_endpoint(session, remote_id)
        except NotFoundError:
            raise PermanentJobError(f"registry endpoint {remote_id} no longer exists") from None
    settings = ctx.env.settings
    reach = remotes.Reach(EgressPolicy.from_settings(settings), settings.outbound_timeout_seconds)
    try:
        remote = remotes.connect(kind, endpoint, reach)
    except RemoteError as exc:
        raise PermanentJobError(f"cannot reach {endpoint.url}: {exc}") from None
    rate = row.speed * 1024 if row.speed > 0 else None
    local = LocalAdapter(ctx.env.registry, Throttle(rate, ctx.checkpoint))
    if row.src_registry_id == LOCAL_ID:
        return _Sides(local, remote, row, locations_for(f"endpoint {remote_id} {endpoint.url}"))
    return _Sides(remote, local, row, locations_for("local", mounts=True))


def _literal(value: str) -> bool:
    return not value.startswith((flt.REGEX_PREFIX, flt.SEMVER_PREFIX)) and not any(
        ch in value for ch in "*?[{"
    )


async def _bounded(jobs_: Sequence[Coroutine[Any, Any, _T]], limit: int) -> list[_T]:
    """The results of ``jobs_`` in order, at most ``limit`` running at once."""
    gate = asyncio.Semaphore(limit)

    async def gated(job: Coroutine[Any, Any, _T]) -> _T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(gated(job) for job in jobs_)))


@dataclass
class _Candidate:
    """An artifact a plan selected: its tags, the repository's tags, and what is known of
    its referrers (None: not known, the check asks) and labels."""

    repository: str
    digest: str
    tags: list[str]
    all_tags: list[str]
    referred: bool | None = None
    labels: set[str] = field(default_factory=set)
    there: dict[str, str] = field(default_factory=dict)
    """What the destination's tags name, as the check found (``""``: absent)."""

    def item(self) -> dict[str, Any]:
        prefix = fallback_tag(self.digest) + "."
        item: dict[str, Any] = {
            "repository": self.repository,
            "digest": self.digest,
            "tags": self.tags,
            "cosign_tags": [tag for tag in self.all_tags if tag.startswith(prefix)],
        }
        if self.referred is False:
            item["referrers"] = False
        if self.there:
            item["there"] = self.there
        return item


def _group(repository: str, tags: Mapping[str, str], selection: flt.Selection) -> list[_Candidate]:
    """A repository's selected tags grouped by the digest they name."""
    by_digest: dict[str, list[str]] = {}
    for tag, digest in tags.items():
        if selection.tag(tag):
            by_digest.setdefault(digest, []).append(tag)
    all_tags = list(tags)
    return [_Candidate(repository, d, sorted(t), all_tags) for d, t in by_digest.items()]


async def _list_remote(sides: _Sides, selection: flt.Selection, repository: str) -> dict[str, str]:
    """A remote source's selected tags of ``repository`` with their digests (one HEAD a
    tag); unselected tags are kept with an empty digest (cosign tags are looked for there)."""
    source = sides.source
    found: dict[str, str] = {}
    for tag in await source.list_tags(repository):
        found[tag] = ""
        if selection.tag(tag):
            ref = await source.head_manifest(repository, tag)
            if ref is None:
                del found[tag]
            else:
                found[tag] = ref.digest
    return found


async def _candidates(
    ctx: JobContext, sides: _Sides, selection: flt.Selection, repositories: list[str]
) -> list[_Candidate]:
    """The selected artifacts of ``repositories``. This registry as the source is read in
    a few queries for all of them (tags, referrers, labels); a remote one a repository at
    a time, ``PLAN_CONCURRENCY`` at once."""
    harbor = isinstance(sides.destination, HarborAdapter)
    if isinstance(sides.source, LocalAdapter):
        async with ctx.env.db.read() as session:
            tagged = await repo.tagged(session, repositories)
            referred = await repo.referred(session, repositories)
            labels = (
                await repo.labelled(session, repositories) if selection.labels or harbor else {}
            )
        found: list[_Candidate] = []
        for name in repositories:
            for candidate in _group(name, tagged.get(name, {}), selection):
                key = (name, candidate.digest)
                candidate.referred = key in referred
                candidate.labels = labels.get(key, set())
                found.append(candidate)
    else:
        listed = await _bounded(
            [_list_remote(sides, selection, name) for name in repositories], PLAN_CONCURRENCY
        )
        found = []
        for name, tags in zip(repositories, listed, strict=True):
            for candidate in _group(name, {t: d for t, d in tags.items() if d}, selection):
                candidate.all_tags = list(tags)  # cosign tags are looked for in all
                found.append(candidate)
    if selection.labels:
        found = [c for c in found if selection.labels_pass(c.labels)]
    return found


async def _plan(ctx: JobContext, sides: _Sides) -> dict[str, Any]:
    row = sides.row
    selection = selection_of(row)
    source = sides.source
    try:
        repositories = await source.list_repositories()
    except RemoteUnsupported:
        stored = json.loads(row.filters or "[]")
        repositories = [
            f["value"]
            for f in stored
            if f["type"] == flt.NAME
            and f["decoration"] == flt.MATCHES
            and isinstance(f["value"], str)
            and _literal(f["value"])
        ]
        ctx.log("the source lists no repositories: using the repository names of the name filters")
    selected = [r for r in repositories if selection.repository(r)]
    candidates = await _candidates(ctx, sides, selection, selected)
    if len(candidates) > MAX_TASKS:
        ctx.log(f"more than {MAX_TASKS} artifacts: the rest are not planned")
        candidates = candidates[:MAX_TASKS]
    planned: list[_Candidate] = []
    there = 0
    checked = time.monotonic()
    step = PLAN_CONCURRENCY * 8
    for first in range(0, len(candidates), step):
        batch = candidates[first : first + step]
        # The destination is asked about several artifacts at once (a rerun of 500
        # small repositories is those HEADs).
        found = await _bounded([_already_there(sides, c) for c in batch], PLAN_CONCURRENCY)
        for candidate, done in zip(batch, found, strict=True):
            if done:
                there += 1
            else:
                planned.append(candidate)
        if time.monotonic() - checked >= PLAN_CHECKPOINT_SECONDS:
            # A stop asked for ends the plan here (one write transaction a second).
            await ctx.checkpoint()
            checked = time.monotonic()
    if there:
        ctx.log(
            f"{there} artifacts are at the destination already, with every tag and no "
            "signature or referrer to bring: not planned"
        )
    specs = [batch_spec(row, [c.item() for c in part]) for part in _batches(planned)]
    ctx.log(
        f"planned {len(planned)} artifact copies from {len(repositories)} repositories "
        f"in {len(specs)} tasks"
    )
    async with ctx.env.db.write() as session:
        execution = await session.get(Execution, ctx.execution_id)
        if execution is not None and specs:
            await jobs.add_tasks(session, execution, specs)
    return {"planned": len(planned)}


def _batches(planned: list[_Candidate]) -> list[list[_Candidate]]:
    """The copy tasks' shares: spread over ``BATCH_SPREAD`` tasks (so job slots run them
    side by side) and at most ``BATCH_ARTIFACTS`` artifacts each (a task's rows, claims
    and log cost once per batch, not once per artifact), in the plan's order."""
    size = min(BATCH_ARTIFACTS, max(1, -(-len(planned) // BATCH_SPREAD)))
    return [planned[first : first + size] for first in range(0, len(planned), size)]


async def _already_there(sides: _Sides, candidate: _Candidate) -> bool:
    """Whether a copy would find nothing to do: every tag is the digest at the
    destination, and nothing travels with it (no cosign tag, no referrer at the source,
    no label the Harbor destination lacks). One HEAD per tag at the destination, so a
    rerun with nothing changed plans nothing; what the HEADs found goes to the copy."""
    prefix = fallback_tag(candidate.digest) + "."
    if any(tag.startswith(prefix) for tag in candidate.all_tags):
        return False
    try:
        target = destination_name(sides.row, candidate.repository)
    except ValueError:
        return False  # the task says why
    done = True
    for tag in candidate.tags:
        found = await sides.destination.head_manifest(target, tag)
        candidate.there[tag] = found.digest if found is not None else ""
        if found is None or found.digest != candidate.digest:
            done = False
    if not done:
        return False
    if candidate.referred is None:
        listed = await sides.source.list_referrers(candidate.repository, candidate.digest)
        candidate.referred = bool(listed.descriptors)
    if candidate.referred:
        return False
    if candidate.labels and isinstance(sides.destination, HarborAdapter):
        try:
            have = set(await sides.destination.labels_of(target, candidate.digest))
        except RemoteError:
            return False  # the copy asks again, and says why it fails
        return candidate.labels <= have
    return True


def _subject(ctx: JobContext, row: ReplicationPolicy) -> tuple[str, str, list[str], str]:
    """A delete task's repository, digest, tags and destination repository."""
    repository = str(ctx.params["repository"])
    try:
        target = destination_name(row, repository)
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    tags = [str(t) for t in ctx.params.get("tags") or []]
    return repository, str(ctx.params["digest"]), tags, target


async def _copy(ctx: JobContext, sides: _Sides) -> dict[str, Any]:
    """Copy the task's artifacts, ``ARTIFACT_CONCURRENCY`` at once. A remote's error
    fails the artifact it hit (its log line says which and why), not the others; the
    task fails when any failed, naming them in ``extra_attrs`` for the webhook event."""
    items = _artifacts(ctx.params)
    selection = selection_of(sides.row)
    failed: dict[str, str] = {}
    sent = [0]

    async def one(item: dict[str, Any]) -> None:
        shown = f"{item.get('repository')}:[{_shown(item)}]"
        try:
            sent[0] += await _copy_one(ctx, sides, selection, item)
        except RemoteAuthError:
            raise
        except (RemoteError, PermanentJobError) as exc:
            message = str(exc) or type(exc).__name__
            if isinstance(exc, RemoteError):
                message = f"remote error: {message}"
            failed[shown] = message
            ctx.log(f"failed: {shown}: {message}")

    await concurrently([one(item) for item in items], ARTIFACT_CONCURRENCY)
    if failed:
        await ctx.checkpoint(extra_attrs={"failed_artifacts": failed})
        if len(items) == 1:
            raise PermanentJobError(next(iter(failed.values())).removeprefix("remote error: "))
        first, why = next(iter(failed.items()))
        raise PermanentJobError(
            f"{len(failed)} of {len(items)} artifacts failed (the log says which); {first}: {why}"
        )
    return {"bytes": sent[0]}


async def _copy_one(
    ctx: JobContext, sides: _Sides, selection: flt.Selection, item: Mapping[str, Any]
) -> int:
    row = sides.row
    repository, digest = str(item["repository"]), str(item["digest"])
    tags = [str(t) for t in item.get("tags") or []]
    try:
        target = destination_name(row, repository)
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    manifest = await sides.source.get_manifest(repository, digest)
    if selection.resource == flt.RESOURCE_IMAGE and not _is_image(manifest):
        ctx.log(f"{repository}@{digest} is not an image: skipped (resource filter: image)")
        return 0
    given = item.get("there")
    known: dict[str, Any] = given if isinstance(given, dict) else {}
    todo: list[str] = []
    bytes_sent = 0
    for tag in tags or [digest]:
        if tag in known:
            existing_digest = str(known[tag]) or None  # the plan's HEAD, just before
        else:
            found = await sides.destination.head_manifest(target, tag)
            existing_digest = found.digest if found is not None else None
        if existing_digest == digest:
            ctx.log(f"{target}:{tag} is already {digest}: nothing to copy")
            continue
        if existing_digest is not None and not row.override and tag != digest:
            ctx.log(f"{target}:{tag} exists ({existing_digest}) and override is off: skipped")
            continue
        todo.append(tag)
    chunk = CHUNK_BYTES if row.copy_by_chunk else None
    if todo:
        await sides.destination.ensure_namespace(target.split("/", 1)[0])
        report = await copy_artifact(
            sides.source,
            repository,
            sides.destination,
            target,
            todo[0],
            chunk_size=chunk,
            locations=sides.locations,
            manifest=manifest,
        )
        bytes_sent += report.bytes_sent
        ctx.log(
            f"copied {repository}:{todo[0]} to {target}: {len(report.manifests)} manifests, "
            f"{len(report.blobs_sent)} blobs sent ({report.bytes_sent} bytes), "
            f"{len(report.blobs_mounted)} mounted from another repository there, "
            f"{len(report.blobs_skipped)} already there"
        )
        for tag in todo[1:]:
            await sides.destination.put_manifest(target, tag, manifest)
            ctx.log(f"tagged {target}:{tag}")
    bytes_sent += await _copy_accessories(ctx, sides, repository, target, item, chunk)
    if isinstance(sides.source, LocalAdapter) and isinstance(sides.destination, HarborAdapter):
        async with ctx.env.db.read() as session:
            labels = sorted(await repo.label_names(session, repository, digest))
        if labels:
            await sides.destination.add_labels(target, digest, labels)
            ctx.log(f"labelled {target}@{digest}: {', '.join(labels)}")
    return bytes_sent


async def _copy_accessories(
    ctx: JobContext,
    sides: _Sides,
    repository: str,
    target: str,
    item: Mapping[str, Any],
    chunk: int | None,
) -> int:
    """Signatures, attestations and SBOMs travel with their subject: cosign's tags
    (``sha256-<hex>.sig``/``.att``/``.sbom``) and OCI referrers (artifacts whose
    ``subject`` is the copied one, by the source's referrers API or its fallback tag),
    whatever the tag filters say. A destination without the referrers API gets the
    fallback tag (an index of them) made or extended, so clients there find them."""
    digest = str(item["digest"])
    listed = item.get("cosign_tags")
    references = (
        [str(tag) for tag in listed]
        if isinstance(listed, list)
        else [fallback_tag(digest) + suffix for suffix in (".sig", ".att", ".sbom")]
    )
    present: list[tuple[str, str]] = []
    for tag in references:
        found = await sides.source.head_manifest(repository, tag)
        if found is not None:
            present.append((tag, found.digest))
    referrers = (
        []
        if item.get("referrers") is False  # the plan looked, just before
        else (await sides.source.list_referrers(repository, digest)).descriptors
    )
    present += [(str(d["digest"]), str(d["digest"])) for d in referrers]
    sent = 0
    for reference, accessory in present:
        existing = await sides.destination.head_manifest(target, reference)
        if existing is not None and existing.digest == accessory:
            continue
        report = await copy_artifact(
            sides.source,
            repository,
            sides.destination,
            target,
            reference,
            chunk_size=chunk,
            locations=sides.locations,
        )
        sent += report.bytes_sent
        ctx.log(f"copied {repository}:{reference} (an accessory of {digest}) to {target}")
    if referrers:
        await _extend_fallback_tag(ctx, sides.destination, target, digest, referrers)
    return sent


async def _extend_fallback_tag(
    ctx: JobContext,
    destination: Adapter,
    target: str,
    digest: str,
    referrers: list[dict[str, Any]],
) -> None:
    """Where the destination lists referrers by the fallback tag only, put there an index
    of the ones it lists and the ones copied (the OCI 1.1 referrers tag schema)."""
    listed = await destination.list_referrers(target, digest)
    if listed.api:
        return
    known = {str(d["digest"]) for d in listed.descriptors}
    missing = [d for d in referrers if str(d["digest"]) not in known]
    if not missing:
        return
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [*listed.descriptors, *missing],
    }
    body = json.dumps(index, separators=(",", ":")).encode()
    tag = fallback_tag(digest)
    await destination.put_manifest(target, tag, Manifest(str(Digest.of(body)), OCI_INDEX, body))
    ctx.log(f"tagged {target}:{tag}: the referrers of {digest} (the destination has no API)")


def _is_image(manifest: Manifest) -> bool:
    if manifest.media_type in INDEX_TYPES:
        return True
    try:
        document = json.loads(manifest.body)
    except ValueError:
        return False
    config = document.get("config") if isinstance(document, dict) else None
    return isinstance(config, dict) and config.get("mediaType") in _IMAGE_CONFIGS


async def _delete(ctx: JobContext, sides: _Sides) -> dict[str, Any]:
    row = sides.row
    _, digest, tags, target = _subject(ctx, row)
    destination = sides.destination
    if ctx.params.get("whole"):
        found = await destination.head_manifest(target, digest)
        if found is None:
            ctx.log(f"{target}@{digest} is not at the destination: nothing to delete")
            return {"bytes": 0}
        await destination.delete_manifest(target, digest)
        ctx.log(f"deleted {target}@{digest}")
        return {"bytes": 0}
    for tag in tags:
        found = await destination.head_manifest(target, tag)
        if found is None or found.digest != digest:
            ctx.log(f"{target}:{tag} is not {digest} at the destination: left as it is")
            continue
        try:
            await destination.delete_tag(target, tag)
            ctx.log(f"deleted tag {target}:{tag}")
        except RemoteUnsupported:
            # Distribution deletes manifests only: delete it when no other tag there
            # names it, so the mirror stays a mirror; else say why the tag stays.
            others = [
                other
                for other in await destination.list_tags(target)
                if other != tag
                and (found_other := await destination.head_manifest(target, other)) is not None
                and found_other.digest == digest
            ]
            if others:
                raise PermanentJobError(
                    f"the destination cannot delete the tag {target}:{tag} alone and "
                    f"{digest} is also tagged {', '.join(others[:5])} there"
                ) from None
            await destination.delete_manifest(target, digest)
            ctx.log(f"deleted {target}@{digest} (its only tag there was {tag})")
    return {"bytes": 0}


async def run_task(ctx: JobContext) -> dict[str, Any]:
    """The ``REPLICATION`` task: plan, copy one artifact, or replicate one deletion."""
    op = ctx.params.get("op")
    if op not in (OP_PLAN, OP_COPY, OP_DELETE):
        raise PermanentJobError(f"unknown replication task {op!r}")
    sides = await _open(ctx)
    try:
        if op == OP_PLAN:
            return await _plan(ctx, sides)
        if op == OP_COPY:
            return await _copy(ctx, sides)
        return await _delete(ctx, sides)
    except RemoteAuthError as exc:
        raise PermanentJobError(f"the remote refused the credentials: {exc}") from None
    except RemoteError as exc:
        message = str(exc) or type(exc).__name__
        ctx.log(f"remote error: {message}")
        raise PermanentJobError(message) from None
    finally:
        await sides.aclose()


# --- the REPLICATION webhook event ----------------------------------------------------------


def _resource(view: Registry, namespaces: set[str], local_url: str) -> dict[str, Any]:
    """Harbor's ``src_resource``/``dest_resource``: the registry and the namespace(s)."""
    local = view.id == LOCAL_ID
    return {
        "registry_name": view.name or "",
        "registry_type": view.type or "",
        "endpoint": local_url if local else view.url or "",
        "namespace": ",".join(sorted(namespaces)),
    }


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One artifact a copy or delete task replicated, as the webhook event lists it."""

    source: str
    target: str
    name: str
    status: str
    reason: str


def _outcomes(row: ReplicationPolicy, task: Task) -> list[_Outcome]:
    """The artifacts of a copy or delete task with how each ended: a failed copy task
    names its failed artifacts (``failed_artifacts``); the others of it succeeded."""
    params = jobs.loads(task.params)
    op = params.get("op")
    if op not in (OP_COPY, OP_DELETE):
        return []
    attrs = jobs.loads(task.extra_attrs)
    failed = attrs.get("failed_artifacts")
    items = _artifacts(params) if op == OP_COPY else [params]
    found: list[_Outcome] = []
    for item in items:
        source = str(item.get("repository", ""))
        try:
            target = destination_name(row, source)
        except ValueError:
            target = source
        name = f"{source}:[{_shown(item)}]" if op == OP_COPY else str(attrs.get("src_resource", ""))
        status, reason = task.status, task.status_message or task.status
        if task.status != jobs.SUCCESS and isinstance(failed, dict):
            if name in failed:
                reason = str(failed[name])
            else:
                status = jobs.SUCCESS
        found.append(_Outcome(source, target, name, status, reason))
    return found


async def announce_finished(public_url: str, session: AsyncSession, execution: Execution) -> None:
    """The job type's ``on_finished``: send ``REPLICATION`` to the webhook policies of
    each local project whose artifacts the execution copied or deleted (the source
    project of a push, the destination project of a pull), in the transaction that
    finishes it, listing that project's artifacts by outcome. An execution that
    replicated nothing (a plan that found nothing or failed) sends nothing."""
    row = await session.get(ReplicationPolicy, execution.vendor_id)
    if row is None:
        return
    push = row.src_registry_id == LOCAL_ID
    tasks = await session.scalars(
        select(Task).where(Task.execution_id == execution.id).order_by(Task.id)
    )
    by_project: dict[str, list[_Outcome]] = {}
    for task in tasks:
        for outcome in _outcomes(row, task):
            local = outcome.source if push else outcome.target
            by_project.setdefault(local.split("/", 1)[0], []).append(outcome)
    if not by_project:
        return
    src_view = await _registry_view(session, row.src_registry_id)
    dest_view = await _registry_view(session, row.dest_registry_id)
    host = webhooks.registry_host(public_url)
    for project_name, items in sorted(by_project.items()):
        project = await projects_repo.find_project_by_name(session, project_name)
        if project is None:
            continue
        policies = await webhooks.subscribed_policies(session, project.project_id, REPLICATION)
        if not policies:
            continue
        done: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for item in items:
            entry: dict[str, Any] = {"type": "image", "status": item.status, "name_tag": item.name}
            if item.status == jobs.SUCCESS:
                done.append(entry)
            else:
                entry["fail_reason"] = item.reason
                failed.append(entry)
        replication: dict[str, Any] = {
            "harbor_hostname": host,
            "job_status": execution.status,
            "description": row.description,
            "artifact_type": "image",
            "override_mode": row.override,
            "trigger_type": execution.trigger,
            "execution_timestamp": int(execution.start_time.timestamp()),
            "src_resource": _resource(
                src_view, {i.source.split("/", 1)[0] for i in items}, public_url
            ),
            "dest_resource": _resource(
                dest_view, {i.target.split("/", 1)[0] for i in items}, public_url
            ),
            "successful_artifact": done[:ARTIFACTS_LISTED],
            "failed_artifact": failed[:ARTIFACTS_LISTED],
        }
        event = webhooks.new_event(
            REPLICATION, project.project_id, {"replication": replication}, execution.trigger
        )
        await webhooks.enqueue_deliveries(session, policies, event)
