"""Scan all at scale: Dockyard's side of a scan-all run, with an adapter that answers at once.

Run from the repository root:

    .venv/bin/python bench/scan_all_bench.py [--artifacts N] [--workers W] \
        [--backend sqlite|postgresql|both] [--scanner stub|builtin] \
        [--records R] [--packages P] [--processes K] [--profile FILE]

``--scanner builtin`` (issue 18's figure): one ``dockyard serve`` (``--processes`` ASGI
processes, ``--workers`` job workers each) with its built-in adapter on, registered as its
own default scanner; N images seeded in its tables and storage, each one layer holding an
os-release and a dpkg database of ``--packages`` packages sampled from this machine's; ``R``
OSV records imported (``bench/scanner_bench.py``'s, 50,000 by default); one scan all through
the API. Prints the rate against its target (>= 20 artifacts/s on 2 cores), what bounds it
(the server's CPU per artifact and cores busy, from ``/proc``; the load average before and
after), rows and bytes stored per artifact (per table) and the server's peak RSS (target
< 500 MiB). ``--profile`` records the server with py-spy (raw stacks) while the run lasts.

The default, ``--scanner stub``:

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
import contextlib
import gzip
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.support.layer_tars import layer
from tests.support.scan_stub import stub_adapter, vulnerability

import scanner_bench
from dockyard.db.engine import Database
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Task
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
from dockyard.scan import jobs as scan_jobs
from dockyard.scan import scanall
from dockyard.scan.models import ReportVulnerability, ScannerRegistration, ScanReport
from dockyard.scanner import vulndb
from dockyard.settings import Settings
from dockyard.storage.filesystem import FilesystemStorage
from dockyard.storage.layout import blob_key
from dockyard.system.bootstrap import prepare

BATCH = 2_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


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


# --- the built-in scanner, end to end (a real server process) -----------------------------


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_blobs(count: int, packages: int) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(layer, config, manifest) of ``count`` small images, each one layer holding an
    os-release and a dpkg database of ``packages`` packages sampled from this machine's."""
    rng = random.Random(5)
    paragraphs = scanner_bench.status_paragraphs()
    release = Path("/usr/lib/os-release").read_bytes()
    for i in range(count):
        chosen = rng.sample(paragraphs, min(packages, len(paragraphs)))
        status = b"\n\n".join(chosen) + b"\n"
        blob = layer([("etc/os-release", release), ("var/lib/dpkg/status", status)])
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [_sha(gzip.decompress(blob))]},
                "config": {"Labels": {"n": str(i)}},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": _sha(blob), "size": len(blob)}],
            }
        ).encode()
        yield blob, config, manifest


async def seed_images(db: Database, root: Path, count: int, packages: int) -> None:
    """``count`` tagged images in ``library/bench``: rows and files, as a push leaves them."""
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
    images = image_blobs(count, packages)
    for start in range(0, count, 500):
        batch = [next(images) for _ in range(min(500, count - start))]
        blobs: dict[str, tuple[bytes, str]] = {}
        artifacts, links = [], []
        for blob, config, manifest in batch:
            blobs[_sha(blob)] = (blob, "")
            blobs[_sha(config)] = (config, "")
            blobs[_sha(manifest)] = (manifest, OCI_MANIFEST)
            artifacts.append(
                {
                    "type": "IMAGE",
                    "media_type": OCI_CONFIG,
                    "manifest_media_type": OCI_MANIFEST,
                    "project_id": project_id,
                    "repository_id": repository_id,
                    "repository_name": "library/bench",
                    "digest": _sha(manifest),
                    "size": len(blob) + len(config) + len(manifest),
                    "icon": "",
                }
            )
            links += [
                {"digest_af": _sha(manifest), "digest_blob": d}
                for d in (_sha(blob), _sha(config), _sha(manifest))
            ]
        for digest, (data, _) in blobs.items():
            path = root / blob_key(digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        async with db.write() as session:
            await session.execute(
                insert(Blob),
                [
                    {"digest": d, "size": len(b), "content_type": t, "status": "none", "version": 0}
                    for d, (b, t) in blobs.items()
                ],
            )
            ids = list(
                (
                    await session.execute(select(Blob.id).where(Blob.digest.in_(list(blobs))))
                ).scalars()
            )
            await session.execute(
                insert(RepositoryBlob),
                [{"repository_id": repository_id, "blob_id": b} for b in ids],
            )
            await session.execute(
                insert(ProjectBlob), [{"project_id": project_id, "blob_id": b} for b in ids]
            )
            await session.execute(insert(ArtifactBlob), links)
            await session.execute(insert(Artifact), artifacts)
            made = await session.execute(
                select(Artifact.id, Artifact.digest).where(
                    Artifact.digest.in_([a["digest"] for a in artifacts])
                )
            )
            await session.execute(
                insert(Tag),
                [
                    {"repository_id": repository_id, "artifact_id": a, "name": f"t{d[-12:]}"}
                    for a, d in made
                ],
            )


SCAN_TABLES = (
    "scan_report",
    "report_vulnerability",
    "vulnerability_record",
    "scanner_adapter_scan",
)


async def scan_rows(db: Database) -> dict[str, tuple[int, int]]:
    """(rows, bytes) of each table the scans fill: the reports, their links to the shared
    records, the records, and the adapter's own results (kept ``scanner_adapter_report_hours``)."""
    found: dict[str, tuple[int, int]] = {}
    async with db.read() as session:
        for table in SCAN_TABLES:  # names from the tuple above, not from input
            count = text(f"SELECT count(*) FROM {table}")  # noqa: S608
            rows = int((await session.execute(count)).scalar_one())
            if db.dialect == "sqlite":
                size_of = text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = :t")
            else:
                size_of = text("SELECT pg_total_relation_size(:t)")
            size = int((await session.execute(size_of, {"t": table})).scalar_one())
            found[table] = (rows, size)
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's ASGI worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def peak_rss_mib(pid: int) -> float:
    """The largest peak RSS among the server's processes."""
    peak = 0
    for each in process_tree(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


BUILTIN_ENV = {
    "DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true",
    "DOCKYARD_SCANNER_ADAPTER_ENABLED": "true",
    "DOCKYARD_SCANNER_ADAPTER_API_KEY": "bench-key",
    "DOCKYARD_JOB_POLL_SECONDS": "0.2",
    "DOCKYARD_LOG_LEVEL": "warning",
}
"""A server's settings for the built-in scanner benches (its adapter on, with a key)."""


async def import_osv_records(db: Database, count: int) -> None:
    """``bench/scanner_bench.py``'s OSV records: a third on source packages of this machine."""
    everything = scanner_bench.inventories(1, 10_000)[0]
    sources = sorted(
        {(p.source_name or p.name, p.source_version or p.version) for p in everything.packages}
    )
    await vulndb.import_records(db, scanner_bench.records(count, sources))


def register_builtin_scanner(client: httpx.Client, server_url: str) -> None:
    """The server's own adapter registered as its default scanner."""
    answer = client.post(
        "/api/v2.0/scanners",
        json={
            "name": "builtin",
            "url": f"{server_url}/scanner/v1",
            "auth": "Bearer",
            "access_credential": "bench-key",
        },
    )
    assert answer.status_code == 201, answer.text
    uuid_ = answer.headers["Location"].rsplit("/", 1)[1]
    answer = client.patch(f"/api/v2.0/scanners/{uuid_}", json={"is_default": True})
    assert answer.status_code == 200, answer.text


def run_builtin(backend: str, args: argparse.Namespace) -> None:
    """One ``dockyard serve`` with its built-in adapter on, registered as its own scanner;
    N images seeded, the OSV records imported, one scan all timed from the API."""
    from tests.support.server import DockyardServer

    with contextlib.ExitStack() as stack:
        url = None if backend == "sqlite" else stack.enter_context(database_url(backend))
        env = {
            **BUILTIN_ENV,
            "DOCKYARD_JOB_WORKERS": str(args.workers),
            "DOCKYARD_WORKERS": str(args.processes),
        }
        server = stack.enter_context(DockyardServer(database_url=url, env=env, disposable=True))
        db_url = url or f"sqlite:///{server.data_dir / 'dockyard.db'}"
        began = time.perf_counter()

        async def prepare_data() -> None:
            db = Database(db_url)
            try:
                await seed_images(db, server.data_dir / "storage", args.artifacts, args.packages)
                await import_osv_records(db, args.records)
            finally:
                await db.dispose()

        asyncio.run(prepare_data())
        _log(
            f"{backend}: seeded {args.artifacts:,} images and {args.records:,} OSV records "
            f"in {time.perf_counter() - began:.0f}s"
        )
        client = stack.enter_context(
            httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60)
        )
        register_builtin_scanner(client, server.url)
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_seconds(server.pid)
        profiler = None
        if args.profile:  # py-spy on the server's processes while the run lasts
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    args.profile,
                ],
                stdout=subprocess.DEVNULL,
            )
        started = time.perf_counter()
        answer = client.post(
            "/api/v2.0/system/scanAll/schedule", json={"schedule": {"type": "Manual"}}
        )
        assert answer.status_code == 201, answer.text
        while True:
            stats = client.get("/api/v2.0/scans/all/metrics").json()
            if stats["total"] and not stats["ongoing"] and stats["completed"] >= stats["total"]:
                break
            time.sleep(0.25)
        wall = time.perf_counter() - started
        cpu = _cpu_seconds(server.pid) - cpu_before
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait()
        load = os.getloadavg()
        ok = stats["metrics"].get("Success", 0)
        rss = peak_rss_mib(server.pid or 0)
        db = Database(db_url)
        tables = asyncio.run(_rows_and_dispose(db))
        rows = sum(r for t, (r, _) in tables.items() if t != "scanner_adapter_scan")
        size = sum(b for t, (_, b) in tables.items() if t != "scanner_adapter_scan")
        per = cpu / args.artifacts
        processes = len(process_tree(server.pid or 0)) - 1  # the ASGI workers
        _log(
            f"{backend}: scan all of {args.artifacts:,} images ({args.packages} dpkg packages "
            f"each, {args.records:,} OSV records), built-in scanner, "
            f"job_workers={args.workers} per process"
        )
        _log(
            f"  rate: {args.artifacts / wall:.1f} artifacts/s ({wall:.1f}s; {ok:,} Success of "
            f"{stats['total']:,}); target >= 20 on 2 cores"
        )
        _log(
            f"  bound: server CPU {per * 1000:.0f} ms per artifact, {cpu / wall:.2f} cores busy "
            f"of the {processes} ASGI process(es) (at most 1 core each: "
            f"<= {processes / per:.1f} artifacts/s on an idle machine); load average "
            f"{load_before:.1f} before, {load[0]:.1f} after, {os.cpu_count()} cores"
        )
        _log(
            f"  stored: {rows / args.artifacts:.1f} rows, {size / args.artifacts / 1024:.1f} KiB "
            f"per artifact (reports, links, records; the adapter's results apart)"
        )
        _log(f"  server peak RSS {rss:.0f} MiB; target < 500")
        for table, (count, nbytes) in tables.items():
            _log(
                f"  {table}: {count / args.artifacts:.1f} rows, "
                f"{nbytes / args.artifacts / 1024:.1f} KiB per artifact"
            )


async def _rows_and_dispose(db: Database) -> dict[str, tuple[int, int]]:
    try:
        return await scan_rows(db)
    finally:
        await db.dispose()


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU of the server's processes, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in process_tree(pid or 0):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--scanner", choices=("stub", "builtin"), default="stub")
    parser.add_argument("--records", type=int, default=50_000, help="OSV records (builtin)")
    parser.add_argument("--packages", type=int, default=100, help="dpkg packages per image")
    parser.add_argument("--processes", type=int, default=1, help="builtin: ASGI processes")
    parser.add_argument("--profile", default="", help="builtin: py-spy's raw stacks to this file")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    if args.scanner == "builtin":
        for backend in backends:
            run_builtin(backend, args)
        return
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
