"""Server CPU per small push (issue 16): N skopeo pushes of a 3 x 64 KiB image to a real
``dockyard serve``, each to a new repository, as bench/registry_bench.py's small push.

Reads the ``utime + stime`` of the server's process tree from /proc around the pushes
(CPU time moves much less than wall time with other load on the machine) and, unless
``--no-sql-counts``, the server's SQL counters (``DOCKYARD_SQL_COUNTERS``). Repeats the
measurement ``--repeat`` times on one server and reports each and the median.

    .venv/bin/python bench/small_push_cpu.py [--pushes 20] [--repeat 3] \
        [--dockyard-args "--workers 1"] [--no-sql-counts] [--json out.json]

With ``--hold SECONDS`` it prints the server's pids and waits that long before pushing,
so a profiler (``py-spy record --pid … --subprocesses``) can be attached first.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dockyard.db.counters import SqlCounts, read_directory
from oci_images import build_layout
from registry_bench import PROJECT, Dockyard, ProcTree, read_sql_counts, skopeo_push

LAYERS = [64 * 1024] * 3


def _sites(work: Path) -> SqlCounts:
    return read_directory(work / "sql-counters")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dockyard-args", default="--workers 1")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--no-sql-counts", action="store_true")
    parser.add_argument(
        "--hold", type=float, default=0, help="seconds to wait after printing the pids"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--sites", action="store_true", help="print the SQL call sites of the last repeat"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="small-push-cpu-") as tmp:
        work = Path(tmp)
        layout = work / "images"
        count = args.pushes * args.repeat + 1
        images = build_layout(layout, [(f"small-{i}", LAYERS) for i in range(count)])
        reg = Dockyard(work, args.python, shlex.split(args.dockyard_args))
        reg.count_sql = not args.no_sql_counts
        reg.start()
        try:
            assert reg.proc is not None
            tree = ProcTree(reg.proc.pid)
            # Warm the process (first imports, robot prefixes, settings caches).
            skopeo_push(reg, layout, images[0].ref, f"{PROJECT}/warm", "v1", 120)
            if args.hold:
                print(f"server pids: {tree.pids()}; pushing in {args.hold:g} s", flush=True)
                time.sleep(args.hold)
            runs = []
            n = 1
            for _ in range(args.repeat):
                sql0 = read_sql_counts(reg)
                sites0 = _sites(work) if args.sites else None
                cpu0, t0 = tree.cpu_seconds(), time.perf_counter()
                for img in images[n : n + args.pushes]:
                    skopeo_push(reg, layout, img.ref, f"{PROJECT}/{img.ref}", "v1", 120)
                n += args.pushes
                secs = time.perf_counter() - t0
                sql1 = read_sql_counts(reg)
                cpu = tree.cpu_seconds() - cpu0
                run: dict[str, float] = {
                    "cpu_ms_per_push": cpu * 1000 / args.pushes,
                    "wall_ms_per_push": secs * 1000 / args.pushes,
                }
                if sql0 is not None and sql1 is not None:
                    run["statements_per_push"] = (sql1[0] - sql0[0]) / args.pushes
                    run["transactions_per_push"] = (sql1[1] - sql0[1]) / args.pushes
                runs.append(run)
                if sites0 is not None:
                    spent = _sites(work) - sites0
                    print(spent.describe(), flush=True)
                print(" ".join(f"{k}={v:.1f}" for k, v in run.items()), flush=True)
        finally:
            reg.stop()
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median: " + " ".join(f"{k}={v:.1f}" for k, v in median.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
