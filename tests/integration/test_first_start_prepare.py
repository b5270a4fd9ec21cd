"""First-start work taken in turns (issue 12): several ``prepare`` calls on one fresh database
at once — as nodes starting together do — each return, one of them creates ``admin``, and the
rest find it. In one process, so it is cheap and runs on SQLite and PostgreSQL; the
end-to-end test (tests/e2e/test_first_start.py) starts real processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.db.engine import Database
from dockyard.iam.models import User
from dockyard.projects.models import Project
from dockyard.settings import Settings
from dockyard.system.bootstrap import TOKEN_KEY_PROPERTY, load_token_key, prepare
from dockyard.system.models import Property

NODES = 4


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dockyard.db'}"
        return
    with temporary_database(postgres_admin_url()) as url:
        yield url


async def test_nodes_preparing_at_once_take_turns(fresh_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_url)  # random admin password
    databases = [Database(fresh_url) for _ in range(NODES)]
    try:
        reports = await asyncio.wait_for(
            asyncio.gather(*(prepare(settings, db) for db in databases)), timeout=120
        )
        assert sum(r.migrated_from is None for r in reports) == 1
        assert len({r.migrated_to for r in reports}) == 1
        passwords = [r.generated_admin_password for r in reports]
        assert sum(p is not None for p in passwords) == 1, "one node creates admin, and says so"
        async with databases[0].read() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 1
            assert await session.scalar(
                select(func.count()).select_from(Project).where(Project.name == "library")
            )
            assert (
                await session.scalar(
                    select(func.count())
                    .select_from(Property)
                    .where(Property.k == TOKEN_KEY_PROPERTY)
                )
                == 1
            )
        assert len({await load_token_key(db) for db in databases}) == 1
    finally:
        for db in databases:
            await db.dispose()
