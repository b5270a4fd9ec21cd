"""Health checks in process: probes share one computation, a hung check is cut off,
what callers see of a failure, readiness after shutdown begins, tracing left out when
off. The real-server cases (database, storage, workers failing) are in
``tests/e2e/test_health_probes.py``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard import settings as settings_module
from dockyard.app import create_app
from dockyard.errors import ConfigurationError
from dockyard.http.state import AppState
from dockyard.settings import Settings, load_settings
from dockyard.system import health
from dockyard.system.health import HealthMonitor, HealthProblem
from dockyard.tracing import TracingMiddleware


def _monitor(state: AppState) -> HealthMonitor:
    return HealthMonitor(state.db, state.storage, job_lease=timedelta(seconds=60))


async def test_concurrent_probes_share_one_computation(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = _monitor(state)
    runs = 0
    release = asyncio.Event()

    async def counted() -> None:
        nonlocal runs
        runs += 1
        await release.wait()

    monitor.add_component("counted", counted, "the counted service does not answer")
    probes = [asyncio.create_task(monitor.components()) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    answers = await asyncio.gather(*probes)
    assert runs == 1
    assert all(answer == answers[0] for answer in answers)
    assert [c.name for c in answers[0]] == ["core", "database", "storage", "jobservice", "counted"]
    assert {c.status for c in answers[0]} == {health.HEALTHY}
    await monitor.components()
    assert runs == 1  # kept for a moment
    monkeypatch.setattr(health, "CACHE_SECONDS", 0.0)
    await monitor.components()
    assert runs == 2  # then asked again


async def test_a_probe_that_goes_away_does_not_cancel_the_others(state: AppState) -> None:
    monitor = _monitor(state)
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    monitor.add_component("slow", slow, "the slow service does not answer")
    first = asyncio.create_task(monitor.components())
    second = asyncio.create_task(monitor.components())
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    answer = await second
    assert answer[-1] == health.ComponentHealth("slow", health.HEALTHY)


async def test_a_hung_check_is_cut_off(state: AppState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.2)
    monitor = _monitor(state)

    async def hangs() -> None:
        await asyncio.Event().wait()

    monitor.add_component("scanner", hangs, "the scanner does not answer")
    answer = {c.name: c for c in await monitor.components()}
    assert answer["scanner"] == health.ComponentHealth(
        "scanner", health.UNHEALTHY, "the scanner does not answer (no answer within 0.2 s)"
    )
    assert answer["database"].status == health.HEALTHY


async def test_failures_show_their_kind_or_a_message_written_to_be_shown(
    state: AppState,
) -> None:
    monitor = _monitor(state)

    async def refuses() -> None:
        raise ConnectionRefusedError("ldap://10.1.2.3:389 refused bind as cn=admin")

    async def explains() -> None:
        raise HealthProblem("no scanner is registered as default")

    monitor.add_component("ldap", refuses, "the LDAP server does not answer")
    monitor.add_component("scanner", explains, "the scanner does not answer")
    answer = {c.name: c for c in await monitor.components()}
    assert answer["ldap"].error == "the LDAP server does not answer (ConnectionRefusedError)"
    assert answer["scanner"].error == "no scanner is registered as default"


async def test_readiness_fails_once_shutdown_begins(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app), make_client(app) as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.text) == (200, "ok\n")
    # The lifespan has ended (the database is closed): readiness answers without it.
    # (A plain client: make_client's hook refuses every 5xx, and this one is meant.)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.text) == (503, "not ready\nshutting down\n")
        assert (await client.get("/livez")).status_code == 200


async def test_probes_need_no_credentials_and_are_cheap(anon: httpx.AsyncClient) -> None:
    live = await anon.get("/livez")
    assert (live.status_code, live.text) == (200, "ok\n")
    assert (await anon.get("/readyz")).status_code == 200


def test_tracing_off_installs_nothing(app: Starlette) -> None:
    assert not any(m.cls is TracingMiddleware for m in app.user_middleware)


def test_tracing_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="trace_otel_endpoint"):
        load_settings(trace_enabled=True)
    monkeypatch.setattr(settings_module, "tracing_installed", lambda: False)
    with pytest.raises(ConfigurationError, match=r"pip install 'dockyard\[tracing\]'"):
        load_settings(trace_enabled=True, trace_otel_endpoint="http://127.0.0.1:4318/v1/traces")
    # Off, nothing is asked of the packages.
    assert (
        load_settings(trace_otel_endpoint="http://127.0.0.1:4318/v1/traces").trace_enabled is False
    )
