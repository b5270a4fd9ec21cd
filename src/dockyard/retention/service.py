"""Tag retention: a project's policy, its schedule, and the executions that apply it.

A project has at most one policy (Harbor's ``RetentionPolicy``; its id is kept in
the project's ``retention_id`` metadata). Running it — by hand, optionally as a
dry run, or by its cron — starts one execution (vendor ``RETENTION``, vendor id
the policy's) with one task per repository some enabled rule applies to. Each
task evaluates the rules for its repository (``rules.evaluate``, pure), logs
every decision and, unless it is a dry run, removes tags and artifacts through
the registry's hook seam — the same path the API's deletes take — so tag
immutability, quotas and the audit log apply. Tags an immutable tag rule
protects are kept and reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import SYSTEM_ACTOR, Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import PageRequest
from dockyard.errors import (
    AppError,
    BadRequestError,
    NotFoundError,
    ProjectNotFoundError,
    UnauthorizedError,
)
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.immutability import service as immutability
from dockyard.immutability.matcher import RuleSet
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task
from dockyard.jobs.runner import JobContext, PermanentJobError
from dockyard.projects import repository as projects_repo
from dockyard.projects.models import Project
from dockyard.projects.service import require, resolve_project
from dockyard.registry import repository as registry_repo
from dockyard.registry.models import Artifact
from dockyard.retention import repository as repo
from dockyard.retention import rules as rules_mod
from dockyard.retention.models import RetentionPolicy as PolicyRow
from dockyard.retention.rules import Decision, Rule, RuleError
from dockyard.retention.schemas import (
    RetentionExecution,
    RetentionExecutionTask,
    RetentionMetadata,
    RetentionPolicy,
    RetentionRuleMetadata,
    RetentionRuleParamMetadata,
    RetentionSelectorMetadata,
)
from dockyard.system import readonly
from dockyard.webhooks import service as webhooks
from dockyard.webhooks.payloads import TAG_RETENTION

log = logging.getLogger("dockyard.retention")

VENDOR_TYPE = "RETENTION"
RESOURCE_TYPE = "retention"
METADATA_KEY = "retention_id"
"""The project metadata that names the project's policy (as Harbor keeps it)."""
TASK_ATTEMPTS = 3
_CHECKPOINT_EVERY = 10
_DELETED_LISTED = 100
"""Removed artifacts and tags a task lists for the ``TAG_RETENTION`` webhook."""
# Harbor's job status codes: pending 0, running 2, finished (any way) 3.
_STATUS_CODES = {jobs.PENDING: 0, jobs.RUNNING: 2}
_FINISHED_CODE = 3


class RetentionNotFoundError(NotFoundError):
    """No such policy, or one in a project the caller may not see."""


# --- metadata ------------------------------------------------------------------------------


def metadata() -> RetentionMetadata:
    """``getRentenitionMetadata``: the templates, and the selectors rules may use."""
    templates = [
        RetentionRuleMetadata(
            rule_template=t.name,
            display_text=t.display_text,
            action=rules_mod.ACTION,
            params=[RetentionRuleParamMetadata(type="int", unit=t.unit, required=True)]
            if t.unit is not None
            else [],
        )
        for t in rules_mod.TEMPLATES.values()
    ]
    return RetentionMetadata(
        templates=templates,
        scope_selectors=[
            RetentionSelectorMetadata(
                display_text="Repositories",
                kind=rules_mod.SELECTOR_KIND,
                decorations=list(rules_mod.REPOSITORY_DECORATIONS),
            )
        ],
        tag_selectors=[
            RetentionSelectorMetadata(
                display_text="Tags",
                kind=rules_mod.SELECTOR_KIND,
                decorations=list(rules_mod.TAG_DECORATIONS),
            )
        ],
    )


# --- the policy document -------------------------------------------------------------------


def _checked(body: RetentionPolicy) -> tuple[list[Rule], str]:
    """The body's rules and cron ("" for no schedule), or a 400 that says what is wrong."""
    if body.algorithm not in (None, "", rules_mod.ALGORITHM):
        raise BadRequestError(f"algorithm must be {rules_mod.ALGORITHM!r}")
    try:
        rules = rules_mod.parse_rules([r.model_dump() for r in body.rules or []])
        rules_mod.check_new_rules(rules)
    except RuleError as exc:
        raise BadRequestError(str(exc)) from None
    cron = ""
    trigger = body.trigger
    if trigger is not None:
        if trigger.kind not in (None, "", rules_mod.TRIGGER_KIND):
            raise BadRequestError(f"trigger.kind must be {rules_mod.TRIGGER_KIND!r}")
        raw = (trigger.settings or {}).get("cron")
        if raw not in (None, "") and not isinstance(raw, str):
            raise BadRequestError("trigger.settings.cron must be a string")
        if raw:
            cron = schedules.validate_cron(raw)
    return rules, cron


def _document(rules: Sequence[Rule], cron: str) -> str:
    return json.dumps(
        {
            "algorithm": rules_mod.ALGORITHM,
            "rules": [rules_mod.rule_json(rule) for rule in rules],
            "trigger": {"kind": rules_mod.TRIGGER_KIND, "settings": {"cron": cron}},
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _stored(row: PolicyRow) -> dict[str, Any]:
    value = json.loads(row.data)
    return value if isinstance(value, dict) else {}


def stored_rules(row: PolicyRow) -> list[Rule]:
    """The rules of a stored policy (stored checked, so they parse)."""
    return rules_mod.parse_rules(_stored(row).get("rules") or [])


def _stored_cron(row: PolicyRow) -> str:
    trigger = _stored(row).get("trigger") or {}
    return str((trigger.get("settings") or {}).get("cron") or "")


def policy_view(row: PolicyRow) -> RetentionPolicy:
    data = _stored(row)
    return RetentionPolicy.model_validate(
        {
            "id": row.id,
            "algorithm": data.get("algorithm", rules_mod.ALGORITHM),
            "rules": data.get("rules") or [],
            "trigger": data.get("trigger")
            or {"kind": rules_mod.TRIGGER_KIND, "settings": {"cron": ""}},
            "scope": {"level": rules_mod.SCOPE_LEVEL, "ref": row.project_id},
        }
    )


def _scope_ref(body: RetentionPolicy) -> int | None:
    scope = body.scope
    if scope is None:
        return None
    if scope.level not in (None, "", rules_mod.SCOPE_LEVEL):
        raise BadRequestError(f"scope.level must be {rules_mod.SCOPE_LEVEL!r}")
    if scope.ref is not None and not 0 < scope.ref < 2**63:
        raise BadRequestError("scope.ref must be a project id")
    return scope.ref


async def _set_schedule(session: AsyncSession, policy_id: int, cron: str) -> None:
    if cron:
        await schedules.set_schedule(
            session,
            VENDOR_TYPE,
            schedules.CronSpec(schedules.CUSTOM, cron),
            {"dry_run": False},
            vendor_id=policy_id,
        )
    else:
        await schedules.remove_schedule(session, VENDOR_TYPE, policy_id)


def _describe(rules: Sequence[Rule], cron: str) -> str:
    schedule = f"schedule {cron!r}" if cron else "no schedule"
    return f"{len(rules)} rule(s), {schedule}"[:1024]


# --- access --------------------------------------------------------------------------------


async def _policy_for(
    session: AsyncSession, principal: Principal, policy_id: int, action: Action
) -> tuple[PolicyRow, Project]:
    """The policy, when ``principal`` may ``action`` it; a policy of a project the caller
    cannot see is as missing as one that does not exist."""
    row = await repo.find_policy(session, policy_id)
    if row is None:
        if principal.is_anonymous:
            raise UnauthorizedError("authentication required")
        raise RetentionNotFoundError(f"retention policy {policy_id} not found")
    try:
        project, context = await resolve_project(session, principal, str(row.project_id))
    except ProjectNotFoundError:
        raise RetentionNotFoundError(f"retention policy {policy_id} not found") from None
    require(principal, action, Resource.TAG_RETENTION, context)
    return row, project


async def check_access(
    session: AsyncSession, principal: Principal, policy_id: int, action: Action
) -> None:
    """Raise unless ``principal`` may ``action`` the policy (checked before the body is read)."""
    await _policy_for(session, principal, policy_id, action)


async def check_create_access(
    session: AsyncSession, principal: Principal, project_ref: int | None
) -> None:
    if project_ref is None:
        if principal.is_anonymous:
            raise UnauthorizedError("authentication required")
        return
    _, context = await resolve_project(session, principal, str(project_ref))
    require(principal, Action.CREATE, Resource.TAG_RETENTION, context)


# --- management ----------------------------------------------------------------------------


async def get_policy(
    session: AsyncSession, principal: Principal, policy_id: int
) -> RetentionPolicy:
    """``getRetention``."""
    row, _ = await _policy_for(session, principal, policy_id, Action.READ)
    return policy_view(row)


async def create_policy(
    session: AsyncSession, principal: Principal, actor: Actor, body: RetentionPolicy
) -> int:
    """``createRetention``: the project's policy (a project has at most one); returns its id."""
    ref = _scope_ref(body)
    if ref is None:
        raise BadRequestError('scope is required: {"level": "project", "ref": <project id>}')
    project, context = await resolve_project(session, principal, str(ref))
    require(principal, Action.CREATE, Resource.TAG_RETENTION, context)
    rules, cron = _checked(body)
    await projects_repo.find_project(session, project.project_id, for_update=True)
    existing = await repo.policy_of_project(session, project.project_id)
    if existing is not None:
        raise BadRequestError(
            f"project {project.name} already has retention policy {existing.id}; update it instead"
        )
    row = PolicyRow(project_id=project.project_id, data=_document(rules, cron))
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise BadRequestError(f"project {project.name} already has a retention policy") from None
    await projects_repo.set_metadata(session, project.project_id, {METADATA_KEY: str(row.id)})
    await _set_schedule(session, row.id, cron)
    await audit.record(
        session,
        actor,
        AuditEvent(
            "create",
            RESOURCE_TYPE,
            f"{project.name}/retentions/{row.id}",
            project.project_id,
            _describe(rules, cron),
        ),
    )
    return row.id


async def update_policy(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    policy_id: int,
    body: RetentionPolicy,
) -> None:
    """``updateRetention``: new rules and trigger; the policy stays with its project."""
    row, project = await _policy_for(session, principal, policy_id, Action.UPDATE)
    ref = _scope_ref(body)
    if ref is not None and ref != row.project_id:
        raise BadRequestError("scope.ref cannot change: a policy belongs to its project")
    rules, cron = _checked(body)
    row.data = _document(rules, cron)
    row.update_time = utcnow()
    await session.flush()
    await _set_schedule(session, row.id, cron)
    await audit.record(
        session,
        actor,
        AuditEvent(
            "update",
            RESOURCE_TYPE,
            f"{project.name}/retentions/{row.id}",
            project.project_id,
            _describe(rules, cron),
        ),
    )


async def delete_policy(
    session: AsyncSession, principal: Principal, actor: Actor, policy_id: int
) -> None:
    """``deleteRetention``: the policy, its schedule, its executions and the project's
    ``retention_id``."""
    row, project = await _policy_for(session, principal, policy_id, Action.DELETE)
    await schedules.remove_schedule(session, VENDOR_TYPE, row.id)
    # Running tasks lose their rows: their next checkpoint finds them gone and they end.
    await repo.delete_executions(session, VENDOR_TYPE, row.id)
    await projects_repo.delete_metadata(session, row.project_id, METADATA_KEY)
    await session.delete(row)
    await session.flush()
    await audit.record(
        session,
        actor,
        AuditEvent(
            "delete", RESOURCE_TYPE, f"{project.name}/retentions/{policy_id}", project.project_id
        ),
    )


# --- executions ----------------------------------------------------------------------------


async def launch(
    session: AsyncSession, row: PolicyRow, trigger: str, *, dry_run: bool, operator: str
) -> Execution:
    """Start an execution of the policy: one task per repository a rule applies to."""
    rules = stored_rules(row)
    rule_docs = [rules_mod.rule_json(rule) for rule in rules]
    repositories = await repo.repositories_of_project(session, row.project_id)
    names = [immutability.inner_name(name) for _, name in repositories]
    # Pure matching, possibly of many repositories: in a thread (the transaction waits).
    wanted = set(await to_thread.run_sync(rules_mod.repositories_in_scope, rules, names))
    tasks = [
        jobs.TaskSpec(
            params={"policy_id": row.id, "repository": name},
            extra_attrs={"repository": name, "dry_run": dry_run, "total": 0, "retained": 0},
            max_attempts=TASK_ATTEMPTS,
        )
        for _, name in repositories
        if immutability.inner_name(name) in wanted
    ]
    return await jobs.enqueue(
        session,
        VENDOR_TYPE,
        vendor_id=row.id,
        trigger=trigger,
        # The rules as they were at launch, read by every task (once per execution, not
        # once per repository: a project may hold thousands).
        extra_attrs={
            "dry_run": dry_run,
            "operator": operator,
            "project_id": row.project_id,
            "rules": rule_docs,
        },
        tasks=tasks,
    )


async def launch_scheduled(
    session: AsyncSession, vendor_id: int, params: Mapping[str, Any], trigger: str
) -> Execution:
    """How the policy's schedule starts an execution (``JobType.launcher``)."""
    row = await repo.find_policy(session, vendor_id)
    if row is None or await projects_repo.find_project(session, row.project_id) is None:
        # The policy (or its project) went without its schedule: end it, run nothing.
        await schedules.remove_schedule(session, VENDOR_TYPE, vendor_id)
        return await jobs.enqueue(
            session, VENDOR_TYPE, vendor_id=vendor_id, trigger=trigger, tasks=[]
        )
    return await launch(
        session,
        row,
        trigger,
        dry_run=bool(params.get("dry_run", False)),
        operator=SYSTEM_ACTOR.name,
    )


async def trigger_execution(
    session: AsyncSession, principal: Principal, actor: Actor, policy_id: int, dry_run: bool
) -> int:
    """``triggerRetentionExecution``: run the policy now; returns the execution id."""
    row, _ = await _policy_for(session, principal, policy_id, Action.UPDATE)
    execution = await launch(session, row, jobs.MANUAL, dry_run=dry_run, operator=actor.name)
    return execution.id


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def execution_view(row: Execution) -> RetentionExecution:
    attrs = jobs.loads(row.extra_attrs)
    return RetentionExecution(
        id=row.id,
        policy_id=row.vendor_id,
        start_time=_time(row.start_time),
        end_time=_time(row.end_time),
        status=row.status,
        trigger=row.trigger,
        dry_run=bool(attrs.get("dry_run", False)),
    )


def task_view(row: Task) -> RetentionExecutionTask:
    attrs = jobs.loads(row.extra_attrs)
    code = _STATUS_CODES.get(row.status, _FINISHED_CODE)
    return RetentionExecutionTask(
        id=row.id,
        execution_id=row.execution_id,
        repository=str(attrs.get("repository", "")),
        job_id=str(row.id),
        status=row.status,
        status_code=code,
        status_revision=int(row.update_time.timestamp()),
        start_time=_time(row.start_time),
        end_time=_time(row.end_time),
        total=int(attrs.get("total", 0)),
        retained=int(attrs.get("retained", 0)),
    )


async def list_executions(
    session: AsyncSession, principal: Principal, policy_id: int, page: PageRequest
) -> tuple[list[RetentionExecution], int]:
    """``listRetentionExecutions``: newest first."""
    row, _ = await _policy_for(session, principal, policy_id, Action.LIST)
    executions, total = await jobs.list_executions(session, VENDOR_TYPE, page, vendor_id=row.id)
    return [execution_view(e) for e in executions], total


async def _execution(
    session: AsyncSession, principal: Principal, policy_id: int, execution_id: int, action: Action
) -> Execution:
    row, _ = await _policy_for(session, principal, policy_id, action)
    return await jobs.get_execution(
        session, execution_id, vendor_type=VENDOR_TYPE, vendor_id=row.id
    )


async def stop_execution(
    session: AsyncSession, principal: Principal, policy_id: int, execution_id: int, action: str
) -> None:
    """``operateRetentionExecution``: ``stop`` (a finished execution stays as it ended)."""
    if action != "stop":
        raise BadRequestError('action must be "stop"')
    execution = await _execution(session, principal, policy_id, execution_id, Action.UPDATE)
    if execution.status not in jobs.FINAL_STATUSES:
        await jobs.stop_execution(session, execution)


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    policy_id: int,
    execution_id: int,
    page: PageRequest,
) -> tuple[list[RetentionExecutionTask], int]:
    """``listRetentionTasks``: one per repository."""
    execution = await _execution(session, principal, policy_id, execution_id, Action.LIST)
    tasks, total = await jobs.list_tasks(session, execution.id, page)
    return [task_view(t) for t in tasks], total


async def task_log(
    session: AsyncSession, principal: Principal, policy_id: int, execution_id: int, task_id: int
) -> str:
    """``getRetentionTaskLog``: every decision the task made, one per line."""
    execution = await _execution(session, principal, policy_id, execution_id, Action.READ)
    task = await jobs.get_task(session, task_id, execution_id=execution.id)
    return await jobs.task_log(session, task.id)


# --- running a task ------------------------------------------------------------------------


def _stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "never"


def _log_decision(ctx: JobContext, decision: Decision, dry_run: bool) -> None:
    c = decision.candidate
    head = f"{c.digest} pushed {_stamp(c.pushed)} pulled {_stamp(c.pulled)}"
    removing = "would remove" if dry_run else "remove"
    if not c.tags:
        if decision.keep_artifact:
            rule_ids = ", ".join(str(r) for r in decision.kept_by)
            ctx.log(f"RETAIN  {head} <untagged>: kept by rule {rule_ids}")
        else:
            ctx.log(f"DELETE  {head} <untagged>: no rule keeps it; {removing} the artifact")
        return
    for name, why in decision.kept_tags.items():
        label = "IMMUTABLE" if why == "immutable" else "RETAIN "
        reason = "an immutable tag rule protects it" if why == "immutable" else f"kept by {why}"
        ctx.log(f"{label} {head} tag {name}: {reason}")
    for name in decision.removed_tags:
        what = "the tag" if decision.keep_artifact else "the artifact with its tags"
        ctx.log(f"DELETE  {head} tag {name}: no rule keeps it; {removing} {what}")


async def _remove_artifact(
    ctx: JobContext, repository: str, decision: Decision, actor: Actor
) -> bool:
    """Remove the artifact unless it changed since it was judged; True when removed."""
    registry = ctx.env.registry
    c = decision.candidate
    async with ctx.env.db.write() as session:
        target = await registry_repo.find_repository_ref(session, repository)
        artifact = await session.get(Artifact, c.artifact_id)
        if target is None or artifact is None:
            return True  # already gone
        now_tags = set(await registry_repo.tags_of_artifact(session, artifact.id))
        if not now_tags <= {t.name for t in c.tags}:
            ctx.log(f"SKIP    {c.digest}: tagged anew since it was judged; it stays")
            return False
        await registry.remove_artifact_deeply(session, target, artifact, actor)
    return True


async def _remove_tag(
    ctx: JobContext, repository: str, decision: Decision, tag: str, actor: Actor
) -> None:
    registry = ctx.env.registry
    async with ctx.env.db.write() as session:
        target = await registry_repo.find_repository_ref(session, repository)
        if target is None:
            return
        found = await registry_repo.tag_target(session, target.repository_id, tag)
        if found is None:
            return  # already gone
        if found[0] != decision.candidate.artifact_id:
            ctx.log(f"SKIP    tag {tag}: moved to {found[1]} since it was judged; it stays")
            return
        await registry.remove_tag(session, target, tag, actor)


async def apply_decision(
    ctx: JobContext, repository: str, decision: Decision, actor: Actor
) -> bool:
    """Carry out one decision; False when the artifact stayed although it was to go.

    A refusal (an immutable rule added meanwhile, an index now listing the artifact…)
    is logged and leaves that artifact or tag as it is; the other tags still go."""
    digest = decision.candidate.digest
    if not decision.keep_artifact:
        try:
            return await _remove_artifact(ctx, repository, decision, actor)
        except AppError as exc:
            ctx.log(f"REFUSED {digest}: {exc.message}")
            return False
    for tag in decision.removed_tags:
        try:
            await _remove_tag(ctx, repository, decision, tag, actor)
        except AppError as exc:
            ctx.log(f"REFUSED {digest} tag {tag}: {exc.message}")
    return True


async def run_task(ctx: JobContext) -> dict[str, Any]:
    """The ``RETENTION`` task: judge one repository's artifacts, then (unless a dry run)
    remove what no rule keeps. Retried runs judge again; what is gone stays gone."""
    repository = ctx.params.get("repository")
    if not isinstance(repository, str):
        raise PermanentJobError("the task names no repository")
    async with ctx.env.db.read() as session:
        execution = await session.get(Execution, ctx.execution_id)
        params = jobs.loads(execution.extra_attrs) if execution is not None else {}
    dry_run = bool(params.get("dry_run", False))
    if not dry_run:
        async with ctx.env.db.read() as session:
            if await readonly.read(session):
                ctx.log("read-only mode is on: nothing is removed (judged as a dry run)")
                dry_run = True
    try:
        rules = rules_mod.parse_rules(params.get("rules") or [])
    except (RuleError, TypeError, AttributeError) as exc:
        raise PermanentJobError(f"the execution's rules cannot be read: {exc}") from None
    operator = params.get("operator")
    actor = Actor(operator, "-") if isinstance(operator, str) and operator else SYSTEM_ACTOR
    progress = dict(ctx.progress or {})
    now = datetime.fromisoformat(progress["now"]) if "now" in progress else utcnow()
    progress["now"] = now.isoformat()

    async with ctx.env.db.read() as session:
        target = await registry_repo.find_repository_ref(session, repository)
        candidates = await repo.candidates(session, target.repository_id) if target else []
        protection = (
            await immutability.project_rules(session, target.project_id) if target else RuleSet(())
        )
    if target is None:
        ctx.log(f"repository {repository} no longer exists; nothing to do")
    # Judging is pure CPU (every rule's patterns over every tag): off the event loop, which
    # serves requests meanwhile; only the database work below runs on it.
    decisions = await to_thread.run_sync(
        rules_mod.evaluate,
        rules,
        immutability.inner_name(repository),
        candidates,
        now,
        lambda tag: immutability.protecting(protection, repository, tag) is not None,
    )
    total = int(progress.get("total", len(decisions)))
    # A retried run judges again what is left: removed artifacts are gone, so only the
    # total is carried over from the first run.
    retained = sum(1 for d in decisions if d.keep_artifact)
    progress["total"] = total
    mode = "dry run: nothing is removed" if dry_run else "removing what no rule keeps"
    ctx.log(f"{repository}: {len(decisions)} artifact(s), {len(rules)} rule(s); {mode}")
    for decision in decisions:
        _log_decision(ctx, decision, dry_run)
    attrs = {"repository": repository, "dry_run": dry_run, "total": total, "retained": retained}
    await ctx.checkpoint(progress=progress, extra_attrs=attrs)

    deleted: list[dict[str, str]] = []
    if not dry_run:
        changes = [d for d in decisions if not d.keep_artifact or d.removed_tags]
        for done, decision in enumerate(changes, start=1):
            if not await apply_decision(ctx, repository, decision, actor):
                retained += 1
            elif len(deleted) < _DELETED_LISTED:
                deleted.append(_deleted_entry(repository, decision))
            if done % _CHECKPOINT_EVERY == 0:
                attrs["retained"] = retained
                await ctx.checkpoint(progress=progress, extra_attrs=attrs)
    attrs["retained"] = retained
    ctx.log(f"{repository}: {retained} of {total} artifact(s) retained")
    if not dry_run:
        # What went is listed by the TAG_RETENTION event when the run ends.
        progress["deleted"] = deleted
        await ctx.checkpoint(progress=progress, extra_attrs=attrs)
    return attrs


def _deleted_entry(repository: str, decision: Decision) -> dict[str, str]:
    """Harbor's ``deleted_artifacts`` item: what went (a whole artifact, or some tags)."""
    c = decision.candidate
    gone = [t.name for t in c.tags] if not decision.keep_artifact else decision.removed_tags
    name_tag = f"{repository}:{','.join(gone)}" if gone else f"{repository}@{c.digest}"
    return {"type": "image", "status": "SUCCESS", "name_tag": name_tag}


async def announce_finished(session: AsyncSession, execution: Execution) -> None:
    """The retention job type's ``on_finished``: when a real run's last task ends,
    send ``TAG_RETENTION`` to the project's webhook policies that want it, with the
    sums of every task and what went (Harbor's ``retention`` event data)."""
    summary = jobs.loads(execution.extra_attrs)
    if summary.get("dry_run"):
        return
    project_id = int(summary.get("project_id", 0))
    project = await projects_repo.find_project(session, project_id)
    if project is None:
        return
    total = retained = 0
    deleted: list[Any] = []
    rows = await session.execute(
        select(Task.extra_attrs, Task.progress).where(Task.execution_id == execution.id)
    )
    for extra, progress in rows:
        values = jobs.loads(extra)
        total += int(values.get("total", 0))
        retained += int(values.get("retained", 0))
        deleted += list(jobs.loads(progress).get("deleted") or [])[:_DELETED_LISTED]
    await webhooks.emit(
        session,
        project_id,
        TAG_RETENTION,
        {
            "retention": {
                "total": total,
                "retained": retained,
                "project_name": project.name,
                "retention_policy_id": execution.vendor_id,
                "status": execution.status.upper(),
                "deleted_artifacts": deleted[: _DELETED_LISTED * 10],
            }
        },
        str(summary.get("operator") or SYSTEM_ACTOR.name),
    )
