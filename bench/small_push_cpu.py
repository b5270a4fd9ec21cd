"""Server CPU per small push (issue 16): N skopeo pushes of a 3 x 64 KiB image to a real
``dockyard serve``, each to a new repository, as bench/registry_bench.py's small push.

Reads the ``utime + stime`` of the server's process tree from /proc around the pushes
(CPU time moves much less than wall time with other load on the machine) and, unless
``--no-sql-counts``, the server's SQL counters (``DOCKYARD_SQL_COUNTERS``). Repeats the
measurement ``--repeat`` times on one server and reports each and the median.

    .venv/bin/python bench/small_push_cpu.py [--pushes 20] [--repeat 3] \
        [--dockyard-args "--workers 1"] [--no-sql-counts] [--json out.json]

``--against DIR`` compares with another version of the code: a second server runs with
``PYTHONPATH=DIR`` (e.g. ``git archive <commit> src | tar -x -C DIR`` and pass
``DIR/src``) and the pushes alternate between the two, one by one, so both see the same
outside load; each repeat reports both and their ratio.

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


class _Other(Dockyard):
    """Dockyard run from another source tree (``PYTHONPATH``)."""

    def __init__(self, workdir: Path, python: str, extra_args: list[str], src: Path) -> None:
        super().__init__(workdir, python, extra_args)
        self.src = src

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        env["PYTHONPATH"] = str(self.src)
        return cmd, env


def _sites(work: Path) -> SqlCounts:
    return read_directory(work / "sql-counters")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dockyard-args", default="--workers 1")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--no-sql-counts", action="store_true")
    parser.add_argument("--against", type=Path, help="a src/ directory to compare with")
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
        extra = shlex.split(args.dockyard_args)
        (work / "a").mkdir()
        servers: list[Dockyard] = [Dockyard(work / "a", args.python, extra)]
        if args.against is not None:
            (work / "b").mkdir()
            servers.append(_Other(work / "b", args.python, extra, args.against.resolve()))
        for reg in servers:
            reg.count_sql = not args.no_sql_counts
        runs = []
        try:
            trees = []
            for reg in servers:
                reg.start()
                assert reg.proc is not None
                trees.append(ProcTree(reg.proc.pid))
                # Warm the process (first imports, robot prefixes, settings caches).
                skopeo_push(reg, layout, images[0].ref, f"{PROJECT}/warm", "v1", 120)
            if args.hold:
                pids = [t.pids() for t in trees]
                print(f"server pids: {pids}; pushing in {args.hold:g} s", flush=True)
                time.sleep(args.hold)
            n = 1
            for _ in range(args.repeat):
                sql0 = [read_sql_counts(reg) for reg in servers]
                sites0 = _sites(servers[0].workdir) if args.sites else None
                cpu0 = [t.cpu_seconds() for t in trees]
                t0 = time.perf_counter()
                for img in images[n : n + args.pushes]:
                    for reg in servers:
                        skopeo_push(reg, layout, img.ref, f"{PROJECT}/{img.ref}", "v1", 120)
                n += args.pushes
                secs = time.perf_counter() - t0
                run: dict[str, float] = {"wall_ms_per_push": secs * 1000 / args.pushes}
                for i, (reg, tree) in enumerate(zip(servers, trees, strict=True)):
                    tag = "" if i == 0 else "_against"
                    run[f"cpu_ms_per_push{tag}"] = (
                        (tree.cpu_seconds() - cpu0[i]) * 1000 / args.pushes
                    )
                    sql1 = read_sql_counts(reg)
                    before = sql0[i]
                    if before is not None and sql1 is not None:
                        run[f"statements_per_push{tag}"] = (sql1[0] - before[0]) / args.pushes
                        run[f"transactions_per_push{tag}"] = (sql1[1] - before[1]) / args.pushes
                if len(servers) > 1:
                    run["cpu_ratio"] = run["cpu_ms_per_push"] / run["cpu_ms_per_push_against"]
                runs.append(run)
                if sites0 is not None:
                    print((_sites(servers[0].workdir) - sites0).describe(), flush=True)
                print(" ".join(f"{k}={v:.2f}" for k, v in run.items()), flush=True)
        finally:
            for reg in servers:
                reg.stop()
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median: " + " ".join(f"{k}={v:.2f}" for k, v in median.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
