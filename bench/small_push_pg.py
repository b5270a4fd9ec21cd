"""Small pushes on SQLite vs PostgreSQL (and optionally S3): where does the time go?

Run from the repository root:

    .venv/bin/python bench/small_push_pg.py [--count 30] [--rounds 2]
        [--configs sqlite-fs,pg-fs,pg-s3] [--py-spy DIR]

Each configuration starts one ``dockyard serve`` (PostgreSQL: a throwaway database on
the server ``tests/support/postgres.py`` finds, dropped afterwards; S3: SeaweedFS as the
S3 tests start it), pushes ``--count`` images of 3 x 64 KiB layers with skopeo one after
another, and reports img/s, the server tree's CPU per push (utime+stime) and the SQL
statements and transactions per push (``DOCKYARD_SQL_COUNTERS``). Configurations run in
turn and ``--rounds`` times, so a machine shared with other work is compared within one
run. ``--py-spy DIR`` records a CPU profile of each server during its
pushes into ``DIR/<config>-<round>.txt`` (py-spy must be on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from oci_images import build_layout
from registry_bench import PROJECT, Dockyard, ProcTree, read_sql_counts, skopeo_push

KiB = 1024
PG_STATS_SETTLE = 11.0
"""PostgreSQL 15 flushes an idle backend's counters to pg_stat_database within 10 s."""
CONFIGS = ("sqlite-fs", "pg-fs", "pg-s3", "pg-fs+", "pg-s3+")


def run_config(
    work: Path,
    layout: Path,
    refs: list[str],
    env: dict[str, str],
    spy: Path | None,
    pg_xacts: Callable[[], tuple[int, int]] | None,
) -> dict[str, float]:
    reg = Dockyard(work, sys.executable, [])
    base_command = reg.command

    def command() -> tuple[list[str], dict[str, str]]:
        cmd, cmd_env = base_command()
        cmd_env.update(env)
        return cmd, cmd_env

    reg.command = command  # type: ignore[method-assign]
    reg.start()
    spy_proc: subprocess.Popen[bytes] | None = None
    try:
        assert reg.proc is not None
        tree = ProcTree(reg.proc.pid)
        # one push first, so start-up work (first project, token key) is not measured
        skopeo_push(reg, layout, refs[0], f"{PROJECT}/warm", "v1", 120)
        if spy is not None:
            spy.parent.mkdir(parents=True, exist_ok=True)
            spy_proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--subprocesses",
                    "--format",
                    "raw",
                    "-o",
                    str(spy),
                    "--pid",
                    str(reg.proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        sql_before = read_sql_counts(reg)
        if pg_xacts is not None:
            time.sleep(PG_STATS_SETTLE)
            xacts_before = pg_xacts()
        cpu_before = tree.cpu_seconds()
        started = time.monotonic()
        for i, ref in enumerate(refs):
            skopeo_push(reg, layout, ref, f"{PROJECT}/{ref}", f"v{i}", 120)
        secs = time.monotonic() - started
        cpu = tree.cpu_seconds() - cpu_before
        sql_after = read_sql_counts(reg)
        n = len(refs)
        out = {"img_per_s": n / secs, "cpu_ms_per_push": cpu / n * 1000}
        if pg_xacts is not None:
            time.sleep(PG_STATS_SETTLE)
            xacts_after = pg_xacts()
            out["pg_commits_per_push"] = (xacts_after[0] - xacts_before[0]) / n
            out["pg_rollbacks_per_push"] = (xacts_after[1] - xacts_before[1]) / n
        if sql_before and sql_after:
            out["statements_per_push"] = (sql_after[0] - sql_before[0]) / n
            out["transactions_per_push"] = (sql_after[1] - sql_before[1]) / n
        return out
    finally:
        if spy_proc is not None:
            spy_proc.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy_proc.wait(timeout=30)
        reg.stop()


def pg_xacts(pg: Any, admin_url: str, name: str) -> tuple[int, int]:
    """(xact_commit, xact_rollback) of database ``name`` on the server."""

    async def query() -> tuple[int, int]:
        import asyncpg

        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            row = await conn.fetchrow(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
                name,
            )
        finally:
            await conn.close()
        return int(row[0]), int(row[1])

    result: tuple[int, int] = pg._run_async(query)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--configs", default="sqlite-fs,pg-fs")
    ap.add_argument("--py-spy", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="ALTER DATABASE ... SET for the throwaway database (an experiment, e.g. "
        "synchronous_commit=off); a config pg-fs+ is added that runs with them",
    )
    args = ap.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            ap.error(f"unknown config {c!r}; choose from {', '.join(CONFIGS)}")

    root = Path(tempfile.mkdtemp(prefix="small-push-pg-"))
    stack = contextlib.ExitStack()
    results: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    try:
        layout = root / "layout"
        refs = [f"small-{i:03d}" for i in range(args.count)]
        build_layout(layout, [(r, [64 * KiB] * 3) for r in refs])
        admin_url = ""
        seaweed = None
        if any(c.startswith("pg") for c in configs):
            import postgres as pg

            admin_url = pg.postgres_admin_url()
        if "pg-s3" in configs:
            import seaweedfs

            seaweed = seaweedfs.start_seaweedfs()
            stack.callback(seaweed.stop)
        for rnd in range(args.rounds):
            for c in configs:
                work = root / f"{c}-{rnd}"
                work.mkdir()
                env: dict[str, str] = {}
                with contextlib.ExitStack() as per_run:
                    if c.startswith("pg"):
                        url = per_run.enter_context(pg.temporary_database(admin_url))
                        env["DOCKYARD_DATABASE_URL"] = url
                        if c.endswith("+"):
                            name = url.rsplit("/", 1)[1]
                            for item in args.pg_set:
                                key, _, value = item.partition("=")
                                pg._run_async(
                                    lambda k=key, v=value, n=name: pg._execute(
                                        admin_url, f'ALTER DATABASE "{n}" SET {k} = {v}'
                                    )
                                )
                    if c.startswith("pg-s3"):
                        assert seaweed is not None
                        env.update(
                            {
                                f"DOCKYARD_{k.upper()}": ("true" if v is True else str(v))
                                for k, v in seaweedfs.s3_settings(
                                    seaweed, seaweed.new_bucket()
                                ).items()
                            }
                        )
                    spy = args.py_spy / f"{c}-{rnd}.txt" if args.py_spy else None
                    xacts = None
                    if c.startswith("pg"):
                        xacts = functools.partial(pg_xacts, pg, admin_url, url.rsplit("/", 1)[1])
                    res = run_config(work, layout, refs, env, spy, xacts)
                results[c].append(res)
                shown = ", ".join(f"{k}={v:.2f}" for k, v in res.items())
                print(f"round {rnd} {c}: {shown}", flush=True)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    print()
    for c, runs in results.items():
        if not runs:
            continue
        keys = runs[0].keys()
        med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in keys}
        print(f"{c:10s} " + "  ".join(f"{k}={v:.2f}" for k, v in med.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
