"""The project tab "Tag retention": the project's policy (its rules and schedule), runs now
or dry runs, the history of executions with each repository's task, its log, and stop.

A project has at most one policy (``retention.service``); the console edits it rule by
rule, sending the whole policy through ``create_policy``/``update_policy`` as the REST
API's clients do, so the service checks the rules, the cron and ``can`` exactly as for
``/api/v2.0/retentions``. POST paths carry no ids but the project's; the rule's
position and the execution's id come in the form.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response
from starlette.routing import Route

from dockyard.console.jobs import SCHEDULE_TYPES, cron_view, log_page, schedule_field
from dockyard.console.projects import allowed_in, pages_of, project_url
from dockyard.console.web import Handler, Page, with_query
from dockyard.errors import BadRequestError, NotFoundError
from dockyard.iam.policy import Action, ProjectContext, Resource
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.projects import service as projects
from dockyard.projects.models import Project
from dockyard.retention import repository as repo
from dockyard.retention import rules as rules_mod
from dockyard.retention import service
from dockyard.retention.schemas import (
    RetentionExecution,
    RetentionPolicy,
    RetentionPolicyScope,
    RetentionRule,
    RetentionRuleTrigger,
)

TAB = "retention"
TEMPLATES = tuple(rules_mod.TEMPLATES)


async def _project(session: AsyncSession, page: Page) -> tuple[Project, ProjectContext]:
    return await projects.resolve_project(session, page.principal, page.path("project"), True)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def retention_tab(page: Page) -> Response:
    request = page.page_request()
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        projects.require(page.principal, Action.LIST, Resource.TAG_RETENTION, context)
        view = await projects.project_view(session, page.principal, project, context)
        row = await repo.policy_of_project(session, project.project_id)
        policy: RetentionPolicy | None = None
        runs: list[RetentionExecution] = []
        total = 0
        if row is not None:
            policy = await service.get_policy(session, page.principal, row.id)
            runs, total = await service.list_executions(session, page.principal, row.id, request)
    cron = str(
        ((policy.trigger.settings if policy and policy.trigger else None) or {}).get("cron") or ""
    )
    return page.render(
        "jobs/retention.html",
        tab=TAB,
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        policy=policy,
        rules=[_rule_form(rule) for rule in (policy.rules or [])] if policy else [],
        templates=TEMPLATES,
        units={name: t.unit for name, t in rules_mod.TEMPLATES.items()},
        schedule=cron_view(cron),
        schedule_types=SCHEDULE_TYPES,
        runs=[
            {
                "id": r.id,
                "status": r.status,
                "trigger": r.trigger,
                "dry_run": r.dry_run,
                "start_time": _time(r.start_time),
                "end_time": _time(r.end_time),
            }
            for r in runs
        ],
        paging=pages_of(total, request),
        base=project_url(project.name, TAB),
        list_url=lambda **p: with_query(project_url(project.name, TAB), **p),
    )


def _rule_form(rule: RetentionRule) -> dict[str, Any]:
    """A stored rule as the form's fields (the console offers one selector of each kind)."""
    repositories = (rule.scope_selectors or {}).get("repository") or []
    repository = repositories[0] if repositories else None
    tag = rule.tag_selectors[0] if rule.tag_selectors else None
    untagged = False
    if tag is not None and tag.extras:
        try:
            untagged = bool(json.loads(tag.extras).get("untagged", False))
        except (ValueError, AttributeError):
            untagged = False
    template = rule.template or rules_mod.ALWAYS
    return {
        "template": template,
        "value": (rule.params or {}).get(template),
        "disabled": bool(rule.disabled),
        "repo_decoration": repository.decoration if repository else "repoMatches",
        "repo_pattern": repository.pattern if repository else "**",
        "tag_decoration": tag.decoration if tag else "matches",
        "tag_pattern": tag.pattern if tag else "**",
        "untagged": untagged,
        "more": len(repositories) > 1 or len(rule.tag_selectors or []) > 1,
    }


def _rule_from_form(page: Page) -> RetentionRule:
    template = page.field("template")
    if template not in rules_mod.TEMPLATES:
        raise BadRequestError(f"choose a rule template: {', '.join(TEMPLATES)}")
    params: dict[str, Any] = {}
    if rules_mod.TEMPLATES[template].unit is not None:
        value = page.int_field("value")
        if value is None:
            raise BadRequestError("give the rule's number (artifacts or days)")
        params[template] = value
    return RetentionRule.model_validate(
        {
            "template": template,
            "action": rules_mod.ACTION,
            "priority": 0,
            "disabled": page.checked("disabled"),
            "params": params,
            "scope_selectors": {
                "repository": [
                    {
                        "kind": rules_mod.SELECTOR_KIND,
                        "decoration": page.field("repo_decoration", "repoMatches"),
                        "pattern": page.field("repo_pattern").strip(),
                    }
                ]
            },
            "tag_selectors": [
                {
                    "kind": rules_mod.SELECTOR_KIND,
                    "decoration": page.field("tag_decoration", "matches"),
                    "pattern": page.field("tag_pattern").strip(),
                    "extras": json.dumps({"untagged": page.checked("untagged")}),
                }
            ],
        }
    )


def _keeping_extras(old: RetentionRule, new: RetentionRule) -> RetentionRule:
    """``new`` (the form's rule) with the selectors beyond the first that ``old`` had (the
    form shows one of each kind; more can be set through the API) and its priority."""
    old_repositories = (old.scope_selectors or {}).get("repository") or []
    new_repositories = (new.scope_selectors or {}).get("repository") or []
    return new.model_copy(
        update={
            "priority": old.priority,
            "scope_selectors": {"repository": new_repositories[:1] + old_repositories[1:]},
            "tag_selectors": (new.tag_selectors or [])[:1] + (old.tag_selectors or [])[1:],
        }
    )


def _position(page: Page, count: int) -> int:
    """The ``rule`` field: a rule's position (1-based) in the policy."""
    position = page.int_field("rule")
    if position is None or not 1 <= position <= count:
        raise BadRequestError("no such rule; reload the page")
    return position


async def _save(
    page: Page,
    change: Callable[[list[RetentionRule], str], tuple[list[RetentionRule], str]],
) -> str:
    """Apply ``change`` (rules, cron) -> (rules, cron) to the project's policy, creating it
    when there is none; returns the project's name."""
    async with page.state.db.write() as session:
        project, context = await _project(session, page)
        row = await repo.policy_of_project(session, project.project_id)
        if row is None:
            projects.require(page.principal, Action.CREATE, Resource.TAG_RETENTION, context)
            rules, cron = change([], "")
            await service.create_policy(
                session, page.principal, page.actor(), _policy(project, rules, cron)
            )
        else:
            current = await service.get_policy(session, page.principal, row.id)
            cron = str(
                ((current.trigger.settings if current.trigger else None) or {}).get("cron") or ""
            )
            rules, cron = change(list(current.rules or []), cron)
            await service.update_policy(
                session, page.principal, page.actor(), row.id, _policy(project, rules, cron)
            )
        return project.name


def _policy(project: Project, rules: Sequence[RetentionRule], cron: str) -> RetentionPolicy:
    return RetentionPolicy(
        algorithm=rules_mod.ALGORITHM,
        rules=list(rules),
        trigger=RetentionRuleTrigger(kind=rules_mod.TRIGGER_KIND, settings={"cron": cron}),
        scope=RetentionPolicyScope(level=rules_mod.SCOPE_LEVEL, ref=project.project_id),
    )


async def save_rule(page: Page) -> Response:
    """Add a rule (no ``rule`` field) or replace the rule at position ``rule``."""
    rule = _rule_from_form(page)
    editing = page.field("rule").strip() != ""

    def change(rules: list[RetentionRule], cron: str) -> tuple[list[RetentionRule], str]:
        if editing:
            position = _position(page, len(rules))
            rules[position - 1] = _keeping_extras(rules[position - 1], rule)
        else:
            rules.append(rule)
        return rules, cron

    name = await _save(page, change)
    return page.redirect(project_url(name, TAB), "flash.retention_rule_saved")


async def delete_rule(page: Page) -> Response:
    def change(rules: list[RetentionRule], cron: str) -> tuple[list[RetentionRule], str]:
        del rules[_position(page, len(rules)) - 1]
        return rules, cron

    name = await _save(page, change)
    return page.redirect(project_url(name, TAB), "flash.retention_rule_deleted")


async def save_schedule(page: Page) -> Response:
    spec = schedule_field(page)
    if spec.cron_type == schedules.MANUAL:
        raise BadRequestError("choose a schedule, or start a run with “Run now”")
    name = await _save(page, lambda rules, _: (rules, spec.cron))
    return page.redirect(project_url(name, TAB), "flash.retention_schedule_saved")


async def edit_rule_page(page: Page) -> Response:
    """One rule's form (``POST …/rules`` with its position saves it)."""
    position = page.path_int("rule")
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        projects.require(page.principal, Action.UPDATE, Resource.TAG_RETENTION, context)
        view = await projects.project_view(session, page.principal, project, context)
        row = await repo.policy_of_project(session, project.project_id)
        policy = await service.get_policy(session, page.principal, row.id) if row else None
    rules = list(policy.rules or []) if policy else []
    if not 1 <= position <= len(rules):
        raise RetentionRuleNotFoundError(f"rule {position} not found")
    return page.render(
        "jobs/retention_rule.html",
        tab=TAB,
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        rule=_rule_form(rules[position - 1]),
        position=position,
        templates=TEMPLATES,
        base=project_url(project.name, TAB),
    )


class RetentionRuleNotFoundError(NotFoundError):
    """No rule at that position of the project's policy."""


async def _policy_id(session: AsyncSession, page: Page) -> tuple[Project, int]:
    project, context = await _project(session, page)
    row = await repo.policy_of_project(session, project.project_id)
    if row is None:
        projects.require(page.principal, Action.UPDATE, Resource.TAG_RETENTION, context)
        raise BadRequestError("the project has no retention rules yet; add one first")
    return project, row.id


async def run_now(page: Page) -> Response:
    """Run the policy now; ``dry_run`` only judges and logs."""
    dry_run = page.field("dry_run") == "true"
    async with page.state.db.write() as session:
        project, policy_id = await _policy_id(session, page)
        run_id = await service.trigger_execution(
            session, page.principal, page.actor(), policy_id, dry_run
        )
    flash = "flash.retention_dry_run_started" if dry_run else "flash.retention_started"
    return page.redirect(project_url(project.name, TAB), flash, id=str(run_id))


async def stop_run(page: Page) -> Response:
    run_id = page.id_field("execution", "a run's id")
    async with page.state.db.write() as session:
        project, policy_id = await _policy_id(session, page)
        await service.stop_execution(session, page.principal, policy_id, run_id, "stop")
    return page.redirect(
        project_url(project.name, TAB) + f"/executions/{run_id}",
        "flash.run_stop_requested",
        id=str(run_id),
    )


async def execution_page(page: Page) -> Response:
    """One run: each repository's task, what it kept of how many, and its log."""
    run_id = page.path_int("execution")
    request = page.page_request()
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = await projects.project_view(session, page.principal, project, context)
        row = await repo.policy_of_project(session, project.project_id)
        if row is None:
            raise jobs.ExecutionNotFoundError(f"execution {run_id} not found")
        tasks, total = await service.list_tasks(session, page.principal, row.id, run_id, request)
        execution = await jobs.get_execution(
            session, run_id, vendor_type=service.VENDOR_TYPE, vendor_id=row.id
        )
    base = project_url(project.name, TAB)
    return page.render(
        "jobs/retention_execution.html",
        tab=TAB,
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        run=service.execution_view(execution),
        run_start=execution.start_time,
        run_end=execution.end_time,
        finished=execution.status in jobs.FINAL_STATUSES,
        tasks=[
            {
                "id": t.id,
                "repository": t.repository,
                "status": t.status,
                "total": t.total,
                "retained": t.retained,
                "start_time": _time(t.start_time),
                "end_time": _time(t.end_time),
            }
            for t in tasks
        ],
        paging=pages_of(total, request),
        base=base,
        list_url=lambda **p: with_query(f"{base}/executions/{run_id}", **p),
    )


async def task_log(page: Page) -> Response:
    run_id, task_id = page.path_int("execution"), page.path_int("task")
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
        row = await repo.policy_of_project(session, project.project_id)
        if row is None:
            raise jobs.TaskNotFoundError(f"task {task_id} not found")
        text = await service.task_log(session, page.principal, row.id, run_id, task_id)
    back = project_url(project.name, TAB) + f"/executions/{run_id}"
    return log_page(page, "retention", task_id, text, back)


def routes(
    get: Callable[[str, Handler], Route], post: Callable[[str, Handler], Route]
) -> list[Route]:
    from dockyard.console.web import PREFIX

    base = PREFIX + "/projects/{project}/" + TAB
    return [
        get(base, retention_tab),
        post(base + "/rules", save_rule),
        post(base + "/rules/delete", delete_rule),
        get(base + "/rules/{rule}/edit", edit_rule_page),
        post(base + "/schedule", save_schedule),
        post(base + "/run", run_now),
        post(base + "/stop", stop_run),
        get(base + "/executions/{execution}", execution_page),
        get(base + "/executions/{execution}/tasks/{task}/log", task_log),
    ]
