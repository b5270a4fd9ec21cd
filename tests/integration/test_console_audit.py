"""The console's audit pages (system audit log, a project's logs) on SQLite and PostgreSQL:
each event's result and reason are shown; filters by a date range (UTC days, both
included), by operation and result chosen from lists, and by user or resource."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client

from dockyard.audit import hooks as audit_hooks
from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState

AUDIT = "/harbor/admin/audit-logs"


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as client:
        await sign_in(client, "admin", ADMIN_PASSWORD)
        yield client


def _uid(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:10]}"


def _rows(page: httpx.Response) -> list[list[str]]:
    """The audit table's rows as their cells' text."""
    assert page.status_code == 200, page.text
    body = page.text.split('<table class="audit-log">', 1)[1].split("</table>", 1)[0]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        if len(cells) == 7:
            rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


async def _seed(state: AppState, resource: str, project_id: int = 0) -> None:
    """Three events of ``resource`` on 4, 5 (last microsecond of the day) and 6 March
    2020, UTC: a create, a refused delete with its reason, an update."""
    times = [
        ("create", True, "create thing", datetime(2020, 3, 4, 0, 0, tzinfo=UTC)),
        (
            "delete",
            False,
            "refused: the thing is immutable",
            datetime(2020, 3, 5, 23, 59, 59, 999999, tzinfo=UTC),
        ),
        ("update", True, "rename thing", datetime(2020, 3, 6, 12, 0, tzinfo=UTC)),
    ]
    async with state.db.write() as session:
        for operation, ok, description, when in times:
            session.add(
                AuditLog(
                    project_id=project_id,
                    operation=operation,
                    operation_description=description,
                    operation_result=ok,
                    resource_type="thing",
                    resource=resource,
                    username="seeder",
                    client_ip="127.0.0.1",
                    op_time=when,
                )
            )


async def test_the_page_shows_results_and_reasons_and_filters_by_date_operation_and_result(
    console: httpx.AsyncClient, state: AppState
) -> None:
    resource = _uid("thing")
    await _seed(state, resource)

    async def shown(**params: str) -> list[tuple[str, str, str]]:
        page = await console.get(AUDIT, params={"resource": resource, **params})
        return [(r[2], r[5], r[6]) for r in _rows(page)]

    assert await shown() == [
        ("update", "Succeeded", "rename thing"),
        ("delete", "Refused", "refused: the thing is immutable"),
        ("create", "Succeeded", "create thing"),
    ]
    # A date range is whole UTC days, both ends included; either end may be open.
    assert [r[0] for r in await shown(since="2020-03-05", until="2020-03-05")] == ["delete"]
    assert [r[0] for r in await shown(since="2020-03-05")] == ["update", "delete"]
    assert [r[0] for r in await shown(until="2020-03-04")] == ["create"]
    assert [r[0] for r in await shown(since="2020-03-06", until="2020-03-04")] == [
        "update",
        "delete",
        "create",
    ]  # ends given the wrong way round are swapped
    assert await shown(since="2020-03-07") == []
    assert len(await shown(since="not-a-date", until="2020-02-30")) == 3  # ignored
    # Operation and result come from lists.
    assert [r[0] for r in await shown(operation="update")] == ["update"]
    assert [r[0] for r in await shown(result="failed")] == ["delete"]
    assert [r[0] for r in await shown(result="ok", since="2020-03-05")] == ["update"]
    assert len(await shown(operation="drop table", result="maybe")) == 3  # not in the lists

    page = await console.get(AUDIT, params={"operation": "delete", "since": "2020-03-05"})
    form = page.text.split('class="toolbar audit-filters"', 1)[1].split("</form>", 1)[0]
    assert re.search(r'<select id="f-operation" name="operation">', form)
    assert not re.search(r'<input[^>]*name="operation"', form)
    options = re.findall(r'<option value="([a-z]*)"', form.split('name="operation"', 1)[1])
    assert options[:6] == ["", "create", "delete", "login", "pull", "update"]
    assert '<option value="delete" selected>' in form
    assert 'type="date" value="2020-03-05"' in form


async def test_a_refused_sign_in_shows_with_its_reason(
    app: Starlette, console: httpx.AsyncClient, state: AppState
) -> None:
    name = _uid("nobody")
    async with make_client(app) as client:
        refused = await client.post("/c/login", data={"principal": name, "password": "N0tIt1234"})
    assert refused.status_code == 401
    hooks = getattr(state.registry.hooks, "hooks", ())
    await next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks)).flush()
    rows = _rows(await console.get(AUDIT, params={"username": name, "result": "failed"}))
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (name, "login", "user", name, "Refused")
    ]
    assert rows[0][6] == "login through the console (refused: invalid username or password)"


async def test_a_projects_logs_show_reasons_and_take_the_same_filters(
    console: httpx.AsyncClient, admin: httpx.AsyncClient, state: AppState
) -> None:
    project = _uid("lp")
    response = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert response.status_code == 201
    project_id = int(response.headers["location"].rsplit("/", 1)[1])
    resource = f"{project}/thing"
    await _seed(state, resource, project_id)
    logs = f"/harbor/projects/{project}/logs"
    rows = _rows(await console.get(logs, params={"resource": resource, "result": "failed"}))
    assert [(r[2], r[6]) for r in rows] == [("delete", "refused: the thing is immutable")]
    rows = _rows(await console.get(logs, params={"until": "2020-03-05", "operation": "create"}))
    assert [(r[2], r[4]) for r in rows] == [("create", resource)]


async def test_chinese_labels(console: httpx.AsyncClient, state: AppState) -> None:
    resource = _uid("thing")
    await _seed(state, resource)
    page = await console.get(
        AUDIT,
        params={"resource": resource, "result": "failed"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert [r[5] for r in _rows(page)] == ["被拒绝"]
    assert "开始日期" in page.text and "详情" in page.text and ">删除</option>" in page.text


async def test_paging_keeps_the_filters(console: httpx.AsyncClient, state: AppState) -> None:
    resource = _uid("paged")
    for _ in range(6):  # 18 events: two pages of 15
        await _seed(state, resource)
    page = await console.get(AUDIT, params={"resource": resource, "since": "2020-03-04"})
    assert len(_rows(page)) == 15
    found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
    assert found is not None
    following = await console.get(html.unescape(found.group(1)))
    rows = _rows(following)
    assert len(rows) == 3 and {r[4] for r in rows} == {resource}
    assert f"resource={resource}" in found.group(1) and "since=2020-03-04" in found.group(1)
