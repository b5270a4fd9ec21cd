"""``/api/v2.0/projects/{project_name_or_id}/immutabletagrules`` (swagger tag ``immutable``)."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.http.api import (
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    operation,
    paged_response,
)
from dockyard.iam.policy import Action, Principal
from dockyard.immutability import service
from dockyard.immutability.schemas import ImmutableRule

RULES = "/projects/{project_name_or_id}/immutabletagrules"
RULE = RULES + "/{immutable_rule_id}"


async def _allowed(api: ApiRequest, action: Action, rule_id: int | None = None) -> Principal:
    """Check access (and that the rule exists) before reading the body, outside the write
    transaction."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        await service.check_access(session, principal, *api.project_ref(), action, rule_id)
    return principal


@operation(
    "GET",
    RULES,
    "ListImmuRules",
    query=("q", "sort", "page", "page_size"),
    response=list[ImmutableRule],
)
async def list_immu_rules(api: ApiRequest) -> Response:
    """The project's immutable tag rules (``q``/``sort`` keys: id, priority, disabled,
    creation_time)."""
    principal = await api.principal()
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_rules(
            session, principal, *api.project_ref(), api.query("q"), api.query("sort"), page
        )
    return paged_response(api, items, total, page)


@operation("POST", RULES, "CreateImmuRule", body=ImmutableRule, status=201)
async def create_immu_rule(api: ApiRequest) -> Response:
    """Add a rule: tags its selectors pick may be pushed once, never moved or deleted."""
    principal = await _allowed(api, Action.CREATE)
    actor = await api.actor()
    body = await api.json(ImmutableRule)
    async with api.state.db.write() as session:
        rule_id = await service.create_rule(session, principal, actor, *api.project_ref(), body)
    # As Harbor: the rule under the path the caller used (project name or id).
    return created_response(f"{api.request.url.path.rstrip('/')}/{rule_id}")


@operation("PUT", RULE, "UpdateImmuRule", body=ImmutableRule)
async def update_immu_rule(api: ApiRequest) -> Response:
    """Change a rule's selectors or priority, or enable/disable it (``disabled``)."""
    rule_id = api.path_int("immutable_rule_id")
    principal = await _allowed(api, Action.UPDATE, rule_id)
    actor = await api.actor()
    body = await api.json(ImmutableRule)
    async with api.state.db.write() as session:
        await service.update_rule(session, principal, actor, *api.project_ref(), rule_id, body)
    return empty_response()


@operation("DELETE", RULE, "DeleteImmuRule")
async def delete_immu_rule(api: ApiRequest) -> Response:
    """Delete a rule; the tags it protected may move and go again."""
    principal = await api.principal()
    actor = await api.actor()
    rule_id = api.path_int("immutable_rule_id")
    async with api.state.db.write() as session:
        await service.delete_rule(session, principal, actor, *api.project_ref(), rule_id)
    return empty_response()


operations: list[Operation] = [
    list_immu_rules,
    create_immu_rule,
    update_immu_rule,
    delete_immu_rule,
]
