"""Where an S3 blob upload's time goes: the driver alone, phase by phase (issue 17).

Starts one SeaweedFS (as the S3 tests do, ``tests/support/seaweedfs.py``) and, in
interleaved rounds, stores the same ``--mib`` of random bytes four ways:

- ``store``: obstore alone, no Dockyard: one multipart PUT of ``--part-mib`` parts,
  4 in flight (what any S3 client doing a parallel multipart upload asks of the store),
  then one server-side copy of the object to a second key (``copy``);
- ``s3``: ``S3Storage`` as the registry uses it for a skopeo push: ``begin``, one
  ``append`` fed skopeo-like chunks of 36 KiB to 1 MiB and hashed with SHA-256 on the
  way, then ``complete`` into a content-addressed key (the phases timed apart);
- ``fs``: ``FilesystemStorage`` doing the same, the push-time reference.

For each phase it prints the wall time and the CPU of this process and of SeaweedFS
(utime+stime from /proc), and the load average at the start of each round: on a
shared machine compare the ratios within a round, not the MB/s across runs.

    .venv/bin/python bench/s3_push_bench.py --mib 256 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import obstore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
import seaweedfs

import dockyard.storage.s3 as s3_module
from dockyard.storage.filesystem import FilesystemStorage
from dockyard.storage.s3 import S3Storage

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(pid: int) -> float:
    """CPU of ``pid`` and its children (``weed server`` runs as one process today)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").iterdir():
        children = child / "children"
        if children.exists():
            for c in children.read_text().split():
                with contextlib.suppress(FileNotFoundError):
                    total += tree_cpu(int(c))
    return total


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) << 10
    raise KeyError(field)


def reset_peak() -> int:
    """Reset this process's peak RSS (``clear_refs`` 5); return the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


class Clock:
    def __init__(self, weed_pid: int) -> None:
        self.weed_pid = weed_pid
        self.figures: dict[str, list[tuple[float, float, float, float]]] = {}

    def start(self) -> tuple[float, float, float, float]:
        rss = reset_peak()
        return time.perf_counter(), time.process_time(), tree_cpu(self.weed_pid), rss

    def stop(self, name: str, began: tuple[float, float, float, float]) -> None:
        wall, own, weed, rss = began
        figure = (
            time.perf_counter() - wall,
            time.process_time() - own,
            tree_cpu(self.weed_pid) - weed,
            (_status("VmHWM") - rss) / (1 << 20),
        )
        self.figures.setdefault(name, []).append(figure)
        print(
            f"  {name:<14} {figure[0]:7.2f} s wall  {figure[1]:6.2f} s own CPU  "
            f"{figure[2]:6.2f} s weed CPU  peak RSS +{figure[3]:5.1f} MiB",
            flush=True,
        )


async def skopeo_chunks(data: bytes, seed: int) -> AsyncIterator[bytes]:
    """``data`` in chunks of 36 KiB to 1 MiB, as an HTTP server hands a skopeo PATCH body."""
    rng = random.Random(seed)
    view = memoryview(data)
    at = 0
    while at < len(data):
        size = rng.randint(36 << 10, 1 << 20)
        yield bytes(view[at : at + size])
        at += size
        await asyncio.sleep(0)


async def pieces(data: bytes, part: int) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for at in range(0, len(data), part):
        yield bytes(view[at : at + part])


async def round_store(s3: S3Storage, data: bytes, clock: Clock, part: int, n: int) -> None:
    key = f"bench/store-{n}"
    began = clock.start()
    await obstore.put_async(
        s3.store, key, pieces(data, part), use_multipart=True, chunk_size=part, max_concurrency=4
    )
    clock.stop("store put", began)
    began = clock.start()
    await obstore.copy_async(s3.store, key, key + "-copy")
    clock.stop("store copy", began)
    await obstore.delete_async(s3.store, [key, key + "-copy"])


async def _old_pieces(
    chunks: AsyncIterator[bytes], part_bytes: int, limit: int | None
) -> AsyncIterator[bytes]:
    """The driver's part cutting before issue 17's second pass (join all, then slice)."""
    parts: list[bytes] = []
    pending = 0
    async for chunk in chunks:
        parts.append(chunk)
        pending += len(chunk)
        while pending >= part_bytes:
            joined = b"".join(parts)
            yield joined[:part_bytes]
            rest = joined[part_bytes:]
            parts = [rest] if rest else []
            pending = len(rest)
    if parts:
        yield b"".join(parts)


@contextlib.contextmanager
def old_driver() -> Iterator[None]:
    """``S3Storage`` as it was before (``--old``): 2 parts queued, parts cut by slicing."""
    saved = s3_module._pieces, s3_module._QUEUED_PIECES
    s3_module._pieces, s3_module._QUEUED_PIECES = _old_pieces, 2  # type: ignore[assignment]
    try:
        yield
    finally:
        s3_module._pieces, s3_module._QUEUED_PIECES = saved


async def round_driver(
    storage: Any, label: str, data: bytes, digest: str, clock: Clock, n: int
) -> None:
    began = clock.start()
    state = await storage.begin(f"bench-{label}-{n}")
    hasher = hashlib.sha256()
    state, size = await storage.append(state, 0, skopeo_chunks(data, n), hasher.update)
    clock.stop(f"{label} append", began)
    assert size == len(data)
    assert hasher.hexdigest() == digest
    key = f"blobs/sha256/{digest[:2]}/{digest}-{n}/data"
    began = clock.start()
    await storage.complete(state, key, size)
    clock.stop(f"{label} complete", began)
    assert (await storage.stat(key)).size == len(data)
    await storage.delete(key)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="bytes per upload, MiB (256)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--part-mib", type=int, default=8, help="multipart part size, MiB (8)")
    ap.add_argument(
        "--only",
        default="store,s3,fs",
        help="which of store,s3-old,s3,fs (default store,s3,fs; s3-old: the driver's "
        "part cutting and queue before this bench's changes, for an interleaved A/B)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    data = os.urandom(args.mib << 20)
    digest = hashlib.sha256(data).hexdigest()
    server = seaweedfs.start_seaweedfs()
    try:
        s3 = seaweedfs.s3_storage(server, server.new_bucket(), part_bytes=args.part_mib << 20)
        clock = Clock(server.process.pid)
        with tempfile.TemporaryDirectory(prefix="s3-push-bench-") as tmp:
            fs = FilesystemStorage(tmp)
            for n in range(args.rounds):
                print(f"round {n + 1}: load average {os.getloadavg()[0]:.1f}", flush=True)
                if "store" in only:
                    await round_store(s3, data, clock, args.part_mib << 20, n)
                if "s3-old" in only:
                    with old_driver():
                        await round_driver(s3, "s3-old", data, digest, clock, n)
                if "s3" in only:
                    await round_driver(s3, "s3", data, digest, clock, n)
                if "fs" in only:
                    await round_driver(fs, "fs", data, digest, clock, n)
        print(f"medians over {args.rounds} rounds, {args.mib} MiB each:")
        for name, figures in clock.figures.items():
            wall = statistics.median(f[0] for f in figures)
            own = statistics.median(f[1] for f in figures)
            weed = statistics.median(f[2] for f in figures)
            peak = max(f[3] for f in figures)
            print(
                f"  {name:<14} {wall:7.2f} s ({args.mib / wall:6.1f} MiB/s)  own CPU {own:5.2f} s"
                f"  weed CPU {weed:5.2f} s  peak RSS +{peak:5.1f} MiB (max)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
