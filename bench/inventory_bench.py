"""The scanner's package inventory on a realistic layer: throughput and peak memory.

Run from the repository root:

    .venv/bin/python bench/inventory_bench.py [--mib 400] [--keep DIR]

Builds one gzip layer (level 1) from this machine's own files — ``/var/lib/dpkg``,
``/etc/os-release``, ``/usr/lib/python3``, ``/usr/share/java``, ``/usr/lib/node_modules``
and ``/usr/bin`` (Go binaries among them), in that order, until ``--mib`` MiB of file data —
then, each in a fresh child process so that peak RSS belongs to that step alone:

- the floor: inflating the layer and nothing else (zlib, 1 MiB reads);
- the inventory: ``inventory_layers`` over the same blob.

It prints uncompressed MB/s for both, the inventory's time over the floor, the packages found
per type and each child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOTS = [
    "/var/lib/dpkg",
    "/etc/os-release",
    "/usr/lib/os-release",
    "/usr/lib/python3",
    "/usr/share/java",
    "/usr/lib/node_modules",
    "/usr/bin",
]


def build(path: Path, budget: int) -> int:
    total = 0
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for root in ROOTS:
            if not os.path.exists(root):
                continue
            if os.path.isfile(root) or os.path.islink(root):
                tar.add(root, root.lstrip("/"), recursive=False)
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    try:
                        size = os.lstat(full).st_size
                        if total + size > budget:
                            continue
                        tar.add(full, full.lstrip("/"), recursive=False)
                    except OSError:
                        continue
                    total += size
    return total


CHILD_FLOOR = """
import sys, time, zlib, resource, json
t = time.perf_counter(); out = 0
d = zlib.decompressobj(wbits=31)
with open(sys.argv[1], 'rb') as f:
    while chunk := f.read(1 << 20):
        out += len(d.decompress(chunk))
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": out,
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

CHILD_INVENTORY = """
import sys, time, resource, json
from collections import Counter
from dockyard.scanner.inventory import inventory_layers
t = time.perf_counter()
with open(sys.argv[1], 'rb') as f:
    inv = inventory_layers([f])
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": inv.bytes_read,
                  "types": Counter(p.type for p in inv.packages), "warnings": inv.warnings[:5],
                  "os": inv.os.pretty_name if inv.os else None,
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def child(code: str, blob: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code, str(blob)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return dict(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=400)
    parser.add_argument("--keep", type=Path, help="directory to keep the layer in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        blob = (args.keep or Path(tmp)) / "layer.tar.gz"
        t = time.perf_counter()
        data = build(blob, args.mib << 20)
        print(
            f"layer: {data / 1e6:.0f} MB of files, {blob.stat().st_size / 1e6:.0f} MB gzip "
            f"(built in {time.perf_counter() - t:.0f} s)"
        )
        floor = child(CHILD_FLOOR, blob)
        inv = child(CHILD_INVENTORY, blob)
    for label, r in (("inflate only", floor), ("inventory", inv)):
        secs = float(r["seconds"])  # type: ignore[arg-type]
        size = int(r["bytes"])  # type: ignore[call-overload]
        print(
            f"{label:>13}: {secs:6.2f} s  {size / secs / 1e6:6.0f} MB/s (uncompressed tar)  "
            f"peak RSS {int(r['rss_kib']) // 1024} MiB"
        )  # type: ignore[call-overload]
    ratio = float(inv["seconds"]) / float(floor["seconds"])  # type: ignore[arg-type]
    print(f"inventory / inflate: {ratio:.2f}x")
    print(f"os: {inv['os']}; packages: {dict(Counter(inv['types']))}")  # type: ignore[arg-type]
    if inv["warnings"]:
        print(f"warnings: {inv['warnings']}")


if __name__ == "__main__":
    main()
