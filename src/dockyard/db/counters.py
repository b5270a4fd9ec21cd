"""Counting the SQL a process runs: statements and transactions, by call site.

A measuring aid, off unless asked for. The tests attach a ``SqlCounters`` to a
``Database`` (``Database.count_sql()``) and read it directly; a server started
with ``sql_counters`` set (``DOCKYARD_SQL_COUNTERS=<directory>``) counts from
its first statement and writes what it counted to ``<directory>/sql-<pid>.json``
(``CountersFile``), which ``bench/registry_bench.py`` and the push budget test
read from outside the process. Nothing is served over HTTP.

What counts:

- a **statement** is one round trip a query makes (SQLAlchemy's
  ``before_cursor_execute``; an ``executemany`` counts once). Transaction
  control (``BEGIN``, ``COMMIT``, ``ROLLBACK``), which SQLite's engine sends as
  statements and asyncpg does not, is left out, so both databases count alike;
- a **transaction** is one ``BEGIN`` on a connection (SQLAlchemy's ``begin``),
  whether it writes or only reads. ``Database.read_connection`` runs its
  one-statement lookups in autocommit, without ``BEGIN``: those count as
  statements only.

Each statement is filed under its call site, the first frame outside
SQLAlchemy and ``dockyard.db`` (``module:function:line``), so a budget that is
exceeded names what went over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import greenlet  # type: ignore[import-untyped]  # no stubs; SQLAlchemy depends on it
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("dockyard.db")

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
_SKIPPED_PREFIXES = (
    "sqlalchemy",
    "dockyard.db.",
    "asyncio",
    "contextlib",
    "greenlet",
    # A generic accessor: its caller (the read-only flag, the token lifetime) says more.
    "dockyard.system.config",
)
_TRANSACTION = "(transaction)"
_AUTOCOMMIT = "dockyard_autocommit"  # ``engine.AUTOCOMMIT`` (engine imports this module)
WRITE_SECONDS = 0.1
"""How often a server writes changed counters to its file."""


def _call_site() -> str:
    """The first frame outside SQLAlchemy and ``dockyard.db``. Async SQLAlchemy runs the
    statement in a greenlet whose stack ends where it was spawned; the caller's frames
    are in the parent greenlet, suspended at that point, so the walk continues there."""
    frame: FrameType | None = sys._getframe(2)
    current: Any = greenlet.getcurrent()
    while True:
        while frame is not None:
            module = str(frame.f_globals.get("__name__", ""))
            if not module.startswith(_SKIPPED_PREFIXES) and module != "dockyard.db":
                return f"{module}:{frame.f_code.co_name}:{frame.f_lineno}"
            frame = frame.f_back
        current = current.parent
        if current is None:
            return "?"
        frame = current.gr_frame


@dataclass
class SqlCounts:
    """A reading of the counters; subtract two readings to get what happened between."""

    statements: int = 0
    transactions: int = 0
    sites: Counter[str] = field(default_factory=Counter)
    """Statements by call site and statement head (``site | SELECT …``), and
    transactions by the call site that began them (``site | (transaction)``)."""

    def __sub__(self, other: SqlCounts) -> SqlCounts:
        sites = Counter(self.sites)
        sites.subtract(other.sites)
        return SqlCounts(
            self.statements - other.statements,
            self.transactions - other.transactions,
            Counter({k: v for k, v in sites.items() if v}),
        )

    def __add__(self, other: SqlCounts) -> SqlCounts:
        return SqlCounts(
            self.statements + other.statements,
            self.transactions + other.transactions,
            self.sites + other.sites,
        )

    def without(self, prefixes: tuple[str, ...]) -> SqlCounts:
        """These counts less the statements and transactions of call sites starting with
        one of ``prefixes`` (reads refreshed by time rather than by work, say)."""
        kept = Counter({k: v for k, v in self.sites.items() if not k.startswith(prefixes)})
        dropped = self.sites - kept
        transactions = sum(v for k, v in dropped.items() if k.endswith(_TRANSACTION))
        statements = sum(dropped.values()) - transactions
        return SqlCounts(self.statements - statements, self.transactions - transactions, kept)

    def describe(self) -> str:
        """Every call site with its count, most frequent first (for failure messages)."""
        lines = [f"{self.statements} statements in {self.transactions} transactions:"]
        lines += [f"  {n:4d}  {site}" for site, n in self.sites.most_common()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "transactions": self.transactions,
            "sites": dict(self.sites),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SqlCounts:
        return cls(
            int(data["statements"]),
            int(data["transactions"]),
            Counter({str(k): int(v) for k, v in data.get("sites", {}).items()}),
        )


class SqlCounters:
    """Counts the statements and transactions of the engines it is attached to."""

    def __init__(self) -> None:
        self._counts = SqlCounts()
        self._engines: list[Any] = []

    def attach(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        if sync in self._engines:
            return
        event.listen(sync, "begin", self._on_begin)
        event.listen(sync, "before_cursor_execute", self._on_statement)
        self._engines.append(sync)

    def detach(self) -> None:
        for sync in self._engines:
            event.remove(sync, "begin", self._on_begin)
            event.remove(sync, "before_cursor_execute", self._on_statement)
        self._engines.clear()

    def _on_begin(self, conn: Any) -> None:
        if conn.get_execution_options().get(_AUTOCOMMIT):
            return  # no BEGIN is sent: each statement stands alone
        self._counts.transactions += 1
        self._counts.sites[f"{_call_site()} | {_TRANSACTION}"] += 1

    def _on_statement(
        self,
        _conn: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        head = statement.lstrip()[:60].replace("\n", " ")
        if head.upper().startswith(_CONTROL):
            return
        self._counts.statements += 1
        self._counts.sites[f"{_call_site()} | {head}"] += 1

    def read(self) -> SqlCounts:
        """The counts so far (a copy)."""
        counts = self._counts
        return SqlCounts(counts.statements, counts.transactions, Counter(counts.sites))


class CountersFile:
    """Writes a process's counters to ``<directory>/sql-<pid>.json`` while they change
    (every ``WRITE_SECONDS``, and once more when the process stops)."""

    def __init__(self, counters: SqlCounters, directory: Path) -> None:
        self.counters = counters
        self.path = directory / f"sql-{os.getpid()}.json"
        self._task: asyncio.Task[None] | None = None
        self._written: tuple[int, int] | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WRITE_SECONDS)
            self.write()

    def write(self) -> None:
        counts = self.counters.read()
        if self._written == (counts.statements, counts.transactions):
            return
        partial = self.path.with_suffix(".tmp")
        try:
            partial.write_text(json.dumps(counts.to_json()), encoding="utf-8")
            partial.replace(self.path)  # readers never see half a file
        except OSError as exc:
            log.warning("cannot write SQL counters to %s: %s", self.path, exc)
            return
        self._written = (counts.statements, counts.transactions)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.write()


def read_directory(directory: Path) -> SqlCounts:
    """The sum of every process's counters written under ``directory`` (the bench, tests)."""
    total = SqlCounts()
    for path in sorted(directory.glob("sql-*.json")):
        try:
            total = total + SqlCounts.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            continue  # a process that never wrote, or a name that is not ours
    return total
