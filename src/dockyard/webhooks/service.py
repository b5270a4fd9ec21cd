"""Webhook policies and the deliveries they cause.

A policy (Harbor's ``WebhookPolicy``) names the event types it wants and the
targets that hear of them. When something happens, ``emit`` (or the hooks'
narrower path) enqueues, **in the caller's transaction**, one execution per
subscribed enabled policy (vendor type ``WEBHOOK``, vendor id the policy's,
trigger ``EVENT``) with one delivery task per target; the ``WEBHOOK`` job
(``webhooks.jobs``) sends it. A rolled-back change therefore sends nothing,
and a committed one is delivered even if this process dies right after.
Nothing is enqueued while the system setting ``notification_enable`` is off.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.listing import (
    PageRequest,
    apply_q,
    condition_clause,
    fetch_page,
    parse_q,
    parse_sort,
)
from dockyard.errors import BadRequestError, ConflictError, NotFoundError
from dockyard.http.egress import EgressPolicy, EgressRefused
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task, TaskLog
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import Project
from dockyard.projects.service import require, resolve_project
from dockyard.system import config
from dockyard.webhooks import repository as repo
from dockyard.webhooks.models import WebhookPolicy
from dockyard.webhooks.payloads import (
    DEFAULT_FORMAT,
    EVENT_TYPES,
    HTTP,
    NOTIFY_TYPES,
    PAYLOAD_FORMATS,
    PUSH_ARTIFACT,
    Event,
    artifact_data,
)
from dockyard.webhooks.repository import VENDOR_TYPE
from dockyard.webhooks.schemas import (
    PayloadFormat,
    SupportedWebhookEventTypes,
    WebhookJob,
    WebhookLastTrigger,
    WebhookTargetObject,
)
from dockyard.webhooks.schemas import WebhookPolicy as WebhookPolicyView

__all__ = ["VENDOR_TYPE", "emit"]

NOTIFICATION_ENABLE = config.NOTIFICATION_ENABLE
"""The system setting that switches every delivery on or off."""
MAX_ATTEMPTS = 4
"""Tries per delivery: the first and three retries, backing off (``job_retry_base_seconds``)."""
MAX_TARGETS = 10
_MAX_NAME = 255
_MAX_DESCRIPTION = 1024
_MAX_ADDRESS = 2048
_MAX_AUTH_HEADER = 4096

_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": WebhookPolicy.id.expression,
    "name": WebhookPolicy.name.expression,
    "enabled": WebhookPolicy.enabled.expression,
    "creation_time": WebhookPolicy.creation_time.expression,
    "update_time": WebhookPolicy.update_time.expression,
}
_EXECUTION_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Execution.id.expression,
    "status": Execution.status.expression,
    "trigger": Execution.trigger.expression,
    "start_time": Execution.start_time.expression,
    "end_time": Execution.end_time.expression,
}
_TASK_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Task.id.expression,
    "status": Task.status.expression,
    "creation_time": Task.creation_time.expression,
    "start_time": Task.start_time.expression,
    "end_time": Task.end_time.expression,
}


# --- stored policies -----------------------------------------------------------------------


def _loads_list(text: str) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def event_types_of(row: WebhookPolicy) -> list[str]:
    return [str(kind) for kind in _loads_list(row.event_types)]


def targets_of(row: WebhookPolicy) -> list[WebhookTargetObject]:
    targets = []
    for raw in _loads_list(row.targets):
        if isinstance(raw, dict):
            targets.append(WebhookTargetObject.model_validate(raw))
    return targets


def policy_view(row: WebhookPolicy) -> WebhookPolicyView:
    return WebhookPolicyView(
        id=row.id,
        name=row.name,
        description=row.description,
        project_id=row.project_id,
        targets=targets_of(row),
        event_types=event_types_of(row),
        creator=row.creator,
        creation_time=row.creation_time,
        update_time=row.update_time,
        enabled=row.enabled,
    )


# --- validation ----------------------------------------------------------------------------


def _text(value: str, what: str, limit: int, *, required: bool = False) -> str:
    value = value.strip() if required else value
    if required and not value:
        raise BadRequestError(f"{what} is required")
    if len(value) > limit:
        raise BadRequestError(f"{what} is longer than {limit} characters")
    if any((ord(ch) < 0x20 and ch not in "\t\n") or ord(ch) == 0x7F for ch in value):
        raise BadRequestError(f"{what} must not contain control characters")
    return value


def check_event_types(given: Sequence[str] | None) -> list[str]:
    if not given:
        raise BadRequestError(f"event_types is required: one or more of {', '.join(EVENT_TYPES)}")
    result: list[str] = []
    for kind in given:
        if kind not in EVENT_TYPES:
            raise BadRequestError(
                f"event type {str(kind)[:64]!r} is not supported; "
                f"supported: {', '.join(EVENT_TYPES)}"
            )
        if kind not in result:
            result.append(kind)
    return result


def check_address(address: str | None, where: str) -> str:
    """An absolute ``http(s)`` URL with a host, or a 400 saying so."""
    value = (address or "").strip()
    if not value:
        raise BadRequestError(f"{where}.address is required")
    _text(value, f"{where}.address", _MAX_ADDRESS)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        raise BadRequestError(f"{where}.address is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BadRequestError(f"{where}.address must be an http:// or https:// URL with a host")
    return value


def check_target(target: WebhookTargetObject, where: str) -> WebhookTargetObject:
    notify_type = target.type or HTTP
    if notify_type not in NOTIFY_TYPES:
        raise BadRequestError(f"{where}.type must be one of {', '.join(NOTIFY_TYPES)}")
    address = check_address(target.address, where)
    payload_format = target.payload_format or DEFAULT_FORMAT
    allowed = PAYLOAD_FORMATS[notify_type]
    if payload_format not in allowed:
        raise BadRequestError(
            f"{where}.payload_format must be one of {', '.join(allowed)} for {notify_type}"
        )
    auth_header = target.auth_header or ""
    if len(auth_header) > _MAX_AUTH_HEADER:
        raise BadRequestError(f"{where}.auth_header is longer than {_MAX_AUTH_HEADER} characters")
    if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in auth_header):
        raise BadRequestError(f"{where}.auth_header must not contain control characters")
    if not auth_header.isascii():
        raise BadRequestError(f"{where}.auth_header must be ASCII (it is sent as a header)")
    return WebhookTargetObject(
        type=notify_type,
        address=address,
        auth_header=auth_header,
        skip_cert_verify=bool(target.skip_cert_verify),
        payload_format=payload_format,
    )


def check_egress(target: WebhookTargetObject, where: str, egress: EgressPolicy) -> None:
    """Refuse up front what the egress policy will refuse at delivery whatever DNS says:
    a literal address it refuses, a metadata service's name, ``localhost`` while
    loopback is refused. A name is resolved and checked again at every delivery."""
    try:
        egress.check_host(httpx.URL(str(target.address)).raw_host.decode("ascii"))
    except EgressRefused as exc:
        raise BadRequestError(f"{where}.address is {exc}") from None


def check_targets(
    given: Sequence[WebhookTargetObject] | None, egress: EgressPolicy
) -> list[WebhookTargetObject]:
    if not given:
        raise BadRequestError("targets is required: at least one http or slack target")
    if len(given) > MAX_TARGETS:
        raise BadRequestError(f"a policy has at most {MAX_TARGETS} targets")
    checked = []
    for i, target in enumerate(given):
        valid = check_target(target, f"targets[{i}]")
        check_egress(valid, f"targets[{i}]", egress)
        checked.append(valid)
    return checked


def _dump_targets(targets: Sequence[WebhookTargetObject]) -> str:
    return json.dumps([t.model_dump() for t in targets], separators=(",", ":"))


# --- access --------------------------------------------------------------------------------


async def _project(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, action: Action
) -> Project:
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, action, Resource.NOTIFICATION_POLICY, context)
    return project


async def check_access(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, action: Action
) -> None:
    """Raise unless ``principal`` may ``action`` webhook policies of the project (checked
    before a body is read, so a caller without the right learns nothing from it)."""
    await _project(session, principal, name_or_id, by_name, action)


async def _policy_of(session: AsyncSession, project_id: int, policy_id: int) -> WebhookPolicy:
    row = await repo.find_policy(session, policy_id)
    if row is None or row.project_id != project_id:
        raise NotFoundError(f"webhook policy {policy_id} not found")
    return row


# --- management ----------------------------------------------------------------------------


async def list_policies(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[WebhookPolicyView], int]:
    """``ListWebhookPoliciesOfProject`` (``q``/``sort`` keys: id, name, enabled, times)."""
    project = await _project(session, principal, name_or_id, by_name, Action.LIST)
    stmt = apply_q(repo.policies_query(project.project_id), parse_q(q), _COLUMNS)
    order = parse_sort(sort, _COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, WebhookPolicy.id.expression)
    return [policy_view(row[0]) for row in rows], total


async def get_policy(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, policy_id: int
) -> WebhookPolicyView:
    project = await _project(session, principal, name_or_id, by_name, Action.READ)
    return policy_view(await _policy_of(session, project.project_id, policy_id))


async def _check_name_free(
    session: AsyncSession, project_id: int, name: str, policy_id: int | None
) -> None:
    other = await repo.find_policy_by_name(session, project_id, name)
    if other is not None and other.id != policy_id:
        raise ConflictError(f"webhook policy {name!r} already exists in this project")


async def create_policy(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    body: WebhookPolicyView,
    egress: EgressPolicy,
) -> int:
    """``CreateWebhookPolicyOfProject``; returns the new policy's id. ``egress`` is the
    policy deliveries will be held to (``EgressPolicy.from_settings``)."""
    project = await _project(session, principal, name_or_id, by_name, Action.CREATE)
    name = _text(body.name or "", "name", _MAX_NAME, required=True)
    description = _text(body.description or "", "description", _MAX_DESCRIPTION)
    event_types = check_event_types(body.event_types)
    targets = check_targets(body.targets, egress)
    await _check_name_free(session, project.project_id, name, None)
    row = WebhookPolicy(
        project_id=project.project_id,
        name=name,
        description=description,
        enabled=True if body.enabled is None else body.enabled,
        event_types=json.dumps(event_types),
        targets=_dump_targets(targets),
        creator=principal.name,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        # Another request took the name between the check and the insert.
        raise ConflictError(f"webhook policy {name!r} already exists in this project") from None
    return row.id


async def update_policy(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int,
    body: WebhookPolicyView,
    egress: EgressPolicy,
) -> None:
    """``UpdateWebhookPolicyOfProject``: fields the body leaves out keep their value; the
    rest are checked as on create."""
    project = await _project(session, principal, name_or_id, by_name, Action.UPDATE)
    row = await _policy_of(session, project.project_id, policy_id)
    if body.name is not None:
        name = _text(body.name, "name", _MAX_NAME, required=True)
        if name != row.name:
            await _check_name_free(session, project.project_id, name, row.id)
            row.name = name
    if body.description is not None:
        row.description = _text(body.description, "description", _MAX_DESCRIPTION)
    if body.event_types is not None:
        row.event_types = json.dumps(check_event_types(body.event_types))
    if body.targets is not None:
        row.targets = _dump_targets(check_targets(body.targets, egress))
    if body.enabled is not None:
        row.enabled = body.enabled
    row.update_time = utcnow()
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"webhook policy {row.name!r} already exists in this project") from None


async def delete_policy(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, policy_id: int
) -> None:
    """``DeleteWebhookPolicyOfProject``: the policy and its delivery history."""
    project = await _project(session, principal, name_or_id, by_name, Action.DELETE)
    row = await _policy_of(session, project.project_id, policy_id)
    executions = select(Execution.id).where(
        Execution.vendor_type == VENDOR_TYPE, Execution.vendor_id == row.id
    )
    tasks = select(Task.id).where(Task.execution_id.in_(executions))
    await session.execute(delete(TaskLog).where(TaskLog.task_id.in_(tasks)))
    await session.execute(delete(Task).where(Task.execution_id.in_(executions)))
    await session.execute(
        delete(Execution).where(Execution.vendor_type == VENDOR_TYPE, Execution.vendor_id == row.id)
    )
    await session.delete(row)


def supported_event_types() -> SupportedWebhookEventTypes:
    return SupportedWebhookEventTypes(
        event_type=list(EVENT_TYPES),
        notify_type=list(NOTIFY_TYPES),
        payload_formats=[
            PayloadFormat(notify_type=kind, formats=list(formats))
            for kind, formats in PAYLOAD_FORMATS.items()
        ],
    )


async def event_types_for(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool
) -> SupportedWebhookEventTypes:
    """``GetSupportedEventTypes`` (``notification-policy:read``)."""
    await _project(session, principal, name_or_id, by_name, Action.READ)
    return supported_event_types()


# --- history -------------------------------------------------------------------------------


def _where(q: str | None, columns: Mapping[str, ColumnElement[Any]]) -> list[ColumnElement[bool]]:
    """``q`` as WHERE clauses over ``columns``; an unknown key is a clear 400."""
    clauses = []
    for condition in parse_q(q):
        column = columns.get(condition.key)
        if column is None:
            known = ", ".join(sorted(columns))
            raise BadRequestError(f"q cannot filter on {condition.key!r}; keys: {known}")
        clauses.append(condition_clause(condition, column))
    return clauses


async def list_executions(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[Execution], dict[int, jobs.Metrics], int]:
    """``ListExecutionsOfWebhookPolicy``, newest first (``q``/``sort``: id, status, trigger,
    start_time, end_time)."""
    project = await _project(session, principal, name_or_id, by_name, Action.READ)
    row = await _policy_of(session, project.project_id, policy_id)
    where = _where(q, _EXECUTION_COLUMNS)
    order = parse_sort(sort, _EXECUTION_COLUMNS)
    executions, total = await jobs.list_executions(
        session, VENDOR_TYPE, page, vendor_id=row.id, order=order, where=where
    )
    metrics = await jobs.metrics(session, [e.id for e in executions])
    return executions, metrics, total


async def _execution_of(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int,
    execution_id: int,
) -> Execution:
    project = await _project(session, principal, name_or_id, by_name, Action.READ)
    row = await _policy_of(session, project.project_id, policy_id)
    if not 0 < execution_id < 2**63:
        raise jobs.ExecutionNotFoundError(f"execution {execution_id} not found")
    return await jobs.get_execution(
        session, execution_id, vendor_type=VENDOR_TYPE, vendor_id=row.id
    )


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int,
    execution_id: int,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[Task], int]:
    """``ListTasksOfWebhookExecution``: one task per target."""
    execution = await _execution_of(
        session, principal, name_or_id, by_name, policy_id, execution_id
    )
    stmt = select(Task).where(Task.execution_id == execution.id, *_where(q, _TASK_COLUMNS))
    order = parse_sort(sort, _TASK_COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, Task.id.asc())
    return [r[0] for r in rows], total


async def task_log(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int,
    execution_id: int,
    task_id: int,
) -> str:
    """``GetLogsOfWebhookTask``."""
    execution = await _execution_of(
        session, principal, name_or_id, by_name, policy_id, execution_id
    )
    if not 0 < task_id < 2**63:
        raise jobs.TaskNotFoundError(f"task {task_id} not found")
    task = await jobs.get_task(session, task_id, execution_id=execution.id)
    return await jobs.task_log(session, task.id)


async def last_triggers(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool
) -> list[WebhookLastTrigger]:
    """``LastTrigger``: per policy and event type, when it last started a delivery."""
    project = await _project(session, principal, name_or_id, by_name, Action.READ)
    policies = await repo.policies_of_project(session, project.project_id)
    ids = [p.id for p in policies]
    latest: dict[tuple[int, str], datetime] = {}
    wanted = sorted({kind for policy in policies for kind in event_types_of(policy)})
    for kind in wanted:  # one query per event type some policy names
        for policy_id, when in (await repo.last_triggers(session, ids, kind)).items():
            latest[(policy_id, kind)] = when
    result = []
    for policy in policies:
        for kind in event_types_of(policy):
            result.append(
                WebhookLastTrigger(
                    policy_name=policy.name,
                    event_type=kind,
                    enabled=policy.enabled,
                    creation_time=policy.creation_time,
                    last_trigger_time=latest.get((policy.id, kind)),
                )
            )
    return result


async def list_jobs(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int | None,
    statuses: Sequence[str],
    page: PageRequest,
) -> tuple[list[WebhookJob], int]:
    """``ListWebhookJobs`` (deprecated): the policy's delivery tasks, newest first; none
    when ``policy_id`` names no policy of the project."""
    project = await _project(session, principal, name_or_id, by_name, Action.LIST)
    row = await repo.find_policy(session, policy_id) if policy_id is not None else None
    if row is None or row.project_id != project.project_id:
        return [], 0
    stmt = (
        select(Task)
        .join(Execution, Execution.id == Task.execution_id)
        .where(Execution.vendor_type == VENDOR_TYPE, Execution.vendor_id == row.id)
    )
    if statuses:
        stmt = stmt.where(Task.status.in_(list(statuses)))
    rows, total = await fetch_page(session, stmt, page, [Task.id.desc()], Task.id.desc())
    result = []
    for (task,) in rows:
        attrs = jobs.loads(task.extra_attrs)
        result.append(
            WebhookJob(
                id=task.id,
                policy_id=row.id,
                event_type=str(attrs.get("event_type", "")),
                notify_type=str(attrs.get("notify_type", "")),
                status=task.status,
                job_detail=json.dumps(
                    {k: v for k, v in attrs.items() if k != "auth_header"}, sort_keys=True
                ),
                creation_time=task.creation_time,
                update_time=task.update_time,
            )
        )
    return result, total


# --- events --------------------------------------------------------------------------------


async def notifications_enabled(session: AsyncSession) -> bool:
    return bool(await config.value(session, NOTIFICATION_ENABLE))


def subscribed(policies: Sequence[WebhookPolicy], event_type: str) -> list[WebhookPolicy]:
    return [p for p in policies if p.enabled and event_type in event_types_of(p)]


async def subscribed_policies(
    session: AsyncSession, project_id: int, event_type: str
) -> list[WebhookPolicy]:
    """The project's enabled policies that want ``event_type`` (one indexed query); empty
    too when ``notification_enable`` is off (checked only when some policy wants it)."""
    policies = subscribed(
        await repo.policies_of_project(session, project_id, enabled_only=True), event_type
    )
    if policies and not await notifications_enabled(session):
        return []
    return policies


def new_event(event_type: str, project_id: int, data: Mapping[str, Any], operator: str) -> Event:
    return Event(uuid.uuid4().hex, event_type, utcnow(), operator, project_id, dict(data))


async def artifact_event_data(
    session: AsyncSession,
    registry_host: str,
    project_id: int,
    repository: str,
    resources: list[tuple[str, str | None]],
) -> dict[str, Any]:
    """Harbor's ``event_data`` for artifacts of ``repository`` (``resources`` are digest
    and tag), the repository's facts read in ``session`` (a project's own visibility when
    the repository is gone)."""
    facts = await repo.repository_facts(session, [repository])
    created, public = utcnow(), False
    if repository in facts:
        _, created, public = facts[repository]
    else:
        metadata = await projects_repo.project_metadata(session, project_id)
        public = metadata.get("public") == "true"
    return artifact_data(
        registry_host=registry_host,
        repository=repository,
        repository_created=created,
        public=public,
        resources=resources,
    )


def registry_host(public_url: str) -> str:
    """The ``host[:port]`` that ``resource_url`` and ``harbor_hostname`` name."""
    return urlsplit(public_url).netloc or public_url


async def enqueue_deliveries(
    session: AsyncSession, policies: Sequence[WebhookPolicy], event: Event
) -> list[Execution]:
    """One execution per policy and one delivery task per target, in ``session``."""
    executions = []
    for policy in policies:
        targets = targets_of(policy)
        specs = [
            jobs.TaskSpec(
                params={
                    "policy_id": policy.id,
                    "event": event.as_params(),
                    "target": target.model_dump(),
                },
                extra_attrs={
                    "event_type": event.type,
                    "notify_type": target.type or HTTP,
                    "address": target.address or "",
                    "payload_format": target.payload_format or DEFAULT_FORMAT,
                },
                max_attempts=MAX_ATTEMPTS,
            )
            for target in targets
        ]
        executions.append(
            await jobs.enqueue(
                session,
                VENDOR_TYPE,
                vendor_id=policy.id,
                trigger=jobs.EVENT,
                extra_attrs={
                    "event_type": event.type,
                    "event_id": event.id,
                    "operator": event.operator,
                    "policy_name": policy.name,
                },
                tasks=specs,
            )
        )
    return executions


async def emit(
    session: AsyncSession,
    project_id: int,
    event_type: str,
    payload_data: Mapping[str, Any],
    operator: str,
) -> int:
    """Tell the project's subscribed policies that ``event_type`` happened.

    For other features (tag retention, quotas…): call it inside the transaction of
    the change, with Harbor's ``event_data`` for the event as ``payload_data``
    (``resources``, ``repository``, ``custom_attributes``…) and the user or
    ``system`` as ``operator``. The deliveries commit or roll back with the change.
    Returns how many executions were enqueued (0 when no enabled policy of the
    project wants the event, or ``notification_enable`` is off).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    policies = await subscribed_policies(session, project_id, event_type)
    if not policies:
        return 0
    event = new_event(event_type, project_id, payload_data, operator)
    return len(await enqueue_deliveries(session, policies, event))


TEST_REPOSITORY = "webhook-test"
"""The repository a test event names (inside the policy's project); nothing is pushed."""


async def send_test(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    policy_id: int,
    *,
    operator: str,
    registry_host: str,
) -> Execution:
    """Send a test event to every target of the policy now (the console's "Test" button,
    as Harbor's portal has): a ``PUSH_ARTIFACT`` event for tag ``test`` of
    ``<project>/webhook-test`` with an all-zero digest, delivered like any other event
    (an execution of the policy, one task per target, with its log), whether or not the
    policy is enabled or ``notification_enable`` is on. Needs ``notification-policy:update``.
    """
    project = await _project(session, principal, name_or_id, by_name, Action.UPDATE)
    row = await _policy_of(session, project.project_id, policy_id)
    data = artifact_data(
        registry_host=registry_host,
        repository=f"{project.name}/{TEST_REPOSITORY}",
        repository_created=utcnow(),
        public=False,
        resources=[("sha256:" + "0" * 64, "test")],
    )
    event = new_event(PUSH_ARTIFACT, project.project_id, data, operator)
    (execution,) = await enqueue_deliveries(session, [row], event)
    await jobs.merge_execution_attrs(session, execution.id, {"test": True})
    return execution
