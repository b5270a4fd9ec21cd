"""The built-in scanner's matching: artifacts per second against a large OSV database.

Run from the repository root:

    .venv/bin/python bench/scanner_bench.py [--records 50000] [--artifacts 500]
                                            [--packages 100] [--database-url URL]

Steps, each timed:

1. import ``--records`` OSV records (Debian:12, ECOSYSTEM ranges, CVSS v3 vectors) through
   ``vulndb.import_records``, the path ``dockyard vulndb import`` takes: a third name source
   packages installed on this machine (so a scan has many candidates, ~30 per source package
   as Debian's tracker has for busy packages; 1 in 20 still open in the installed version),
   the rest other names;
2. match ``--artifacts`` inventories of ``--packages`` dpkg packages each (random samples of
   this machine's ``/var/lib/dpkg/status``, read by the inventory) and build Harbor's report
   JSON for each, as the adapter does after reading the layers.

Prints records/s, artifacts/s, findings and report bytes per artifact, the database's rows
and bytes (SQLite file size; PostgreSQL relation sizes) and the process's peak RSS. Defaults
to a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text
from tests.support.layer_tars import layer

from dockyard.db.engine import Database
from dockyard.db.migrate import migrate
from dockyard.scanner import vulndb
from dockyard.scanner.inventory import Inventory, inventory_layers
from dockyard.scanner.models import VulnAffected, VulnRecord
from dockyard.scanner.report import vulnerability_report
from dockyard.scanner.service import VulnCache, find_vulnerabilities

VECTORS = [
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N",
]


def status_paragraphs() -> list[bytes]:
    data = Path("/var/lib/dpkg/status").read_bytes()
    return [p for p in data.split(b"\n\n") if p.strip()]


def inventories(count: int, size: int, seed: int = 7) -> list[Inventory]:
    rng = random.Random(seed)
    paragraphs = status_paragraphs()
    release = Path("/usr/lib/os-release").read_bytes()
    found = []
    for _ in range(count):
        chosen = rng.sample(paragraphs, min(size, len(paragraphs)))
        blob = layer(
            [("etc/os-release", release), ("var/lib/dpkg/status", b"\n\n".join(chosen) + b"\n")]
        )
        found.append(inventory_layers([io.BytesIO(blob)]))
    return found


def records(count: int, sources: list[tuple[str, str]], seed: int = 11) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    out: list[tuple[str, object]] = []
    for i in range(count):
        if i % 3 == 0 and sources:
            name, installed = rng.choice(sources)
            # 1 in 20 still open in the installed version (a finding), the rest fixed below it,
            # which gives ~150 findings per Debian image of 100 packages, as scanners report
            fixed = installed + "+1" if rng.random() < 0.05 else "0.0.1-1"
        else:
            name, fixed = (
                f"pkg{rng.randrange(20000)}",
                f"{rng.randrange(1, 9)}.{rng.randrange(30)}-1",
            )
        doc = {
            "id": f"BENCH-{i:06d}",
            "modified": "2025-01-01T00:00:00Z",
            "summary": f"benchmark advisory {i}",
            "details": "x" * 200,
            "severity": [{"type": "CVSS_V3", "score": VECTORS[i % len(VECTORS)]}],
            "affected": [
                {
                    "package": {"ecosystem": "Debian:12", "name": name},
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                    ],
                }
            ],
            "references": [{"type": "WEB", "url": f"https://security-tracker.invalid/CVE-{i}"}],
        }
        out.append((f"record {i}", doc))
    return out


async def db_size(db: Database) -> int | None:
    if db.dialect == "sqlite":
        return None
    async with db.read() as session:
        total = 0
        for table in ("vuln_record", "vuln_affected"):
            total += (
                await session.execute(text(f"SELECT pg_total_relation_size('{table}')"))
            ).scalar_one()
        return int(total)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--artifacts", type=int, default=500)
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--keep", default="", help="a SQLite file to keep (and reuse) the records in"
    )
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    sqlite_path = Path(args.keep) if args.keep else Path(tmp.name) / "bench.db"
    db = Database(args.database_url or f"sqlite:///{sqlite_path}")
    await migrate(db)

    invs = inventories(args.artifacts, args.packages)
    everything = inventories(1, len(status_paragraphs()))[0]  # every installed package
    sources = sorted(
        {(p.source_name or p.name, p.source_version or p.version) for p in everything.packages}
    )

    started = time.perf_counter()
    status = await vulndb.status(db)
    if status.records >= args.records:  # kept from an earlier run (--keep)
        result = vulndb.ImportResult()
    else:
        result = await vulndb.import_records(db, records(args.records, sources))
    import_seconds = time.perf_counter() - started
    async with db.read() as session:
        rows = (await session.scalar(select(func.count()).select_from(VulnRecord))) or 0
        rows += (await session.scalar(select(func.count()).select_from(VulnAffected))) or 0
    size = sqlite_path.stat().st_size if not args.database_url else await db_size(db)

    started = time.perf_counter()
    findings = report_bytes = 0
    first = 0.0
    cache = VulnCache()  # as the adapter keeps one per process
    for n, inv in enumerate(invs):
        found = await find_vulnerabilities(db, inv, cache)
        findings += len(found)
        report_bytes += len(json.dumps(vulnerability_report(found)))
        if n == 0:
            first = time.perf_counter() - started
    match_seconds = time.perf_counter() - started
    await db.dispose()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"database: {db.dialect}; records: {args.records} ({result.inserted} new)")
    if result.inserted:
        print(f"import: {import_seconds:.1f} s, {result.inserted / import_seconds:,.0f} records/s")
    print(f"vulnerability rows: {rows}, bytes: {size:,}" if size else f"vulnerability rows: {rows}")
    print(
        f"match + report: {args.artifacts} artifacts of {args.packages} packages in "
        f"{match_seconds:.1f} s = {args.artifacts / match_seconds:.1f} artifacts/s"
    )
    print(f"first artifact (cold caches): {first * 1000:.0f} ms")
    print(
        f"per artifact: {findings / args.artifacts:.0f} findings, "
        f"{report_bytes / args.artifacts / 1024:.1f} KiB of report JSON (1 row when stored)"
    )
    print(f"peak RSS: {rss_mib:.0f} MiB")
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
