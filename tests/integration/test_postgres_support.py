"""The PostgreSQL helpers the integration and e2e suites stand on."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

import asyncpg
import pytest
from tests.support.postgres import (
    DATABASE_PREFIX,
    ENV_URL,
    database_exists,
    postgres_admin_url,
    start_throwaway_cluster,
    temporary_database,
    with_database,
)


async def _roundtrip(url: str) -> tuple[str, int]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("CREATE TABLE t (v int)")
        await conn.execute("INSERT INTO t VALUES (41), (1)")
        name = await conn.fetchval("SELECT current_database()")
        total = await conn.fetchval("SELECT sum(v) FROM t")
    finally:
        await conn.close()
    return name, total


def test_admin_url_points_at_a_live_server() -> None:
    url = postgres_admin_url()
    parts = urlsplit(url)
    assert parts.scheme == "postgresql"
    assert parts.hostname
    assert parts.port
    assert postgres_admin_url() == url  # computed once per process


def test_env_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.support.postgres as module

    monkeypatch.setattr(module, "_cached_url", None)
    monkeypatch.setenv(ENV_URL, "postgresql://someone@db.invalid:6543/postgres")
    assert postgres_admin_url() == "postgresql://someone@db.invalid:6543/postgres"


def test_with_database_replaces_only_the_path() -> None:
    assert (
        with_database("postgresql://u:p@h:1/postgres?sslmode=disable", "x")
        == "postgresql://u:p@h:1/x?sslmode=disable"
    )


def test_temporary_database_is_created_usable_and_dropped() -> None:
    admin = postgres_admin_url()
    with temporary_database(admin) as url:
        name = urlsplit(url).path.lstrip("/")
        assert name.startswith(DATABASE_PREFIX)
        assert database_exists(admin, name)
        assert asyncio.run(_roundtrip(url)) == (name, 42)
    assert not database_exists(admin, name)


async def test_temporary_database_works_inside_a_running_event_loop() -> None:
    admin = postgres_admin_url()
    with temporary_database(admin) as first, temporary_database(admin) as second:
        assert first != second
        conn = await asyncpg.connect(first, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_database()") == urlsplit(first).path[1:]
        finally:
            await conn.close()


def test_temporary_database_drops_even_with_open_connections() -> None:
    admin = postgres_admin_url()

    async def hold_open(url: str) -> None:
        conn = await asyncpg.connect(url, timeout=10)
        await conn.fetchval("SELECT 1")
        # deliberately not closed: DROP ... WITH (FORCE) must still succeed
        conn.terminate()

    with temporary_database(admin) as url:
        name = urlsplit(url).path[1:]
        asyncio.run(hold_open(url))
    assert not database_exists(admin, name)


@pytest.mark.skipif(
    not any(os.path.exists(f"/usr/lib/postgresql/{v}/bin/initdb") for v in range(10, 30)),
    reason="needs Debian's PostgreSQL server binaries to exercise the throwaway cluster",
)
def test_throwaway_cluster_starts_serves_and_stops() -> None:
    cluster = start_throwaway_cluster()
    try:
        assert urlsplit(cluster.url).port != 5432
        with temporary_database(cluster.url) as url:
            name = urlsplit(url).path[1:]
            assert asyncio.run(_roundtrip(url)) == (name, 42)
    finally:
        cluster.stop()
    assert not cluster.root.exists()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        asyncio.run(asyncpg.connect(cluster.url, timeout=3))
