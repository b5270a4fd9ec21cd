"""Garbage collection at scale: seed many blobs, half of them garbage, time one run.

Run from the repository root:

    .venv/bin/python bench/gc_bench.py [--blobs N] [--workers W] [--backend sqlite|postgresql|both]

Seeds N blobs (default 100,000) directly in the registry tables and in a
filesystem storage root: half are named by artifacts (manifests of ten blobs:
the manifest itself and nine layers, each artifact tagged), half are garbage (no
artifact names them). Every blob is linked to its repository and project, as
pushes leave them, and is a day old, so the window keeps none. Then one
``GARBAGE_COLLECTION`` run goes through the real job runner (a worker leasing the
task from the database) with ``workers`` file-deleting threads, and the bench
reports the run's wall time (execution start to end, as the history shows it) and
deleted blobs per second, and checks that exactly the garbage went.

PostgreSQL comes from ``DOCKYARD_TEST_POSTGRES_URL`` or a local server; a
throwaway database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockyard.db.engine import Database
from dockyard.gc import jobs as gc_jobs
from dockyard.gc import service as gc
from dockyard.jobs import service as jobs
from dockyard.jobs.runner import JobEnvironment, JobRunner
from dockyard.projects import repository as projects_repo
from dockyard.registry.models import (
    Artifact,
    ArtifactBlob,
    Blob,
    ProjectBlob,
    Repository,
    RepositoryBlob,
    Tag,
)
from dockyard.registry.service import RegistryService
from dockyard.settings import Settings
from dockyard.storage import blob_key
from dockyard.storage.filesystem import FilesystemStorage
from dockyard.system.bootstrap import prepare

BATCH = 2_000
BLOBS_PER_ARTIFACT = 10
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BLOB_BYTES = 512
_ANALYZE = text("ANALYZE")


def _log(message: str) -> None:
    print(message, flush=True)


def _digest(i: int) -> str:
    return f"sha256:{i:064x}"


async def seed(db: Database, root: Path, blobs: int) -> None:
    """Half the blobs named by artifacts, half garbage; rows, links and files."""
    past = datetime.now(UTC) - timedelta(days=1)
    async with db.write() as session:
        library = await projects_repo.find_project_by_name(session, "library")
        assert library is not None
        project_id = library.project_id
        await session.execute(
            insert(Repository),
            [{"name": "library/bench", "project_id": project_id, "creation_time": past}],
        )
        repository_id = await session.scalar(
            select(Repository.repository_id).where(Repository.name == "library/bench")
        )
    assert repository_id is not None
    referenced = blobs // 2 - (blobs // 2) % BLOBS_PER_ARTIFACT
    payload = os.urandom(BLOB_BYTES)
    for start in range(0, blobs, BATCH):
        end = min(start + BATCH, blobs)
        rows = [
            {
                "digest": _digest(i),
                "size": BLOB_BYTES,
                "content_type": OCI_MANIFEST if i < referenced and i % 10 == 0 else "",
                "status": "none",
                "version": 0,
                "creation_time": past,
                "update_time": past,
            }
            for i in range(start, end)
        ]
        async with db.write() as session:
            await session.execute(insert(Blob), rows)
            found = await session.execute(
                select(Blob.id).where(Blob.digest.in_([r["digest"] for r in rows]))
            )
            ids = list(found.scalars())
            await session.execute(
                insert(RepositoryBlob),
                [
                    {"repository_id": repository_id, "blob_id": b, "creation_time": past}
                    for b in ids
                ],
            )
            await session.execute(
                insert(ProjectBlob),
                [{"project_id": project_id, "blob_id": b, "creation_time": past} for b in ids],
            )
            artifacts, links, tags = [], [], []
            for i in range(start, min(end, referenced)):
                manifest = _digest(i - i % BLOBS_PER_ARTIFACT)
                links.append({"digest_af": manifest, "digest_blob": _digest(i)})
                if i % BLOBS_PER_ARTIFACT == 0:
                    artifacts.append(
                        {
                            "type": "IMAGE",
                            "media_type": "application/vnd.oci.image.config.v1+json",
                            "manifest_media_type": OCI_MANIFEST,
                            "project_id": project_id,
                            "repository_id": repository_id,
                            "repository_name": "library/bench",
                            "digest": manifest,
                            "size": BLOB_BYTES * BLOBS_PER_ARTIFACT,
                            "icon": "",
                            "push_time": past,
                        }
                    )
            if links:
                await session.execute(insert(ArtifactBlob), links)
            if artifacts:
                await session.execute(insert(Artifact), artifacts)
                made = await session.execute(
                    select(Artifact.id, Artifact.digest).where(
                        Artifact.digest.in_([a["digest"] for a in artifacts])
                    )
                )
                tags = [
                    {"repository_id": repository_id, "artifact_id": a, "name": f"t{d[-12:]}"}
                    for a, d in made
                ]
                await session.execute(insert(Tag), tags)
        for i in range(start, end):
            path = root / blob_key(_digest(i))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
    _log(f"  seeded {blobs:,} blobs ({blobs - referenced:,} garbage)")


async def run_backend(url: str, blobs: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dockyard-gc-bench-") as data:
        settings = Settings(
            data_dir=Path(data),
            database_url=url,
            admin_password="Bench12345!",
            job_poll_seconds=0.1,
        )
        db = Database(settings.effective_database_url)
        storage = FilesystemStorage(settings.effective_storage_root)
        try:
            await prepare(settings, db)
            began = time.perf_counter()
            await seed(db, settings.effective_storage_root, blobs)
            _log(f"  seeded in {time.perf_counter() - began:.0f}s")
            if db.dialect == "postgresql":
                async with db.write() as session:
                    await session.execute(_ANALYZE)
            runner = JobRunner(
                JobEnvironment(settings, db, storage, RegistryService(db, storage)),
                {t.name: t for t in gc_jobs.job_types},
                concurrency=1,
                run_scheduler=False,
            )
            await runner.start()
            try:
                params = gc.GcParams(workers=workers, time_window=1)
                async with db.write() as session:
                    execution = await gc.start(session, params)
                    assert execution is not None
                    execution_id = execution.id
                while True:
                    async with db.read() as session:
                        row = await jobs.get_execution(session, execution_id)
                        if row.status in jobs.FINAL_STATUSES:
                            break
                    await asyncio.sleep(0.05)
            finally:
                await runner.close()
            assert row.status == jobs.SUCCESS, row.status_message
            assert row.end_time is not None
            wall = (row.end_time - row.start_time).total_seconds()
            totals = jobs.loads(row.extra_attrs)
            deleted = int(totals["purged_blobs"]) + int(totals["purged_manifests"])
            async with db.read() as session:
                left = int(await session.scalar(select(func.count()).select_from(Blob)) or 0)
            files = sum(len(f) for _, _, f in os.walk(settings.effective_storage_root / "blobs"))
            assert left == files == blobs - deleted, (left, files, deleted)
            async with db.read() as session:
                _log((await jobs.execution_log(session, execution_id)).rstrip())
            return {"blobs": blobs, "deleted": deleted, "wall": wall, "rate": deleted / wall}
        finally:
            await db.dispose()


@contextmanager
def database_url(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dockyard-gc-bench-db-") as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    from tests.support.postgres import postgres_admin_url, temporary_database

    with temporary_database(postgres_admin_url()) as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    rows = []
    for backend in backends:
        _log(f"{backend}: {args.blobs:,} blobs, workers={args.workers}")
        with database_url(backend) as url:
            result = asyncio.run(run_backend(url, args.blobs, args.workers))
        _log(f"  GC: {result['deleted']:,} deleted in {result['wall']:.2f}s")
        rows.append((backend, result))
    _log("")
    _log("| backend | blobs | garbage deleted | wall time s | deleted blobs/s |")
    _log("|---|---:|---:|---:|---:|")
    for backend, r in rows:
        _log(
            f"| {backend} | {int(r['blobs']):,} | {int(r['deleted']):,} | "
            f"{r['wall']:.2f} | {r['rate']:,.0f} |"
        )


if __name__ == "__main__":
    main()
