"""``/api/v2.0/projects/{project_name_or_id}/webhook/...`` (swagger tags ``webhook``,
``webhookjob``). Access is the project resource ``notification-policy``: project
admins manage policies, maintainers read them."""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from dockyard.errors import BadRequestError
from dockyard.http.api import (
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.http.egress import EgressPolicy
from dockyard.iam.policy import Action, Principal
from dockyard.jobs.schemas import Execution, Task, execution_view, task_view
from dockyard.webhooks import hooks, service
from dockyard.webhooks.schemas import (
    SupportedWebhookEventTypes,
    WebhookJob,
    WebhookLastTrigger,
    WebhookPolicy,
)

WEBHOOK = "/projects/{project_name_or_id}/webhook"
POLICIES = WEBHOOK + "/policies"
POLICY = POLICIES + "/{webhook_policy_id}"
EXECUTIONS = POLICY + "/executions"
TASKS = EXECUTIONS + "/{execution_id}/tasks"
LISTING = ("q", "sort", "page", "page_size")


async def _allowed(api: ApiRequest, action: Action) -> Principal:
    """Check access before reading the body, outside the write transaction."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        await service.check_access(session, principal, *api.project_ref(), action)
    return principal


def _egress(api: ApiRequest) -> EgressPolicy:
    """Where deliveries may go (``egress_*`` settings), to refuse a target up front."""
    return EgressPolicy.from_settings(api.state.settings)


def _policies_changed(api: ApiRequest) -> None:
    hook = hooks.find(api.state.registry.hooks.hooks)
    if hook is not None:
        hook.policies_changed()


@operation(
    "GET", POLICIES, "ListWebhookPoliciesOfProject", query=LISTING, response=list[WebhookPolicy]
)
async def list_webhook_policies(api: ApiRequest) -> Response:
    """The project's webhook policies (``q``/``sort``: id, name, enabled, creation_time,
    update_time)."""
    principal = await api.principal()
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_policies(
            session, principal, *api.project_ref(), api.query("q"), api.query("sort"), page
        )
    return paged_response(api, items, total, page)


@operation("POST", POLICIES, "CreateWebhookPolicyOfProject", body=WebhookPolicy, status=201)
async def create_webhook_policy(api: ApiRequest) -> Response:
    """Add a policy: the events it wants and the targets that hear of them."""
    principal = await _allowed(api, Action.CREATE)
    body = await api.json(WebhookPolicy)
    async with api.state.db.write() as session:
        policy_id = await service.create_policy(
            session, principal, *api.project_ref(), body, _egress(api)
        )
    _policies_changed(api)
    return created_response(f"{api.request.url.path.rstrip('/')}/{policy_id}")


@operation("GET", POLICY, "GetWebhookPolicyOfProject", response=WebhookPolicy)
async def get_webhook_policy(api: ApiRequest) -> Response:
    principal = await api.principal()
    policy_id = api.path_int("webhook_policy_id")
    async with api.state.db.read() as session:
        policy = await service.get_policy(session, principal, *api.project_ref(), policy_id)
    return json_response(policy)


@operation("PUT", POLICY, "UpdateWebhookPolicyOfProject", body=WebhookPolicy)
async def update_webhook_policy(api: ApiRequest) -> Response:
    """Change a policy; fields the body leaves out keep their value."""
    principal = await _allowed(api, Action.UPDATE)
    policy_id = api.path_int("webhook_policy_id")
    body = await api.json(WebhookPolicy)
    async with api.state.db.write() as session:
        await service.update_policy(
            session, principal, *api.project_ref(), policy_id, body, _egress(api)
        )
    _policies_changed(api)
    return empty_response()


@operation("DELETE", POLICY, "DeleteWebhookPolicyOfProject")
async def delete_webhook_policy(api: ApiRequest) -> Response:
    """Delete a policy and its delivery history."""
    principal = await api.principal()
    policy_id = api.path_int("webhook_policy_id")
    async with api.state.db.write() as session:
        await service.delete_policy(session, principal, *api.project_ref(), policy_id)
    _policies_changed(api)
    return empty_response()


@operation(
    "GET", EXECUTIONS, "ListExecutionsOfWebhookPolicy", query=LISTING, response=list[Execution]
)
async def list_webhook_executions(api: ApiRequest) -> Response:
    """The policy's executions (one per event), newest first."""
    principal = await api.principal()
    policy_id = api.path_int("webhook_policy_id")
    page = api.page()
    async with api.state.db.read() as session:
        rows, metrics, total = await service.list_executions(
            session,
            principal,
            *api.project_ref(),
            policy_id,
            api.query("q"),
            api.query("sort"),
            page,
        )
    return paged_response(api, [execution_view(r, metrics.get(r.id)) for r in rows], total, page)


@operation("GET", TASKS, "ListTasksOfWebhookExecution", query=LISTING, response=list[Task])
async def list_webhook_tasks(api: ApiRequest) -> Response:
    """The execution's tasks: one delivery per target."""
    principal = await api.principal()
    policy_id = api.path_int("webhook_policy_id")
    execution_id = api.path_int("execution_id")
    page = api.page()
    async with api.state.db.read() as session:
        rows, total = await service.list_tasks(
            session,
            principal,
            *api.project_ref(),
            policy_id,
            execution_id,
            api.query("q"),
            api.query("sort"),
            page,
        )
    return paged_response(api, [task_view(r) for r in rows], total, page)


@operation("GET", TASKS + "/{task_id}/log", "GetLogsOfWebhookTask", response=str)
async def get_webhook_task_log(api: ApiRequest) -> Response:
    """A delivery's log: each attempt, its answer and how long it took."""
    principal = await api.principal()
    policy_id = api.path_int("webhook_policy_id")
    execution_id = api.path_int("execution_id")
    task_id = api.path_int("task_id")
    async with api.state.db.read() as session:
        text = await service.task_log(
            session, principal, *api.project_ref(), policy_id, execution_id, task_id
        )
    return PlainTextResponse(text)


@operation("GET", WEBHOOK + "/lasttrigger", "LastTrigger", response=list[WebhookLastTrigger])
async def last_trigger(api: ApiRequest) -> Response:
    """Per policy and event type, when it last started a delivery (deprecated in Harbor)."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        items = await service.last_triggers(session, principal, *api.project_ref())
    return json_response(items)


@operation(
    "GET",
    WEBHOOK + "/jobs",
    "ListWebhookJobs",
    query=(*LISTING, "policy_id", "status"),
    response=list[WebhookJob],
)
async def list_webhook_jobs(api: ApiRequest) -> Response:
    """The policy's deliveries as Harbor's old ``WebhookJob`` (deprecated in Harbor)."""
    principal = await api.principal()
    if api.query("q") or api.query("sort"):
        raise BadRequestError("q and sort are not supported here; filter with status")
    # A policy_id that names no policy of the project lists no jobs (as a filter would);
    # Harbor's own console never sends anything else.
    raw = (api.query("policy_id") or "").strip()
    policy_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    statuses = [s for s in api.request.query_params.getlist("status") if s]
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_jobs(
            session, principal, *api.project_ref(), policy_id, statuses, page
        )
    return paged_response(api, items, total, page)


@operation(
    "GET", WEBHOOK + "/events", "GetSupportedEventTypes", response=SupportedWebhookEventTypes
)
async def get_supported_event_types(api: ApiRequest) -> Response:
    """The event types, notify types and payload formats a policy may use."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        result = await service.event_types_for(session, principal, *api.project_ref())
    return json_response(result)


operations: list[Operation] = [
    list_webhook_policies,
    create_webhook_policy,
    get_webhook_policy,
    update_webhook_policy,
    delete_webhook_policy,
    list_webhook_executions,
    list_webhook_tasks,
    get_webhook_task_log,
    last_trigger,
    list_webhook_jobs,
    get_supported_event_types,
]
