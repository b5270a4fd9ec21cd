"""Migrated empty databases for test servers, made once per test process and copied.

A ``dockyard serve`` on an empty database first runs every migration (about 1 s on
SQLite, 2 s on PostgreSQL on a busy machine); the end-to-end suite starts dozens of
servers. A database that has only been migrated holds no row a first start makes
(``admin``, ``library``, the keys: ``system/bootstrap.py`` makes them on every start where
missing), so starting on a copy behaves as starting on an empty one, less the migration
and its ``database migrated: empty -> …`` line.

- ``migrated_sqlite_file()``: a migrated SQLite file to copy (``seed_sqlite``).
- ``migrated_template()``: a migrated PostgreSQL database to ``CREATE DATABASE … TEMPLATE``
  (``tests/support/postgres.py``, ``temporary_database(..., migrated=True)``).

Each is made on first use by this process (so a code change is always seen, and
``pytest -n`` workers each have their own) and removed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_sqlite_file: Path | None = None


async def _migrate(url: str) -> None:
    from dockyard.db.engine import Database
    from dockyard.db.migrate import migrate

    database = Database(url)
    try:
        await migrate(database)
    finally:
        await database.dispose()


def migrate_in_thread(url: str) -> None:
    """Migrate the database at ``url`` to head (works inside a running event loop too)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(_migrate(url))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="migrate-template", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def migrated_sqlite_file() -> Path:
    """A SQLite file migrated to head; copy it, never open it."""
    global _sqlite_file
    with _lock:
        if _sqlite_file is None:
            where = Path(tempfile.mkdtemp(prefix="dockyard-migrated-"))
            atexit.register(shutil.rmtree, where, True)
            path = where / "dockyard.db"
            migrate_in_thread(f"sqlite:///{path}")
            for suffix in ("-wal", "-shm"):  # disposed: everything is in the file
                assert not Path(f"{path}{suffix}").exists(), f"{path}{suffix} left behind"
            _sqlite_file = path
        return _sqlite_file


def seed_sqlite(target: Path) -> None:
    """Put a migrated database at ``target`` (mode 0600, as ``dockyard serve`` makes it)."""
    source = migrated_sqlite_file()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out)
