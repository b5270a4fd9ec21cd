"""``/api/v2.0/quotas``: project storage quotas, for administrators (Harbor's swagger).

Project members read their own project's quota in ``getProjectSummary``.
"""

from __future__ import annotations

from starlette.responses import Response

from dockyard.errors import NotFoundError
from dockyard.http.api import (
    ApiRequest,
    Operation,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.iam.policy import Action
from dockyard.quota import service
from dockyard.quota.schemas import Quota, QuotaUpdateReq


def _quota_id(api: ApiRequest) -> int:
    """The ``{id}`` segment; anything but a quota id names no quota (404: ``getQuota``
    declares no 400)."""
    raw = api.path("id")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"quota {raw[:64]!r} not found")
    return int(raw)


@operation(
    "GET",
    "/quotas",
    "listQuotas",
    query=("page", "page_size", "reference", "reference_id", "sort"),
    response=list[Quota],
)
async def list_quotas(api: ApiRequest) -> Response:
    """Every project's quota, filtered by reference, sorted and paged."""
    query = service.QuotaQuery(
        reference=api.query("reference"),
        reference_id=api.query("reference_id"),
        sort=api.query("sort"),
    )
    page = api.page()
    principal = await api.principal()
    async with api.state.db.read() as session:
        quotas, total = await service.list_quotas(session, principal, query, page)
        missing = await service.needs_backfill(session)
    if missing:
        # Projects from before quotas existed get their rows on first sight.
        async with api.state.db.write() as session:
            await service.backfill(session)
        async with api.state.db.read() as session:
            quotas, total = await service.list_quotas(session, principal, query, page)
    return paged_response(api, quotas, total, page)


@operation("GET", "/quotas/{id}", "getQuota", response=Quota)
async def get_quota(api: ApiRequest) -> Response:
    """One quota, by id."""
    principal = await api.principal()
    service.require_quota(principal, Action.READ)
    quota_id = _quota_id(api)
    async with api.state.db.read() as session:
        quota = await service.get_quota(session, principal, quota_id)
    return json_response(quota)


@operation("PUT", "/quotas/{id}", "updateQuota", body=QuotaUpdateReq)
async def update_quota(api: ApiRequest) -> Response:
    """Set a project's storage limit (-1 unlimited)."""
    principal = await api.user()
    service.require_quota(principal, Action.UPDATE)
    quota_id = _quota_id(api)
    actor = await api.actor()
    req = await api.json(QuotaUpdateReq)
    async with api.state.db.write() as session:
        await service.update_quota(session, principal, actor, quota_id, req)
    return empty_response()


operations: list[Operation] = [list_quotas, get_quota, update_quota]
