"""What content trust with key verification costs a pull: manifest GET req/s of a signed
image in a project with ``enable_content_trust_cosign`` on and a trusted cosign key,
against the same GET in a project with content trust off.

Run from the repository root:

    .venv/bin/python bench/content_trust_bench.py [--seconds 5] [--rounds 3]

One ``dockyard serve`` (SQLite, files, one worker) on 127.0.0.1; both projects public, so
no credential check is in the figure; wrk with 16 connections, the two URLs measured in
alternating rounds (the machine is shared: alternating spreads other load over both).
Before measuring, the signed image is pulled once, so its verdict is stored (a pull then
reads it in the policy's one statement). Prints req/s of each, the ratio (target >= 0.9)
and what bounds the figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support import cosign_sign  # noqa: E402  (the test helper that makes signatures)

PASSWORD = "Bench12345!"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    r.raise_for_status()
    return digest


def push_image(client: httpx.Client, repo: str) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(4096)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": push_blob(client, repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": push_blob(client, repo, layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/1.0", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    r.raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its descendants (the ASGI server's workers)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        pid = int(entry.name)
        stats[pid] = fields
        children.setdefault(int(fields[1]), []).append(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += (int(stats[pid][11]) + int(stats[pid][12])) / ticks
        todo.extend(children.get(pid, []))
    return total


def wrk(url: str, seconds: int) -> tuple[float, float]:
    """(req/s, requests) of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if found is None or count is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(found.group(1)), float(count.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per round and URL")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="dockyard-ct-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["DOCKYARD_ADMIN_PASSWORD"] = PASSWORD
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dockyard",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(work / "data"),
        ],
        stdout=(work / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, auth=("admin", PASSWORD), timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/v2/").status_code in (200, 401):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            suffix = uuid.uuid4().hex[:6]
            off, on = f"ctoff{suffix}", f"cton{suffix}"
            for name, metadata in (
                (off, {"public": "true"}),
                (on, {"public": "true", "enable_content_trust_cosign": "true"}),
            ):
                client.post(
                    "/api/v2.0/projects", json={"project_name": name, "metadata": metadata}
                ).raise_for_status()
            key = cosign_sign.new_key()
            client.post(
                f"/api/v2.0/projects/{on}/trusted-keys",
                json={"kind": "cosign", "pem": cosign_sign.public_pem(key)},
            ).raise_for_status()
            for project in (off, on):
                repo = f"{project}/app"
                digest = push_image(client, repo)
                signature = cosign_sign.sign(key, repo, digest)
                push_blob(client, repo, signature.config)
                push_blob(client, repo, signature.payload)
                client.put(
                    f"/v2/{repo}/manifests/{cosign_sign.signature_tag(digest)}",
                    content=signature.manifest,
                    headers={"Content-Type": OCI_MANIFEST},
                ).raise_for_status()
            urls = {
                "content trust off": f"{base}/v2/{off}/app/manifests/1.0",
                "content trust + key verification on": f"{base}/v2/{on}/app/manifests/1.0",
            }
            for url in urls.values():  # the first pull stores the verdict if no job has yet
                anonymous = httpx.get(url, timeout=30)
                if anonymous.status_code != 200:
                    raise SystemExit(f"GET {url}: {anonymous.status_code} {anonymous.text}")
            for url in urls.values():
                wrk(url, 1)  # warm-up: connections, caches
            rates: dict[str, list[float]] = {k: [] for k in urls}
            cpu: dict[str, list[float]] = {k: [] for k in urls}
            for _ in range(args.rounds):
                for label, url in urls.items():
                    before = tree_cpu_seconds(server.pid)
                    rate, requests = wrk(url, args.seconds)
                    rates[label].append(rate)
                    cpu[label].append((tree_cpu_seconds(server.pid) - before) / requests)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    best = {label: max(values) for label, values in rates.items()}
    for label, values in rates.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"manifest GET, {label}: {best[label]:.0f} req/s (best of rounds: {shown})")
    ratio = best["content trust + key verification on"] / best["content trust off"]
    print(f"ratio on/off: {ratio:.2f} (target >= 0.90)")
    per_request = {label: min(values) * 1e6 for label, values in cpu.items()}
    for label, micros in per_request.items():
        print(f"server CPU per manifest GET, {label}: {micros:.0f} µs (least of rounds)")
    cpu_ratio = (
        per_request["content trust off"] / per_request["content trust + key verification on"]
    )
    print(
        f"CPU ratio off/on: {cpu_ratio:.2f} (the req/s a CPU-bound server would keep; "
        "steadier than req/s on a busy machine)"
    )
    load = os.getloadavg()
    print(
        f"bounded by: {os.cpu_count()} CPUs shared by the server (1 worker process), wrk "
        f"(2 threads) and whatever else runs; load average {load[0]:.1f}/{load[1]:.1f}; "
        f"{args.rounds} alternating rounds of {args.seconds}s per URL, 16 connections, loopback"
    )


if __name__ == "__main__":
    main()
