"""Server CPU of the manifest lookup a pull makes, in process: ``RegistryService.get_manifest``
with the pull policies asked, in a project with content trust and vulnerability
prevention both off (``library``), on SQLite or PostgreSQL.

Run from the repository root (``--postgresql`` uses the test PostgreSQL server):

    .venv/bin/python bench/pull_lookup_bench.py [--postgresql] [--calls 3000]

No HTTP, token or audit in the figure: the lookup and the pull-policy seam only. CPU time
(``time.process_time``) of this process, best of 3 runs; steadier than wall time on a busy
machine. To compare with another commit, run it with ``PYTHONPATH=<that checkout>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.integration.conftest import ADMIN_PASSWORD, make_client, serving  # noqa: E402
from tests.integration.registry_helpers import push_image  # noqa: E402
from tests.support.postgres import postgres_admin_url, temporary_database  # noqa: E402

from dockyard.settings import Settings  # noqa: E402

REPOSITORY = "library/pull-lookup-bench"


async def measure(database_url: str | None, calls: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per lookup, best of 3 runs of ``calls``."""
    data_dir = Path(tempfile.mkdtemp(prefix="pull-lookup-bench-"))
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url or f"sqlite:///{data_dir / 'dockyard.db'}",
        admin_password=ADMIN_PASSWORD,
    )
    async with serving(settings) as app:
        async with make_client(app, ("admin", ADMIN_PASSWORD)) as admin:
            await push_image(admin, REPOSITORY, "v1")
        registry = app.state.dockyard.registry
        for _ in range(200):  # warm the statement cache
            await registry.get_manifest(REPOSITORY, "v1", policies=True)
        best: tuple[float, float] | None = None
        for _ in range(3):
            cpu, wall = time.process_time(), time.monotonic()
            for _ in range(calls):
                await registry.get_manifest(REPOSITORY, "v1", policies=True)
            run = (
                (time.process_time() - cpu) / calls * 1e6,
                (time.monotonic() - wall) / calls * 1e6,
            )
            best = run if best is None else min(best, run)
        assert best is not None
        return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    if args.postgresql:
        with temporary_database(postgres_admin_url()) as url:
            cpu, wall = asyncio.run(measure(url, args.calls))
    else:
        cpu, wall = asyncio.run(measure(None, args.calls))
    backend = "PostgreSQL" if args.postgresql else "SQLite"
    print(f"{backend}: {cpu:,.0f} µs CPU, {wall:,.0f} µs wall per manifest lookup with policies")


if __name__ == "__main__":
    main()
