"""Scan all at scale: Dockyard's side of a scan-all run, with an adapter that answers at once.

Run from the repository root:

    .venv/bin/python bench/scan_all_bench.py [--artifacts N] [--workers W] \
        [--backend sqlite|postgresql|both]

Seeds N image artifacts (default 2,000, each tagged) directly in the registry tables,
registers a stub scanner adapter on loopback (``tests/support/scan_stub.py``: metadata,
``POST /scan`` and a report of three findings answered at once, so the adapter's own scan
time is out of the figure), then runs one ``SCAN_ALL`` through the real job runner with
``workers`` concurrent tasks: the planner enqueues the scans 500 per transaction, the scan
tasks call the adapter (metadata, scan, report) and store the reports and their links.
Reports: the planner's enqueue rate, the run's artifacts per second (execution start to
end), database rows per artifact, peak RSS. The scan of a real image by the built-in
scanner (pulling and matching) is ``bench/scanner_bench.py``'s figure, to be added on top.

PostgreSQL comes from ``DOCKYARD_TEST_POSTGRES_URL`` or a local server; a throwaway
database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.scan_stub import stub_adapter, vulnerability

from dockyard.db.engine import Database
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Task
from dockyard.jobs.runner import JobEnvironment, JobRunner
from dockyard.projects import repository as projects_repo
from dockyard.registry.models import Artifact, Repository, Tag
from dockyard.registry.service import RegistryService
from dockyard.scan import jobs as scan_jobs
from dockyard.scan import scanall
from dockyard.scan.models import ReportVulnerability, ScannerRegistration, ScanReport
from dockyard.settings import Settings
from dockyard.storage.filesystem import FilesystemStorage
from dockyard.system.bootstrap import prepare

BATCH = 2_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _log(message: str) -> None:
    print(message, flush=True)


async def seed(db: Database, count: int, adapter_url: str) -> None:
    async with db.write() as session:
        library = await projects_repo.find_project_by_name(session, "library")
        assert library is not None
        project_id = library.project_id
        await session.execute(
            insert(Repository), [{"name": "library/bench", "project_id": project_id}]
        )
        repository_id = await session.scalar(
            select(Repository.repository_id).where(Repository.name == "library/bench")
        )
        session.add(
            ScannerRegistration(
                uuid=str(uuid.uuid4()), name="stub", url=adapter_url, is_default=True
            )
        )
    for start in range(0, count, BATCH):
        rows = [
            {
                "type": "IMAGE",
                "media_type": "application/vnd.oci.image.config.v1+json",
                "manifest_media_type": OCI_MANIFEST,
                "project_id": project_id,
                "repository_id": repository_id,
                "repository_name": "library/bench",
                "digest": f"sha256:{i:064x}",
                "size": 1024,
                "icon": "",
            }
            for i in range(start, min(start + BATCH, count))
        ]
        async with db.write() as session:
            await session.execute(insert(Artifact), rows)
            made = await session.execute(
                select(Artifact.id, Artifact.digest).where(
                    Artifact.digest.in_([r["digest"] for r in rows])
                )
            )
            await session.execute(
                insert(Tag),
                [
                    {"repository_id": repository_id, "artifact_id": a, "name": f"t{d[-12:]}"}
                    for a, d in made
                ],
            )


async def run_backend(url: str, count: int, workers: int, adapter_url: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dockyard-scanall-bench-") as data:
        settings = Settings(
            data_dir=Path(data),
            database_url=url,
            admin_password="Bench12345!",
            job_poll_seconds=0.05,
            egress_allow_loopback=True,
        )
        db = Database(settings.effective_database_url)
        storage = FilesystemStorage(settings.effective_storage_root)
        try:
            await prepare(settings, db)
            await seed(db, count, adapter_url)
            runner = JobRunner(
                JobEnvironment(settings, db, storage, RegistryService(db, storage)),
                {t.name: t for t in scan_jobs.job_types},
                concurrency=workers,
                run_scheduler=False,
            )
            await runner.start()
            try:
                async with db.write() as session:
                    execution = await scanall.launch(session, "admin", jobs.MANUAL)
                    assert execution is not None
                    execution_id = execution.id
                while True:
                    async with db.read() as session:
                        row = await jobs.get_execution(session, execution_id)
                        if row.status in jobs.FINAL_STATUSES:
                            break
                    await asyncio.sleep(0.2)
            finally:
                await runner.close()
            assert row.end_time is not None
            async with db.read() as session:
                planner = await session.scalar(
                    select(Task).where(Task.execution_id == execution_id).order_by(Task.id).limit(1)
                )
                ok = await session.scalar(
                    select(func.count())
                    .select_from(ScanReport)
                    .where(ScanReport.status == "Success")
                )
                links = await session.scalar(select(func.count()).select_from(ReportVulnerability))
            assert planner is not None
            assert planner.start_time is not None
            assert planner.end_time is not None
            assert ok == count, (ok, count, row.status, row.status_message)
            wall = (row.end_time - row.start_time).total_seconds()
            plan = (planner.end_time - planner.start_time).total_seconds()
            return {
                "artifacts": count,
                "wall": wall,
                "rate": count / wall,
                "plan_rate": count / max(plan, 1e-6),
                "links_per_artifact": int(links or 0) / count,
            }
        finally:
            await db.dispose()


@contextmanager
def database_url(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dockyard-scanall-bench-db-") as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    from tests.support.postgres import postgres_admin_url, temporary_database

    with temporary_database(postgres_admin_url()) as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    with stub_adapter() as adapter:
        adapter.vulnerabilities = [
            vulnerability("CVE-2026-1", "openssl", "High"),
            vulnerability("CVE-2026-2", "zlib", "Medium"),
            vulnerability("CVE-2026-3", "bash", "Low"),
        ]
        for backend in backends:
            began = time.perf_counter()
            with database_url(backend) as url:
                result = asyncio.run(run_backend(url, args.artifacts, args.workers, adapter.url))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            _log(
                f"{backend}: {result['artifacts']:,} artifacts, workers={args.workers}: "
                f"scan all {result['wall']:.1f}s = {result['rate']:.1f} artifacts/s; "
                f"planner {result['plan_rate']:.0f} artifacts/s; "
                f"{result['links_per_artifact']:.0f} links/artifact; peak RSS {rss:.0f} MiB "
                f"({time.perf_counter() - began:.0f}s in all)"
            )


if __name__ == "__main__":
    main()
