"""Integration fixtures: the real app (ASGI, in process) on SQLite and on PostgreSQL.

Each backend gets one migrated database and one app for the whole session;
tests keep out of each other's way by using their own repository names
(``unique_repo``), so they can also run in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from tests.support import harbor_contract
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.seaweedfs import (
    SeaweedFS,
    s3_settings,
    start_seaweedfs,
    storage_under_test,
)

from dockyard.app import create_app
from dockyard.db.engine import Database
from dockyard.http.state import AppState
from dockyard.settings import Settings
from dockyard.system.bootstrap import prepare

ADMIN_PASSWORD = "Harbor12345"
BASE_URL = "http://registry.test"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'dockyard.db'}"
        return
    with temporary_database(postgres_admin_url()) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the module's own, on each backend: for a module whose app must start
    empty (the authentication mode changes only while ``admin`` is the only user)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('module-sqlite') / 'dockyard.db'}"
        return
    with temporary_database(postgres_admin_url()) as url:
        yield url


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """One SeaweedFS S3 server on loopback for the session (started on first use)."""
    server = start_seaweedfs()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Settings:
    data_dir: Path = tmp_path_factory.mktemp("data")
    # DOCKYARD_TEST_STORAGE=s3: the app's blobs in a SeaweedFS bucket instead of files.
    storage: dict[str, object] = {}
    if storage_under_test() == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        storage = s3_settings(server, server.new_bucket())
    return Settings(
        **storage,  # type: ignore[arg-type]
        data_dir=data_dir,
        database_url=database_url,
        admin_password=ADMIN_PASSWORD,
        login_failure_limit=1000,
        # Jobs: look for work often and retry soon, so job tests take seconds.
        job_poll_seconds=0.2,
        job_retry_base_seconds=0.2,
        job_lease_seconds=5,
        job_plugins=["tests.support.sample_jobs"],
        # Webhook receivers in tests listen on 127.0.0.1 (refused by default).
        egress_allow_loopback=True,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    async with serving(settings) as application:
        yield application


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Starlette]:
    """The app of ``settings``, its database prepared, running (lifespan) until the end."""
    database = Database(settings.effective_database_url)
    try:
        await prepare(settings, database)
    finally:
        await database.dispose()
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def state(app: Starlette) -> AppState:
    result: AppState = app.state.dockyard
    return result


async def _refuse_5xx(response: httpx.Response) -> None:
    """Whatever a test sends, Dockyard never answers with a server error."""
    assert response.status_code < 500, (
        f"{response.request.method} {response.request.url} answered {response.status_code}"
    )


async def _check_harbor_contract(response: httpx.Response) -> None:
    """Every ``/api/v2.0`` answer must be one Harbor's swagger allows.

    ``tests/support/harbor_contract.py`` checks that the operation exists (or, for
    a path of no operation, that the answer is Harbor's 404/405 error body), every
    query parameter sent is declared, the status is declared, a 2xx body matches
    the swagger definition strictly (no invented fields, no undeclared nulls), a
    4xx body is Harbor's error body, and a list carries ``X-Total-Count``.

    A test that deliberately sends something undeclared (a hostile unknown query
    parameter, an operation outside swagger) opts that request out with the
    header ``X-Dockyard-Contract: skip``. Other paths (``/v2/``, ``/service/token``)
    are not looked at, nor is anything when swagger.yaml is absent.
    """
    request = response.request
    path = request.url.raw_path.decode("latin-1").partition("?")[0]
    if path != harbor_contract.BASE_PATH and not path.startswith(harbor_contract.BASE_PATH + "/"):
        return
    if request.headers.get(harbor_contract.CONTRACT_HEADER, "").lower() == "skip":
        return
    contract = harbor_contract.load_contract()
    if contract is None:
        return
    await response.aread()
    problems = contract.check_exchange(
        request.method,
        path,
        request.url.params.multi_items(),
        response.status_code,
        response.headers,
        response.content,
    )
    assert not problems, harbor_contract.report(
        request.method, path, response.status_code, problems
    )


def make_client(app: Starlette, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    """An in-process client; every response must be below 500 and within Harbor's contract."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(
        transport=transport,
        base_url=BASE_URL,
        auth=auth,
        timeout=30,
        event_hooks={"response": [_refuse_5xx, _check_harbor_contract]},
    )


def unchecked_client(app: Starlette, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    """A client that may see a 5xx (``make_client`` refuses them): for a test that makes a
    service fail on purpose (a directory stopped) and checks the 503 that says so."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, auth=auth)


@pytest.fixture
async def admin(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending the admin's Basic credentials on every request."""
    async with make_client(app, ("admin", ADMIN_PASSWORD)) as client:
        yield client


@pytest.fixture
async def anon(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as client:
        yield client


@pytest.fixture
def unique_repo() -> str:
    """A repository name in the public ``library`` project no other test uses."""
    return f"library/t{uuid.uuid4().hex[:12]}"
