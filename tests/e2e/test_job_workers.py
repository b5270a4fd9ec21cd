"""Scale-out jobs: ``dockyard serve`` plus two ``dockyard worker`` processes on one
PostgreSQL database. Tasks run exactly once each, a task whose worker is killed with
SIGKILL is retried elsewhere and finishes, and a schedule fires once per period
whatever the number of processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.server import DockyardServer

from dockyard.db.engine import Database
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    server: DockyardServer
    database_url: str
    workers: list[subprocess.Popen[bytes]]
    log_dir: Path

    def start_worker(self) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"worker-{len(self.workers)}.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dockyard",
                    "worker",
                    "--concurrency",
                    "2",
                    "--data-dir",
                    str(self.server.data_dir),
                ],
                env=self.server.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.server.data_dir.parent,
            )
        self.workers.append(process)
        return process

    def run(self, coro: Any) -> Any:
        async def with_db() -> Any:
            db = Database(self.database_url)
            try:
                return await coro(db)
            finally:
                await db.dispose()

        return asyncio.run(with_db())

    def pools(self) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.server.url, auth=self.server.admin_auth) as client:
            response = client.get("/api/v2.0/jobservice/pools")
            response.raise_for_status()
            pools: list[dict[str, Any]] = response.json()
            return pools


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {
        "DOCKYARD_JOB_PLUGINS": json.dumps(["tests.support.sample_jobs"]),
        "DOCKYARD_JOB_WORKERS": "1",
        "DOCKYARD_JOB_LEASE_SECONDS": "3",
        "DOCKYARD_JOB_POLL_SECONDS": "0.2",
        "DOCKYARD_JOB_RETRY_BASE_SECONDS": "0.2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with (
        temporary_database(postgres_admin_url()) as url,
        DockyardServer(database_url=url, env=env) as server,
    ):
        running = Cluster(server, url, [], tmp_path_factory.mktemp("workers"))
        try:
            running.start_worker()
            running.start_worker()
            deadline = time.monotonic() + 30
            while len(running.pools()) < 3:
                assert time.monotonic() < deadline, "the two workers never registered"
                time.sleep(0.2)
            yield running
        finally:
            for process in running.workers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in running.workers:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def _enqueue(cluster: Cluster, params: list[dict[str, Any]]) -> int:
    async def go(db: Database) -> int:
        async with db.write() as session:
            execution = await jobs.enqueue(
                session, "TEST_RECORD", tasks=[jobs.TaskSpec(params=p) for p in params]
            )
            return execution.id

    result: int = cluster.run(go)
    return result


def _wait_final(cluster: Cluster, execution_id: int, within: float) -> tuple[Execution, list[Task]]:
    async def read(db: Database) -> tuple[Execution, list[Task]]:
        async with db.read() as session:
            execution = await jobs.get_execution(session, execution_id)
            tasks, _ = await jobs.list_tasks(session, execution_id)
            return execution, tasks

    deadline = time.monotonic() + within
    while True:
        execution, tasks = cluster.run(read)
        if execution.status in jobs.FINAL_STATUSES:
            return execution, tasks
        assert time.monotonic() < deadline, f"still {execution.status}"
        time.sleep(0.3)


def _records(path: Path) -> list[tuple[int, int, str]]:
    if not path.exists():
        return []
    return [
        (int(task), int(pid), phase)
        for task, pid, phase, _attempt in (line.split() for line in path.read_text().splitlines())
    ]


def test_two_hundred_tasks_run_exactly_once(cluster: Cluster, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    execution_id = _enqueue(cluster, [{"path": str(record), "sleep": 0.01}] * 200)
    execution, tasks = _wait_final(cluster, execution_id, within=120)
    assert execution.status == jobs.SUCCESS
    assert len(tasks) == 200 and {t.status for t in tasks} == {jobs.SUCCESS}
    assert {t.run_count for t in tasks} == {1}
    lines = _records(record)
    starts = Counter(task for task, _, phase in lines if phase == "start")
    done = Counter(task for task, _, phase in lines if phase == "done")
    assert starts == done == Counter({t.id: 1 for t in tasks})
    processes = {pid for _, pid, _ in lines}
    assert len(processes) >= 2, "the work should have been shared between processes"


def test_a_killed_workers_task_is_retried_and_finishes(cluster: Cluster, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    # five slots in all (serve 1, each worker 2): six slow tasks keep every slot busy
    execution_id = _enqueue(cluster, [{"path": str(record), "sleep": 4}] * 6)
    worker_pids = {p.pid for p in cluster.workers if p.poll() is None}
    deadline = time.monotonic() + 30
    while True:
        busy = {pid for _, pid, phase in _records(record) if phase == "start"} & worker_pids
        if busy:
            break
        assert time.monotonic() < deadline, "no worker process took a task"
        time.sleep(0.1)
    victim = sorted(busy)[0]
    os.kill(victim, signal.SIGKILL)
    killed_tasks = {task for task, pid, phase in _records(record) if pid == victim}
    assert killed_tasks
    execution, tasks = _wait_final(cluster, execution_id, within=90)
    assert execution.status == jobs.SUCCESS, execution.status_message
    lines = _records(record)
    done = Counter(task for task, _, phase in lines if phase == "done")
    assert done == Counter({t.id: 1 for t in tasks})
    for task in tasks:
        if task.id in killed_tasks:
            assert task.run_count == 2
            finisher = {pid for t, pid, phase in lines if t == task.id and phase == "done"}
            assert victim not in finisher
    cluster.workers = [p for p in cluster.workers if p.poll() is None]
    cluster.start_worker()  # keep two workers for the tests that follow


def test_a_schedule_fires_once_per_period_across_processes(
    cluster: Cluster, tmp_path: Path
) -> None:
    record = tmp_path / "record.txt"

    async def schedule(db: Database) -> None:
        async with db.write() as session:
            await schedules.set_schedule(
                session,
                "TEST_RECORD",
                schedules.CronSpec(schedules.CUSTOM, "*/2 * * * * *"),
                {"path": str(record)},
                vendor_id=4242,
            )

    async def unschedule(db: Database) -> list[Execution]:
        async with db.write() as session:
            await schedules.remove_schedule(session, "TEST_RECORD", 4242)
        async with db.read() as session:
            return list(
                await session.scalars(
                    select(Execution).where(
                        Execution.vendor_type == "TEST_RECORD", Execution.vendor_id == 4242
                    )
                )
            )

    cluster.run(schedule)
    started = time.monotonic()
    time.sleep(9)
    executions = cluster.run(unschedule)
    elapsed = time.monotonic() - started
    # every process runs a scheduler; each 2-second period must still start one execution
    assert 3 <= len(executions) <= elapsed / 2 + 1, [e.start_time for e in executions]
    for execution in executions:
        _wait_final(cluster, execution.id, within=30)
    done = [task for task, _, phase in _records(record) if phase == "done"]
    assert len(done) == len(executions) == len(set(done))
