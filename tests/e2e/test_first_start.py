"""Many nodes starting at once (issue 12): two ``dockyard serve`` and one ``dockyard worker``
started together on a fresh database all come up, sharing one ``admin``, one ``library`` and
one token signing key. Ten rounds on PostgreSQL (a fresh database on one server per round),
two on SQLite (a fresh data directory per round, the three processes sharing it)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e

STARTUP_TIMEOUT = 120.0
WORKER_READY = "Dockyard job worker"


class Worker:
    """A ``dockyard worker`` process beside the servers, with the same environment."""

    def __init__(self, like: DockyardServer, log_path: Path) -> None:
        self.command = [
            sys.executable,
            "-m",
            "dockyard",
            "worker",
            "--data-dir",
            str(like.data_dir),
            "--concurrency",
            "1",
        ]
        self.env = like.env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while WORKER_READY not in self.output():
            code = self.process.poll()
            assert code is None, f"dockyard worker exited {code}:\n{self.output()[-6000:]}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.output()[-6000:]}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def three_at_once(
    root: Path, database_url: str | None
) -> Iterator[tuple[DockyardServer, DockyardServer, Worker]]:
    """Start two servers and a worker on one data directory at the same moment; stop them
    together afterwards."""
    data_dir = root / "data"
    servers = [
        DockyardServer(
            data_dir=data_dir, database_url=database_url, startup_timeout=STARTUP_TIMEOUT
        )
        for _ in range(2)
    ]
    worker = Worker(servers[0], root / "worker.log")
    try:
        gate = threading.Barrier(3)

        def together(start: Callable[[], None]) -> Callable[[], None]:
            def call() -> None:
                gate.wait(timeout=30)
                start()

            return call

        failures = in_threads([together(s.start) for s in servers] + [together(worker.launch)])
        if failures:
            raise failures[0]
        worker.wait_until_ready()
        yield servers[0], servers[1], worker
    finally:
        in_threads([server.close for server in servers] + [worker.stop])


def in_threads(calls: list[Callable[[], None]]) -> list[BaseException]:
    """Run the calls at once, each in its own thread; returns what they raised."""
    failures: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=STARTUP_TIMEOUT + 60)
    return failures


def check_one_cluster(a: DockyardServer, b: DockyardServer, worker: Worker) -> None:
    admin = a.admin_auth
    with httpx.Client(timeout=30) as http:
        for server in (a, b):
            users = http.get(f"{server.url}/api/v2.0/users", auth=admin)
            assert users.status_code == 200, users.text
            assert [u["username"] for u in users.json()] == ["admin"]
            assert users.headers["X-Total-Count"] == "1"
            projects = http.get(f"{server.url}/api/v2.0/projects", params={"name": "library"})
            assert [p["name"] for p in projects.json()] == ["library"]
        # One token signing key: a token that one server issued opens the other's registry.
        issued = http.get(
            f"{a.url}/service/token",
            params={"service": "dockyard", "scope": "registry:catalog:*"},
            auth=admin,
        )
        assert issued.status_code == 200, issued.text
        catalog = http.get(
            f"{b.url}/v2/_catalog",
            headers={"Authorization": f"Bearer {issued.json()['token']}"},
        )
        assert catalog.status_code == 200, catalog.text
        # The worker registered its pool in the shared database.
        pools = http.get(f"{b.url}/api/v2.0/jobservice/pools", auth=admin)
        assert pools.status_code == 200, pools.text
        assert worker.process is not None
        assert worker.process.pid in {pool["pid"] for pool in pools.json()}
    for server in (a, b):
        assert server.running, server.output_tail()
        assert "Traceback" not in server.output(), server.output_tail()
    assert worker.process is not None and worker.process.poll() is None, worker.output()


def test_two_servers_and_a_worker_start_together_on_postgres(tmp_path: Path) -> None:
    admin_url = postgres_admin_url()
    for round_ in range(10):
        root = tmp_path / f"round-{round_}"
        root.mkdir()
        with (
            temporary_database(admin_url) as url,
            three_at_once(root, url) as (a, b, worker),
        ):
            check_one_cluster(a, b, worker)


def test_two_servers_and_a_worker_start_together_on_sqlite(tmp_path: Path) -> None:
    for round_ in range(2):
        root = tmp_path / f"round-{round_}"
        root.mkdir()
        with three_at_once(root, None) as (a, b, worker):
            check_one_cluster(a, b, worker)
