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
import fcntl
import logging
import os
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import await_

from dockyard.db import sqlite_inline
from dockyard.db.counters import SqlCounters
from dockyard.errors import ConfigurationError, DatabaseUnavailableError, StorageFullError

SQLITE_BUSY_TIMEOUT_MS = 10_000
JOBS_ENQUEUED = "dockyard_jobs_enqueued"
"""``session.info`` flag: this transaction added job tasks (``jobs.service.enqueue``)."""
SQLITE_POOL_SIZE = 32
AUTOCOMMIT = "dockyard_autocommit"
"""Execution option of ``read_connection``'s connections: statements run without ``BEGIN``."""
_STARTUP_LOCK_KEY = 0x646F636C
"""PostgreSQL advisory lock held around first-start work (any fixed number, distinct
from the migration lock that ``db.migrate`` takes inside its own transaction)."""

log = logging.getLogger("dockyard.db")


_URL_SHAPES = "sqlite:///<path> or postgresql://<user>:<password>@<host>:<port>/<database>"


def async_url(url: str) -> str:
    """Map a user's database URL onto the async driver Dockyard uses.

    Raises ``ConfigurationError`` (one line, password hidden) for a URL that cannot work."""
    try:
        parsed = make_url(url)
        port = parsed.port
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            f"database_url is not a database URL; expected {_URL_SHAPES}"
        ) from None
    backend = parsed.get_backend_name()
    shown = parsed.render_as_string(hide_password=True)
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ConfigurationError(
            f"database_url {shown}: unsupported scheme {parsed.drivername!r}; "
            f"expected {_URL_SHAPES}"
        )
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError(f"database_url {shown}: port {port} is not between 1 and 65535")
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


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
        if conn.get_execution_options().get(AUTOCOMMIT):
            return  # one statement, atomic by itself (``read_connection``)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


PING = "SELECT 1"
"""What a pooled PostgreSQL connection runs when it is checked out: one round trip in
the simple query protocol, outside any transaction (asyncpg cannot take an empty query
there)."""


def _postgres_engine(url: str, *, pool_size: int) -> AsyncEngine:
    """asyncpg behind SQLAlchemy's pool, tuned for many short transactions.

    - ``pool_use_lifo``: a checkout takes the connection handed back last, so the
      same few connections carry the traffic, with their prepared statements (the
      driver's cache is per connection) and their server backend's caches warm. In
      first-in-first-out order every request went to the connection idle longest,
      and each of up to ``2 * pool_size`` connections had to prepare every statement
      of the push path itself: a parse-and-describe round trip, and planning on the
      server, for the first use of each statement on each connection.
    - ``pool_pre_ping`` stays on (a connection that died with a database restart is
      replaced before a request uses it), but the ping is ``PING``: one round trip.
      SQLAlchemy's asyncpg ping wraps its query in ``BEGIN`` … ``ROLLBACK`` (for
      pgbouncer's transaction mode, where one statement is its own transaction
      anyway), which is three round trips, and a transaction, per checkout: a small
      push checks out about thirty connections.
    """
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_use_lifo=True,
    )
    engine.sync_engine.dialect.do_ping = _ping  # type: ignore[method-assign]
    return engine


def _ping(dbapi_connection: Any) -> bool:
    """The dialect's ``do_ping`` in one round trip (see ``_postgres_engine``); a dead
    connection raises what SQLAlchemy's own ping raises, so the pool replaces it."""
    try:
        await_(dbapi_connection._connection.execute(PING))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (``None`` for PostgreSQL, an in-memory database
    or a URL that does not parse, which ``Database`` refuses)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    return parsed.database if parsed.database and parsed.database != ":memory:" else None


class Database:
    """Owns the engines; created in ``create_app`` and disposed in its lifespan."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            self.write_engine = _sqlite_engine(self.url, immediate=True)
            self.read_engine = _sqlite_engine(self.url, immediate=False)
        else:
            self.write_engine = _postgres_engine(self.url, pool_size=pool_size)
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
        self.counters: SqlCounters | None = None
        """Set by ``count_sql`` (measuring only)."""

    def count_sql(self) -> SqlCounters:
        """Count this database's statements and transactions from now on (``db/counters.py``;
        a measuring aid for tests and ``sql_counters``). Asked twice, the same counters."""
        if self.counters is None:
            self.counters = SqlCounters()
            self.counters.attach(self.write_engine)
            self.counters.attach(self.read_engine)
        return self.counters

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
            _raise_if_unavailable(exc, self.dialect)
            raise
        except (OSError, PoolTimeoutError) as exc:
            _raise_if_unavailable(exc, self.dialect)
            raise

    def _after_commit(self, session: AsyncSession) -> None:
        if session.info.pop(JOBS_ENQUEUED, False):
            for listener in self.job_listeners:
                listener()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._read_sessions() as session, session.begin():
                yield session
        except (DBAPIError, OSError, PoolTimeoutError) as exc:
            _raise_if_unavailable(exc, self.dialect)
            raise

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A bare read connection for one-statement lookups on hot paths: no ORM session,
        and no transaction either. Each statement runs on its own (autocommit), so a
        lookup is one round trip, not ``BEGIN``, the query and ``ROLLBACK``; two
        statements on it do not see one snapshot, so a caller needing that uses
        ``read()``."""
        try:
            async with self.read_engine.connect() as conn:
                if self.dialect == "sqlite":
                    await conn.execution_options(**{AUTOCOMMIT: True})
                else:
                    await conn.execution_options(isolation_level="AUTOCOMMIT", **{AUTOCOMMIT: True})
                yield conn
        except (DBAPIError, OSError, PoolTimeoutError) as exc:
            _raise_if_unavailable(exc, self.dialect)
            raise

    @asynccontextmanager
    async def startup_lock(self) -> AsyncIterator[None]:
        """Held around first-start work (migrations, ``admin``, the token key) so that
        processes starting together on one database do it one after another.

        PostgreSQL: a session advisory lock on a connection of its own (a process that
        dies releases it with its connection). SQLite: an exclusive ``flock`` on a file
        beside the database (released when the process exits)."""
        if self.dialect == "sqlite":
            async with self._sqlite_startup_lock():
                yield
            return
        key = {"k": _STARTUP_LOCK_KEY}
        async with self.write_engine.connect() as conn:
            if not await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), key):
                log.info("waiting for another process to finish its first-start work")
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), key)
            await conn.commit()
            try:
                yield
            finally:
                try:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), key)
                    await conn.commit()
                except Exception:  # closing the connection releases the lock too
                    await conn.invalidate()

    @asynccontextmanager
    async def _sqlite_startup_lock(self) -> AsyncIterator[None]:
        path = sqlite_file(self.url)
        if path is None:
            yield
            return
        try:
            fd = os.open(f"{path}.startup-lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the SQLite database {path}: {exc.strerror}; check that its "
                "directory exists and that this user may write there"
            ) from None
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        log.info("waiting for another process to finish its first-start work")
                        waited = True
                    # Polled rather than blocking a thread: Ctrl-C stops the wait at once.
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)

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


# --- a database that went away: 503 with a retry hint, never a 500 ----------------------

_PG_GONE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}
"""admin/crash shutdown, cannot connect now (starting or stopping), no free slot; and
every class 08 (connection exception) code."""
_NETWORK_ERRORS = (ConnectionError, TimeoutError, socket.gaierror)
"""Failures of reaching the server (a file error inside a transaction block is not one)."""
_PG_GONE_DRIVER_ERRORS = {
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "ConnectionRejectionError",
}


def _raise_if_unavailable(exc: BaseException, dialect: str) -> None:
    """Raise ``DatabaseUnavailableError`` when ``exc`` means PostgreSQL cannot be reached
    (restart, failover, network) or every pooled connection is busy. The transaction
    rolled back, so nothing is half-done; the pool drops the dead connection
    (``connection_invalidated``) and ``pool_pre_ping`` tests the others, so the next
    request after the database is back succeeds without restarting Dockyard."""
    if isinstance(exc, PoolTimeoutError):
        raise DatabaseUnavailableError(
            "the database is busy (no connection free); try again", retry_after=1
        ) from exc
    if dialect != "postgresql":
        return
    if isinstance(exc, _NETWORK_ERRORS) or (isinstance(exc, DBAPIError) and _pg_gone(exc)):
        raise DatabaseUnavailableError(
            "the database is unavailable (restarting or unreachable); nothing was changed: "
            "try again"
        ) from exc


def _pg_gone(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    for candidate in (orig, getattr(orig, "__cause__", None)):
        sqlstate = getattr(candidate, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate.startswith("08") or sqlstate in _PG_GONE_SQLSTATES
        ):
            return True
        if type(candidate).__name__ in _PG_GONE_DRIVER_ERRORS:
            return True
        if isinstance(candidate, _NETWORK_ERRORS):
            return True
    return False


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


# --- saying what to check when the database cannot be used -------------------

_PG_SQLSTATE_HINTS = {
    "28P01": "the server refused the password of user {user}; check the user and password "
    "in database_url",
    "28000": "the server refused the login of user {user} ({reason}); check the user in "
    "database_url and the server's pg_hba.conf",
    "3D000": "database {database} does not exist on {where}; create it (createdb {database}) "
    "or fix the name in database_url",
    "42501": "user {user} lacks a privilege Dockyard needs ({reason}); make it the owner of "
    "database {database}",
    "53300": "the server has no free connection slot ({reason}); raise max_connections or "
    "stop other clients",
    "57P03": "the server does not accept connections yet ({reason}); try again once it is up",
}
_SQLITE_HINTS = {
    "unable to open database file": "cannot open the SQLite database {path}; check that its "
    "directory exists and that this user may write there",
    "file is not a database": "{path} is not a SQLite database; point database_url (or "
    "--data-dir) at Dockyard's database",
    "attempt to write a readonly database": "the SQLite database {path} is read-only for this "
    "user; check its owner and mode",
    "database or disk is full": "the disk holding the SQLite database {path} is full",
}


def explain_database_error(exc: BaseException, url: str) -> str | None:
    """One line saying what to check, for an error of reaching, logging in to or opening
    the database at ``url`` (password hidden); ``None`` when ``exc`` is something else."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    user = repr(parsed.username or os.environ.get("USER", ""))
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    if isinstance(exc, OSError) and parsed.get_backend_name() == "sqlite":
        return (
            f"cannot open the SQLite database {parsed.database} ({exc.strerror or exc}); check "
            "that its directory exists and that this user may write there"
        )
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot find database host {parsed.host!r} ({exc.strerror}); check the host "
            "in database_url"
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"nothing accepts connections at {where} (connection refused); check the host "
            "and port in database_url and that PostgreSQL is running"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"no answer from the database at {where} (timed out); check the host and port "
            "in database_url and any firewall between"
        )
    if isinstance(exc, OSError):
        return f"cannot reach the database at {where} ({exc.strerror or exc}); check database_url"
    if not isinstance(exc, DBAPIError):
        return None
    reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _PG_SQLSTATE_HINTS:
        return _PG_SQLSTATE_HINTS[sqlstate].format(
            user=user, database=repr(parsed.database), where=where, reason=reason
        )
    if parsed.get_backend_name() == "sqlite":
        for cause, hint in _SQLITE_HINTS.items():
            if cause in str(reason):
                return hint.format(path=parsed.database)
    return None


T = TypeVar("T")


class PerDatabase(Generic[T]):
    """One object per :class:`Database` of this process, found again from its engines.

    Code that only has a session (an ``after_commit`` hook, ``record_failure``) finds
    the object its app attached for that database, while two apps in one process (the
    tests) keep theirs apart. The first to attach wins; ``attach`` says whether it did.
    """

    def __init__(self) -> None:
        self._by_engine: weakref.WeakKeyDictionary[Engine, T] = weakref.WeakKeyDictionary()

    def attach(self, db: Database, value: T) -> bool:
        engines = {db.write_engine.sync_engine, db.read_engine.sync_engine}
        if any(engine in self._by_engine for engine in engines):
            return False
        for engine in engines:
            self._by_engine[engine] = value
        return True

    def detach(self, db: Database, value: T) -> None:
        for engine in (db.write_engine.sync_engine, db.read_engine.sync_engine):
            if self._by_engine.get(engine) is value:
                del self._by_engine[engine]

    def find(self, engine: object) -> T | None:
        """What is attached for ``engine`` (a session's bind), if anything."""
        return self._by_engine.get(engine) if isinstance(engine, Engine) else None
