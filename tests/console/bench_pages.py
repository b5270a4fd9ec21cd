"""Console page times at the listing benchmark's scale (not a test; run by hand).

    .venv/bin/python -m tests.console.bench_pages [--artifacts N] [--samples S]
        [--backend sqlite|postgresql] [--keep DIR]

Seeds a SQLite database exactly as ``bench/artifact_listing_bench.py`` does
(default 1,000,000 artifacts with one tag each in 10,000 repositories of project
``bench``, one hot repository of 100,000), or a throwaway PostgreSQL database with
``--backend postgresql``, then renders the console's pages
through the ASGI app as a signed-in administrator and prints p50/p99 per page,
HTML rendering included.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from bench.artifact_listing_bench import Layout, analyze, seed
from tests.console.helpers import sign_in

from dockyard.app import create_app, freeze_startup_heap
from dockyard.db.engine import Database
from dockyard.settings import Settings
from dockyard.system.bootstrap import prepare

PASSWORD = "Bench12345!"


async def run(
    artifacts: int, samples: int, keep: Path | None = None, database_url: str | None = None
) -> list[tuple[str, float, float]]:
    layout = Layout.of(artifacts, 10_000)
    with tempfile.TemporaryDirectory(prefix="dockyard-console-bench-") as scratch:
        folder = str(keep or scratch)
        seeded = database_url is None and keep is not None and (keep / "bench.db").exists()
        settings = Settings(
            data_dir=Path(folder),
            database_url=database_url or f"sqlite:///{folder}/bench.db",
            admin_password=PASSWORD,
        )
        db = Database(settings.effective_database_url)
        try:
            await prepare(settings, db)
            if seeded:
                hot, small = "bench/repo00000", "bench/repo00001"
            else:
                began = time.perf_counter()
                hot, small = await seed(db, layout)
                print(f"seeded {artifacts:,} artifacts in {time.perf_counter() - began:.0f}s")
                await analyze(db)
        finally:
            await db.dispose()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            freeze_startup_heap()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await sign_in(client, "admin", PASSWORD)
                hot_inner, small_inner = hot.split("/", 1)[1], small.split("/", 1)[1]
                last = min(500, layout.hot // 15)
                pages = {
                    "overview (administrator)": "/harbor/dashboard",
                    "projects list": "/harbor/projects",
                    "project summary": "/harbor/projects/bench",
                    "repositories page 1": "/harbor/projects/bench/repositories",
                    "repositories page 300": "/harbor/projects/bench/repositories?page=300",
                    "hot repository page 1": f"/harbor/projects/bench/repositories/{hot_inner}",
                    f"hot repository page {last}": (
                        f"/harbor/projects/bench/repositories/{hot_inner}?page={last}"
                    ),
                    "hot repository, tag filter": (
                        f"/harbor/projects/bench/repositories/{hot_inner}?tag=v12345"
                    ),
                    "small repository": f"/harbor/projects/bench/repositories/{small_inner}",
                    "artifact by tag": (
                        f"/harbor/projects/bench/repositories/{hot_inner}/-/artifacts/v777"
                    ),
                    "project logs": "/harbor/projects/bench/logs",
                    "audit log": "/harbor/admin/audit-logs",
                    "system info": "/harbor/admin/system",
                }
                results = []
                for label, path in pages.items():
                    times = []
                    for attempt in range(samples + 2):
                        start = time.perf_counter()
                        response = await client.get(path)
                        elapsed = (time.perf_counter() - start) * 1000
                        assert response.status_code == 200, (path, response.status_code)
                        if attempt >= 2:
                            times.append(elapsed)
                    times.sort()
                    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
                    results.append((label, statistics.median(times), p99))
                return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="seed into (or reuse) this folder's database")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.backend == "postgresql":
        from tests.support.postgres import postgres_admin_url, temporary_database

        with temporary_database(postgres_admin_url()) as url:
            results = asyncio.run(run(args.artifacts, args.samples, None, url))
    else:
        results = asyncio.run(run(args.artifacts, args.samples, args.keep))
    backend = "PostgreSQL" if args.backend == "postgresql" else "SQLite"
    print(f"\n| console page ({backend}, {args.artifacts:,} artifacts) | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for label, p50, p99 in results:
        print(f"| {label} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
