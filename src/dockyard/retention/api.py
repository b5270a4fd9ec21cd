"""``/api/v2.0/retentions`` (swagger tag ``Retention``): tag retention policies and runs."""

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
from dockyard.iam.policy import Action, Principal
from dockyard.retention import service
from dockyard.retention.schemas import (
    OperateRetentionBody,
    RetentionExecution,
    RetentionExecutionTask,
    RetentionMetadata,
    RetentionPolicy,
    TriggerRetentionBody,
)

POLICIES = "/retentions"
POLICY = POLICIES + "/{id}"
EXECUTIONS = POLICY + "/executions"
EXECUTION = EXECUTIONS + "/{eid}"
TASKS = EXECUTION + "/tasks"
TASK = TASKS + "/{tid}"


async def _allowed(api: ApiRequest, action: Action) -> tuple[Principal, int]:
    """Check access before reading a body, outside the write transaction."""
    principal = await api.principal()
    policy_id = api.path_int("id")
    async with api.state.db.read() as session:
        await service.check_access(session, principal, policy_id, action)
    return principal, policy_id


@operation("GET", "/retentions/metadatas", "getRentenitionMetadata", response=RetentionMetadata)
async def get_retention_metadata(api: ApiRequest) -> Response:
    """The rule templates and the selectors a rule may use (for signed-in callers)."""
    await api.user()
    return json_response(service.metadata())


@operation("POST", POLICIES, "createRetention", body=RetentionPolicy, status=201)
async def create_retention(api: ApiRequest) -> Response:
    """Create the policy of the project ``scope.ref`` names (one per project)."""
    principal = await api.principal()
    actor = await api.actor()
    body = await api.json(RetentionPolicy)
    async with api.state.db.read() as session:
        await service.check_create_access(
            session, principal, body.scope.ref if body.scope is not None else None
        )
    async with api.state.db.write() as session:
        policy_id = await service.create_policy(session, principal, actor, body)
    return created_response(f"{api.request.url.path.rstrip('/')}/{policy_id}")


@operation("GET", POLICY, "getRetention", response=RetentionPolicy)
async def get_retention(api: ApiRequest) -> Response:
    principal = await api.principal()
    policy_id = api.path_int("id")
    async with api.state.db.read() as session:
        policy = await service.get_policy(session, principal, policy_id)
    return json_response(policy)


@operation("PUT", POLICY, "updateRetention", body=RetentionPolicy)
async def update_retention(api: ApiRequest) -> Response:
    """Replace the policy's rules and trigger (its schedule follows)."""
    principal, policy_id = await _allowed(api, Action.UPDATE)
    actor = await api.actor()
    body = await api.json(RetentionPolicy)
    async with api.state.db.write() as session:
        await service.update_policy(session, principal, actor, policy_id, body)
    return empty_response()


@operation("DELETE", POLICY, "deleteRetention")
async def delete_retention(api: ApiRequest) -> Response:
    """Delete the policy and its schedule; the project's tags stay as they are."""
    principal = await api.principal()
    actor = await api.actor()
    policy_id = api.path_int("id")
    async with api.state.db.write() as session:
        await service.delete_policy(session, principal, actor, policy_id)
    return empty_response()


@operation("POST", EXECUTIONS, "triggerRetentionExecution", body=TriggerRetentionBody, status=201)
async def trigger_retention_execution(api: ApiRequest) -> Response:
    """Run the policy now (``dry_run``: judge and log, remove nothing). A policy that does
    not exist (or that the caller may not see) is a 400 here, as Harbor answers."""
    try:
        principal, policy_id = await _allowed(api, Action.UPDATE)
        actor = await api.actor()
        body = await api.json(TriggerRetentionBody)
        async with api.state.db.write() as session:
            execution_id = await service.trigger_execution(
                session, principal, actor, policy_id, bool(body.dry_run)
            )
    except service.RetentionNotFoundError as exc:
        raise BadRequestError(exc.message) from None
    return created_response(f"{api.request.url.path.rstrip('/')}/{execution_id}")


@operation(
    "GET",
    EXECUTIONS,
    "listRetentionExecutions",
    query=("page", "page_size"),
    response=list[RetentionExecution],
)
async def list_retention_executions(api: ApiRequest) -> Response:
    principal = await api.principal()
    policy_id = api.path_int("id")
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_executions(session, principal, policy_id, page)
    return paged_response(api, items, total, page)


@operation("PATCH", EXECUTION, "operateRetentionExecution", body=OperateRetentionBody)
async def operate_retention_execution(api: ApiRequest) -> Response:
    """Stop an execution: waiting tasks stop now, running ones at their next checkpoint."""
    principal, policy_id = await _allowed(api, Action.UPDATE)
    execution_id = api.path_int("eid")
    body = await api.json(OperateRetentionBody)
    async with api.state.db.write() as session:
        await service.stop_execution(session, principal, policy_id, execution_id, body.action or "")
    return empty_response()


@operation(
    "GET",
    TASKS,
    "listRetentionTasks",
    query=("page", "page_size"),
    response=list[RetentionExecutionTask],
)
async def list_retention_tasks(api: ApiRequest) -> Response:
    """The execution's tasks, one per repository, with how many artifacts each kept."""
    principal = await api.principal()
    policy_id = api.path_int("id")
    execution_id = api.path_int("eid")
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_tasks(session, principal, policy_id, execution_id, page)
    return paged_response(api, items, total, page)


@operation("GET", TASK, "getRetentionTaskLog", response=str)
async def get_retention_task_log(api: ApiRequest) -> Response:
    """Every decision of the task (kept, removed, immutable), one per line."""
    principal = await api.principal()
    policy_id = api.path_int("id")
    execution_id = api.path_int("eid")
    task_id = api.path_int("tid")
    async with api.state.db.read() as session:
        text = await service.task_log(session, principal, policy_id, execution_id, task_id)
    return PlainTextResponse(text)


operations: list[Operation] = [
    get_retention_metadata,
    create_retention,
    get_retention,
    update_retention,
    delete_retention,
    trigger_retention_execution,
    list_retention_executions,
    operate_retention_execution,
    list_retention_tasks,
    get_retention_task_log,
]
