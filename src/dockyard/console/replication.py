"""Administration, Replications: rules (Harbor's replication policies), their
executions, each execution's tasks and each task's log.

Handlers call ``replication.service`` as ``/api/v2.0/replication/…`` does, after the
same ``can`` checks (``replication-policy`` for rules, ``replication`` for executions;
``require_system``). The rule form offers every field of a policy: the mode (push: this
registry is the source; pull: it is the destination) with the remote endpoint, the
destination namespace and flattening, one filter of each kind (name, tag, label,
resource, with ``matches``/``excludes``), the trigger (manual, scheduled with its cron,
event-based with deletions), override, enabled, speed, copy by chunk and single active
replication. A rule made through the API with more than one filter of a kind keeps the
others when edited here. A form the service refuses is shown again as typed, with the
reason above it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response
from starlette.routing import Route

from dockyard.console.admin import ADMIN, require_system
from dockyard.console.jobs import log_page
from dockyard.console.projects import pages_of
from dockyard.console.web import Handler, Page, whole_number, with_query
from dockyard.db.listing import PageRequest
from dockyard.errors import BadRequestError, ConflictError, NotFoundError
from dockyard.iam.policy import Action, Resource, can
from dockyard.remotes import service as remotes
from dockyard.remotes.schemas import Registry
from dockyard.replication import filters as flt
from dockyard.replication import hooks, service
from dockyard.replication.schemas import (
    ReplicationExecution,
    ReplicationFilter,
    ReplicationPolicy,
    ReplicationTrigger,
    ReplicationTriggerSettings,
)

REPLICATIONS = ADMIN + "/replications"
PUSH = "push"
PULL = "pull"
FLATTENING = (-1, 0, 1, 2, 3)
"""``dest_namespace_replace_count`` values the form offers (the API takes up to 16)."""
_ENDPOINTS_OFFERED = 500
_FORM_FILTERS = (flt.NAME, flt.TAG, flt.LABEL, flt.RESOURCE)


def _changed(page: Page) -> None:
    """Tell this process's event hook that rules changed (as the API's handlers do)."""
    hook = hooks.find(page.state.registry.hooks.hooks)
    if hook is not None:
        hook.policies_changed()


# --- the form ---------------------------------------------------------------------------------


def _first(filters: list[ReplicationFilter], kind: str) -> ReplicationFilter | None:
    return next((f for f in filters if f.type == kind), None)


def policy_values(policy: ReplicationPolicy) -> dict[str, Any]:
    """A stored rule as the form's fields."""
    pull = bool(policy.src_registry and policy.src_registry.id)
    remote = policy.src_registry if pull else policy.dest_registry
    filters = policy.filters or []
    values: dict[str, Any] = {
        "id": policy.id,
        "name": policy.name or "",
        "description": policy.description or "",
        "mode": PULL if pull else PUSH,
        "registry": str(remote.id) if remote and remote.id else "",
        "dest_namespace": policy.dest_namespace or "",
        "replace_count": str(
            -1
            if policy.dest_namespace_replace_count is None
            else policy.dest_namespace_replace_count
        ),
        "trigger": (policy.trigger.type if policy.trigger else None) or service.MANUAL,
        "cron": (
            policy.trigger.trigger_settings.cron
            if policy.trigger and policy.trigger.trigger_settings
            else ""
        )
        or "",
        "replicate_deletion": bool(policy.replicate_deletion),
        "override": policy.override is not False,
        "enabled": policy.enabled is not False,
        "speed": str(policy.speed if policy.speed is not None else -1),
        "copy_by_chunk": bool(policy.copy_by_chunk),
        "single_active_replication": bool(policy.single_active_replication),
        "resource": "",
        "kept_filters": 0,
    }
    for kind in (flt.NAME, flt.TAG, flt.LABEL):
        found = _first(filters, kind)
        value = found.value if found is not None else ""
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        values[f"{kind}_filter"] = str(value or "")
        values[f"{kind}_decoration"] = (found.decoration if found else None) or flt.MATCHES
    resource = _first(filters, flt.RESOURCE)
    values["resource"] = str(resource.value) if resource is not None else ""
    values["kept_filters"] = len(filters) - sum(
        1 for kind in _FORM_FILTERS if _first(filters, kind) is not None
    )
    return values


def _typed(page: Page, policy_id: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": policy_id,
        "kept_filters": 0,
        **{
            name: page.field(name)
            for name in (
                "name",
                "description",
                "mode",
                "registry",
                "dest_namespace",
                "replace_count",
                "trigger",
                "cron",
                "speed",
                "resource",
            )
        },
        **{
            name: page.checked(name)
            for name in (
                "replicate_deletion",
                "override",
                "enabled",
                "copy_by_chunk",
                "single_active_replication",
            )
        },
    }
    for kind in (flt.NAME, flt.TAG, flt.LABEL):
        values[f"{kind}_filter"] = page.field(f"{kind}_filter").strip()
        values[f"{kind}_decoration"] = page.field(f"{kind}_decoration", flt.MATCHES)
    return values


def _int(value: str, what: str, default: int) -> int:
    number = whole_number(value, what)
    return default if number is None else number


def _form_filters(values: Mapping[str, Any]) -> list[ReplicationFilter]:
    made: list[ReplicationFilter] = []
    for kind in (flt.NAME, flt.TAG):
        if values[f"{kind}_filter"]:
            made.append(
                ReplicationFilter(
                    type=kind,
                    value=values[f"{kind}_filter"],
                    decoration=values[f"{kind}_decoration"],
                )
            )
    labels = [name.strip() for name in str(values["label_filter"]).split(",") if name.strip()]
    if labels:
        made.append(
            ReplicationFilter(type=flt.LABEL, value=labels, decoration=values["label_decoration"])
        )
    if values["resource"]:
        made.append(ReplicationFilter(type=flt.RESOURCE, value=values["resource"]))
    return made


def _body(values: Mapping[str, Any], kept: list[ReplicationFilter]) -> ReplicationPolicy:
    """The form as a policy; ``kept`` are the stored filters the form does not show."""
    mode = values["mode"]
    if mode not in (PUSH, PULL):
        raise BadRequestError("choose push-based or pull-based replication")
    raw = str(values["registry"]).strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) == 0:
        raise BadRequestError(
            "choose the destination registry" if mode == PUSH else "choose the source registry"
        )
    remote = Registry(id=int(raw))
    trigger = values["trigger"] or service.MANUAL
    cron = str(values["cron"]).strip()
    return ReplicationPolicy(
        name=values["name"],
        description=values["description"],
        src_registry=remote if mode == PULL else None,
        dest_registry=remote if mode == PUSH else None,
        dest_namespace=str(values["dest_namespace"]).strip(),
        dest_namespace_replace_count=_int(str(values["replace_count"]), "the flattening level", -1),
        trigger=ReplicationTrigger(
            type=trigger,
            trigger_settings=ReplicationTriggerSettings(
                cron=cron if trigger == service.SCHEDULED else ""
            ),
        ),
        filters=[*_form_filters(values), *kept],
        replicate_deletion=bool(values["replicate_deletion"]),
        override=bool(values["override"]),
        enabled=bool(values["enabled"]),
        speed=_int(str(values["speed"]), "the bandwidth (KB/s)", -1),
        copy_by_chunk=bool(values["copy_by_chunk"]),
        single_active_replication=bool(values["single_active_replication"]),
    )


def _kept(stored: list[ReplicationFilter]) -> list[ReplicationFilter]:
    """The stored filters the form does not show: all but the first of each kind."""
    shown = {id(f) for kind in _FORM_FILTERS if (f := _first(stored, kind)) is not None}
    return [f for f in stored if id(f) not in shown]


async def _endpoints(session: AsyncSession) -> list[Registry]:
    found, _ = await remotes.list_endpoints(
        session, None, "name", None, PageRequest(1, _ENDPOINTS_OFFERED)
    )
    return found


async def _form_page(
    page: Page, values: Mapping[str, Any], *, error: str = "", status: int = 200
) -> Response:
    async with page.state.db.read() as session:
        endpoints = await _endpoints(session)
    return page.render(
        "admin/replication_form.html",
        status=status,
        section="replications",
        v=values,
        endpoints=endpoints,
        flattening=FLATTENING,
        triggers=service.TRIGGER_TYPES,
        error=error,
    )


# --- rules ------------------------------------------------------------------------------------


async def rule_list(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.REPLICATION_POLICY)
    search = page.query("q").strip()[:255]
    request = page.page_request()
    async with page.state.db.read() as session:
        found, total = await service.list_policies(session, None, "name", search, request)
    return page.render(
        "admin/replications.html",
        section="replications",
        rules=found,
        paging=pages_of(total, request),
        search=search,
        may_create=can(page.principal, Action.CREATE, Resource.REPLICATION_POLICY, None),
        may_update=can(page.principal, Action.UPDATE, Resource.REPLICATION_POLICY, None),
        may_delete=can(page.principal, Action.DELETE, Resource.REPLICATION_POLICY, None),
        may_run=can(page.principal, Action.CREATE, Resource.REPLICATION, None),
        list_url=lambda **p: with_query(REPLICATIONS, q=search, **p),
    )


async def new_rule(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.REPLICATION_POLICY)
    return await _form_page(page, policy_values(ReplicationPolicy()))


async def edit_rule(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.REPLICATION_POLICY)
    policy_id = page.path_int("policy")
    async with page.state.db.read() as session:
        policy = await service.get_policy(session, policy_id)
    return await _form_page(page, policy_values(policy))


async def create_rule(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.REPLICATION_POLICY)
    values = _typed(page, None)
    try:
        body = _body(values, [])
        async with page.state.db.write() as session:
            await service.create_policy(session, page.actor(), body)
    except (BadRequestError, ConflictError) as exc:
        return await _form_page(page, values, error=exc.message, status=400)
    _changed(page)
    return page.redirect(REPLICATIONS, "flash.replication_created", name=str(values["name"]))


async def update_rule(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.REPLICATION_POLICY)
    policy_id = page.id_field("policy", "a replication rule's id")
    values = _typed(page, policy_id)
    try:
        async with page.state.db.write() as session:
            stored = await service.get_policy(session, policy_id)
            kept = _kept(stored.filters or [])
            values["kept_filters"] = len(kept)
            await service.update_policy(session, page.actor(), policy_id, _body(values, kept))
    except (BadRequestError, ConflictError) as exc:
        return await _form_page(page, values, error=exc.message, status=400)
    _changed(page)
    return page.redirect(REPLICATIONS, "flash.replication_saved", name=str(values["name"]))


async def toggle_rule(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.REPLICATION_POLICY)
    policy_id = page.id_field("policy", "a replication rule's id")
    enable = page.field("enabled") == "true"
    async with page.state.db.write() as session:
        stored = await service.get_policy(session, policy_id)
        stored.enabled = enable
        await service.update_policy(session, page.actor(), policy_id, stored)
    _changed(page)
    flash = "flash.replication_enabled" if enable else "flash.replication_disabled"
    return page.redirect(REPLICATIONS, flash, name=stored.name or "")


async def delete_rule(page: Page) -> Response:
    require_system(page, Action.DELETE, Resource.REPLICATION_POLICY)
    policy_id = page.id_field("policy", "a replication rule's id")
    async with page.state.db.write() as session:
        stored = await service.get_policy(session, policy_id)
        await service.delete_policy(session, page.actor(), policy_id)
    _changed(page)
    return page.redirect(REPLICATIONS, "flash.replication_deleted", name=stored.name or "")


async def run_rule(page: Page) -> Response:
    """Replicate now: a manual execution, then the rule's executions page."""
    require_system(page, Action.CREATE, Resource.REPLICATION)
    policy_id = page.id_field("policy", "a replication rule's id")
    async with page.state.db.write() as session:
        execution_id = await service.start_manual(session, page.actor(), policy_id)
    return page.redirect(
        f"{REPLICATIONS}/{policy_id}", "flash.replication_started", id=str(execution_id)
    )


# --- executions -------------------------------------------------------------------------------


async def executions(page: Page) -> Response:
    """A rule's executions, newest first, with their task counts."""
    require_system(page, Action.LIST, Resource.REPLICATION)
    policy_id = page.path_int("policy")
    request = page.page_request()
    async with page.state.db.read() as session:
        policy = await service.get_policy(session, policy_id)
        runs, total = await service.list_executions(session, request, policy_id, None, None)
    base = f"{REPLICATIONS}/{policy_id}"
    return page.render(
        "admin/replication_executions.html",
        section="replications",
        policy=policy,
        runs=runs,
        paging=pages_of(total, request),
        base=base,
        may_run=can(page.principal, Action.CREATE, Resource.REPLICATION, None),
        list_url=lambda **p: with_query(base, **p),
    )


async def _execution_of(
    session: AsyncSession, policy_id: int, execution_id: int
) -> ReplicationExecution:
    execution = await service.get_execution(session, execution_id)
    if execution.policy_id != policy_id:
        raise NotFoundError(f"replication execution {execution_id} is not rule {policy_id}'s")
    return execution


async def stop_execution(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.REPLICATION)
    policy_id = page.id_field("policy", "a replication rule's id")
    execution_id = page.id_field("execution", "an execution's id")
    async with page.state.db.write() as session:
        await _execution_of(session, policy_id, execution_id)
        await service.stop_execution(session, page.actor(), execution_id)
    return page.redirect(
        f"{REPLICATIONS}/{policy_id}", "flash.run_stop_requested", id=str(execution_id)
    )


async def tasks(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.REPLICATION)
    policy_id, execution_id = page.path_int("policy"), page.path_int("execution")
    request = page.page_request()
    status = page.query("status")
    async with page.state.db.read() as session:
        policy = await service.get_policy(session, policy_id)
        execution = await _execution_of(session, policy_id, execution_id)
        found, total = await service.list_tasks(
            session, execution_id, request, status or None, None
        )
    base = f"{REPLICATIONS}/{policy_id}/executions/{execution_id}"
    return page.render(
        "admin/replication_tasks.html",
        section="replications",
        policy=policy,
        execution=execution,
        tasks=found,
        status_filter=status,
        paging=pages_of(total, request),
        base=base,
        rule_url=f"{REPLICATIONS}/{policy_id}",
        may_run=can(page.principal, Action.CREATE, Resource.REPLICATION, None),
        list_url=lambda **p: with_query(base, status=status, **p),
    )


async def task_log(page: Page) -> Response:
    require_system(page, Action.READ, Resource.REPLICATION)
    policy_id, execution_id = page.path_int("policy"), page.path_int("execution")
    task_id = page.path_int("task")
    async with page.state.db.read() as session:
        await _execution_of(session, policy_id, execution_id)
        text = await service.task_log(session, execution_id, task_id)
    back = f"{REPLICATIONS}/{policy_id}/executions/{execution_id}"
    return log_page(page, "replication", task_id, text, back)


def routes(
    get: Callable[[str, Handler], Route], post: Callable[[str, Handler], Route]
) -> list[Route]:
    """POST paths carry no ids (the form does); fixed paths before ``{policy}``."""
    return [
        get(REPLICATIONS, rule_list),
        post(REPLICATIONS, create_rule),
        get(REPLICATIONS + "/new", new_rule),
        post(REPLICATIONS + "/update", update_rule),
        post(REPLICATIONS + "/toggle", toggle_rule),
        post(REPLICATIONS + "/delete", delete_rule),
        post(REPLICATIONS + "/run", run_rule),
        post(REPLICATIONS + "/stop", stop_execution),
        get(REPLICATIONS + "/{policy}", executions),
        get(REPLICATIONS + "/{policy}/edit", edit_rule),
        get(REPLICATIONS + "/{policy}/executions/{execution}", tasks),
        get(REPLICATIONS + "/{policy}/executions/{execution}/tasks/{task}/log", task_log),
    ]
