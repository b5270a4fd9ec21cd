"""An aiosqlite-shaped driver that runs sqlite3 calls inline on the event loop.

Only for SQLite *read* transactions. aiosqlite hands every call to a thread
and back, several hand-offs per query; on a busy two-core machine that costs
milliseconds, while the query itself (an indexed lookup) takes tens of
microseconds. Under WAL a reader never waits for a writer, so running reads
inline blocks the loop no longer than the query runs. Writers keep aiosqlite:
``BEGIN IMMEDIATE`` may wait for another process's write lock, and that wait
must not stall the loop.

SQLAlchemy's aiosqlite adapter drives this module unchanged
(``create_async_engine(url, module=dbapi())``); it uses only the methods and
attributes below.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from types import SimpleNamespace
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

DatabaseError = sqlite3.DatabaseError
Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size or self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        for row in self._cursor:
            yield row

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _RunNow:
    """Stands in for aiosqlite's request queue: runs the request at once."""

    @staticmethod
    def put_nowait(item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the awaiting caller, as aiosqlite does
            future.set_exception(exc)


class Connection:
    def __init__(self, database: str, **kwargs: Any) -> None:
        kwargs.pop("check_same_thread", None)
        self._conn = sqlite3.connect(database, check_same_thread=False, **kwargs)
        self._connection: sqlite3.Connection | None = self._conn
        self._tx = _RunNow()
        self._thread = SimpleNamespace(daemon=True)  # the adapter marks aiosqlite's thread

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._ready().__await__()

    async def _ready(self) -> Connection:
        return self

    @property
    def isolation_level(self) -> str | None:
        level: str | None = self._conn.isolation_level
        return level

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def connect(database: str, **kwargs: Any) -> Connection:
    return Connection(database, **kwargs)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DB-API object to hand to ``create_async_engine(..., module=…)``."""
    import sys

    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)
