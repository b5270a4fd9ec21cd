"""Dockyard vs CNCF distribution: side-by-side registry benchmark.

Run from the repository root:

    .venv/bin/python bench/registry_bench.py [--quick] [--only dockyard|distribution]
        [--json out.json] [--dockyard-args "--workers 2"]

Both registries run on 127.0.0.1 with token auth. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import s3_store
from oci_images import MT_MANIFEST, Image, build_layout, write_random_file
from token_server import SigningKey, TokenServer

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000
HOST = "127.0.0.1"
PROJECT = "library"
ACCEPT_MANIFEST = ", ".join(
    [
        MT_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- config


# ``--phases``: what each needs pushed first (a push needed only for that is one round).
PHASES = ("push", "pull", "small", "upload", "download", "syscalls", "manifest", "head")
PHASE_NEEDS = {
    "pull": {"push"},
    "download": {"upload"},
    "syscalls": {"upload"},
    "manifest": {"small"},
    "head": {"small"},
}


@dataclass
class Sizes:
    large_layers: list[int]
    small_count: int
    small_layers: list[int]
    blob_size: int
    wrk_seconds: int
    repeats: int
    rate_rounds: int
    phases: frozenset[str] = frozenset(PHASES)

    @property
    def large_label(self) -> str:
        total = sum(self.large_layers)
        if total >= 1 << 30:
            return f"{total / (1 << 30):g} GiB"
        return f"{total // MiB} MiB"


FULL = Sizes([256 * MiB] * 4, 100, [64 * 1024] * 3, 256 * MiB, 10, 3, 2)
QUICK = Sizes([16 * MiB] * 4, 10, [64 * 1024] * 3, 64 * MiB, 3, 1, 1)


# --------------------------------------------------------------------------- helpers


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run a client command; return (stdout, wall seconds). Raise BenchError on failure."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout:.0f}s: {shlex.join(cmd[:4])} ...") from e
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip()[-1500:]
        raise BenchError(f"exit {p.returncode}: {_redact(shlex.join(cmd))}\n{tail}")
    return p.stdout, secs


def _redact(s: str) -> str:
    s = re.sub(r"(Bearer )[A-Za-z0-9._\-]+", r"\1<token>", s)
    return re.sub(r"(--(?:src|dest)-creds )\S+", r"\1<creds>", s)


def http_request(
    method: str, url: str, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(url)
    if u.hostname != HOST:
        raise BenchError(f"refusing non-loopback URL {url}")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def parse_challenge(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        raise BenchError(f"expected a Bearer challenge, got {value!r}")
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


# --------------------------------------------------------------------------- process metrics


class ProcTree:
    """CPU and RSS of a server process and all its descendants, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # comm may contain spaces; fields after the closing paren are positional.
        return raw[raw.rindex(")") + 2 :].split()

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            st = self._stat(int(entry.name))
            if st is not None:
                children.setdefault(int(st[1]), []).append(int(entry.name))
        out, todo = [], [self.pid]
        while todo and len(out) < 10_000:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def cpu_seconds(self) -> float:
        """utime+stime of every live process in the tree, plus reaped children's times."""
        ticks = 0
        for pid in self.pids():
            st = self._stat(pid)
            if st is not None:
                # fields 14..17 (1-based) = utime stime cutime cstime -> indices 11..14 here
                ticks += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
        return ticks / CLK_TCK

    def rss_bytes(self, pids: list[int] | None = None) -> int:
        total = 0
        for pid in self.pids() if pids is None else pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        return total

    def pss_bytes(self, pids: list[int] | None = None) -> int:
        """Proportional set size: shared pages (a forked worker's) split between sharers."""
        total = 0
        for pid in self.pids() if pids is None else pids:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        return total


class RssSampler:
    """Samples the server tree's RSS every ``interval`` seconds in a thread."""

    def __init__(self, tree: ProcTree, interval: float = 0.1, max_seconds: float = 3600) -> None:
        self.tree = tree
        self.interval = interval
        self.max_seconds = max_seconds
        self.peak = 0
        self.peak_pss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        # Walking /proc for the process tree is the expensive part: do it once a second,
        # read the known processes' RSS every interval.
        deadline = time.monotonic() + self.max_seconds
        pids, pids_at = self.tree.pids(), time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            if time.monotonic() - pids_at > 1.0:
                pids, pids_at = self.tree.pids(), time.monotonic()
            self.peak = max(self.peak, self.tree.rss_bytes(pids))
            if self.samples % 5 == 0:
                self.peak_pss = max(self.peak_pss, self.tree.pss_bytes(pids))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.tree.rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.tree.rss_bytes())


def strace_calls(pids: list[int], action: Callable[[], None]) -> tuple[int, dict[str, int]]:
    """Syscalls made by ``pids`` (every thread, and any process they start) while
    ``action`` runs, counted by ``strace -c -f``; returns the total and the five
    most frequent. The window opens once strace has attached to every pid and
    closes right after ``action``, so it also counts what the server does
    meanwhile in the background (timers, idle wake-ups): an upper bound."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.txt"
        cmd = ["strace", "-c", "-f", "-o", str(out)]
        for pid in pids:
            cmd += ["-p", str(pid)]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            attached: set[str] = set()
            deadline = time.monotonic() + 10
            while len(attached) < len(pids) and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
                found = re.search(r"Process (\d+) attached", line)
                if found:
                    attached.add(found.group(1))
            if len(attached) < len(pids):
                raise BenchError(f"strace attached to {len(attached)} of {len(pids)} processes")
            action()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        return parse_strace_summary(out.read_text())


def parse_strace_summary(text: str) -> tuple[int, dict[str, int]]:
    """The ``calls`` total and the five most frequent syscalls of ``strace -c`` output."""
    counts: dict[str, int] = {}
    total = None
    for line in text.splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) < 5 or not parts[0].replace(".", "").isdigit():
            continue
        if parts[-1] == "total":
            total = int(parts[3])
        else:
            counts[parts[-1]] = int(parts[3])
    if total is None:
        raise BenchError(f"no total in strace's summary:\n{text[-2000:]}")
    top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    return total, top


def client_cpu_seconds() -> float:
    """CPU of finished client processes (skopeo, curl, wrk, ab) plus this bench process."""
    total = 0.0
    for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def wait_for_quiet(max_seconds: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_seconds``) until the machine's busy CPU over 3 s is below
    ``threshold`` cores; return the last measured load."""
    deadline = time.monotonic() + max_seconds
    load = 0.0
    while True:
        b0, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(3)
        load = (system_busy_seconds() - b0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load
        print(f"  machine busy ({load:.2f} cores); waiting ...", flush=True)


def system_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


# --------------------------------------------------------------------------- registries


class Registry:
    """A registry server process on 127.0.0.1 with token auth."""

    name = "registry"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = ""
        self.password = ""
        self.log_path = workdir / f"{self.name}.log"
        self._log: Any = None

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self, wait: float = 90) -> None:
        cmd, env = self.command()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            try:
                status, headers, _ = http_request("GET", f"{self.base}/v2/", timeout=2)
                if status == 401 and "www-authenticate" in headers:
                    return
                last = f"GET /v2/ -> {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise BenchError(
            f"{self.name} did not answer 401 on /v2/ within {wait:.0f}s ({last})\n"
            + self.log_tail()
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def token(self, repo: str, actions: str) -> str:
        """Do the token dance a client would: 401 challenge -> realm with Basic creds."""
        status, headers, _ = http_request("GET", f"{self.base}/v2/")
        if status != 401:
            raise BenchError(f"{self.name}: GET /v2/ without credentials gave {status}, not 401")
        ch = parse_challenge(headers.get("www-authenticate", ""))
        realm = urljoin(self.base, ch["realm"])
        query = urlencode(
            {"service": ch.get("service", ""), "scope": f"repository:{repo}:{actions}"}
        )
        status, _, body = http_request(
            "GET", f"{realm}?{query}", {"Authorization": basic(self.user, self.password)}
        )
        if status != 200:
            raise BenchError(f"{self.name}: token endpoint gave {status}: {body[:300]!r}")
        data = json.loads(body)
        tok = data.get("token") or data.get("access_token")
        if not tok:
            raise BenchError(f"{self.name}: token response without a token: {body[:300]!r}")
        return str(tok)


# --------------------------------------------------------------------------- SQL counts
# Dockyard counts its SQL statements and transactions when started with
# DOCKYARD_SQL_COUNTERS=<dir> (src/dockyard/db/counters.py): each server process writes
# its counts to <dir>/sql-<pid>.json every 0.1 s while they change. The bench reads them
# around the small push and pull phases (--no-sql-counts: off, for CPU figures without
# the counting's own cost, which is small: a call-site lookup per statement).


def sql_counters_env(reg: Dockyard) -> dict[str, str]:
    if not reg.count_sql:
        return {}
    folder = reg.workdir / "sql-counters"
    shutil.rmtree(folder, ignore_errors=True)
    return {"DOCKYARD_SQL_COUNTERS": str(folder)}


def read_sql_counts(reg: Registry) -> tuple[int, int] | None:
    """(statements, transactions) summed over the server's processes, once they stop
    moving; None when the registry does not count (distribution, or counting off)."""
    folder = reg.workdir / "sql-counters"
    if not isinstance(reg, Dockyard) or not reg.count_sql or not folder.is_dir():
        return None

    def total() -> tuple[int, int]:
        statements = transactions = 0
        for path in folder.glob("sql-*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(path.read_text())
                statements += int(data["statements"])
                transactions += int(data["transactions"])
        return statements, transactions

    last = total()
    for _ in range(100):
        time.sleep(0.3)
        now = total()
        if now == last:
            return now
        last = now
    return last


@contextlib.contextmanager
def sql_per_op(
    bench: Bench, key: str, ops: Callable[[], float], settle: float = 0.0
) -> Iterator[None]:
    """Statements and transactions per operation of the phase, into ``details`` (pulls'
    audit rows and counts are written in batches every 2 s: ``settle`` waits for them)."""
    before = read_sql_counts(bench.reg)
    yield
    if before is None:
        return
    time.sleep(settle)
    after = read_sql_counts(bench.reg)
    n = ops()
    if after is None or n <= 0:
        return
    bench.result.details[f"sql_{key}"] = {
        "statements": (after[0] - before[0]) / n,
        "transactions": (after[1] - before[1]) / n,
    }


def render_sql_counts(results: dict[str, Result]) -> str:
    lines = []
    for name, res in results.items():
        for key, label in (("small_push", "small push"), ("small_pull", "small pull")):
            found = res.details.get(f"sql_{key}")
            if found:
                lines.append(
                    f"{name}: SQL per {label}: {found['statements']:.1f} statements in "
                    f"{found['transactions']:.1f} transactions"
                )
    return "\n".join(lines)


class Dockyard(Registry):
    name = "dockyard"

    def __init__(self, workdir: Path, python: str, extra_args: list[str]) -> None:
        super().__init__(workdir)
        self.python = python
        self.extra_args = extra_args
        self.user = "admin"
        self.password = "Bench-" + os.urandom(9).hex()
        self.data_dir = workdir / "dockyard-data"
        self.count_sql = True
        """Start with DOCKYARD_SQL_COUNTERS (``--no-sql-counts``: not)."""

    def command(self) -> tuple[list[str], dict[str, str]]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.python,
            "-m",
            "dockyard",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        env = {**os.environ, "DOCKYARD_ADMIN_PASSWORD": self.password}
        env.update(sql_counters_env(self))
        return cmd, env


class Distribution(Registry):
    name = "distribution"

    def __init__(self, workdir: Path, binary: str, key_header: str = "x5c") -> None:
        super().__init__(workdir)
        self.binary = binary
        self.key_header = key_header
        self.user = "bench"
        self.password = "Bench-" + os.urandom(9).hex()
        self.tokens: TokenServer | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        key = SigningKey()
        cert = self.workdir / "token-cert.pem"
        key.write_cert(cert)
        self.tokens = TokenServer(
            key,
            issuer="dockyard-bench",
            service="distribution",
            username=self.user,
            password=self.password,
            header_mode=self.key_header,
        )
        self.tokens.start()
        storage = self.workdir / "distribution-data"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "cache": {"blobdescriptor": "inmemory"},
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "secret": os.urandom(16).hex()},
            "auth": {
                "token": {
                    "realm": self.tokens.realm,
                    "service": "distribution",
                    "issuer": "dockyard-bench",
                    "rootcertbundle": str(cert),
                }
            },
        }
        cfg = self.workdir / "distribution.yml"
        cfg.write_text(json.dumps(config, indent=1))  # JSON is valid YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        return [self.binary, "serve", str(cfg)], env

    def stop(self) -> None:
        super().stop()
        if self.tokens is not None:
            self.tokens.stop()
            self.tokens = None


class NullRegistry(Registry):
    """``null_registry.py`` under Granian: stores nothing, checks nothing (the ceiling)."""

    name = "null"

    def __init__(self, workdir: Path, python: str, file: Path | None = None) -> None:
        super().__init__(workdir)
        self.python = python
        self.file = file  # served at GET /file by pathsend: the download ceiling
        self.user = "bench"
        self.password = "Bench-" + os.urandom(9).hex()

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd = [
            self.python,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "error",
            "null_registry:app",
        ]
        env = {**os.environ, "PYTHONPATH": str(BENCH_DIR)}
        if self.file is not None:
            env["NULL_REGISTRY_FILE"] = str(self.file)
        return cmd, env


# --------------------------------------------------------------------------- phases


@dataclass
class Result:
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def skopeo_push(
    reg: Registry, layout: Path, ref: str, repo: str, tag: str, timeout: float
) -> float:
    _, secs = run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--retry-times=0",
            "--dest-tls-verify=false",
            "--dest-creds",
            reg.creds,
            f"oci:{layout}:{ref}",
            f"docker://{reg.host}/{repo}:{tag}",
        ],
        timeout,
    )
    return secs


def skopeo_pull(reg: Registry, repo: str, tag: str, dest: Path, ref: str, timeout: float) -> float:
    _, secs = run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--retry-times=0",
            "--src-tls-verify=false",
            "--src-creds",
            reg.creds,
            f"docker://{reg.host}/{repo}:{tag}",
            f"oci:{dest}:{ref}",
        ],
        timeout,
    )
    return secs


def check_pulled(dest: Path, img: Image) -> None:
    index = json.loads((dest / "index.json").read_text())
    digests = {m["digest"] for m in index.get("manifests", [])}
    if img.manifest.digest not in digests:
        raise BenchError(f"pulled layout lacks manifest {img.manifest.digest} (has {digests})")


def parse_wrk(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        res["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", out):
        res["requests"] = float(m.group(1))
        res["seconds"] = float(m.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non2xx"] = float(m.group(1)) if m else 0.0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        res["socket_errors"] = float(sum(int(x) for x in m.groups()))
    else:
        res["socket_errors"] = 0.0
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
            res[f"p{pct}_ms"] = float(m.group(1)) * scale
    return res


def parse_ab(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    if m := re.search(r"Requests per second:\s+([\d.]+)", out):
        res["rps"] = float(m.group(1))
    if m := re.search(r"Complete requests:\s+(\d+)", out):
        res["requests"] = float(m.group(1))
    if m := re.search(r"Time taken for tests:\s+([\d.]+) seconds", out):
        res["seconds"] = float(m.group(1))
    m = re.search(r"Non-2xx responses:\s+(\d+)", out)
    res["non2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Failed requests:\s+(\d+)", out)
    res["socket_errors"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}%\s+(\d+)", out, re.M):
            res[f"p{pct}_ms"] = float(m.group(1))
    return res


class Bench:
    def __init__(
        self,
        reg: Registry,
        sizes: Sizes,
        work: Path,
        large: list[Image],
        small: list[Image],
        large_layout: Path,
        small_layout: Path,
        blob_file: Path,
        blob_digest: str,
        warmup: tuple[Path, Image],
    ) -> None:
        self.reg = reg
        self.warmup_layout, self.warmup_image = warmup
        self.sizes = sizes
        self.work = work
        self.large = large
        self.small = small
        self.large_layout = large_layout
        self.small_layout = small_layout
        self.blob_file = blob_file
        self.blob_digest = blob_digest
        self.result = Result()
        self._rates: dict[str, dict[str, float]] = {}
        assert reg.proc is not None
        self.tree = ProcTree(reg.proc.pid)
        self.servers = [self.tree]  # every server under test, for the other-load estimate

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        """Run one measurement; record failures instead of aborting the whole run.

        Also estimates CPU used by processes that are neither the server, the bench nor
        its clients ("other load"): on a shared machine that load skews every figure.
        """
        print(f"  [{self.reg.name}] {name} ...", end="", flush=True)
        t0 = time.perf_counter()

        def servers_cpu() -> float:
            return sum(t.cpu_seconds() for t in self.servers)

        b0, s0, c0 = system_busy_seconds(), servers_cpu(), client_cpu_seconds()
        status = "ok"
        try:
            fn()
        except Exception as e:  # any failure of one phase must not lose the others
            msg = f"{type(e).__name__}: {e}" if not isinstance(e, BenchError) else str(e)
            if self.reg.proc is not None and self.reg.proc.poll() is not None:
                msg += "\nserver exited:\n" + self.reg.log_tail()
            self.result.errors[name] = msg
            status = "FAILED"
        wall = time.perf_counter() - t0
        other = (system_busy_seconds() - b0) - (servers_cpu() - s0)
        other -= client_cpu_seconds() - c0
        # wrk/ab are still children while running; their CPU shows up once reaped, so
        # ``other`` is measured after the phase's clients have all exited.
        load = max(0.0, other) / wall if wall > 0 else 0.0
        self.result.details.setdefault("other_load_cores", {})[name] = round(load, 3)
        warn = "  <-- other load on the machine" if load > 0.15 else ""
        print(f" {status} ({wall:.1f}s, other load {load:.2f} cores){warn}", flush=True)
        if status != "ok":
            print("    " + self.result.errors[name][:2000].replace("\n", "\n    "), flush=True)

    @contextlib.contextmanager
    def cpu(self, key: str, ops: Callable[[], float]) -> Iterator[None]:
        c0, k0 = self.tree.cpu_seconds(), client_cpu_seconds()
        yield
        c1, k1 = self.tree.cpu_seconds(), client_cpu_seconds()
        n = ops()
        self.result.details[f"{key}_server_cpu_total_s"] = c1 - c0
        self.result.details[f"{key}_client_cpu_total_s"] = k1 - k0
        if n > 0:
            self.result.metrics[f"cpu_{key}"] = (c1 - c0) / n

    # -- skopeo, large image
    def large_push(self, round_no: int) -> None:
        """One push of the ``round_no``-th large image (each has its own content, so every
        round uploads every byte); the figures are the median over the rounds so far."""
        image = self.large[round_no]
        repo = f"{PROJECT}/bench-large" + (f"-{round_no + 1}" if round_no else "")
        c0 = self.tree.cpu_seconds()
        with RssSampler(self.tree) as rss:
            secs = skopeo_push(self.reg, self.large_layout, image.ref, repo, "v1", 900)
        cpu = self.tree.cpu_seconds() - c0
        details = self.result.details
        rates = details.setdefault("large_push_mbps_all", [])
        rates.append(image.total_bytes / secs / MB)
        cpus = details.setdefault("large_push_server_cpu_all_s", [])
        cpus.append(cpu)
        self.result.metrics["large_push_mbps"] = statistics.median(rates)
        self.result.metrics["cpu_large_push"] = statistics.median(cpus)
        peak = max(rss.peak / MiB, self.result.metrics.get("rss_large_push_mib", 0.0))
        self.result.metrics["rss_large_push_mib"] = peak
        pss = max(rss.peak_pss / MiB, details.get("pss_large_push_mib", 0.0))
        details["pss_large_push_mib"] = pss
        details.setdefault("large_push_s_all", []).append(secs)
        details["rss_samples"] = details.get("rss_samples", 0) + rss.samples

    def large_pull(self) -> None:
        repo = f"{PROJECT}/bench-large"
        times: list[float] = []
        with RssSampler(self.tree) as rss, self.cpu("large_pull", lambda: len(times)):
            for i in range(self.sizes.repeats):
                dest = self.work / f"pull-large-{self.reg.name}-{i}"
                shutil.rmtree(dest, ignore_errors=True)
                times.append(skopeo_pull(self.reg, repo, "v1", dest, "v1", 900))
                check_pulled(dest, self.large[0])
                shutil.rmtree(dest, ignore_errors=True)
        rates = [self.large[0].total_bytes / t / MB for t in times]
        self.result.metrics["large_pull_mbps"] = statistics.median(rates)
        self.result.details["large_pull_mbps_all"] = rates
        self.result.details["rss_large_pull_mib"] = rss.peak / MiB

    # -- skopeo, small images
    def small_push(self) -> None:
        done: list[float] = []
        with (
            sql_per_op(self, "small_push", lambda: len(done)),
            self.cpu("small_push", lambda: len(done)),
        ):
            t0 = time.perf_counter()
            for img in self.small:
                skopeo_push(self.reg, self.small_layout, img.ref, f"{PROJECT}/{img.ref}", "v1", 120)
                done.append(1)
            secs = time.perf_counter() - t0
        self.result.metrics["small_push_per_s"] = len(done) / secs
        self.result.details["small_push_s"] = secs

    def small_pull(self) -> None:
        dest = self.work / f"pull-small-{self.reg.name}"
        shutil.rmtree(dest, ignore_errors=True)
        done: list[float] = []
        with (
            sql_per_op(self, "small_pull", lambda: len(done), settle=2.5),
            self.cpu("small_pull", lambda: len(done)),
        ):
            t0 = time.perf_counter()
            for img in self.small:
                skopeo_pull(self.reg, f"{PROJECT}/{img.ref}", "v1", dest, img.ref, 120)
                done.append(1)
            secs = time.perf_counter() - t0
        for img in self.small:
            check_pulled(dest, img)
        shutil.rmtree(dest, ignore_errors=True)
        self.result.metrics["small_pull_per_s"] = len(done) / secs
        self.result.details["small_pull_s"] = secs

    # -- curl, one big blob
    def curl_upload(self) -> None:
        repo = f"{PROJECT}/bench-blob"
        size = self.blob_file.stat().st_size
        times: list[float] = []
        with self.cpu("curl_upload", lambda: len(times)):
            for _ in range(self.sizes.repeats):
                tok = self.reg.token(repo, "pull,push")
                auth = {"Authorization": f"Bearer {tok}"}
                status, headers, body = http_request(
                    "POST", f"{self.reg.base}/v2/{repo}/blobs/uploads/", auth
                )
                if status != 202 or "location" not in headers:
                    raise BenchError(f"POST blobs/uploads/ gave {status}: {body[:300]!r}")
                loc = urljoin(self.reg.base + "/", headers["location"])
                sep = "&" if "?" in loc else "?"
                url = f"{loc}{sep}digest={quote(self.blob_digest)}"
                if urlsplit(url).hostname != HOST:
                    raise BenchError(f"upload Location is not on {HOST}: {loc}")
                out, _ = run(
                    [
                        "curl", "-sS", "-o", "/dev/null", "-X", "PUT",
                        "-w", "%{http_code} %{time_total} %{size_upload}",
                        "-H", f"Authorization: Bearer {tok}",
                        "-H", "Content-Type: application/octet-stream",
                        "--data-binary", f"@{self.blob_file}",
                        url,
                    ],
                    600,
                )  # fmt: skip
                code, total, uploaded = out.split()
                if code != "201":
                    raise BenchError(f"curl PUT ?digest= gave HTTP {code}")
                if int(float(uploaded)) != size:
                    raise BenchError(f"curl uploaded {uploaded} bytes, expected {size}")
                times.append(float(total))
        rates = [size / t / MB for t in times]
        self.result.metrics["curl_upload_mbps"] = statistics.median(rates)
        self.result.details["curl_upload_mbps_all"] = rates

    def curl_download(self) -> None:
        repo = f"{PROJECT}/bench-blob"
        size = self.blob_file.stat().st_size
        tok = self.reg.token(repo, "pull")
        url = f"{self.reg.base}/v2/{repo}/blobs/{self.blob_digest}"
        times: list[float] = []
        with self.cpu("curl_download", lambda: len(times)):
            for _ in range(self.sizes.repeats):
                out, _ = run(
                    [
                        "curl", "-sS", "-o", "/dev/null",
                        "-w", "%{http_code} %{time_total} %{size_download}",
                        "-H", f"Authorization: Bearer {tok}",
                        url,
                    ],
                    600,
                )  # fmt: skip
                code, total, got = out.split()
                if code != "200":
                    raise BenchError(f"curl GET blob gave HTTP {code}")
                if int(float(got)) != size:
                    raise BenchError(f"curl downloaded {got} bytes, expected {size}")
                times.append(float(total))
        rates = [size / t / MB for t in times]
        self.result.metrics["curl_download_mbps"] = statistics.median(rates)
        self.result.details["curl_download_mbps_all"] = rates

    # -- syscalls per GiB (strace; a pass of its own, not timed)
    def syscall_counts(self) -> None:
        """One curl upload and one curl download of the blob with ``strace -c -f``
        attached to every process of the server's tree (all their threads); the
        counts, per GiB moved, go in the table. strace slows each syscall down, so
        these transfers are not timed, and with a slower server a read may find
        more bytes waiting: the counts are those of a somewhat slowed server."""
        if shutil.which("strace") is None:
            raise BenchError("strace is not installed (apt-get install strace)")
        size = self.blob_file.stat().st_size
        repo = f"{PROJECT}/bench-blob"
        for key, transfer in (
            ("upload", lambda: self._curl_put_blob(repo)),
            ("download", lambda: self._curl_get_blob(repo)),
        ):
            calls, top = strace_calls(self.tree.pids(), transfer)
            self.result.metrics[f"syscalls_{key}_per_gib"] = calls * GiB / size
            self.result.details[f"syscalls_{key}_top"] = top

    def _curl_put_blob(self, repo: str) -> None:
        tok = self.reg.token(repo, "pull,push")
        auth = {"Authorization": f"Bearer {tok}"}
        status, headers, body = http_request(
            "POST", f"{self.reg.base}/v2/{repo}/blobs/uploads/", auth
        )
        if status != 202 or "location" not in headers:
            raise BenchError(f"POST blobs/uploads/ gave {status}: {body[:300]!r}")
        loc = urljoin(self.reg.base + "/", headers["location"])
        url = f"{loc}{'&' if '?' in loc else '?'}digest={quote(self.blob_digest)}"
        out, _ = run(
            [
                "curl", "-sS", "-o", "/dev/null", "-X", "PUT", "-w", "%{http_code}",
                "-H", f"Authorization: Bearer {tok}",
                "-H", "Content-Type: application/octet-stream",
                "--data-binary", f"@{self.blob_file}",
                url,
            ],
            600,
        )  # fmt: skip
        if out.strip() != "201":
            raise BenchError(f"curl PUT ?digest= gave HTTP {out.strip()}")

    def _curl_get_blob(self, repo: str) -> None:
        tok = self.reg.token(repo, "pull")
        url = f"{self.reg.base}/v2/{repo}/blobs/{self.blob_digest}"
        out, _ = run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
             "-H", f"Authorization: Bearer {tok}", url],
            600,
        )  # fmt: skip
        if out.strip() != "200":
            raise BenchError(f"curl GET blob gave HTTP {out.strip()}")

    # -- wrk
    def _wrk(self, key: str, url: str, headers: dict[str, str], method: str) -> None:
        status, _, body = http_request(method, url, headers)
        if status != 200:
            raise BenchError(f"{method} {url} gave {status} before wrk: {body[:300]!r}")
        script = self.work / f"wrk-{method.lower()}.lua"
        script.write_text(f'wrk.method = "{method}"\n')
        hdr_args = [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
        base_cmd = ["wrk", "-t2", "-c16", "-s", str(script), *hdr_args]
        d = self.round_seconds
        if key not in self._rates:
            run([*base_cmd, "-d1s", url], 60)  # warm-up: connections, caches
        c0 = self.tree.cpu_seconds()
        out, _ = run([*base_cmd, "--latency", f"-d{d}s", "--timeout", "5s", url], d + 60)
        cpu = self.tree.cpu_seconds() - c0
        stats = parse_wrk(out)
        if "requests" not in stats or "seconds" not in stats:
            raise BenchError(f"could not parse wrk output:\n{out}")
        self._http_rate(key, stats, cpu)

    @property
    def round_seconds(self) -> int:
        return max(1, round(self.sizes.wrk_seconds / self.sizes.rate_rounds))

    def _http_rate(self, key: str, stats: dict[str, float], cpu: float) -> None:
        """Fold one wrk/ab round into the running totals for ``key``."""
        acc = self._rates.setdefault(
            key, {"requests": 0.0, "seconds": 0.0, "cpu": 0.0, "bad": 0.0, "rounds": 0.0}
        )
        if stats["requests"] <= 0:
            raise BenchError(f"{key}: no request completed: {stats}")
        acc["requests"] += stats["requests"]
        acc["seconds"] += stats["seconds"]
        acc["cpu"] += cpu
        acc["bad"] += stats["non2xx"] + stats["socket_errors"]
        acc["rounds"] += 1
        self.result.details.setdefault(f"{key}_rounds", []).append({**stats, "server_cpu_s": cpu})
        self.result.details[f"{key}_server_cpu_total_s"] = acc["cpu"]
        if acc["bad"] > 0.01 * acc["requests"]:
            raise BenchError(
                f"{key}: {acc['bad']:.0f} of {acc['requests']:.0f} requests failed "
                f"(non-2xx {stats['non2xx']:.0f}, socket errors {stats['socket_errors']:.0f})"
            )
        self.result.metrics[f"cpu_{key}"] = acc["cpu"] / acc["requests"] * 1e6  # microseconds
        self.result.metrics[f"{key}_rps"] = acc["requests"] / acc["seconds"]

    def manifest_get(self) -> None:
        img = self.small[0]
        repo = f"{PROJECT}/{img.ref}"
        tok = self.reg.token(repo, "pull")
        self._wrk(
            "manifest_get",
            f"{self.reg.base}/v2/{repo}/manifests/v1",
            {"Authorization": f"Bearer {tok}", "Accept": ACCEPT_MANIFEST},
            "GET",
        )

    def blob_head(self) -> None:
        """HEAD with ab: wrk 4.1 waits for a body after a HEAD response and stalls."""
        img = self.small[0]
        repo = f"{PROJECT}/{img.ref}"
        tok = self.reg.token(repo, "pull")
        url = f"{self.reg.base}/v2/{repo}/blobs/{img.layers[0].digest}"
        status, headers, _ = http_request("HEAD", url, {"Authorization": f"Bearer {tok}"})
        if status != 200:
            raise BenchError(f"HEAD {url} gave {status} before ab")
        if headers.get("docker-content-digest") != img.layers[0].digest:
            raise BenchError(
                f"HEAD blob: Docker-Content-Digest is {headers.get('docker-content-digest')}"
            )
        d = self.round_seconds
        base_cmd = ["ab", "-q", "-k", "-i", "-c", "16", "-n", "10000000", "-s", "10"]
        base_cmd += ["-H", f"Authorization: Bearer {tok}"]
        if "blob_head" not in self._rates:
            run([*base_cmd, "-t", "1", url], 60)  # warm-up
        c0 = self.tree.cpu_seconds()
        out, _ = run([*base_cmd, "-t", str(d), url], d + 60)
        cpu = self.tree.cpu_seconds() - c0
        stats = parse_ab(out)
        if "requests" not in stats or "seconds" not in stats:
            raise BenchError(f"could not parse ab output:\n{out}")
        self._http_rate("blob_head", stats, cpu)

    def warm_up(self) -> None:
        """Not measured: one push and pull of a tiny image, so first-request costs
        (lazy imports, first DB connections, caches) do not land on the first phase."""
        img = self.warmup_image
        repo = f"{PROJECT}/bench-warmup"
        skopeo_push(self.reg, self.warmup_layout, img.ref, repo, "v1", 120)
        dest = self.work / "pull-warmup"
        skopeo_pull(self.reg, repo, "v1", dest, img.ref, 120)
        check_pulled(dest, img)
        shutil.rmtree(dest, ignore_errors=True)

    def phases(self) -> list[tuple[str, Callable[[], None] | None]]:
        """The measurements, in order (later ones use what earlier ones pushed), cut to
        ``--phases`` and what those need (see ``PHASE_NEEDS``)."""
        n = len(self.small)
        wanted = self.sizes.phases
        chosen = [
            (key, item)
            for key, items in (
                ("warm-up", [("warm-up (not measured)", self.warm_up)]),
                ("push", self._large_pushes(1 if "push" not in wanted else None)),
                ("pull", [("skopeo pull large image", self.large_pull)]),
                ("small", [(f"skopeo push {n} small images", self.small_push)]),
                ("small", [(f"skopeo pull {n} small images", self.small_pull)]),
                ("upload", [("curl upload blob", self.curl_upload)]),
                ("download", [("curl download blob", self.curl_download)]),
                ("syscalls", [("strace syscalls, curl up/down (not timed)", self.syscall_counts)]),
                ("manifest", self._rounds("wrk manifest GET by tag", self.manifest_get)),
                ("head", self._rounds("ab blob HEAD", self.blob_head)),
            )
            for item in items
        ]
        needed = {"warm-up", *wanted}
        for key in wanted:
            needed |= PHASE_NEEDS.get(key, set())
        return [item for key, item in chosen if key in needed]

    def _large_pushes(
        self, limit: int | None = None
    ) -> list[tuple[str, Callable[[], None] | None]]:
        n = min(len(self.large), limit or len(self.large))
        return [
            (
                "skopeo push large image" + (f" ({i + 1}/{n})" if n > 1 else ""),
                functools.partial(self.large_push, i),
            )
            for i in range(n)
        ]

    def _rounds(
        self, name: str, fn: Callable[[], None]
    ) -> list[tuple[str, Callable[[], None] | None]]:
        n = self.sizes.rate_rounds
        if n == 1:
            return [(name, fn)]
        return [(f"{name} ({i + 1}/{n})", fn) for i in range(n)]


class CeilingBench(Bench):
    """The null registry takes part in the large push and the curl download only, in
    the same turns: it stores nothing, and downloads the blob file by Granian's
    pathsend with no auth and no lookup (``GET /file``)."""

    def phases(self) -> list[tuple[str, Callable[[], None] | None]]:
        def own(name: str, fn: Callable[[], None] | None) -> Callable[[], None] | None:
            if name.startswith("skopeo push large image"):
                return fn
            return {
                "curl upload blob": self.receive_only_upload,
                "curl download blob": self.file_download,
            }.get(name)

        return [(name, own(name, fn)) for name, fn in super().phases()]

    def receive_only_upload(self) -> None:
        """The curl upload into a server that only receives (no hash, no disk, no
        database): the receive stage alone, the most an upload under Granian can reach."""
        size = self.blob_file.stat().st_size
        times: list[float] = []
        with self.cpu("curl_upload", lambda: len(times)):
            for _ in range(self.sizes.repeats):
                status, headers, body = http_request(
                    "POST", f"{self.reg.base}/v2/{PROJECT}/bench-blob/blobs/uploads/"
                )
                if status != 202 or "location" not in headers:
                    raise BenchError(f"POST blobs/uploads/ gave {status}: {body[:300]!r}")
                loc = urljoin(self.reg.base + "/", headers["location"])
                out, _ = run(
                    [
                        "curl", "-sS", "-o", "/dev/null", "-X", "PUT",
                        "-w", "%{http_code} %{time_total}",
                        "-H", "Content-Type: application/octet-stream",
                        "--data-binary", f"@{self.blob_file}",
                        f"{loc}?digest={quote(self.blob_digest)}",
                    ],
                    600,
                )  # fmt: skip
                code, total = out.split()
                if code != "201":
                    raise BenchError(f"null registry PUT ?digest= gave HTTP {code}")
                times.append(float(total))
        rates = [size / t / MB for t in times]
        self.result.metrics["curl_upload_mbps"] = statistics.median(rates)
        self.result.details["curl_upload_mbps_all"] = rates

    def file_download(self) -> None:
        size = self.blob_file.stat().st_size
        times: list[float] = []
        for _ in range(self.sizes.repeats):
            out, _ = run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                 f"{self.reg.base}/file"],
                600,
            )  # fmt: skip
            code, total = out.split()
            if code != "200":
                raise BenchError(f"curl GET /file gave HTTP {code}")
            times.append(float(total))
        rates = [size / t / MB for t in times]
        self.result.metrics["curl_download_mbps"] = statistics.median(rates)
        self.result.details["curl_download_mbps_all"] = rates


def run_benches(benches: list[Bench], interleave: bool) -> None:
    """Run every phase on every registry.

    Interleaved (default): phase by phase, alternating which registry goes first
    (A B, B A, A B, ...), so slow drifts in background load hit both about equally.
    Sequential: all phases on one registry, then all on the next.
    """
    for b in benches:
        b.servers = [x.tree for x in benches]
        b.result.details["rss_idle_mib"] = b.tree.rss_bytes() / MiB
        b.result.details["pss_idle_mib"] = b.tree.pss_bytes() / MiB
        b.result.details["idle_processes"] = len(b.tree.pids())
    if interleave:
        plans = [b.phases() for b in benches]
        for i in range(len(plans[0])):
            order = list(range(len(benches)))
            if i % 2:
                order.reverse()
            for j in order:
                name, fn = plans[j][i]
                if fn is not None:
                    benches[j].phase(name, fn)
    else:
        for b in benches:
            for name, fn in b.phases():
                if fn is not None:
                    b.phase(name, fn)
    for b in benches:
        b.result.details["rss_end_mib"] = b.tree.rss_bytes() / MiB


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None = None  # ratio target (Dockyard relative to distribution)
    reference: float | None = None  # the distribution figure on the 2-core dev box
    fmt: str = "{:,.1f}"


def rows(sizes: Sizes) -> list[Row]:
    n = sizes.small_count
    lg = sizes.large_label
    blob = f"{sizes.blob_size // MiB} MiB"
    return [
        Row("large_push_mbps", f"skopeo push {lg} image", "MB/s", True, 1.5, 230),
        Row("large_pull_mbps", f"skopeo pull {lg} image", "MB/s", True, None, 175),
        Row("small_push_per_s", f"skopeo push {n} small images", "img/s", True, 1.0, 13),
        Row("small_pull_per_s", f"skopeo pull {n} small images", "img/s", True, 1.0, 22),
        Row("curl_upload_mbps", f"curl upload {blob} blob", "MB/s", True, 2.0, 200),
        Row("curl_download_mbps", f"curl download {blob} blob", "MB/s", True, 1.0, 1900),
        Row(
            "manifest_get_rps",
            "manifest GET by tag (wrk -c16)",
            "req/s",
            True,
            1.0,
            1500,
            "{:,.0f}",
        ),
        Row("blob_head_rps", "blob HEAD (ab -k -c16)", "req/s", True, 1.0, None, "{:,.0f}"),
        Row("cpu_large_push", f"server CPU / {lg} push", "s", False, fmt="{:,.2f}"),
        Row("cpu_large_pull", f"server CPU / {lg} pull", "s", False, fmt="{:,.2f}"),
        Row("cpu_small_push", "server CPU / small push", "ms", False, fmt="{:,.1f}"),
        Row("cpu_small_pull", "server CPU / small pull", "ms", False, fmt="{:,.1f}"),
        Row("cpu_curl_upload", f"server CPU / {blob} upload", "s", False, fmt="{:,.2f}"),
        Row("cpu_curl_download", f"server CPU / {blob} download", "s", False, fmt="{:,.3f}"),
        Row("cpu_manifest_get", "server CPU / manifest GET", "us", False, fmt="{:,.0f}"),
        Row("cpu_blob_head", "server CPU / blob HEAD", "us", False, fmt="{:,.0f}"),
        Row("rss_large_push_mib", f"peak server RSS, {lg} push", "MiB", False, fmt="{:,.0f}"),
        *syscall_rows(),
    ]


def syscall_rows() -> list[Row]:
    """Server syscalls per GiB moved by curl, from the strace pass (lower is better)."""
    return [
        Row("syscalls_upload_per_gib", "server syscalls / GiB uploaded", "calls", False,
            fmt="{:,.0f}"),
        Row("syscalls_download_per_gib", "server syscalls / GiB downloaded", "calls", False,
            fmt="{:,.0f}"),
    ]  # fmt: skip


def display_value(row: Row, value: float) -> float:
    # small-image CPU is stored in seconds; show milliseconds
    return value * 1000 if row.unit == "ms" else value


# Which phase (by name prefix) produced each metric, to show the other load during it.
PHASE_OF = {
    "large_push": "skopeo push large",
    "large_pull": "skopeo pull large",
    "small_push": "skopeo push ",
    "small_pull": "skopeo pull ",
    "curl_upload": "curl upload",
    "curl_download": "curl download",
    "manifest_get": "wrk manifest GET",
    "blob_head": "ab blob HEAD",
}


def other_load(res: Result | None, key: str) -> float | None:
    if res is None:
        return None
    stem = key.removeprefix("cpu_").removesuffix("_mbps").removesuffix("_per_s")
    stem = stem.removesuffix("_rps").removeprefix("rss_").removesuffix("_mib")
    prefix = PHASE_OF.get(stem)
    loads = res.details.get("other_load_cores", {})
    vals = [
        v
        for name, v in loads.items()
        if prefix
        and name.startswith(prefix)
        and (stem.startswith(("large", "blob", "manifest", "curl")) or "large" not in name)
    ]
    return statistics.mean(vals) if vals else None


def render_table(results: dict[str, Result], sizes: Sizes) -> tuple[str, list[dict[str, Any]]]:
    dy = results.get("dockyard")
    di = results.get("distribution")
    header = [
        "metric",
        "unit",
        "dockyard",
        "distribution",
        "ratio",
        "target",
        "result",
        "issue ref",
        "other load dy/dist",
    ]
    table: list[list[str]] = []
    records: list[dict[str, Any]] = []
    for row in rows(sizes):
        a = dy.metrics.get(row.key) if dy else None
        b = di.metrics.get(row.key) if di else None
        if a is None and b is None and sizes.phases != frozenset(PHASES):
            continue  # not measured in this --phases run
        ratio = None
        if a is not None and b is not None and a > 0 and b > 0:
            ratio = a / b if row.higher_is_better else b / a
        target, verdict = "", ""
        if row.key == "rss_large_push_mib":
            target = "< 300 MiB"
            if a is not None:
                verdict = "PASS" if a < 300 else "FAIL"
        elif row.target is not None:
            target = f">= {row.target:g}x"
            if ratio is not None:
                verdict = "PASS" if ratio >= row.target else "FAIL"
        if dy is not None and a is None and (row.target is not None or row.key.startswith("rss")):
            verdict = "ERROR"
        table.append(
            [
                row.label,
                row.unit,
                row.fmt.format(display_value(row, a)) if a is not None else "-",
                row.fmt.format(display_value(row, b)) if b is not None else "-",
                f"{ratio:.2f}x" + ("" if row.higher_is_better else " inv") if ratio else "-",
                target,
                verdict,
                row.fmt.format(row.reference) if row.reference is not None else "",
                "/".join(
                    f"{x:.2f}" if x is not None else "-"
                    for x in (other_load(dy, row.key), other_load(di, row.key))
                ),
            ]
        )
        records.append(
            {
                "key": row.key,
                "label": row.label,
                "unit": row.unit,
                "dockyard": display_value(row, a) if a is not None else None,
                "distribution": display_value(row, b) if b is not None else None,
                "ratio": ratio,
                "higher_is_better": row.higher_is_better,
                "target": target or None,
                "result": verdict or None,
            }
        )
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for r in table:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), records


def sha256_mbps(size: int = 64 * MiB, rounds: int = 5) -> float:
    """This machine's sha256 rate on one core (best of ``rounds``): every registry must
    hash each uploaded byte once, in order, so no single upload can go faster."""
    data = os.urandom(size)
    best = min(_timed(lambda: hashlib.sha256(data).digest()) for _ in range(rounds))
    return size / best / MB


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line + " "
    return ""


def render_ceilings(results: dict[str, Result], sizes: Sizes, sha: float) -> dict[str, Any]:
    """What any registry could reach on this machine, next to the targets.

    - The large push: skopeo into the null registry, which stores and checks
      nothing; its rate over distribution's is the highest ratio possible here.
    - The curl upload: a registry must sha256 every byte, in order, on one core;
      that rate over distribution's is the highest upload ratio possible here.
    - The curl download: the null registry sends the blob file by Granian's
      pathsend with no auth and no lookup, the most Dockyard's GET can reach
      under the same ASGI server.
    """
    dist = results.get("distribution")
    null = results.get("null")
    out: dict[str, Any] = {"sha256_mbps": sha}
    lines = ["Ceilings on this machine (what any registry could reach here):"]

    def line(label: str, value: float | None, dist_key: str, target: float) -> float | None:
        base = dist.metrics.get(dist_key) if dist else None
        if value is None:
            lines.append(f"  {label:48} -")
            return None
        text = f"  {label:48} {value:8,.1f} MB/s"
        ratio = value / base if base else None
        if ratio is not None:
            verdict = "reachable" if ratio >= target else "UNREACHABLE here"
            text += f" = {ratio:.2f}x distribution (target {target:g}x: {verdict})"
        lines.append(text)
        return ratio

    lg = sizes.large_label
    push = null.metrics.get("large_push_mbps") if null else None
    out["null_registry_push_mbps"] = push
    out["large_push_max_ratio"] = line(
        f"skopeo push {lg} image to a null registry", push, "large_push_mbps", 1.5
    )
    out["curl_upload_max_ratio"] = line(
        "sha256 on one core (bounds any upload)", sha, "curl_upload_mbps", 2.0
    )
    received = null.metrics.get("curl_upload_mbps") if null else None
    out["null_registry_upload_mbps"] = received
    out["curl_upload_receive_ratio"] = line(
        "curl upload received, not hashed nor stored", received, "curl_upload_mbps", 2.0
    )
    if received is not None and null is not None and "cpu_curl_upload" in null.metrics:
        per_gib = null.metrics["cpu_curl_upload"] * GiB / sizes.blob_size
        lines.append(f"  {'  server CPU to receive, per GiB':48} {per_gib:8,.2f} s")
        out["null_registry_receive_cpu_per_gib_s"] = per_gib
    down = null.metrics.get("curl_download_mbps") if null else None
    out["null_registry_download_mbps"] = down
    out["curl_download_max_ratio"] = line(
        "Granian pathsend of the blob, no app (bounds GET)", down, "curl_download_mbps", 1.0
    )
    out["text"] = "\n".join(lines)
    return out


def machine_info(args: argparse.Namespace, sha: float) -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / (1 << 20):.1f} GiB"

    def version(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "not found"
        return ((p.stdout or p.stderr).strip().splitlines() or [""])[0]

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "skopeo": version(["skopeo", "--version"]),
        "curl": version(["curl", "--version"]),
        "wrk": version(["wrk", "--version"]),
        "docker-registry": version([args.distribution_bin, "--version"])
        if args.distribution_bin
        else "not installed",
        "dockyard-args": args.dockyard_args or "",
        "dist-token-header": args.dist_token_header,
        "sha256-1-core": f"{sha:,.0f} MB/s (hashlib)",
        "cpu-sha-extensions": "yes" if " sha_ni" in _cpu_flags() else "no",
        "loadavg-at-start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "mode": ("quick" if args.quick else "full")
        + (", sequential" if args.sequential else ", interleaved"),
    }
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        p = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        commit = p.stdout.strip() or "(no commit)"
        p = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        info["dockyard-commit"] = commit + (" + uncommitted changes in src/" if p.stdout else "")
    return info


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--only", choices=["dockyard", "distribution"], help="bench one registry")
    ap.add_argument("--json", type=Path, help="write all figures to this JSON file")
    ap.add_argument(
        "--dockyard-args", default="", help='extra `dockyard serve` flags, e.g. "--workers 2"'
    )
    default_py = REPO_ROOT / ".venv" / "bin" / "python"
    ap.add_argument(
        "--dockyard-python",
        default=str(default_py) if default_py.exists() else sys.executable,
        help="python that has dockyard installed (default: the repo's .venv)",
    )
    ap.add_argument(
        "--distribution-bin",
        default=shutil.which("docker-registry"),
        help="CNCF distribution binary (default: docker-registry on PATH)",
    )
    ap.add_argument(
        "--dist-token-header",
        choices=["x5c", "kid"],
        default="x5c",
        help="how distribution finds the token key: x5c cert chain (default) or libtrust kid",
    )
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="bench one registry after the other instead of interleaving phases",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before measuring, wait up to SECONDS for other load to drop below 0.15 cores",
    )
    ap.add_argument("--workdir", type=Path, help="keep generated images here and reuse them")
    ap.add_argument("--keep", action="store_true", help="keep registry data and logs")
    ap.add_argument(
        "--no-sql-counts",
        action="store_true",
        help="do not count Dockyard's SQL statements and transactions (DOCKYARD_SQL_COUNTERS)",
    )
    ap.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the null registry (the client's ceiling for the large push)",
    )
    ap.add_argument(
        "--phases",
        help="comma-separated subset to run, of: " + ", ".join(PHASES) + " (plus what "
        "they need pushed first: pull needs one large push, download an upload...)",
    )
    ap.add_argument("--small-count", type=int, help="override the number of small images")
    ap.add_argument("--wrk-seconds", type=int, help="override wrk duration")
    ap.add_argument("--repeats", type=int, help="override repeats for pulls and curl")
    ap.add_argument(
        "--rate-rounds",
        type=int,
        help="split each wrk/ab measurement into this many interleaved rounds (full: 2)",
    )
    s3_store.add_arguments(ap)
    args = ap.parse_args(argv)

    base = QUICK if args.quick else FULL
    sizes = Sizes(
        large_layers=base.large_layers,
        small_count=max(1, min(1000, args.small_count or base.small_count)),
        small_layers=base.small_layers,
        blob_size=base.blob_size,
        wrk_seconds=max(1, min(300, args.wrk_seconds or base.wrk_seconds)),
        repeats=max(1, min(10, args.repeats or base.repeats)),
        rate_rounds=max(1, min(10, args.rate_rounds or base.rate_rounds)),
    )
    if args.phases:
        chosen = frozenset(p.strip() for p in args.phases.split(",") if p.strip())
        if not chosen or chosen - set(PHASES):
            ap.error(f"--phases: choose from {', '.join(PHASES)}")
        sizes.phases = chosen
        if not chosen & {"push", "download"}:
            args.no_ceiling = True  # the null registry takes part in these two only
    for tool in ("skopeo", "curl", "wrk"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed", file=sys.stderr)
            return 2

    targets = ["dockyard", "distribution"] if args.only is None else [args.only]
    if "distribution" in targets and not args.distribution_bin:
        print("note: docker-registry (CNCF distribution) not installed; benching Dockyard alone")
        targets.remove("distribution")
    targets = s3_store.targets(args, targets)
    if not args.no_ceiling:
        targets.append("null")

    sha = sha256_mbps()
    info = {**machine_info(args, sha), **s3_store.describe(args)}
    print("Dockyard registry benchmark")
    for k, v in info.items():
        print(f"  {k:16} {v}")
    print()

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="dockyard-bench-")).resolve()
    images_dir = root / ("images-quick" if args.quick else "images-full")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))

    results: dict[str, Result] = {}
    store_cm = s3_store.backing(args)
    store = store_cm.__enter__()
    try:
        t0 = time.perf_counter()
        print(f"generating images in {images_dir} ...", flush=True)
        large_layout = images_dir / "large"
        small_layout = images_dir / "small"
        # One image per large-push round, each with its own content (see Bench.large_push).
        large = build_layout(
            large_layout,
            [
                ("bench-large" + (f"-{i + 1}" if i else ""), sizes.large_layers)
                for i in range(sizes.repeats if "push" in sizes.phases else 1)
            ],
        )
        small = build_layout(
            small_layout,
            [(f"bench-small-{i:03d}", sizes.small_layers) for i in range(sizes.small_count)],
        )
        warmup_layout = images_dir / "warmup"
        (warmup_image,) = build_layout(warmup_layout, [("bench-warmup", [MiB, MiB])])
        blob_file = images_dir / f"blob-{sizes.blob_size}.bin"
        digest_file = blob_file.with_suffix(".digest")
        if (
            blob_file.exists()
            and digest_file.exists()
            and blob_file.stat().st_size == sizes.blob_size
        ):
            blob_digest = digest_file.read_text().strip()
        else:
            blob_digest = write_random_file(blob_file, sizes.blob_size)
            digest_file.write_text(blob_digest)
        print(
            f"  {len(large)} large images of {large[0].total_bytes / MB:,.1f} MB in "
            f"{len(large[0].layers)} layers (one per push round); "
            f"{len(small)} small images of {len(sizes.small_layers)} layers; "
            f"blob {sizes.blob_size / MB:,.1f} MB ({time.perf_counter() - t0:.1f}s)\n",
            flush=True,
        )

        groups = [targets] if not args.sequential else [[t] for t in targets]
        if args.wait_idle > 0:
            load = wait_for_quiet(min(args.wait_idle, 3600))
            print(f"  machine load before measuring: {load:.2f} cores\n", flush=True)
        for group in groups:
            regs: list[Registry] = []
            benches: list[Bench] = []
            try:
                for name in group:
                    wd = run_dir / name
                    wd.mkdir(parents=True)
                    reg: Registry
                    made = s3_store.make_registry(name, wd, args, store, Dockyard, Distribution)
                    if made is not None:
                        reg = made
                    elif name == "dockyard":
                        reg = Dockyard(wd, args.dockyard_python, shlex.split(args.dockyard_args))
                    elif name == "null":
                        reg = NullRegistry(wd, args.dockyard_python, blob_file)
                    else:
                        reg = Distribution(wd, args.distribution_bin, args.dist_token_header)
                    if isinstance(reg, Dockyard):
                        reg.count_sql = not args.no_sql_counts
                    regs.append(reg)
                    print(f"== starting {name} on {reg.base}", flush=True)
                    try:
                        reg.start()
                    except BenchError as e:
                        print(f"  {name} could not be started: {e}", flush=True)
                        results[name] = Result(errors={"start": str(e)})
                        continue
                    kind = CeilingBench if name == "null" else Bench
                    benches.append(
                        kind(reg, sizes, wd, large, small, large_layout, small_layout,
                              blob_file, blob_digest, (warmup_layout, warmup_image))
                    )  # fmt: skip
                    if store is not None:  # the object store's CPU is no "other load"
                        benches[-1].servers.append(ProcTree(store.server.process.pid))
                if benches:
                    run_benches(benches, interleave=not args.sequential)
                for b in benches:
                    results[b.reg.name] = b.result
            finally:
                for reg in regs:
                    reg.stop()
            print()
    finally:
        store_cm.__exit__(None, None, None)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            if not args.workdir:
                shutil.rmtree(root, ignore_errors=True)

    results = s3_store.table_results(args, results)
    table, records = render_table(results, sizes)
    table = s3_store.relabel(args, table)
    print("ratio = dockyard/distribution; rows marked 'inv' are lower-is-better, so the ratio is")
    print("distribution/dockyard there. Either way > 1 means Dockyard is better.")
    if args.quick:
        print("(--quick: sizes are shrunk; pass/fail is indicative only)")
    print()
    print(table)
    ceilings = render_ceilings(results, sizes, sha)
    print()
    print(ceilings["text"])
    end_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ceilings["loadavg_at_end"] = end_load
    print(f"  machine load average at the end: {end_load} (other load per phase: last column)")
    sql_text = render_sql_counts(results)
    if sql_text:
        print()
        print(sql_text)
    versus_fs = s3_store.filesystem_comparison(results)
    if versus_fs["text"]:
        print("\n" + versus_fs["text"])
        ceilings["s3_vs_filesystem"] = {k: v for k, v in versus_fs.items() if k != "text"}
    loads = [v for r in results.values() for v in r.details.get("other_load_cores", {}).values()]
    if loads and statistics.mean(loads) > 0.15:
        print(
            f"\nWARNING: other processes used {statistics.mean(loads):.2f} cores on average "
            f"(max {max(loads):.2f}) while measuring; absolute figures are depressed and "
            "noisy. Ratios are fairer (phases interleave) but still noisy."
        )
    for name, res in results.items():
        for phase, err in res.errors.items():
            print(f"\n{name}: {phase} failed: {err[:1500]}")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "sizes": {**sizes.__dict__, "phases": sorted(sizes.phases)},
                    "table": records,
                    "ceilings": {k: v for k, v in ceilings.items() if k != "text"},
                    "results": {
                        n: {"metrics": r.metrics, "details": r.details, "errors": r.errors}
                        for n, r in results.items()
                    },
                },
                indent=1,
            )
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
