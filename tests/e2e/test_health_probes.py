"""Health, readiness and liveness of a real ``dockyard serve`` when what it needs fails.

The server runs on a throwaway PostgreSQL database of its own, which the tests make
unreachable (connections refused, then allowed again) or put behind this build's
schema; its storage root is moved away and back; an S3 server (SeaweedFS) is stopped.
The shared PostgreSQL server itself is never touched. Each answer of
``/api/v2.0/health`` is checked against Harbor's swagger.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.support import harbor_contract
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.seaweedfs import s3_settings, start_seaweedfs
from tests.support.server import DockyardServer

from dockyard.db.engine import Database
from dockyard.jobs import service as jobs

REPO_ROOT = Path(__file__).resolve().parents[2]
WITHIN = 60.0  # seconds a state change may take to show (answers are cached for one)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with temporary_database(postgres_admin_url()) as url:
        yield url


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[DockyardServer]:
    env = {
        # No job workers in serve: the tests decide when a worker runs.
        "DOCKYARD_JOB_WORKERS": "0",
        "DOCKYARD_JOB_LEASE_SECONDS": "2",
        "DOCKYARD_JOB_POLL_SECONDS": "0.2",
        "DOCKYARD_JOB_PLUGINS": json.dumps(["tests.support.sample_jobs"]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with DockyardServer(database_url=database, env=env) as running:
        yield running


def _health(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/api/v2.0/health")
    problems = harbor_contract.check_exchange(
        "GET", "/api/v2.0/health", [], response.status_code, response.headers, response.content
    )
    assert not problems, problems
    assert response.status_code == 200  # Harbor answers 200 whatever the health
    body: dict[str, Any] = response.json()
    return body


def _component(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in body["components"] if c["name"] == name)
    return found


def _wait(what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WITHIN
    while not probe():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.2)


def _admin(statement: str, *args: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(postgres_admin_url(), timeout=10)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_everything_healthy_and_ready(server: DockyardServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _health(client) == {
            "status": "healthy",
            "components": [
                {"name": "core", "status": "healthy"},
                {"name": "database", "status": "healthy"},
                {"name": "storage", "status": "healthy"},
                {"name": "jobservice", "status": "healthy"},
            ],
        }
        live = client.get("/livez")
        assert (live.status_code, live.text) == (200, "ok\n")
        ready = client.get("/readyz")
        assert (ready.status_code, ready.text) == (200, "ok\n")
        assert ready.headers["cache-control"] == "no-store"
        assert client.head("/readyz").status_code == 200
        assert client.post("/readyz").status_code == 405


def test_database_unreachable_then_back(server: DockyardServer, database: str) -> None:
    name = _database_name(database)
    _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _wait(
                "the database unhealthy",
                lambda: _component(_health(client), "database")["status"] == "unhealthy",
            )
            body = _health(client)
            assert body["status"] == "unhealthy"
            assert _component(body, "database")["error"].startswith("the database does not answer")
            assert _component(body, "storage") == {"name": "storage", "status": "healthy"}
            # Readiness answers are shared for a second too: one from before may still stand.
            _wait("not ready", lambda: client.get("/readyz").status_code == 503)
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "database: the database does not answer" in ready.text
            assert "storage" not in ready.text
            # Liveness asks nothing of the database: the process is fine, do not restart it.
            assert client.get("/livez").status_code == 200
    finally:
        _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _wait("ready again", lambda: client.get("/readyz").status_code == 200)
        assert _health(client)["status"] == "healthy"


def test_schema_behind_this_build_is_not_ready(server: DockyardServer, database: str) -> None:
    async def set_revision(revision: str) -> str:
        conn = await asyncpg.connect(database, timeout=10)
        try:
            before: str = await conn.fetchval("SELECT version_num FROM alembic_version")
            await conn.execute("UPDATE alembic_version SET version_num = $1", revision)
            return before
        finally:
            await conn.close()

    head = asyncio.run(set_revision("0001"))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _wait("not ready", lambda: client.get("/readyz").status_code == 503)
            text = client.get("/readyz").text
            assert f"the schema is at revision 0001, this build needs {head}" in text
    finally:
        asyncio.run(set_revision(head))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _wait("ready again", lambda: client.get("/readyz").status_code == 200)


def test_storage_root_gone_then_back(server: DockyardServer) -> None:
    root = server.data_dir / "storage"
    away = root.with_name("storage-away")
    root.rename(away)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _wait(
                "the storage unhealthy",
                lambda: _component(_health(client), "storage")["status"] == "unhealthy",
            )
            storage = _component(_health(client), "storage")
            assert storage["error"] == "the storage does not work (StorageError)"
            assert str(root) not in storage["error"]  # no paths for anonymous callers
            assert _component(_health(client), "database")["status"] == "healthy"
            _wait("not ready", lambda: client.get("/readyz").status_code == 503)
            assert "storage: the storage does not work" in client.get("/readyz").text
            assert not root.exists(), "a health check must not make a vanished root again"
    finally:
        away.rename(root)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _wait("ready again", lambda: client.get("/readyz").status_code == 200)
        assert _component(_health(client), "storage")["status"] == "healthy"


def test_tasks_waiting_without_workers_then_a_worker_starts(
    server: DockyardServer, database: str, tmp_path: Path
) -> None:
    record = tmp_path / "record.txt"

    async def enqueue(db: Database) -> None:
        async with db.write() as session:
            await jobs.enqueue(session, "TEST_RECORD", tasks=[jobs.TaskSpec({"path": str(record)})])

    async def run(db_work: Callable[[Database], Any]) -> None:
        db = Database(database)
        try:
            await db_work(db)
        finally:
            await db.dispose()

    asyncio.run(run(enqueue))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _wait(
            "the job service unhealthy",
            lambda: _component(_health(client), "jobservice")["status"] == "unhealthy",
        )
        error = _component(_health(client), "jobservice")["error"]
        assert error.startswith("1 task(s) have waited more than 2 s and no job worker")
        # Jobs are not what serves pulls: the node stays ready.
        assert client.get("/readyz").status_code == 200

        worker = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "worker", "--data-dir", str(server.data_dir)],
            env=server.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=server.data_dir.parent,
        )
        try:
            _wait(
                "the task done", lambda: "done" in (record.read_text() if record.exists() else "")
            )
            _wait(
                "the job service healthy",
                lambda: _component(_health(client), "jobservice")["status"] == "healthy",
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)


def test_s3_storage_volumes_and_an_unreachable_store() -> None:
    seaweedfs = start_seaweedfs()
    try:
        env = {
            f"DOCKYARD_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in s3_settings(seaweedfs, seaweedfs.new_bucket()).items()
        }
        # serve asks the store before it forks its workers (from a spawned process: the S3
        # client does not survive a fork), and stops with one line when the bucket is missing.
        missing = DockyardServer(env={**env, "DOCKYARD_STORAGE_S3_BUCKET": "no-such-bucket"})
        try:
            refused = subprocess.run(
                missing.command(), env=missing.env, capture_output=True, text=True, timeout=120
            )
        finally:
            missing.close()
        assert refused.returncode == 1
        assert "the bucket does not exist" in refused.stderr
        assert "Traceback" not in refused.stderr
        with (
            DockyardServer(env=env) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            volumes = client.get("/api/v2.0/systeminfo/volumes", auth=server.admin_auth)
            assert volumes.status_code == 200
            # An object store has no volume to measure: no figures rather than a local disk's.
            assert volumes.json() == {"storage": []}
            problems = harbor_contract.check_exchange(
                "GET", "/api/v2.0/systeminfo/volumes", [], 200, volumes.headers, volumes.content
            )
            assert not problems, problems
            assert _health(client)["status"] == "healthy"
            assert client.get("/readyz").status_code == 200

            seaweedfs.stop()
            _wait(
                "the storage unhealthy",
                lambda: _component(_health(client), "storage")["status"] == "unhealthy",
            )
            assert _component(_health(client), "database")["status"] == "healthy"
            _wait("not ready", lambda: client.get("/readyz").status_code == 503)
            ready = client.get("/readyz")
            assert "storage: the storage does not work" in ready.text
            assert seaweedfs.endpoint.split("//")[1] not in ready.text  # no hosts shown
    finally:
        seaweedfs.stop()
