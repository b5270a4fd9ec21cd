"""Replication, push mode, Dockyard -> Debian ``docker-registry``, beside ``skopeo sync``.

Run from the repository root:

    .venv/bin/python bench/replication_bench.py [--quick] [--json out.json]
        [--job-workers 4] [--postgres]

One Dockyard (``dockyard serve``, SQLite) holds the images; two empty ``docker-registry``
processes (no auth, filesystem storage) receive them: one from a Dockyard push-based
replication policy, the other from ``skopeo sync`` reading the same images from
Dockyard. Everything is on 127.0.0.1. Phases, each timed from start to the last image
stored:

- **1 GiB image**: one image of 4 x 256 MiB layers (random, incompressible);
- **500 small images**: one repository each, 3 x 64 KiB layers;
- **rerun**: the small policy and the 1 GiB policy run again with nothing changed
  (Dockyard only; skopeo sync has no "already there" short cut to compare with).

``skopeo sync`` copies the 1 GiB repository with ``--src docker``, and the 500 small
ones in one run with ``--src yaml`` naming every repository (it copies one image at a
time). Dockyard's execution plans copy tasks of up to 16 images each (spread over at
least 8 tasks), runs ``--job-workers`` of them at once and 4 images of a task at once.
``--quick``: 4 x 16 MiB and 50 small images. ``--postgres``: Dockyard on a throwaway
PostgreSQL database (``tests/support/postgres.py`` finds the server) instead of SQLite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from oci_images import Image, build_layout
from registry_bench import BenchError, Dockyard, free_port, run, sha256_mbps

MiB = 1 << 20
KiB = 1 << 10
HOST = "127.0.0.1"
API = "/api/v2.0"
DOCKER_REGISTRY = "/usr/bin/docker-registry"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


class Destination:
    """An empty ``docker-registry`` (no auth) on loopback."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.root = workdir / name
        self.root.mkdir(parents=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "cache": {"blobdescriptor": "inmemory"},
                "filesystem": {"rootdirectory": str(self.root / "data")},
            },
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        (self.root / "config.yml").write_text(json.dumps(config))
        log = (self.root / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            [DOCKER_REGISTRY, "serve", str(self.root / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise BenchError(f"docker-registry on {self.host} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)

    def digest(self, repository: str, tag: str) -> str:
        got = httpx.head(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            headers={"Accept": ACCEPT},
            timeout=30,
        )
        return got.headers.get("docker-content-digest", f"missing ({got.status_code})")


class Source(Dockyard):
    """Dockyard allowed to reach loopback endpoints, its job slots set."""

    def __init__(self, workdir: Path, job_workers: int, database_url: str = "") -> None:
        super().__init__(workdir, sys.executable, [])
        self.count_sql = False
        self.job_workers = job_workers
        self.database_url = database_url

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        env["DOCKYARD_EGRESS_ALLOW_LOOPBACK"] = "true"
        env["DOCKYARD_JOB_WORKERS"] = str(self.job_workers)
        env["DOCKYARD_JOB_POLL_SECONDS"] = "0.2"
        if self.database_url:
            env["DOCKYARD_DATABASE_URL"] = self.database_url
        return cmd, env


def _push(client: httpx.Client, layout: Path, image: Image) -> None:
    repo = f"library/{image.ref}"
    for blob in [image.config, *image.layers]:
        path = layout / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
        with path.open("rb") as data:
            got = client.post(
                f"/v2/{repo}/blobs/uploads/",
                params={"digest": blob.digest},
                content=iter(lambda: data.read(4 * MiB), b""),
                headers={"Content-Length": str(blob.size)},
            )
        if got.status_code != 201:
            raise BenchError(f"push {repo}: {got.status_code} {got.text[:200]}")
    manifest = (layout / "blobs" / "sha256" / image.manifest.digest.split(":", 1)[1]).read_bytes()
    got = client.put(f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": ACCEPT})
    if got.status_code != 201:
        raise BenchError(f"push {repo}: {got.status_code} {got.text[:200]}")


def load(source: Source, layout: Path, images: list[Image]) -> None:
    with (
        httpx.Client(
            base_url=source.base, auth=(source.user, source.password), timeout=300
        ) as client,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        for done in [pool.submit(_push, client, layout, image) for image in images]:
            done.result()


def _api(client: httpx.Client, method: str, path: str, body: Any = None) -> httpx.Response:
    got = client.request(method, API + path, json=body)
    if got.status_code >= 300:
        raise BenchError(f"{method} {path}: {got.status_code} {got.text[:300]}")
    return got


def policy(client: httpx.Client, registry_id: int, name: str, pattern: str) -> int:
    got = _api(
        client,
        "POST",
        "/replication/policies",
        {
            "name": name,
            "dest_registry": {"id": registry_id},
            "filters": [{"type": "name", "value": pattern}],
        },
    )
    return int(got.headers["location"].rsplit("/", 1)[1])


def replicate(client: httpx.Client, policy_id: int) -> tuple[float, dict[str, Any]]:
    """Run the policy; (seconds to its end, the execution)."""
    started = time.perf_counter()
    got = _api(client, "POST", "/replication/executions", {"policy_id": policy_id})
    execution_id = got.headers["location"].rsplit("/", 1)[1]
    while True:
        execution = _api(client, "GET", f"/replication/executions/{execution_id}").json()
        if execution["status"] != "InProgress":
            seconds = time.perf_counter() - started
            if execution["status"] != "Succeed":
                raise BenchError(f"execution {execution_id}: {execution}")
            return seconds, execution
        time.sleep(0.25)  # a gentle poll: each one costs the server a few queries


def task_seconds(client: httpx.Client, execution: dict[str, Any]) -> tuple[float, float]:
    """(mean seconds a copy task ran, seconds from the first copy's start to the last's
    end) of an execution: the rest of its time is planning and waiting to be claimed."""
    tasks: list[dict[str, Any]] = []
    page = 1
    while True:
        got = _api(
            client,
            "GET",
            f"/replication/executions/{execution['id']}/tasks?page={page}&page_size=100",
        ).json()
        tasks += got
        if len(got) < 100:
            break
        page += 1
    copies = [t for t in tasks if t["operation"] == "copy" and t["start_time"] and t["end_time"]]
    if not copies:
        return 0.0, 0.0

    def at(value: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    durations = [at(t["end_time"]) - at(t["start_time"]) for t in copies]
    span = max(at(t["end_time"]) for t in copies) - min(at(t["start_time"]) for t in copies)
    return sum(durations) / len(durations), span


def skopeo_sync(source: Source, dest: Destination, yaml_file: Path | None, repo: str) -> float:
    common = [
        "skopeo",
        "sync",
        "--retry-times=0",
        "--dest-tls-verify=false",
        "--dest",
        "docker",
    ]
    if yaml_file is not None:
        cmd = [*common, "--src", "yaml", str(yaml_file), f"{dest.host}/library"]
    else:
        cmd = [
            *common,
            "--src",
            "docker",
            "--src-tls-verify=false",
            "--src-creds",
            f"{source.user}:{source.password}",
            f"{source.host}/{repo}",
            f"{dest.host}/library",
        ]
    _, seconds = run(cmd, timeout=3600)
    return seconds


def sync_yaml(source: Source, images: list[Image], path: Path) -> Path:
    lines = [
        f"{source.host}:",
        "  tls-verify: false",
        "  credentials:",
        f"    username: {source.user}",
        f"    password: {source.password}",
        "  images:",
        *[f"    library/{image.ref}: [v1]" for image in images],
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="4 x 16 MiB and 50 small images")
    parser.add_argument("--job-workers", type=int, default=4, help="Dockyard's job slots")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="Dockyard on a throwaway PostgreSQL database (default: SQLite in its data dir)",
    )
    args = parser.parse_args(argv)
    for tool in ("skopeo", DOCKER_REGISTRY):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    layer = 16 * MiB if args.quick else 256 * MiB
    small_count = 50 if args.quick else 500
    work = Path(tempfile.mkdtemp(prefix="replication-bench-"))
    servers: list[Any] = []
    stack = contextlib.ExitStack()
    try:
        print(f"building images in {work} ...", flush=True)
        layout = work / "layout"
        specs = [("big", [layer] * 4)] + [(f"s{i:03d}", [64 * KiB] * 3) for i in range(small_count)]
        images = build_layout(layout, specs)
        big, small = images[0], images[1:]
        database_url = ""
        if args.postgres:
            import postgres as pg

            database_url = stack.enter_context(pg.temporary_database(pg.postgres_admin_url()))
        source = Source(work, args.job_workers, database_url)
        mirror = Destination(work, "dockyard-dest")
        baseline = Destination(work, "skopeo-dest")
        servers += [source, mirror, baseline]
        source.start()
        mirror.start()
        baseline.start()
        print("loading Dockyard ...", flush=True)
        load(source, layout, images)
        shutil.rmtree(layout)  # the page cache, not the layout, holds what is read next

        figures: dict[str, float] = {}
        with httpx.Client(
            base_url=source.base, auth=(source.user, source.password), timeout=60
        ) as client:
            made = _api(
                client,
                "POST",
                "/registries",
                {"name": "bench", "type": "docker-registry", "url": f"http://{mirror.host}"},
            )
            registry_id = int(made.headers["location"].rsplit("/", 1)[1])
            big_policy = policy(client, registry_id, "big", "library/big")
            small_policy = policy(client, registry_id, "small", "library/s*")
            print("1 GiB image ...", flush=True)
            figures["big_dockyard_s"], _ = replicate(client, big_policy)
            figures["big_skopeo_s"] = skopeo_sync(source, baseline, None, "library/big")
            print(f"{small_count} small images ...", flush=True)
            figures["small_dockyard_s"], execution = replicate(client, small_policy)
            figures["small_task_mean_s"], figures["small_task_span_s"] = task_seconds(
                client, execution
            )
            yaml_file = sync_yaml(source, small, work / "sync.yaml")
            figures["small_skopeo_s"] = skopeo_sync(source, baseline, yaml_file, "")
            print("rerun, nothing changed ...", flush=True)
            figures["rerun_small_s"], _ = replicate(client, small_policy)
            figures["rerun_big_s"], _ = replicate(client, big_policy)

        for image in [big, *small[:: max(1, len(small) // 20)]]:
            for dest in (mirror, baseline):
                found = dest.digest(f"library/{image.ref}", "v1")
                if found != image.manifest.digest:
                    raise BenchError(f"{dest.host} library/{image.ref}: {found}")
        report(figures, big, small_count, args)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    finally:
        for server in reversed(servers):
            server.stop()
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(figures: dict[str, float], big: Image, small_count: int, args: Any) -> None:
    gib = big.total_bytes / (1 << 30)
    big_ratio = figures["big_dockyard_s"] / figures["big_skopeo_s"]
    dockyard_rate = small_count / figures["small_dockyard_s"]
    skopeo_rate = small_count / figures["small_skopeo_s"]
    load1, _, _ = os.getloadavg()
    print()
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} at the end; {database}")
    print(f"sha256 on one core: {sha256_mbps():.0f} MB/s (Dockyard and distribution both hash")
    print("every byte they store, and skopeo hashes what it copies: it bounds the big copy)")
    print()
    print(f"{'phase':<34}{'Dockyard':>12}{'skopeo sync':>14}{'ratio':>8}  target")
    print(
        f"{f'{gib:.2f} GiB image, 4 layers (s)':<34}{figures['big_dockyard_s']:>12.2f}"
        f"{figures['big_skopeo_s']:>14.2f}{big_ratio:>7.2f}x  <= 1.1x skopeo's time"
    )
    print(
        f"{f'{small_count} small images (images/s)':<34}{dockyard_rate:>12.1f}"
        f"{skopeo_rate:>14.1f}{dockyard_rate / skopeo_rate:>7.2f}x  >= 1.5x skopeo's rate"
    )
    print(
        f"{'rerun, small, nothing changed (s)':<34}{figures['rerun_small_s']:>12.2f}{'':>22}  < 5 s"
    )
    print(f"{'rerun, big, nothing changed (s)':<34}{figures['rerun_big_s']:>12.2f}{'':>22}  < 5 s")
    print(
        f"small: a copy task ran {figures['small_task_mean_s'] * 1000:.0f} ms on average; the"
        f" copies spanned {figures['small_task_span_s']:.1f} s of the"
        f" {figures['small_dockyard_s']:.1f} s (the rest: planning, claiming)"
    )
    print()
    print(
        f"Dockyard runs {args.job_workers} tasks at once (--job-workers) in one serve process"
        " (tasks of up to 16 images, 4 at once); skopeo sync copies one image at a time."
        " The rerun is a few queries here and one HEAD per tag at the destination."
    )


if __name__ == "__main__":
    raise SystemExit(main())
