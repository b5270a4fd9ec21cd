"""Applying Alembic migrations programmatically, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from dockyard.db.engine import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed number: serialises migrations of several nodes starting at once.
_PG_MIGRATION_LOCK = 0x646F636B


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def migrate(database: Database) -> tuple[str | None, str | None]:
    """Upgrade to head; returns (revision before, revision after)."""

    def upgrade(connection: Connection) -> tuple[str | None, str | None]:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        before = _current_revision(connection)
        command.upgrade(alembic_config(connection), "head")
        return before, _current_revision(connection)

    async with database.write_engine.begin() as conn:
        return await conn.run_sync(upgrade)


def known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this version's migrations (a database at a revision
    it does not know was made by a newer Dockyard)."""
    if not revision:
        return False
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown id
        return False
