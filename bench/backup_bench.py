"""Time ``dockyard backup`` and ``dockyard restore`` of an embedded data directory.

Seeds N blob rows with real digests and their files (random bytes) in a fresh data
directory, then runs the backup and the restore (as the commands do, without a server)
and prints MiB/s. Usage: ``python bench/backup_bench.py --blobs 1000 --blob-mib 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from dockyard import backup
from dockyard.db.engine import Database
from dockyard.db.migrate import known_revision
from dockyard.registry.models import Blob
from dockyard.settings import Settings
from dockyard.storage import blob_key
from dockyard.system.bootstrap import prepare


async def seed(settings: Settings, blobs: int, size: int) -> None:
    db = Database(settings.effective_database_url)
    try:
        await prepare(settings, db)
        rows = []
        for _ in range(blobs):
            data = os.urandom(size)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            path = settings.effective_storage_root / blob_key(digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            rows.append({"digest": digest, "size": size, "status": "none", "version": 0})
        async with db.write() as session:
            await session.execute(insert(Blob), rows)
    finally:
        await db.dispose()


def _report(what: str, blobs: int, mib: float, took: float) -> None:
    print(f"{what} {blobs} blobs, {mib:.0f} MiB in {took:.2f} s ({mib / took:.0f} MiB/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=1000)
    parser.add_argument("--blob-mib", type=float, default=1.0)
    args = parser.parse_args()
    size = int(args.blob_mib * (1 << 20))
    with tempfile.TemporaryDirectory(prefix="dockyard-backup-bench-") as work:
        root = Path(work)
        settings = Settings(data_dir=root / "data", admin_password="Harbor12345")
        settings.data_dir.mkdir()
        asyncio.run(seed(settings, args.blobs, size))
        total = args.blobs * size / (1 << 20)
        started = time.monotonic()
        backup.backup(settings, root / "backup")
        took = time.monotonic() - started
        _report("backup: ", args.blobs, total, took)
        target = Settings(data_dir=root / "restored")
        started = time.monotonic()
        backup.restore(target, root / "backup", known_revisions=known_revision)
        took = time.monotonic() - started
        _report("restore:", args.blobs, total, took)


if __name__ == "__main__":
    main()
