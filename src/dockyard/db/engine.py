"""Database engines and sessions.

``Database.write()`` opens a transaction that will write; ``Database.read()`` one
that only reads. On PostgreSQL both are ordinary transactions on one asyncpg pool.

On SQLite every statement runs inline on the event loop (``sqlite_inline``): a
query takes microseconds, while handing each call to a thread and back, as
aiosqlite does, costs far more. Writers take the write lock at ``BEGIN
IMMEDIATE`` (two writers queue instead of failing on a lock upgrade) and are
serialised within the process by an asyncio lock, so a writer waits for
another of this process without blocking the loop; only a writer of *another*
process can make ``BEGIN IMMEDIATE`` wait (on ``busy_timeout``), and its
transactions are as short. Readers never wait under WAL.

The rule that keeps this fast: a write transaction holds database work only —
never storage I/O or other awaits (bytes first, then a short transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from dockyard.db import sqlite_inline
from dockyard.errors import StorageFullError

SQLITE_BUSY_TIMEOUT_MS = 10_000
JOBS_ENQUEUED = "dockyard_jobs_enqueued"
"""``session.info`` flag: this transaction added job tasks (``jobs.service.enqueue``)."""
SQLITE_POOL_SIZE = 32


def async_url(url: str) -> str:
    """Map a user's database URL onto the async driver Dockyard uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        module=sqlite_inline.dbapi(),
        # Opening a connection (and reading the schema) costs far more than a
        # query; requests overlap while connections are handed back, so keep
        # enough of them that none is opened per request.
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=SQLITE_POOL_SIZE,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Owns the engines; created in ``create_app`` and disposed in its lifespan."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            self.write_engine = _sqlite_engine(self.url, immediate=True)
            self.read_engine = _sqlite_engine(self.url, immediate=False)
        else:
            self.write_engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time: queue this process's writers here,
        # without blocking the loop, rather than on the database's lock.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self.job_listeners: list[Callable[[], None]] = []
        """Called after a transaction that enqueued job tasks commits (wakes local workers)."""
        self.before_write: Callable[[], Awaitable[None]] | None = None
        """Awaited before each write transaction (``storage/space.py`` frees the disk
        reserve there, so deletes and GC can write on a full disk)."""

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits when the block ends without an error.

        A database that is out of disk space raises ``StorageFullError``."""
        if self.before_write is not None:
            await self.before_write()
        try:
            if self._write_lock is None:
                async with self._write_sessions() as session:
                    async with session.begin():
                        yield session
                    self._after_commit(session)
                return
            async with self._write_lock, self._write_sessions() as session:
                async with session.begin():
                    yield session
                self._after_commit(session)
        except DBAPIError as exc:
            if _disk_full(exc):
                raise StorageFullError(
                    "storage is full: the database cannot write; free space (delete "
                    "artifacts and run garbage collection) and try again"
                ) from exc
            raise

    def _after_commit(self, session: AsyncSession) -> None:
        if session.info.pop(JOBS_ENQUEUED, False):
            for listener in self.job_listeners:
                listener()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A bare read connection, without the ORM session's cost (hot paths)."""
        async with self.read_engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def _disk_full(exc: DBAPIError) -> bool:
    """SQLite's SQLITE_FULL or PostgreSQL's disk_full (SQLSTATE 53100)."""
    orig = exc.orig
    if getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL:
        return True
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if getattr(candidate, "sqlstate", None) == _PG_DISK_FULL:
            return True
    return "database or disk is full" in str(orig)


_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def dialect_insert(session: AsyncSession, model: type[DeclarativeBase]) -> Any:
    """The session's dialect's ``INSERT`` (it has ``on_conflict_do_…``)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_ignore(
    session: AsyncSession,
    model: type[DeclarativeBase],
    values: dict[str, Any] | Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
) -> Any:
    """An ``INSERT … ON CONFLICT DO NOTHING`` statement in the session's dialect."""
    return (
        dialect_insert(session, model)
        .values(values)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
    )
