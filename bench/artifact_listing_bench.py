"""Artifact listing at scale: seed many artifacts, time the pages Harbor's UI asks for.

Run from the repository root:

    .venv/bin/python bench/artifact_listing_bench.py [--quick | --artifacts N]
        [--repositories R] [--backend sqlite|postgresql|both] [--samples S]

Seeds N artifacts (default 1,000,000; ``--quick`` 100,000), each with one tag,
in R repositories (default 10,000) of one project, with bulk inserts in
batches through the registry tables. One "hot" repository holds enough
artifacts (at least 60,000) for a 500th page of 100 rows to exist; the rest are
spread evenly. Then it times, through ``dockyard.artifacts.service`` (project
resolution, access check, ``q``/sort/paging, tags loaded for the page):

- ``listArtifacts`` page 1 and page 500 (100 rows, ``with_tag``) of the hot repository;
- ``listArtifacts`` page 1 of a small repository;
- ``getArtifact`` by tag (the tag lookup).

With ``--scan-overview`` every artifact also has a vulnerability report by the default
scanner (a stored summary, as a scan leaves it), and the hot repository's pages are timed
again ``with_scan_overview`` and ``with_sbom_overview``, in turns with the same page without
them so that the machine's load falls on both alike (issue 18's target: within 1.2x).

With ``--index-children`` the hot repository holds two-platform images: of every
three artifacts, the first becomes an index listing the other two, so the listing
shows a third of the rows (an index's children are listed under it) and the
``NOT EXISTS`` on ``artifact_reference(child_id)`` has real rows to probe.

PostgreSQL comes from ``DOCKYARD_TEST_POSTGRES_URL`` or a local server
(``postgresql://postgres@127.0.0.1:5432/``); a throwaway database is created
and dropped. The schema is the migrated one (migration 0004 adds the
``(repository_id, push_time, id)`` and ``(project_id, push_time, id)`` indexes the
list walks, newest first).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import func, insert, select, text, update  # noqa: E402

from dockyard.app import freeze_startup_heap  # noqa: E402
from dockyard.artifacts import service  # noqa: E402
from dockyard.db.engine import Database  # noqa: E402
from dockyard.db.listing import PageRequest  # noqa: E402
from dockyard.iam.policy import Principal  # noqa: E402
from dockyard.projects import repository as projects_repo  # noqa: E402
from dockyard.projects.service import create_project  # noqa: E402
from dockyard.registry.models import Artifact, ArtifactReference, Repository, Tag  # noqa: E402
from dockyard.scan import registrations as scanners  # noqa: E402
from dockyard.scan import reports as scan_reports  # noqa: E402
from dockyard.scan.client import VULNERABILITY_MIME  # noqa: E402
from dockyard.scan.models import ScannerRegistration, ScanReport  # noqa: E402
from dockyard.settings import Settings  # noqa: E402
from dockyard.system.bootstrap import prepare  # noqa: E402

PROJECT = "bench"
HOT_MINIMUM = 60_000
BATCH = 5_000
PAGE_SIZE = 100
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ADMIN = Principal(kind="user", name="admin", user_id=1, sysadmin=True)


@dataclass(frozen=True, slots=True)
class Layout:
    artifacts: int
    repositories: int
    hot: int
    """Artifacts in the hot repository (the first one)."""
    index_children: bool = False
    """Two of every three hot artifacts are an index's children (listed under it)."""
    scan_overview: bool = False
    """Every artifact has a stored vulnerability report (``--scan-overview``)."""

    @classmethod
    def of(
        cls,
        artifacts: int,
        repositories: int,
        index_children: bool = False,
        scan_overview: bool = False,
    ) -> Layout:
        repositories = max(2, min(repositories, artifacts // 10))
        hot = min(artifacts // 2, max(HOT_MINIMUM, artifacts // 10))
        return cls(artifacts, repositories, hot, index_children, scan_overview)

    @property
    def hot_listed(self) -> int:
        """Rows the hot repository's listing shows."""
        return (self.hot + 2) // 3 if self.index_children else self.hot

    def repository_of(self, index: int) -> int:
        """Which repository (0-based) artifact ``index`` lives in."""
        if index < self.hot:
            return 0
        return 1 + (index - self.hot) % (self.repositories - 1)


def _log(message: str) -> None:
    print(message, flush=True)


async def seed(db: Database, layout: Layout) -> tuple[str, str]:
    """Insert the project, repositories, artifacts and tags; returns (hot, small) names."""
    async with db.write() as session:
        owner = await projects_repo.first_admin_id(session)
        assert owner is not None
        project = await create_project(session, PROJECT, owner_id=owner, public=False)
        project_id = project.project_id
    now = datetime.now(UTC)
    names = [f"{PROJECT}/repo{r:05d}" for r in range(layout.repositories)]
    started = time.perf_counter()
    async with db.write() as session:
        for start in range(0, len(names), BATCH):
            rows = [
                {"name": n, "project_id": project_id, "creation_time": now, "update_time": now}
                for n in names[start : start + BATCH]
            ]
            await session.execute(insert(Repository), rows)
        found = await session.execute(
            select(Repository.name, Repository.repository_id).where(
                Repository.project_id == project_id
            )
        )
        ids: dict[str, int] = {row[0]: row[1] for row in found.all()}
    repository_ids = [ids[n] for n in names]
    async with db.read() as session:
        first_id = int(await session.scalar(select(func.coalesce(func.max(Artifact.id), 0))) or 0)
        first_tag = int(await session.scalar(select(func.coalesce(func.max(Tag.id), 0))) or 0)
    for start in range(0, layout.artifacts, BATCH):
        end = min(start + BATCH, layout.artifacts)
        artifacts = []
        tags = []
        for i in range(start, end):
            repository = layout.repository_of(i)
            pushed = now - timedelta(seconds=layout.artifacts - i)
            artifacts.append(
                {
                    "id": first_id + 1 + i,
                    "type": "IMAGE",
                    "media_type": OCI_CONFIG,
                    "manifest_media_type": OCI_MANIFEST,
                    "artifact_type": OCI_CONFIG,
                    "project_id": project_id,
                    "repository_id": repository_ids[repository],
                    "repository_name": names[repository],
                    "digest": f"sha256:{i:064x}",
                    "size": 1000 + i,
                    "icon": "",
                    "push_time": pushed,
                    "extra_attrs": '{"architecture":"amd64","os":"linux"}',
                }
            )
            tags.append(
                {
                    "id": first_tag + 1 + i,
                    "repository_id": repository_ids[repository],
                    "artifact_id": first_id + 1 + i,
                    "name": f"v{i}",
                    "push_time": pushed,
                }
            )
        async with db.write() as session:
            await session.execute(insert(Artifact), artifacts)
            await session.execute(insert(Tag), tags)
        if end % 100_000 == 0 or end == layout.artifacts:
            rate = end / (time.perf_counter() - started)
            _log(f"  seeded {end:>9,} artifacts ({rate:,.0f}/s)")
    if layout.index_children:
        await _seed_index_children(db, layout, first_id)
    if layout.scan_overview:
        await _seed_reports(db, layout, first_id)
    return names[0], names[1]


async def _seed_reports(db: Database, layout: Layout, first_id: int) -> None:
    """A default scanner and one successful vulnerability report per artifact."""
    now = datetime.now(UTC)
    async with db.write() as session:
        session.add(
            ScannerRegistration(
                uuid="bench-scanner", name="bench", url="http://127.0.0.1:1", is_default=True
            )
        )
    summary = '{"total":12,"fixable":5,"summary":{"Critical":1,"High":3,"Low":8}}'
    scanner = '{"name":"Dockyard","vendor":"Dockyard","version":"1"}'
    for start in range(0, layout.artifacts, BATCH):
        end = min(start + BATCH, layout.artifacts)
        rows = [
            {
                "uuid": f"report-{i}",
                "artifact_id": first_id + 1 + i,
                "digest": f"sha256:{i:064x}",
                "registration_uuid": "bench-scanner",
                "mime_type": VULNERABILITY_MIME,
                "status": "Success",
                "status_message": "",
                "severity": "Critical",
                "summary": summary,
                "scanner": scanner,
                "start_time": now,
                "end_time": now,
            }
            for i in range(start, end)
        ]
        async with db.write() as session:
            await session.execute(insert(ScanReport), rows)
    _log(f"  {layout.artifacts:,} scan reports")


async def _seed_index_children(db: Database, layout: Layout, first_id: int) -> None:
    """In the hot repository, make artifact 3k an index listing artifacts 3k+1 and 3k+2."""
    for start in range(0, layout.hot, BATCH * 3):
        end = min(start + BATCH * 3, layout.hot)
        parents = [first_id + 1 + i for i in range(start, end) if i % 3 == 0]
        references = [
            {
                "parent_id": first_id + 1 + i - i % 3,
                "child_id": first_id + 1 + i,
                "child_digest": f"sha256:{i:064x}",
            }
            for i in range(start, end)
            if i % 3 != 0 and i - i % 3 + 2 < layout.hot
        ]
        async with db.write() as session:
            await session.execute(
                update(Artifact)
                .where(Artifact.id.in_(parents))
                .values(manifest_media_type=OCI_INDEX, media_type=OCI_INDEX)
            )
            if references:
                await session.execute(insert(ArtifactReference), references)
    _log(f"  {layout.hot // 3:,} indexes of two children each in the hot repository")


async def analyze(db: Database) -> None:
    """Fresh planner statistics (and, on PostgreSQL, the visibility map index-only scans
    rely on), as autovacuum keeps them on a live server."""
    if db.dialect != "postgresql":
        async with db.write() as session:
            await session.execute(text("ANALYZE"))
        return
    async with db.write_engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE"))


def _inner(name: str) -> str:
    return name.split("/", 1)[1]


async def timings(
    db: Database, label: str, call: Callable[[Any], Awaitable[object]], samples: int
) -> tuple[str, float, float]:
    """p50 and p99 in milliseconds of ``call(session)`` (after two warm-up calls)."""
    measured = []
    for attempt in range(samples + 2):
        async with db.read() as session:
            began = time.perf_counter()
            await call(session)
            elapsed = (time.perf_counter() - began) * 1000
        if attempt >= 2:
            measured.append(elapsed)
    return _percentiles(label, measured)


def _percentiles(label: str, measured: list[float]) -> tuple[str, float, float]:
    measured = sorted(measured)
    p99 = measured[min(len(measured) - 1, round(0.99 * (len(measured) - 1)))]
    return label, statistics.median(measured), p99


async def paired_timings(
    db: Database,
    labels: tuple[str, str],
    calls: tuple[Callable[[Any], Awaitable[object]], Callable[[Any], Awaitable[object]]],
    samples: int,
) -> list[tuple[str, float, float]]:
    """:func:`timings` of two calls taken in turns (the first of each pair alternating), so
    that a change in the machine's load falls on both alike; the second row's label gets
    the ratio of the medians."""
    measured: tuple[list[float], list[float]] = ([], [])
    for attempt in range(samples + 2):
        for which in (0, 1) if attempt % 2 else (1, 0):
            async with db.read() as session:
                began = time.perf_counter()
                await calls[which](session)
                elapsed = (time.perf_counter() - began) * 1000
            if attempt >= 2:
                measured[which].append(elapsed)
    first = _percentiles(labels[0], measured[0])
    second = _percentiles(labels[1], measured[1])
    ratio = second[1] / first[1]
    return [first, (f"{labels[1]} ({ratio:.2f}x; target <= 1.2x)", second[1], second[2])]


async def measure(
    db: Database, layout: Layout, hot: str, small: str, samples: int
) -> list[tuple[str, float, float]]:
    options = service.ArtifactOptions(with_tag=True)
    last_page = min(500, layout.hot_listed // PAGE_SIZE)
    rng = random.Random(7)

    def page(
        repository: str, number: int, options: service.ArtifactOptions = options
    ) -> Callable[[Any], Awaitable[object]]:
        async def call(session: Any) -> object:
            found, total = await service.list_artifacts(
                session,
                ADMIN,
                PROJECT,
                _inner(repository),
                options,
                None,
                None,
                PageRequest(number, PAGE_SIZE),
            )
            assert len(found) == min(PAGE_SIZE, total - (number - 1) * PAGE_SIZE)
            assert all(a.tags for a in found)
            if options.with_scan_overview:
                assert all(a.scan_overview for a in found)
            return found

        return call

    async def tag_lookup(session: Any) -> object:
        tag = f"v{rng.randrange(layout.hot)}"
        return await service.get_artifact(session, ADMIN, PROJECT, _inner(hot), tag, options)

    results = [
        await timings(db, "listArtifacts page 1 (hot repository)", page(hot, 1), samples),
        await timings(
            db, f"listArtifacts page {last_page} (hot repository)", page(hot, last_page), samples
        ),
        await timings(db, "listArtifacts page 1 (small repository)", page(small, 1), samples),
        await timings(db, "getArtifact by tag (tag lookup)", tag_lookup, samples),
    ]
    if layout.scan_overview:
        async with db.read() as session:
            listed = cast("list[Any]", await page(hot, 1)(session))
            page_ids = [a.id for a in listed]
            project = await projects_repo.find_project_by_name(session, PROJECT)
        assert project is not None

        async def overviews_alone(session: Any) -> object:
            registration = await scanners.registration_of_project(session, project.project_id)
            assert registration is not None
            found = await scan_reports.overviews(
                session, page_ids, registration.uuid, with_scan=True, with_sbom=True
            )
            assert len(found.scan) == len(page_ids)
            return found

        results.append(
            await timings(
                db, "the scan overviews of a 100-row page alone", overviews_alone, samples
            )
        )
        overview = service.ArtifactOptions(
            with_tag=True, with_scan_overview=True, with_sbom_overview=True
        )
        for number in (1, last_page):
            results += await paired_timings(
                db,
                (
                    f"listArtifacts page {number} (hot), in turns with the next row",
                    f"listArtifacts page {number} (hot) with_scan_overview",
                ),
                (page(hot, number), page(hot, number, overview)),
                samples,
            )
    return results


@contextmanager
def database_url(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    from tests.support.postgres import postgres_admin_url, temporary_database

    with temporary_database(postgres_admin_url()) as url:
        yield url


async def run_backend(
    url: str, layout: Layout, samples: int
) -> dict[str, list[tuple[str, float, float]]]:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-data-") as data:
        settings = Settings(data_dir=Path(data), database_url=url, admin_password="Bench12345!")
        db = Database(settings.effective_database_url)
        try:
            await prepare(settings, db)
            began = time.perf_counter()
            hot, small = await seed(db, layout)
            _log(f"  seeded in {time.perf_counter() - began:.0f}s")
            await analyze(db)
            freeze_startup_heap()  # as `dockyard serve` does once it has started
            return {"schema as migrated": await measure(db, layout, hot, small, samples)}
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 artifacts")
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--index-children",
        action="store_true",
        help="the hot repository holds two-platform images (an index and two children)",
    )
    parser.add_argument(
        "--scan-overview",
        action="store_true",
        help="a stored vulnerability report per artifact; also time pages with_scan_overview",
    )
    args = parser.parse_args()
    count = 100_000 if args.quick else args.artifacts
    if count < 1_000:
        parser.error("--artifacts must be at least 1,000")
    layout = Layout.of(count, args.repositories, args.index_children, args.scan_overview)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    rows = []
    for backend in backends:
        _log(
            f"{backend}: {layout.artifacts:,} artifacts in {layout.repositories:,} repositories "
            f"(hot repository: {layout.hot:,})"
        )
        with database_url(backend) as url:
            results = asyncio.run(run_backend(url, layout, args.samples))
        for schema, measured in results.items():
            for label, p50, p99 in measured:
                rows.append((backend, schema, label, p50, p99))
    _log("")
    _log(f"| backend | schema | operation | p50 ms | p99 ms |  ({args.samples} samples each)")
    _log("|---|---|---|---:|---:|")
    for backend, schema, label, p50, p99 in rows:
        _log(f"| {backend} | {schema} | {label} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
