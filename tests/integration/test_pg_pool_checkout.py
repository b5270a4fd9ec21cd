"""What a PostgreSQL connection costs on checkout (db/engine.py ``_postgres_engine``).

A small push checks out a pooled connection about thirty times, so each checkout's extra
round trips count. The driver's queries are recorded on asyncpg's ``Connection`` (every
query SQLAlchemy's asyncpg adapter sends goes through these methods), on a throwaway
database of the shared server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.db.engine import PING, Database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with temporary_database(postgres_admin_url()) as url:
        yield url


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url, pool_size=4)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """(backend pid, query) for each query the driver sends from now on."""
    calls: list[tuple[int, str]] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval", "prepare", "_prepare"):
        original = getattr(asyncpg.Connection, name)

        def record(original: Any = original) -> Any:
            async def wrapper(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
                calls.append((self.get_server_pid(), query.strip().upper()))
                return await original(self, query, *args, **kw)

            return wrapper

        monkeypatch.setattr(asyncpg.Connection, name, record())
    return calls


async def test_checkout_pings_once_outside_a_transaction(
    db: Database, sent: list[tuple[int, str]]
) -> None:
    async with db.read() as session:  # opens the connection (its set-up is not a checkout)
        await session.execute(text("SELECT 1"))
    sent.clear()
    async with db.read() as session:
        await session.execute(text("SELECT 2"))
    queries = [query for _, query in sent]
    assert queries.count(PING) == 1, queries
    # the ping's own BEGIN/ROLLBACK (SQLAlchemy's asyncpg ping) is gone: the read's
    # transaction is the only one
    assert sum(q.startswith("BEGIN") for q in queries) == 1, queries
    assert not any(q.startswith("ROLLBACK") for q in queries[: queries.index(PING) + 1])

    sent.clear()
    async with db.read_connection() as conn:
        await conn.execute(text("SELECT 3"))
    queries = [query for _, query in sent]
    assert queries.count(PING) == 1, queries
    assert not any(q.startswith(("BEGIN", "ROLLBACK")) for q in queries), queries


async def test_checkouts_reuse_the_connection_handed_back_last(
    db: Database, sent: list[tuple[int, str]]
) -> None:
    # Three connections open at once, handed back in turn; then one at a time.
    gate, all_held = asyncio.Event(), asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with db.read_connection() as conn:
            await conn.execute(text("SELECT 1"))
            held += 1
            if held == 3:
                all_held.set()
            await gate.wait()

    holders = [asyncio.create_task(hold()) for _ in range(3)]
    await all_held.wait()
    gate.set()
    await asyncio.gather(*holders)
    assert db.write_engine.pool.checkedin() == 3  # type: ignore[attr-defined]

    sent.clear()
    for n in range(5):
        async with db.read_connection() as conn:
            await conn.execute(text(f"SELECT {n}"))
    backends = {pid for pid, query in sent if query.startswith("SELECT")}
    # first in, first out would go round all three connections
    assert len(backends) == 1, sent
