"""Server CPU per request of manifest GET and blob HEAD with a bearer token: two builds.

Issue 12 item 2 rechecks every bearer token against its account and rights; this
measures what that costs. Two ``dockyard serve`` processes run side by side (one
from ``--old-src``, a ``src`` directory of an older checkout, e.g.
``git archive <commit> src | tar -x -C /tmp/old``; one from this tree), each with
a fresh SQLite data dir and one small image in ``library/bench``. Rounds of
``--requests`` manifest GETs and blob HEADs alternate between them (the order
flips each round, so drift in machine load hits both), and the server's CPU time
(process and children, from /proc) is divided by the requests sent.

    .venv/bin/python bench/auth_recheck_bench.py --old-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PASSWORD = "Harbor12345"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (``serve`` runs its server in a child)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    total = 0.0
    for p in [pid, *(int(k) for k in found.stdout.split())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class Server:
    def __init__(self, name: str, src: str | None, workdir: Path) -> None:
        data = workdir / f"{name}-data"
        data.mkdir()
        port = _free_port()
        env = dict(os.environ, DOCKYARD_ADMIN_PASSWORD=PASSWORD, DOCKYARD_LOG_LEVEL="warning")
        if src:
            env["PYTHONPATH"] = src
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.log = (workdir / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "serve", "--port", str(port), "--data-dir", data],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for _ in range(300):
            try:
                if httpx.get(self.base + "/v2/", timeout=1).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit(f"{name} did not start; see {workdir / name}.log")
        self.token, self.layer = self._push()

    def _push(self) -> tuple[str, str]:
        with httpx.Client(base_url=self.base, auth=("admin", PASSWORD), timeout=30) as c:
            layer, config = os.urandom(1024), b"{}"
            digests = []
            for data in (layer, config):
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                r = c.post(
                    "/v2/library/bench/blobs/uploads/", params={"digest": digest}, content=data
                )
                r.raise_for_status()
                digests.append(digest)
            manifest = {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digests[1],
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digests[0],
                        "size": len(layer),
                    }
                ],
            }
            r = c.put(
                "/v2/library/bench/manifests/v1",
                content=json.dumps(manifest).encode(),
                headers={"Content-Type": MANIFEST},
            )
            r.raise_for_status()
            token = c.get(
                "/service/token",
                params={"service": "dockyard", "scope": "repository:library/bench:pull"},
            ).json()["token"]
        return str(token), digests[0]

    def run(self, kind: str, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": MANIFEST}
        with httpx.Client(base_url=self.base, timeout=30) as c:
            for _ in range(n):
                if kind == "manifest GET":
                    r = c.get("/v2/library/bench/manifests/v1", headers=headers)
                else:
                    r = c.head(f"/v2/library/bench/blobs/{self.layer}", headers=headers)
                if r.status_code != 200:
                    raise SystemExit(f"{self.name} {kind} answered {r.status_code}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-src", required=True, help="src/ of the build to compare with")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    kinds = ("manifest GET", "blob HEAD")
    with tempfile.TemporaryDirectory(prefix="dy-recheck-") as tmp:
        servers = [Server("old", args.old_src, Path(tmp)), Server("new", None, Path(tmp))]
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        try:
            for server in servers:
                for kind in kinds:
                    server.run(kind, 200)  # warm up
            for round_ in range(args.rounds):
                order = servers if round_ % 2 == 0 else servers[::-1]
                for kind in kinds:
                    for server in order:
                        cpu, wall = _cpu_seconds(server.proc.pid), time.perf_counter()
                        server.run(kind, args.requests)
                        cpu = _cpu_seconds(server.proc.pid) - cpu
                        wall = time.perf_counter() - wall
                        results.setdefault((kind, server.name), []).append(
                            (cpu / args.requests * 1e6, args.requests / wall)
                        )
        finally:
            for server in servers:
                server.stop()
    for (kind, name), rows in sorted(results.items()):
        cpus = sorted(r[0] for r in rows)
        rates = sorted(r[1] for r in rows)
        print(
            f"{kind:12s} {name}: server CPU/request min {cpus[0]:.0f} us, "
            f"median {cpus[len(cpus) // 2]:.0f} us; rate median {rates[len(rates) // 2]:.0f}/s"
        )


if __name__ == "__main__":
    main()
