"""Run a real ``dockyard serve`` process for end-to-end tests and benchmarks.

::

    with DockyardServer(admin_password="pw") as server:
        subprocess.run(["skopeo", "inspect", f"docker://{server.registry}/library/x:1", ...])
        server.restart()  # same port, same data dir

The server's stdout and stderr go to ``server.log_path``; ``ServerError`` messages quote its
tail, so a server that fails to start says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
from tests.support.commands import run_checked
from tests.support.migrated import seed_sqlite
from tests.support.registry_auth import RegistryAuth
from tests.support.seaweedfs import s3_env, shared_seaweedfs, storage_under_test

DEFAULT_ADMIN_PASSWORD = "Dockyard-e2e-12345"
LOG_TAIL_CHARS = 6000


class ServerError(RuntimeError):
    """The server process could not be started, or died, or would not stop."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class DockyardServer:
    """A ``dockyard serve`` child process on a free local port with its own data directory."""

    def __init__(
        self,
        *,
        admin_password: str = DEFAULT_ADMIN_PASSWORD,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 60.0,
        extra_args: Sequence[str] = (),
        tls: tuple[Path, Path] | None = None,
        disposable: bool | None = None,
    ) -> None:
        """``disposable``: nothing of the server outlives ``close()`` (its database is
        dropped with it), so ``close()`` kills it without a graceful stop; ``stop()`` and
        ``restart()`` stay graceful. Default: when the server has its own data directory
        and its SQLite database in it. Such a server also starts on a copy of a migrated
        database instead of migrating an empty one (``tests/support/migrated.py``)."""
        self.host = "127.0.0.1"
        self.tls = tls
        if tls is not None:
            extra_args = (*extra_args, "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
        self.port = port or free_port(self.host)
        self.admin_password = admin_password
        self.database_url = database_url
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self._owned_root: Path | None = None
        if data_dir is None:
            self._owned_root = Path(tempfile.mkdtemp(prefix="dockyard-e2e-"))
            data_dir = self._owned_root / "data"
            self.log_path = self._owned_root / "server.log"
        else:
            self.log_path = data_dir.parent / f"dockyard-{self.port}.log"
        self.data_dir = data_dir
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # as serve makes it
        self.env = self._child_env(env or {})
        own_sqlite = (
            self._owned_root is not None
            and "DOCKYARD_DATABASE_URL" not in self.env
            and not any(arg.startswith(("--database-url", "--config")) for arg in self.extra_args)
        )
        self.disposable = own_sqlite if disposable is None else disposable
        if own_sqlite:
            seed_sqlite(self.data_dir / "dockyard.db")
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # --- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def registry(self) -> str:
        """``host:port`` as clients name the registry, e.g. in ``docker://`` references."""
        return f"{self.host}:{self.port}"

    @property
    def admin_auth(self) -> tuple[str, str]:
        return ("admin", self.admin_password)

    @property
    def admin_creds(self) -> str:
        """``admin:<password>`` as skopeo's ``--creds`` takes it."""
        return f"admin:{self.admin_password}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> DockyardServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "dockyard",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.running:
            raise ServerError("server already running")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.data_dir.parent,
                start_new_session=True,  # its own process group: stop() reaches ASGI workers too
            )
        self._wait_until_ready()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout`` seconds."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        # workers that outlived the leader must not keep the port
        self._signal_group(process, signal.SIGKILL)
        self._wait_for_port_release()

    def kill(self) -> None:
        """SIGKILL the server's process group (no graceful stop) and wait for the port."""
        process = self._process
        if process is None:
            return
        self._process = None
        self._signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)
        self._wait_for_port_release()

    def restart(self) -> None:
        """Stop, then start again on the same port with the same data directory."""
        self.stop()
        self.start()

    def close(self) -> None:
        if self.disposable:
            self.kill()
        else:
            self.stop()
        if self._owned_root is not None:
            shutil.rmtree(self._owned_root, ignore_errors=True)
            self._owned_root = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- the CLI beside the server -----------------------------------------------------------

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m dockyard ARGS --data-dir D`` with the server's environment."""
        cmd = [sys.executable, "-m", "dockyard", *args, "--data-dir", str(self.data_dir)]
        return run_checked(cmd, env=self.env, timeout=timeout, check=check, error=ServerError)

    def create_project(self, name: str, *, public: bool = False) -> None:
        self.cli("project", "create", name, *(["--public"] if public else []))

    def client(self, *, anonymous: bool = False) -> httpx.Client:
        """An httpx client for this server that answers its auth challenges, as admin unless
        ``anonymous``."""
        auth = RegistryAuth(None if anonymous else self.admin_auth)
        return httpx.Client(base_url=self.url, auth=auth, timeout=60)

    # --- diagnostics -------------------------------------------------------------------------

    def output(self) -> str:
        """Everything the server printed so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.output()
        return text if len(text) <= chars else "…" + text[-chars:]

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def output_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    # --- internals ---------------------------------------------------------------------------

    def _child_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        # No ambient DOCKYARD_* setting may leak in: the test decides the configuration.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env["DOCKYARD_ADMIN_PASSWORD"] = self.admin_password
        # Webhook receivers in tests listen on loopback, which the egress policy refuses
        # by default.
        env["DOCKYARD_EGRESS_ALLOW_LOOPBACK"] = "true"
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.database_url is not None:
            env["DOCKYARD_DATABASE_URL"] = self.database_url
        if storage_under_test() == "s3" and "DOCKYARD_STORAGE_DRIVER" not in extra:
            # DOCKYARD_TEST_STORAGE=s3: blobs in a bucket on the shared SeaweedFS, one per
            # database, so servers sharing a database (a cluster in a test) share it too.
            store = shared_seaweedfs()
            env.update(s3_env(store, store.bucket_for(self.database_url or str(self.data_dir))))
        env.update(extra)
        return env

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True
        )
        with httpx.Client(timeout=2.0, verify=verify) as client:
            while time.monotonic() < deadline:
                process = self._process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    self._process = None
                    raise ServerError(
                        f"dockyard serve exited with code {code} before answering on {self.url}"
                        f"\n--- server output ---\n{self.output_tail()}"
                    )
                try:
                    response = client.get(f"{self.url}/v2/")
                except httpx.TransportError as exc:
                    last_error = repr(exc)
                else:
                    if response.status_code in (200, 401):
                        return
                    last_error = f"GET /v2/ answered {response.status_code}: {response.text[:500]}"
                time.sleep(0.1)
        self.stop()
        raise ServerError(
            f"dockyard serve did not answer on {self.url}/v2/ within {self.startup_timeout}s "
            f"({last_error})\n--- server output ---\n{self.output_tail()}"
        )

    def _wait_for_port_release(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex((self.host, self.port)) != 0:
                    return
            time.sleep(0.05)

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
