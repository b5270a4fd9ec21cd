"""N ``dockyard serve`` nodes behind haproxy, as one process tree (for registry_bench.py).

    python bench/cluster.py --nodes 2 --python .venv/bin/python -- \\
        --host 127.0.0.1 --port 5000 --data-dir DIR [serve flags...]

The ``--host``/``--port`` given after ``--`` are the balancer's; each node gets a free
port of its own and ``DIR/node-<i>`` as its data directory. The nodes share whatever the
environment configures (``DOCKYARD_DATABASE_URL``, ``DOCKYARD_STORAGE_*``): the database
holds the token signing key and the upload state, the bucket holds the blobs, so any node
can serve any request. Nodes start one after the other (the first one migrates the
database). haproxy runs in TCP mode and sends each new connection to the next node
(round robin), so keep-alive connections stay on one node, as behind any L4 balancer.
On SIGTERM everything stops.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_401(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cluster: a node exited with {proc.returncode} during start-up")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback URL we built
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"cluster: {url} did not answer 401 within {seconds:.0f}s")


def haproxy_config(host: str, port: int, nodes: list[int]) -> str:
    servers = "\n".join(f"  server n{i} 127.0.0.1:{p}" for i, p in enumerate(nodes, 1))
    return f"""global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend registry
  bind {host}:{port}
  default_backend nodes
backend nodes
  balance roundrobin
{servers}
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("serve", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    serve = [a for a in args.serve if a != "--"]
    host, port, data_dir, rest = "127.0.0.1", 0, Path("."), []
    i = 0
    while i < len(serve):
        if serve[i] in ("--host", "--port", "--data-dir") and i + 1 < len(serve):
            value = serve[i + 1]
            if serve[i] == "--host":
                host = value
            elif serve[i] == "--port":
                port = int(value)
            else:
                data_dir = Path(value)
            i += 2
        else:
            rest.append(serve[i])
            i += 1
    if not port:
        raise SystemExit("cluster: --port is required after --")

    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ports = []
    for n in range(1, args.nodes + 1):
        node_port = free_port()
        node_dir = data_dir / f"node-{n}"
        node_dir.mkdir(parents=True, exist_ok=True)
        cmd = [args.python, "-m", "dockyard", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(node_port), "--data-dir", str(node_dir), *rest]
        procs.append(subprocess.Popen(cmd))
        wait_401(f"http://127.0.0.1:{node_port}/v2/", procs[-1])
        ports.append(node_port)
    cfg = Path(tempfile.mkdtemp(prefix="cluster-", dir=data_dir)) / "haproxy.cfg"
    cfg.write_text(haproxy_config(host, port, ports))
    procs.append(subprocess.Popen(["haproxy", "-db", "-f", str(cfg)]))
    print(f"cluster: {args.nodes} node(s) on {ports} behind haproxy on {host}:{port}", flush=True)
    names = [f"node {n}" for n in range(1, args.nodes + 1)] + ["haproxy"]
    while True:
        for name, p in zip(names, procs, strict=True):
            if p.poll() is not None:
                print(f"cluster: {name} exited with {p.returncode}", flush=True)
                stop()
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
