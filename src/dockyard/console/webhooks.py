"""The project tab "Webhooks": the project's policies (create, edit, enable or disable,
delete, send a test event), when each event type last fired, and each policy's
executions with their delivery tasks and logs.

Handlers call ``webhooks.service`` as ``/api/v2.0/projects/{p}/webhook/...`` does, so
``can`` decides (``notification-policy``: project admins manage, maintainers read) and
the same checks apply to names, addresses and event types. The console offers one
target per policy, as Harbor's portal does; a policy made through the API with more
keeps its other targets when edited here. POST paths carry no policy id: the form does.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response
from starlette.routing import Route

from dockyard.console.jobs import log_page
from dockyard.console.projects import allowed_in, pages_of, project_url
from dockyard.console.web import PREFIX, Handler, Page, with_query
from dockyard.db.listing import PageRequest
from dockyard.http.egress import EgressPolicy
from dockyard.iam.policy import Action, ProjectContext, Resource
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Task
from dockyard.projects import service as projects
from dockyard.projects.models import Project
from dockyard.webhooks import hooks, service
from dockyard.webhooks.payloads import (
    DEFAULT_FORMAT,
    EVENT_TYPES,
    HTTP,
    NOTIFY_TYPES,
    PAYLOAD_FORMATS,
)
from dockyard.webhooks.schemas import WebhookPolicy, WebhookTargetObject

TAB = "webhooks"
OFFERED_EVENT_TYPES = list(EVENT_TYPES)
"""The form offers every event type Harbor lists: Dockyard sends them all."""
_MAX_POLICIES_SHOWN = 100
"""Policies shown on the tab (a project has a handful; the API pages beyond)."""


async def _project(session: AsyncSession, page: Page) -> tuple[Project, ProjectContext]:
    return await projects.resolve_project(session, page.principal, page.path("project"), True)


def _egress(page: Page) -> EgressPolicy:
    """Where deliveries may go (``egress_*`` settings), to refuse a target up front."""
    return EgressPolicy.from_settings(page.state.settings)


def _changed(page: Page) -> None:
    """Tell this process's pull filter that the project's policies changed (as the API)."""
    hook = hooks.find(page.state.registry.hooks.hooks)
    if hook is not None:
        hook.policies_changed()


async def webhooks_tab(page: Page) -> Response:
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = await projects.project_view(session, page.principal, project, context)
        name = str(project.project_id)
        policies, total = await service.list_policies(
            session, page.principal, name, False, None, "name", PageRequest(1, _MAX_POLICIES_SHOWN)
        )
        triggers = await service.last_triggers(session, page.principal, name, False)
        enabled = await service.notifications_enabled(session)
    return page.render(
        "jobs/webhooks.html",
        tab=TAB,
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        policies=policies,
        total=total,
        triggers=triggers,
        notifications_enabled=enabled,
        event_types=OFFERED_EVENT_TYPES,
        notify_types=NOTIFY_TYPES,
        payload_formats=PAYLOAD_FORMATS,
        base=project_url(project.name, TAB),
    )


def _body(page: Page, keep: list[WebhookTargetObject] | None = None) -> WebhookPolicy:
    """The form as a policy: its one target replaces the first of ``keep`` (the rest stay)."""
    notify_type = page.field("type", HTTP)
    target = WebhookTargetObject(
        type=notify_type,
        address=page.field("address").strip(),
        auth_header=page.field("auth_header").strip(),
        skip_cert_verify=page.checked("skip_cert_verify"),
        payload_format=page.field("payload_format", DEFAULT_FORMAT) or DEFAULT_FORMAT,
    )
    return WebhookPolicy(
        name=page.field("name"),
        description=page.field("description"),
        event_types=[kind for kind in page.fields("event_type") if kind],
        targets=[target, *(keep or [])[1:]],
    )


async def edit_policy_page(page: Page) -> Response:
    """One policy's form (``POST …/update`` saves it)."""
    policy_id = page.path_int("policy")
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        projects.require(page.principal, Action.UPDATE, Resource.NOTIFICATION_POLICY, context)
        view = await projects.project_view(session, page.principal, project, context)
        policy = await service.get_policy(
            session, page.principal, str(project.project_id), False, policy_id
        )
    return page.render(
        "jobs/webhook_edit.html",
        tab=TAB,
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        policy=policy,
        event_types=OFFERED_EVENT_TYPES,
        notify_types=NOTIFY_TYPES,
        payload_formats=PAYLOAD_FORMATS,
        base=project_url(project.name, TAB),
    )


async def create_policy(page: Page) -> Response:
    body = _body(page)
    body.enabled = True
    async with page.state.db.write() as session:
        project, _ = await _project(session, page)
        await service.create_policy(
            session, page.principal, str(project.project_id), False, body, _egress(page)
        )
    _changed(page)
    return page.redirect(
        project_url(project.name, TAB), "flash.webhook_created", name=body.name or ""
    )


async def update_policy(page: Page) -> Response:
    policy_id = page.id_field("policy", "a webhook policy's id")
    async with page.state.db.write() as session:
        project, _ = await _project(session, page)
        ref = str(project.project_id)
        current = await service.get_policy(session, page.principal, ref, False, policy_id)
        body = _body(page, current.targets)
        await service.update_policy(
            session, page.principal, ref, False, policy_id, body, _egress(page)
        )
    _changed(page)
    return page.redirect(project_url(project.name, TAB), "flash.webhook_saved")


async def toggle_policy(page: Page) -> Response:
    policy_id = page.id_field("policy", "a webhook policy's id")
    enable = page.field("enabled") == "true"
    async with page.state.db.write() as session:
        project, _ = await _project(session, page)
        await service.update_policy(
            session,
            page.principal,
            str(project.project_id),
            False,
            policy_id,
            WebhookPolicy(enabled=enable),
            _egress(page),
        )
    _changed(page)
    flash = "flash.webhook_enabled" if enable else "flash.webhook_disabled"
    return page.redirect(project_url(project.name, TAB), flash)


async def delete_policy(page: Page) -> Response:
    policy_id = page.id_field("policy", "a webhook policy's id")
    async with page.state.db.write() as session:
        project, _ = await _project(session, page)
        await service.delete_policy(
            session, page.principal, str(project.project_id), False, policy_id
        )
    _changed(page)
    return page.redirect(project_url(project.name, TAB), "flash.webhook_deleted")


async def test_policy(page: Page) -> Response:
    """Send a test event to the policy's targets (see ``webhooks.service.send_test``)."""
    policy_id = page.id_field("policy", "a webhook policy's id")
    async with page.state.db.write() as session:
        project, _ = await _project(session, page)
        execution = await service.send_test(
            session,
            page.principal,
            str(project.project_id),
            False,
            policy_id,
            operator=page.principal.name,
            registry_host=page.registry_host(),
        )
        run_id = execution.id
    return page.redirect(
        f"{project_url(project.name, TAB)}/{policy_id}?execution={run_id}",
        "flash.webhook_test_sent",
    )


async def policy_history(page: Page) -> Response:
    """A policy's executions (one per event), and the chosen one's delivery tasks."""
    policy_id = page.path_int("policy")
    request = page.page_request()
    chosen = page.query("execution")
    async with page.state.db.read() as session:
        project, context = await _project(session, page)
        view = await projects.project_view(session, page.principal, project, context)
        ref = str(project.project_id)
        policy = await service.get_policy(session, page.principal, ref, False, policy_id)
        runs, metrics, total = await service.list_executions(
            session, page.principal, ref, False, policy_id, None, None, request
        )
        tasks: list[Task] = []
        execution_id = None
        if chosen.isascii() and chosen.isdigit() and len(chosen) <= 18:
            execution_id = int(chosen)
        elif runs:
            execution_id = runs[0].id
        if execution_id is not None:
            tasks, _ = await service.list_tasks(
                session,
                page.principal,
                ref,
                False,
                policy_id,
                execution_id,
                None,
                None,
                PageRequest(1, 100),
            )
    base = project_url(project.name, TAB)
    return page.render(
        "jobs/webhook_history.html",
        tab=TAB,
        project=view,
        context=context,
        allowed=allowed_in(page, context),
        policy=policy,
        runs=[(r, jobs.loads(r.extra_attrs), metrics.get(r.id)) for r in runs],
        execution_id=execution_id,
        tasks=[(t, jobs.loads(t.extra_attrs)) for t in tasks],
        paging=pages_of(total, request),
        base=base,
        list_url=lambda **p: with_query(f"{base}/{policy_id}", **p),
    )


async def task_log(page: Page) -> Response:
    policy_id = page.path_int("policy")
    run_id, task_id = page.path_int("execution"), page.path_int("task")
    async with page.state.db.read() as session:
        project, _ = await _project(session, page)
        text = await service.task_log(
            session, page.principal, str(project.project_id), False, policy_id, run_id, task_id
        )
    back = f"{project_url(project.name, TAB)}/{policy_id}?execution={run_id}"
    return log_page(page, "webhook", task_id, text, back)


def routes(
    get: Callable[[str, Handler], Route], post: Callable[[str, Handler], Route]
) -> list[Route]:
    base = PREFIX + "/projects/{project}/" + TAB
    return [
        get(base, webhooks_tab),
        post(base, create_policy),
        post(base + "/update", update_policy),
        post(base + "/toggle", toggle_policy),
        post(base + "/delete", delete_policy),
        post(base + "/test", test_policy),
        get(base + "/{policy}", policy_history),
        get(base + "/{policy}/edit", edit_policy_page),
        get(base + "/{policy}/executions/{execution}/tasks/{task}/log", task_log),
    ]
