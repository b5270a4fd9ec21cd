"""Blob GETs on S3: Dockyard's S3 driver against distribution's, server CPU per GiB.

One SeaweedFS (as the tests start it), a bucket per registry, one blob of
``--size-mib`` pushed to each; then rounds of GETs by curl, interleaved between the
two registries: ``--parallel`` curls at once per round (skopeo pulls four layers at
once), each fetching the whole blob to /dev/null. For each registry: MB/s of the
round and the server process tree's CPU seconds (utime+stime from /proc) per GiB
sent. Medians over ``--rounds``. SeaweedFS's CPU is counted in neither.

    .venv/bin/python bench/s3_get_bench.py --rounds 3 --parallel 4

``--py-spy SECONDS`` records the Dockyard server during a GET loop instead
(``py-spy record --native``, needs py-spy on PATH) and writes ``s3-get.svg``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent))

import s3_store
from oci_images import write_random_file
from registry_bench import (
    PROJECT,
    Distribution,
    Dockyard,
    ProcTree,
    http_request,
)

MIB = 1 << 20


def push_blob(reg: Dockyard | Distribution, repo: str, path: Path, digest: str) -> None:
    tok = reg.token(repo, "pull,push")
    status, headers, body = http_request(
        "POST", f"{reg.base}/v2/{repo}/blobs/uploads/", {"Authorization": f"Bearer {tok}"}
    )
    if status != 202:
        raise SystemExit(f"{reg.name}: POST uploads gave {status}: {body[:200]!r}")
    loc = urljoin(reg.base + "/", headers["location"])
    url = f"{loc}{'&' if '?' in loc else '?'}digest={quote(digest)}"
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
         "-H", f"Authorization: Bearer {tok}", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{path}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if out.strip() != "201":
        raise SystemExit(f"{reg.name}: PUT blob gave {out}")


def get_round(reg: Dockyard | Distribution, url: str, tok: str, parallel: int, size: int) -> float:
    """Seconds for ``parallel`` concurrent whole-blob GETs."""
    began = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                "-H",
                f"Authorization: Bearer {tok}",
                url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(parallel)
    ]
    for proc in procs:
        out, _ = proc.communicate()
        code, got = out.split()
        if code != "200" or int(got) != size:
            raise SystemExit(f"{reg.name}: GET gave {code}, {got} bytes of {size}")
    return time.monotonic() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--gets-per-round", type=int, default=2, help="rounds of --parallel GETs")
    ap.add_argument("--only", choices=["dockyard", "distribution"], default=None)
    ap.add_argument("--py-spy", type=float, default=0, metavar="SECONDS")
    ap.add_argument("--profiler", choices=["py-spy", "perf"], default="py-spy")
    ap.add_argument("--dockyard-args", default="")
    default_py = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    ap.add_argument("--dockyard-python", default=str(default_py))
    ap.add_argument("--distribution-bin", default=shutil.which("docker-registry"))
    ap.add_argument("--dist-token-header", default="x5c")
    ap.add_argument("--storage", default="s3")
    ap.add_argument("--nodes", type=int, default=0)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="s3-get-bench-"))
    blob = work / "blob"
    digest = write_random_file(blob, args.size_mib * MIB)
    size = blob.stat().st_size
    names = [args.only] if args.only else ["dockyard", "distribution"]
    if args.py_spy:
        names = ["dockyard"]
    store = s3_store.Backing(postgres=False)
    regs = []
    try:
        for name in names:
            d = work / name
            d.mkdir()
            reg = s3_store.make_registry(name, d, args, store, Dockyard, Distribution)
            reg.start()
            regs.append(reg)
        repo = f"{PROJECT}/s3get"
        for reg in regs:
            push_blob(reg, repo, blob, digest)
        if args.py_spy:
            reg = regs[0]
            tok = reg.token(repo, "pull")
            url = f"{reg.base}/v2/{repo}/blobs/{digest}"
            assert reg.proc is not None
            worker = [p for p in ProcTree(reg.proc.pid).pids() if p != reg.proc.pid]
            target = worker[-1] if worker else reg.proc.pid
            if args.profiler == "perf":
                cmd = [
                    "perf",
                    "record",
                    "-F",
                    "499",
                    "-g",
                    "-o",
                    "s3-get.perf",
                    "-p",
                    ",".join(map(str, ProcTree(reg.proc.pid).pids())),
                    "--",
                    "sleep",
                    str(args.py_spy),
                ]
            else:
                cmd = [
                    "py-spy",
                    "record",
                    "--native",
                    "-p",
                    str(target),
                    "-d",
                    str(args.py_spy),
                    "-o",
                    "s3-get.svg",
                    "-r",
                    "200",
                ]
            spy = subprocess.Popen(cmd)  # fmt: skip
            end = time.monotonic() + args.py_spy
            while time.monotonic() < end:
                get_round(reg, url, tok, args.parallel, size)
            spy.wait()
            return
        results: dict[str, dict[str, list[float]]] = {r.name: {"mbps": [], "cpu": []} for r in regs}
        for _ in range(args.rounds):
            for reg in regs:
                tok = reg.token(repo, "pull")
                url = f"{reg.base}/v2/{repo}/blobs/{digest}"
                assert reg.proc is not None
                tree = ProcTree(reg.proc.pid)
                cpu0 = tree.cpu_seconds()
                secs = 0.0
                for _ in range(args.gets_per_round):
                    secs += get_round(reg, url, tok, args.parallel, size)
                cpu = tree.cpu_seconds() - cpu0
                sent = size * args.parallel * args.gets_per_round
                results[reg.name]["mbps"].append(sent / secs / 1e6)
                results[reg.name]["cpu"].append(cpu / (sent / (1 << 30)))
        print(f"{args.parallel} parallel GETs of {args.size_mib} MiB, {args.rounds} rounds")
        for name, r in results.items():
            mb = ", ".join(f"{x:.0f}" for x in r["mbps"])
            cpu = ", ".join(f"{x:.2f}" for x in r["cpu"])
            print(
                f"{name:13} MB/s {statistics.median(r['mbps']):7.1f} ({mb})   "
                f"CPU s/GiB {statistics.median(r['cpu']):5.2f} ({cpu})"
            )
    finally:
        for reg in regs:
            reg.stop()
        store.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
