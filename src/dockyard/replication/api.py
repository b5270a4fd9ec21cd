"""``/api/v2.0/replication/policies`` and ``/replication/executions`` (swagger tag
``replication``). Policies are the system resource ``replication-policy``, executions
``replication`` (system administrators, and robots granted them; RBAC.md)."""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.iam.policy import Action, Resource, can
from dockyard.replication import hooks, service
from dockyard.replication.schemas import (
    ReplicationExecution,
    ReplicationPolicy,
    ReplicationTask,
    StartReplicationExecution,
)

POLICIES = "/replication/policies"
POLICY = POLICIES + "/{id}"
EXECUTIONS = "/replication/executions"
EXECUTION = EXECUTIONS + "/{id}"
TASKS = EXECUTION + "/tasks"
TASK_LOG = TASKS + "/{task_id}/log"


async def _require(api: ApiRequest, resource: Resource, action: Action, what: str) -> None:
    principal = await api.principal()
    await api.require(can(principal, action, resource, None), what)


def _policies_changed(api: ApiRequest) -> None:
    """Tell this process's event hook that policies changed (other nodes see it within
    seconds, ``replication/hooks.py``)."""
    hook = hooks.find(api.state.registry.hooks.hooks)
    if hook is not None:
        hook.policies_changed()


@operation(
    "GET",
    POLICIES,
    "listReplicationPolicies",
    query=("q", "sort", "page", "page_size", "name"),
    response=list[ReplicationPolicy],
)
async def list_replication_policies(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION_POLICY, Action.LIST, "list replication policies")
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_policies(
            session, api.query("q"), api.query("sort"), api.query("name"), page
        )
    return paged_response(api, items, total, page)


@operation("POST", POLICIES, "createReplicationPolicy", body=ReplicationPolicy, status=201)
async def create_replication_policy(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION_POLICY, Action.CREATE, "create replication policies")
    body = await api.json(ReplicationPolicy)
    async with api.state.db.write() as session:
        policy_id = await service.create_policy(session, await api.actor(), body)
    _policies_changed(api)
    return created_response(f"{API_PREFIX}{POLICIES}/{policy_id}")


@operation("GET", POLICY, "getReplicationPolicy", response=ReplicationPolicy)
async def get_replication_policy(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION_POLICY, Action.READ, "read replication policies")
    async with api.state.db.read() as session:
        policy = await service.get_policy(session, api.path_int("id"))
    return json_response(policy)


@operation("PUT", POLICY, "updateReplicationPolicy", body=ReplicationPolicy)
async def update_replication_policy(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION_POLICY, Action.UPDATE, "update replication policies")
    policy_id = api.path_int("id")
    body = await api.json(ReplicationPolicy)
    async with api.state.db.write() as session:
        await service.update_policy(session, await api.actor(), policy_id, body)
    _policies_changed(api)
    return empty_response()


@operation("DELETE", POLICY, "deleteReplicationPolicy")
async def delete_replication_policy(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION_POLICY, Action.DELETE, "delete replication policies")
    async with api.state.db.write() as session:
        await service.delete_policy(session, await api.actor(), api.path_int("id"))
    _policies_changed(api)
    return empty_response()


@operation(
    "GET",
    EXECUTIONS,
    "listReplicationExecutions",
    query=("sort", "page", "page_size", "policy_id", "status", "trigger"),
    response=list[ReplicationExecution],
)
async def list_replication_executions(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION, Action.LIST, "list replication executions")
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_executions(
            session, page, api.query_int("policy_id"), api.query("status"), api.query("trigger")
        )
    return paged_response(api, items, total, page)


@operation("POST", EXECUTIONS, "startReplication", body=StartReplicationExecution, status=201)
async def start_replication(api: ApiRequest) -> Response:
    """Run a policy now (a policy that does not exist is a 400, as Harbor answers)."""
    await _require(api, Resource.REPLICATION, Action.CREATE, "start replications")
    body = await api.json(StartReplicationExecution)
    async with api.state.db.write() as session:
        execution_id = await service.start_manual(session, await api.actor(), body.policy_id)
    return created_response(f"{API_PREFIX}{EXECUTIONS}/{execution_id}")


@operation("GET", EXECUTION, "getReplicationExecution", response=ReplicationExecution)
async def get_replication_execution(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION, Action.READ, "read replication executions")
    async with api.state.db.read() as session:
        execution = await service.get_execution(session, api.path_int("id"))
    return json_response(execution)


@operation("PUT", EXECUTION, "stopReplication")
async def stop_replication(api: ApiRequest) -> Response:
    """Stop: waiting tasks stop now, running ones at their next checkpoint."""
    await _require(api, Resource.REPLICATION, Action.CREATE, "stop replications")
    async with api.state.db.write() as session:
        await service.stop_execution(session, await api.actor(), api.path_int("id"))
    return empty_response()


@operation(
    "GET",
    TASKS,
    "listReplicationTasks",
    query=("sort", "page", "page_size", "status", "resource_type"),
    response=list[ReplicationTask],
)
async def list_replication_tasks(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION, Action.LIST, "list replication tasks")
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_tasks(
            session, api.path_int("id"), page, api.query("status"), api.query("resource_type")
        )
    return paged_response(api, items, total, page)


@operation("GET", TASK_LOG, "getReplicationLog", response=str)
async def get_replication_log(api: ApiRequest) -> Response:
    await _require(api, Resource.REPLICATION, Action.READ, "read replication logs")
    async with api.state.db.read() as session:
        text = await service.task_log(session, api.path_int("id"), api.path_int("task_id"))
    return PlainTextResponse(text)


operations: list[Operation] = [
    list_replication_policies,
    create_replication_policy,
    get_replication_policy,
    update_replication_policy,
    delete_replication_policy,
    list_replication_executions,
    start_replication,
    get_replication_execution,
    stop_replication,
    list_replication_tasks,
    get_replication_log,
]
