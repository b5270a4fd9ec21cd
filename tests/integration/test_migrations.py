"""Migrations: an empty database upgrades to head on both backends, and models do not drift."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from dockyard.db.engine import Database
from dockyard.db.migrate import head_revision, migrate
from dockyard.db.models import Base
from dockyard.http.state import AppState


async def test_database_is_at_head_with_no_drift(state: AppState) -> None:
    """The session database was built by migrations alone; the models must match it."""

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with state.db.read_engine.connect() as conn:
        differences = await conn.run_sync(diff)
        revision = await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
    assert differences == []
    assert revision == head_revision()


async def test_migrate_is_idempotent(state: AppState) -> None:
    database = Database(state.settings.effective_database_url)
    try:
        before, after = await migrate(database)
    finally:
        await database.dispose()
    assert before == after == head_revision()
