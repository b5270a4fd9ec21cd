"""The job system on SQLite and PostgreSQL: enqueue with the cause's transaction,
run once, retry with backoff, stop, resume from a checkpoint, schedules firing once
across workers, pruning, and the job service dashboard API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.support.sample_jobs import job_types as sample_job_types

from dockyard.app import start_workers
from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task
from dockyard.jobs.runner import JobEnvironment, JobRunner, backoff_seconds

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _start(state: AppState, vendor_type: str, tasks: list[dict[str, Any]], **kw: Any) -> int:
    async with state.db.write() as session:
        execution = await jobs.enqueue(
            session,
            vendor_type,
            tasks=[jobs.TaskSpec(params=p, max_attempts=kw.get("max_attempts", 3)) for p in tasks],
        )
        return execution.id


async def _wait_final(state: AppState, execution_id: int, within: float = 30) -> Execution:
    deadline = time.monotonic() + within
    while True:
        async with state.db.read() as session:
            execution = await jobs.get_execution(session, execution_id)
        if execution.status in jobs.FINAL_STATUSES:
            return execution
        assert time.monotonic() < deadline, f"execution {execution_id} still {execution.status}"
        await asyncio.sleep(0.1)


async def _tasks(state: AppState, execution_id: int) -> list[Task]:
    async with state.db.read() as session:
        tasks, _ = await jobs.list_tasks(session, execution_id)
    return tasks


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def test_job_commits_with_its_cause_and_runs_once(state: AppState, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"

    async def failing_change() -> None:
        async with state.db.write() as session:
            await jobs.enqueue(session, "TEST_RECORD", extra_attrs={"path": str(record)})
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await failing_change()
    execution_id = await _start(state, "TEST_RECORD", [{"path": str(record)}] * 5)
    execution = await _wait_final(state, execution_id)
    assert execution.status == jobs.SUCCESS
    assert execution.end_time is not None
    tasks = await _tasks(state, execution_id)
    assert [t.status for t in tasks] == [jobs.SUCCESS] * 5
    done = Counter(int(line[0]) for line in _lines(record) if line[2] == "done")
    assert done == Counter({t.id: 1 for t in tasks})  # the rolled-back job never ran
    assert all(jobs.loads(t.extra_attrs)["recorded_by"] for t in tasks)
    async with state.db.read() as session:
        log = await jobs.task_log(session, tasks[0].id)
        counts = (await jobs.metrics(session, [execution_id]))[execution_id]
    assert "attempt 1 on" in log
    assert counts.task_count == 5 and counts.success_task_count == 5


async def test_the_job_type_hears_once_that_its_execution_finished(
    state: AppState, tmp_path: Path
) -> None:
    record, finish = tmp_path / "record.txt", tmp_path / "finish.txt"
    async with state.db.write() as session:
        execution = await jobs.enqueue(
            session,
            "TEST_RECORD",
            extra_attrs={"finish_path": str(finish)},
            tasks=[jobs.TaskSpec(params={"path": str(record), "sleep": 0.05})] * 4
            + [jobs.TaskSpec(params={"path": str(record), "permanent": True})],
        )
    assert (await _wait_final(state, execution.id)).status == jobs.ERROR
    await asyncio.sleep(0.3)
    assert finish.read_text().splitlines() == [f"finished {execution.id} Error"]


async def test_failures_retry_with_backoff_then_give_up(state: AppState, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    flaky = await _start(state, "TEST_RECORD", [{"path": str(record), "fail_times": 2}])
    hopeless = await _start(state, "TEST_RECORD", [{"path": str(record), "fail_times": 9}])
    permanent = await _start(state, "TEST_RECORD", [{"path": str(record), "permanent": True}])
    assert (await _wait_final(state, flaky)).status == jobs.SUCCESS
    [task] = await _tasks(state, flaky)
    assert task.run_count == 3
    failed = await _wait_final(state, hopeless)
    assert failed.status == jobs.ERROR
    assert "failing attempt 3 on purpose" in failed.status_message
    [task] = await _tasks(state, hopeless)
    assert task.run_count == 3
    assert (await _wait_final(state, permanent)).status == jobs.ERROR
    [task] = await _tasks(state, permanent)
    assert task.run_count == 1 and task.status_message == "told to fail"
    assert backoff_seconds(5, 1) == 5 and backoff_seconds(5, 3) == 20
    assert backoff_seconds(5, 30) == 600


async def test_stop_a_running_execution(state: AppState) -> None:
    execution_id = await _start(state, "TEST_STEPS", [{"steps": 1000, "sleep": 0.02}])
    deadline = time.monotonic() + 10
    while (await _tasks(state, execution_id))[0].status != jobs.RUNNING:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    async with state.db.write() as session:
        await jobs.stop_execution(session, await jobs.get_execution(session, execution_id))
    execution = await _wait_final(state, execution_id)
    assert execution.status == jobs.STOPPED
    [task] = await _tasks(state, execution_id)
    assert 0 < jobs.loads(task.progress)["done"] < 1000
    async with state.db.write() as session:
        with pytest.raises(jobs.PreconditionFailedError):
            await jobs.stop_execution(session, await jobs.get_execution(session, execution_id))


async def test_handed_back_task_resumes_from_its_checkpoint(state: AppState) -> None:
    """A worker that stops mid-task hands it back; the next run starts where it was."""
    assert state.jobs is not None
    await state.jobs.close()  # the app's own workers step aside for this test
    try:
        settings = state.settings.model_copy(update={"job_workers": 1})
        env = JobEnvironment(settings, state.db, state.storage, state.registry)
        types = {job.name: job for job in sample_job_types}
        first = JobRunner(env, types, run_scheduler=False)
        await first.start()
        execution_id = await _start(state, "TEST_STEPS", [{"steps": 40, "sleep": 0.02}])
        deadline = time.monotonic() + 10
        while jobs.loads((await _tasks(state, execution_id))[0].progress).get("done", 0) < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await first.close()
        [task] = await _tasks(state, execution_id)
        saved = jobs.loads(task.progress)["done"]
        assert task.status == jobs.PENDING and saved >= 5
        second = JobRunner(env, types, run_scheduler=False)
        await second.start()
        try:
            assert (await _wait_final(state, execution_id)).status == jobs.SUCCESS
        finally:
            await second.close()
        [task] = await _tasks(state, execution_id)
        assert jobs.loads(task.extra_attrs)["done"] == 40
        async with state.db.read() as session:
            log = await jobs.task_log(session, task.id)
        steps = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if " step " in line]
        assert Counter(steps)[1] == 1, "the second run must not start over"
        assert sorted(set(steps)) == list(range(1, 41))
    finally:
        await start_workers(state)  # the app's workers, as the app starts them


async def test_schedule_fires_once_per_period_across_workers(state: AppState) -> None:
    env = JobEnvironment(state.settings, state.db, state.storage, state.registry)
    extra = [JobRunner(env, {}, concurrency=1) for _ in range(2)]  # two more schedulers
    vendor_id = int(time.time() * 1000) % 1_000_000_000
    async with state.db.write() as session:
        await schedules.set_schedule(
            session,
            "TEST_STEPS",
            schedules.CronSpec(schedules.CUSTOM, "* * * * * *"),
            {"steps": 1, "sleep": 0},
            vendor_id=vendor_id,
        )
    for runner in extra:
        await runner.start()
    started = time.monotonic()
    await asyncio.sleep(4.5)
    async with state.db.write() as session:
        assert await schedules.remove_schedule(session, "TEST_STEPS", vendor_id)
    elapsed = time.monotonic() - started
    for runner in extra:
        await runner.close()
    async with state.db.read() as session:
        rows = list(
            await session.scalars(
                select(Execution).where(
                    Execution.vendor_type == "TEST_STEPS", Execution.vendor_id == vendor_id
                )
            )
        )
    # One firing per second, whichever of the three processes' schedulers saw it first.
    assert 2 <= len(rows) <= int(elapsed) + 1, [r.start_time for r in rows]
    assert {r.trigger for r in rows} == {jobs.SCHEDULE}
    seconds = Counter(r.start_time.replace(microsecond=0) for r in rows)
    assert max(seconds.values()) <= 2  # never three at once


async def test_old_executions_are_pruned(state: AppState) -> None:
    vendor_id = int(time.time() * 1000) % 1_000_000_000 + 7
    async with state.db.write() as session:
        ids = []
        for _ in range(6):
            execution = await jobs.enqueue(session, "TEST_PRUNE", vendor_id=vendor_id, tasks=[])
            ids.append(execution.id)
        old = await jobs.enqueue(session, "TEST_PRUNE", vendor_id=vendor_id + 1, tasks=[])
        old.end_time = utcnow() - timedelta(days=40)
    async with state.db.write() as session:
        await jobs.prune_executions(session, keep_count=2, max_age=timedelta(days=30))
    async with state.db.read() as session:
        left = list(
            await session.scalars(
                select(Execution.id)
                .where(Execution.vendor_type == "TEST_PRUNE")
                .where(Execution.vendor_id.in_([vendor_id, vendor_id + 1]))
                .order_by(Execution.id)
            )
        )
        count = await session.scalar(select(func.count()).select_from(Execution))
    assert left == ids[-2:]
    assert count is not None


HARBOR_QUEUES = {
    "AUDIT_LOGS_GDPR_COMPLIANT",
    "EXECUTION_SWEEP",
    "GARBAGE_COLLECTION",
    "IMAGE_SCAN",
    "P2P_PREHEAT",
    "PURGE_AUDIT_LOG",
    "REPLICATION",
    "RETENTION",
    "SCAN_DATA_EXPORT",
    "SCHEDULER",
    "SLACK",
    "SYSTEM_ARTIFACT_CLEANUP",
    "WEBHOOK",
}


async def test_dashboard_answers_as_harbor(state: AppState, admin: httpx.AsyncClient) -> None:
    """Every queue Harbor lists (empty where Dockyard lacks the feature), string job
    ids, ``all`` as the only schedule job type, an unknown pool without workers."""
    queues = {q["job_type"]: q for q in (await admin.get("/api/v2.0/jobservice/queues")).json()}
    assert len(HARBOR_QUEUES) == 13
    assert set(queues) >= HARBOR_QUEUES
    assert queues["IMAGE_SCAN"] == {
        "job_type": "IMAGE_SCAN",
        "count": 0,
        "latency": 0,
        "paused": False,
    }
    paused = await admin.get("/api/v2.0/schedules/GARBAGE_COLLECTION/paused")
    assert paused.status_code == 400
    assert paused.json()["errors"][0]["message"] == "job_type can only be 'all'"
    assert (await admin.get("/api/v2.0/schedules/all/paused")).json() == {"paused": False}
    assert (await admin.get("/api/v2.0/schedules/ALL/paused")).status_code == 200

    unknown_pool = await admin.get("/api/v2.0/jobservice/pools/no-such-pool/workers")
    assert unknown_pool.status_code == 200 and unknown_pool.json() == []

    # Harbor's job ids are strings: one Dockyard never issued is simply not found.
    for job_id in ("6f1c2b9d8e7a6f5e4d3c2b1a", "not-a-job"):
        assert (await admin.put(f"/api/v2.0/jobservice/jobs/{job_id}")).status_code == 404
        assert (await admin.get(f"/api/v2.0/jobservice/jobs/{job_id}/log")).status_code == 404
    long_run = await _start(state, "TEST_STEPS", [{"steps": 1000, "sleep": 0.02}])
    [task] = await _tasks(state, long_run)
    deadline = time.monotonic() + 30
    while task.status != jobs.RUNNING:
        assert time.monotonic() < deadline, task.status
        await asyncio.sleep(0.05)
        [task] = await _tasks(state, long_run)
    workers = (await admin.get("/api/v2.0/jobservice/pools/all/workers")).json()
    assert workers and all(isinstance(w["job_id"], str) for w in workers)
    # "all" stops every running job, as in Harbor.
    assert (await admin.put("/api/v2.0/jobservice/jobs/all")).status_code == 200
    assert (await _wait_final(state, long_run)).status == jobs.STOPPED


async def test_dashboard_api(
    state: AppState, admin: httpx.AsyncClient, anon: httpx.AsyncClient, tmp_path: Path
) -> None:
    queues = (await admin.get("/api/v2.0/jobservice/queues")).json()
    assert {"TEST_RECORD", "TEST_STEPS"} <= {q["job_type"] for q in queues}
    pools = (await admin.get("/api/v2.0/jobservice/pools")).json()
    assert pools and all(p["concurrency"] >= 1 for p in pools)
    workers = (
        await admin.get(f"/api/v2.0/jobservice/pools/{pools[0]['worker_pool_id']}/workers")
    ).json()
    assert workers and all(w["pool_id"] == pools[0]["worker_pool_id"] for w in workers)

    # pause: nothing of that type runs; resume: it runs
    paused = await admin.put("/api/v2.0/jobservice/queues/TEST_RECORD", json={"action": "pause"})
    assert paused.status_code == 200
    waiting = {q["job_type"]: q for q in (await admin.get("/api/v2.0/jobservice/queues")).json()}
    assert waiting["TEST_RECORD"]["paused"]
    record = tmp_path / "r.txt"
    execution_id = await _start(state, "TEST_RECORD", [{"path": str(record)}])
    await asyncio.sleep(1.0)
    assert (await _tasks(state, execution_id))[0].status == jobs.PENDING
    waiting = {q["job_type"]: q for q in (await admin.get("/api/v2.0/jobservice/queues")).json()}
    assert waiting["TEST_RECORD"]["paused"] and waiting["TEST_RECORD"]["count"] >= 1
    await admin.put("/api/v2.0/jobservice/queues/TEST_RECORD", json={"action": "resume"})
    assert (await _wait_final(state, execution_id)).status == jobs.SUCCESS
    [task] = await _tasks(state, execution_id)
    log = await admin.get(f"/api/v2.0/jobservice/jobs/{task.id}/log")
    assert log.status_code == 200 and "attempt 1" in log.text
    # stopping a finished job is refused; a running one stops
    assert (await admin.put(f"/api/v2.0/jobservice/jobs/{task.id}")).status_code == 200
    assert (await _tasks(state, execution_id))[0].status == jobs.SUCCESS  # stays as it ended
    long_run = await _start(state, "TEST_STEPS", [{"steps": 1000, "sleep": 0.02}])
    [task] = await _tasks(state, long_run)
    assert (await admin.put(f"/api/v2.0/jobservice/jobs/{task.id}")).status_code == 200
    assert (await _wait_final(state, long_run)).status == jobs.STOPPED

    # the queue "stop" action empties pending tasks
    await admin.put("/api/v2.0/jobservice/queues/TEST_RECORD", json={"action": "pause"})
    pending = await _start(state, "TEST_RECORD", [{"path": str(record)}] * 3)
    await admin.put("/api/v2.0/jobservice/queues/TEST_RECORD", json={"action": "stop"})
    await admin.put("/api/v2.0/jobservice/queues/TEST_RECORD", json={"action": "resume"})
    assert (await _wait_final(state, pending)).status == jobs.STOPPED

    bad = await admin.put("/api/v2.0/jobservice/queues/NOPE", json={"action": "pause"})
    assert bad.status_code == 404
    bad = await admin.put("/api/v2.0/jobservice/queues/all", json={"action": "explode"})
    assert bad.status_code == 422
    assert (await admin.get("/api/v2.0/jobservice/jobs/999999999/log")).status_code == 404
    listed = await admin.get("/api/v2.0/schedules")
    assert listed.status_code == 200 and "X-Total-Count" in listed.headers
    for path in (
        "/api/v2.0/jobservice/queues",
        "/api/v2.0/jobservice/pools",
        "/api/v2.0/schedules",
    ):
        assert (await anon.get(path)).status_code == 401
