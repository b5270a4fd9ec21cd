"""The business gauges at 10,000 projects: the same few aggregate statements, never one per
project, and a scrape inside the cache window reads nothing at all. And an app alone in its
process (no multiprocess directory) counts its requests in memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, event, insert, select
from tests.integration.conftest import make_client

from dockyard.app import create_app
from dockyard.http.state import AppState
from dockyard.metrics import multiprocess
from dockyard.metrics.service import BusinessMetrics, read_snapshot
from dockyard.projects.models import Project, ProjectMetadata
from dockyard.quota.models import Quota
from dockyard.registry.models import Repository
from dockyard.settings import Settings

PROJECTS = 10_000


@pytest.fixture(scope="module")
async def many_projects(state: AppState) -> AsyncIterator[str]:
    """PROJECTS projects named <prefix>-<n>, each with a quota; every tenth public with a
    repository pulled n times. Removed afterwards (other tests list projects)."""
    prefix = "metrics-" + uuid.uuid4().hex[:8]
    async with state.db.write() as session:
        await session.execute(
            insert(Project), [{"name": f"{prefix}-{n}", "owner_id": 1} for n in range(PROJECTS)]
        )
        rows = await session.execute(
            select(Project.name, Project.project_id).where(Project.name.like(prefix + "-%"))
        )
        ids = {str(name): int(project_id) for name, project_id in rows}
        await session.execute(
            insert(Quota),
            [
                {"reference_id": str(ids[f"{prefix}-{n}"]), "hard_storage": n, "used_storage": 1}
                for n in range(PROJECTS)
            ],
        )
        tenth = range(0, PROJECTS, 10)
        await session.execute(
            insert(ProjectMetadata),
            [
                {"project_id": ids[f"{prefix}-{n}"], "name": "public", "value": "true"}
                for n in tenth
            ],
        )
        await session.execute(
            insert(Repository),
            [
                {"name": f"{prefix}-{n}/app", "project_id": ids[f"{prefix}-{n}"], "pull_count": n}
                for n in tenth
            ],
        )
    try:
        yield prefix
    finally:
        async with state.db.write() as session:
            chosen = list(ids.values())
            for start in range(0, len(chosen), 1000):
                batch = chosen[start : start + 1000]
                await session.execute(delete(Quota).where(Quota.reference_id.in_(map(str, batch))))
                await session.execute(delete(Repository).where(Repository.project_id.in_(batch)))
                await session.execute(
                    delete(ProjectMetadata).where(ProjectMetadata.project_id.in_(batch))
                )
                await session.execute(delete(Project).where(Project.project_id.in_(batch)))


async def test_ten_thousand_projects_cost_a_handful_of_statements(
    state: AppState, many_projects: str
) -> None:
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    async with state.db.read() as session:
        connection = await session.connection()
        event.listen(connection.sync_connection, "before_cursor_execute", record)
        try:
            snapshot = await read_snapshot(session)
        finally:
            event.remove(connection.sync_connection, "before_cursor_execute", record)
    assert len(statements) <= 7, statements
    mine = {p.name: p for p in snapshot.projects if p.name.startswith(many_projects + "-")}
    assert len(mine) == PROJECTS
    assert mine[f"{many_projects}-20"].public and not mine[f"{many_projects}-21"].public
    assert (mine[f"{many_projects}-20"].repositories, mine[f"{many_projects}-20"].pulls) == (1, 20)
    assert mine[f"{many_projects}-21"].repositories == 0
    assert (mine[f"{many_projects}-77"].quota_used, mine[f"{many_projects}-77"].quota_hard) == (
        1,
        77,
    )


async def test_scrapes_within_the_cache_window_share_one_read(
    state: AppState, many_projects: str
) -> None:
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    business = BusinessMetrics(state.db, cache_seconds=300)
    engine = state.db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        first = await business.refresh()
        read = len(statements)
        for _ in range(5):
            assert await business.refresh() is first
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert 0 < read == len(statements)
    names = {sample.labels.get("project_name") for f in business.collect() for sample in f.samples}
    assert f"{many_projects}-9999" in names


async def test_an_app_alone_in_its_process_counts_in_memory(settings: Settings) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR (an app built in a test, or by an embedding
    program) the request metrics live in memory and the scrape shows them at once."""
    assert multiprocess.directory() is None
    configured = settings.model_copy(
        update={"metrics_enabled": True, "metrics_token": "t0ken", "job_workers": 0}
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application), make_client(application) as client:
        assert (await client.get("/v2/")).status_code == 401
        assert (await client.get("/api/v2.0/ping")).status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        response = await client.get("/metrics", headers={"Authorization": "Bearer t0ken"})
    assert response.status_code == 200
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    base = {"code": "401", "handler": "base", "method": "GET"}
    assert samples[("registry_http_requests_total", frozenset(base.items()))] == 1
    ping = {"code": "200", "method": "GET", "operation": "getPing"}
    assert samples[("harbor_core_http_request_total", frozenset(ping.items()))] == 1
    refused = {"code": "401", "method": "GET", "operation": "/metrics"}
    assert samples[("harbor_core_http_request_total", frozenset(refused.items()))] == 1
    assert samples[("harbor_health", frozenset())] == 1
