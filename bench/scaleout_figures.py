"""Figures for docs/scaling.md: what one ``dockyard serve`` node costs in a cluster.

Starts SeaweedFS, a fresh PostgreSQL database, two ``dockyard serve`` nodes (S3
storage, no in-process job workers) and one ``dockyard worker``, then measures:

- resident memory (RSS, summed over each node's process group) idle and at the peak of
  concurrent skopeo pushes;
- PostgreSQL connections each process holds (``ss``), idle and after the load;
- database work per registry operation, counted inside the server processes with
  SQLAlchemy events (a ``sitecustomize`` put on their ``PYTHONPATH``): statements,
  transactions begun and pool checkouts (each one a ``pool_pre_ping`` round trip).

    .venv/bin/python bench/scaleout_figures.py [--pushers 8] [--layer-kib 1024]

Figures depend on the machine; the counts do not (they change with the code: note the
commit they were taken on).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.oci_layout import make_image_layout  # noqa: E402 - after the path
from tests.support.postgres import postgres_admin_url, temporary_database  # noqa: E402
from tests.support.seaweedfs import s3_settings, start_seaweedfs  # noqa: E402
from tests.support.server import DockyardServer  # noqa: E402

COUNTER = """
import os, threading, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_counts = {"statements": 0, "begins": 0, "checkouts": 0}

def _statement(*_args):
    _counts["statements"] += 1
    _ensure_dumper()

def _begin(*_args):
    _counts["begins"] += 1
    _ensure_dumper()

def _checkout(*_args):
    _counts["checkouts"] += 1
    _ensure_dumper()

event.listen(Engine, "before_cursor_execute", _statement)
event.listen(Engine, "begin", _begin)
event.listen(Pool, "checkout", _checkout)
_out = os.environ["SCALEOUT_COUNT_DIR"]

def _dump():
    last = None
    while True:
        time.sleep(0.05)
        now = dict(_counts)
        if now != last:
            last = now
            tmp = f"{_out}/{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(repr(now))
            os.replace(tmp, f"{_out}/{os.getpid()}")

_dumping = [0]

def _ensure_dumper():
    # The ASGI server forks its workers without Python's at-fork hooks: a process
    # finds out it has no dumper thread when it first counts.
    if _dumping[0] != os.getpid():
        _dumping[0] = os.getpid()
        threading.Thread(target=_dump, daemon=True).start()
"""


def group_pids(leader: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == leader:  # process group id
            pids.append(int(entry))
    return pids


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def pg_connections(pids: list[int]) -> int:
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", "( dport = :5432 )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = [int(p) for p in re.findall(r"pid=(\d+)", out)]
    return sum(1 for p in found if p in pids)


class Counts:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read(self, pids: list[int]) -> dict[str, int]:
        total = {"statements": 0, "begins": 0, "checkouts": 0}
        for pid in pids:
            path = self.folder / str(pid)
            if path.exists():
                for k, v in eval(path.read_text()).items():  # noqa: S307 - our own repr
                    total[k] += v
        return total

    def settled(self, pids: list[int]) -> dict[str, int]:
        """The counts once they stop moving (the dump runs every 50 ms)."""
        last = self.read(pids)
        while True:
            time.sleep(0.3)
            now = self.read(pids)
            if now == last:
                return now
            last = now


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=600)


def push(node: DockyardServer, layout: Path, ref: str) -> None:
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        node.admin_creds,
        f"oci:{layout}:latest",
        f"docker://{node.registry}/{ref}",
    )


def pull(node: DockyardServer, ref: str, dest: Path) -> None:
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        node.admin_creds,
        f"docker://{node.registry}/{ref}",
        f"oci:{dest}:x",
    )


@contextmanager
def cluster(work: Path) -> Iterator[tuple[DockyardServer, DockyardServer, int, Counts]]:
    site = work / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(COUNTER)
    counts_dir = work / "counts"
    counts_dir.mkdir()
    s3 = start_seaweedfs()
    try:
        env = {
            f"DOCKYARD_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in s3_settings(s3, s3.new_bucket()).items()
        }
        env |= {
            "DOCKYARD_JOB_WORKERS": "0",
            "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
            "SCALEOUT_COUNT_DIR": str(counts_dir),
        }
        with (
            temporary_database(postgres_admin_url()) as url,
            DockyardServer(database_url=url, env=env, startup_timeout=180) as a,
            DockyardServer(database_url=url, env=env, startup_timeout=180) as b,
        ):
            with (work / "worker.log").open("ab") as log:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "dockyard", "worker", "--data-dir", str(a.data_dir)],
                    env=a.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                yield a, b, worker.pid, Counts(counts_dir)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    finally:
        s3.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushers", type=int, default=8)
    parser.add_argument("--layer-kib", type=int, default=1024)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    figures: dict[str, object] = {"commit": commit, "pushers": args.pushers}
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        work = Path(tmp)
        with cluster(work) as (a, b, worker, counts):
            time.sleep(3)
            a_pids, b_pids, w_pids = (
                group_pids(a.pid or 0),
                group_pids(b.pid or 0),
                group_pids(worker),
            )
            figures["idle_rss_mib"] = {
                "node_a": round(rss_mib(a_pids), 1),
                "node_b": round(rss_mib(b_pids), 1),
                "worker": round(rss_mib(w_pids), 1),
            }
            figures["idle_pg_connections"] = {
                "node_a": pg_connections(a_pids),
                "node_b": pg_connections(b_pids),
                "worker": pg_connections(w_pids),
            }
            # Idle database work: what a node and the worker do with no request at all.
            before = counts.settled(a_pids + w_pids)
            time.sleep(10)
            idle = delta(counts.read(a_pids + w_pids), before)
            figures["idle_work_10s_node_a_plus_worker"] = idle

            # One push through A (2 layers + config + manifest), one pull through B.
            image = make_image_layout(work / "one", layers=2, layer_size=64 * 1024, seed=7)
            base_a = counts.settled(a_pids)
            push(a, image.path, "library/one:v1")
            figures["push_2_layers_node_a"] = delta(counts.settled(a_pids), base_a)
            base_a = counts.settled(a_pids)
            push(a, image.path, "library/one:v2")  # every blob known: HEADs, tag only
            figures["push_again_other_tag"] = delta(counts.settled(a_pids), base_a)
            base_b = counts.settled(b_pids)
            pull(b, "library/one:v1", work / "pulled1")
            figures["pull_2_layers_node_b"] = delta(counts.settled(b_pids), base_b)
            base_b = counts.settled(b_pids)
            pull(b, "library/one:v1", work / "pulled2")
            figures["pull_again_node_b"] = delta(counts.settled(b_pids), base_b)

            # Load: pushers at once, half through each node; peak RSS sampled every 100 ms.
            layouts = [
                make_image_layout(
                    work / f"load{i}", layers=4, layer_size=args.layer_kib * 1024, seed=100 + i
                ).path
                for i in range(args.pushers)
            ]
            peak = {"node_a": 0.0, "node_b": 0.0}
            peak_conn = {"node_a": 0, "node_b": 0}
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    for key, pids in (("node_a", a_pids), ("node_b", b_pids)):
                        peak[key] = max(peak[key], rss_mib(pids))
                        peak_conn[key] = max(peak_conn[key], pg_connections(pids))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample)
            sampler.start()
            base = counts.settled(a_pids + b_pids)
            began = time.monotonic()
            with ThreadPoolExecutor(args.pushers) as pool:
                done = [
                    pool.submit(push, (a, b)[i % 2], layout, f"library/load{i}:v1")
                    for i, layout in enumerate(layouts)
                ]
                for future in done:
                    future.result()
            seconds = time.monotonic() - began
            stop.set()
            sampler.join()
            work_done = delta(counts.settled(a_pids + b_pids), base)
            figures["load"] = {
                "images": args.pushers,
                "layers_each": 4,
                "layer_kib": args.layer_kib,
                "seconds": round(seconds, 1),
                "peak_rss_mib": {k: round(v, 1) for k, v in peak.items()},
                "peak_pg_connections": peak_conn,
                "per_image": {k: round(v / args.pushers, 1) for k, v in work_done.items()},
            }
            figures["after_load_pg_connections"] = {
                "node_a": pg_connections(a_pids),
                "node_b": pg_connections(b_pids),
            }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
