"""Integration fixtures: the real app (ASGI, in process) on SQLite and on PostgreSQL.

Each backend gets one migrated database and one app for the whole session;
tests keep out of each other's way by using their own repository names
(``unique_repo``), so they can also run in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from tests.support.postgres import postgres_admin_url, temporary_database

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


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir: Path = tmp_path_factory.mktemp("data")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_password=ADMIN_PASSWORD,
        login_failure_limit=1000,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
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


def make_client(app: Starlette, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    """An in-process client; every response it receives is checked to be below 500."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(
        transport=transport,
        base_url=BASE_URL,
        auth=auth,
        timeout=30,
        event_hooks={"response": [_refuse_5xx]},
    )


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
