"""Find (or start) a PostgreSQL server for tests, and hand out throwaway databases on it.

``postgres_admin_url()`` picks, in order:

1. ``DOCKYARD_TEST_POSTGRES_URL`` when set (used as given, never probed away);
2. a server on 127.0.0.1:5432 that accepts user ``postgres`` or the current OS user;
3. a throwaway cluster built with Debian's ``initdb``/``pg_ctl`` in a temporary directory on a
   free port, run as a non-root user, stopped when the interpreter exits. The ``postgresql``
   package is installed with apt-get when its binaries are missing.

It never skips: when no server can be had it raises ``PostgresUnavailableError`` saying why.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ENV_URL = "DOCKYARD_TEST_POSTGRES_URL"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5432
DATABASE_PREFIX = "dockyard_test_"

T = TypeVar("T")

_lock = threading.Lock()
_cached_url: str | None = None


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be found or started for the tests."""


def postgres_admin_url() -> str:
    """URL (``postgresql://user@host:port/postgres``) of a server tests may create databases on.

    The answer is computed once per process; a cluster this function started lives until exit.
    """
    global _cached_url
    with _lock:
        if _cached_url is None:
            _cached_url = _find_or_start_server()
        return _cached_url


@contextmanager
def temporary_database(admin_url: str, *, migrated: bool = False) -> Iterator[str]:
    """Create a uniquely named empty database, yield its URL, drop it afterwards.
    ``migrated``: a copy of a database migrated to head instead (no rows; faster than
    a server migrating an empty one, ``tests/support/migrated.py``)."""
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    template = f' TEMPLATE "{migrated_template(admin_url)}"' if migrated else ""
    _run_async(lambda: _execute(admin_url, f'CREATE DATABASE "{name}"{template}'))
    try:
        yield with_database(admin_url, name)
    finally:
        _run_async(lambda: _execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_templates: dict[str, str] = {}


def migrated_template(admin_url: str) -> str:
    """Name of a database on ``admin_url``'s server migrated to head, made once per
    process and dropped at exit; nothing may connect to it (it is copied)."""
    with _lock:
        name = _templates.get(admin_url)
        if name is None:
            from tests.support.migrated import migrate_in_thread

            name = f"{DATABASE_PREFIX}template_{uuid.uuid4().hex[:12]}"
            _run_async(lambda: _execute(admin_url, f'CREATE DATABASE "{name}"'))
            drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            atexit.register(lambda: _run_async(lambda: _execute(admin_url, drop)))
            migrate_in_thread(with_database(admin_url, name))
            _templates[admin_url] = name
        return name


def with_database(url: str, database: str) -> str:
    """``url`` with its path (the database name) replaced by ``database``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_exists(admin_url: str, name: str) -> bool:
    async def query() -> bool:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        finally:
            await conn.close()
        return bool(found == 1)

    return _run_async(query)


# --- running asyncpg from synchronous code ---------------------------------------------------


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private event loop in a fresh thread.

    A fresh thread works whether or not the caller already runs an event loop.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(factory())
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="postgres-support", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _reachable(url: str) -> bool:
    return _run_async(lambda: _can_connect(url))


async def _can_connect(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    return True


# --- choosing a server -----------------------------------------------------------------------


def _admin_url(user: str, host: str, port: int) -> str:
    return f"postgresql://{user}@{host}:{port}/postgres"


def _find_or_start_server() -> str:
    configured = os.environ.get(ENV_URL)
    if configured:
        return configured
    tried = []
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        url = _admin_url(user, DEFAULT_HOST, DEFAULT_PORT)
        if _reachable(url):
            return url
        tried.append(url)
    try:
        return start_throwaway_cluster().url
    except Exception as exc:
        raise PostgresUnavailableError(
            f"no PostgreSQL server for the tests: {', '.join(tried)} did not answer, and a "
            f"throwaway cluster could not be started ({exc}). Set {ENV_URL} to a server's "
            "admin URL, or install PostgreSQL (Debian/Ubuntu: apt-get install postgresql)."
        ) from exc


def _find_initdb() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1])
    on_path = shutil.which("initdb")
    return Path(on_path) if on_path else None


def _install_postgresql() -> None:
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise PostgresUnavailableError(
                "PostgreSQL binaries are missing and we are neither root nor have sudo"
            )
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "postgresql"],
        check=True,
        env=env,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((DEFAULT_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_user() -> pwd.struct_passwd | None:
    """The account to run the cluster as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailableError("running as root, and neither 'postgres' nor 'nobody' exists")


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory; ``stop()`` removes it (idempotent)."""

    url: str
    root: Path
    _stop: Callable[[], None]
    _pg_ctl: Callable[[str], None] | None = None
    stopped: bool = False

    def pause(self) -> None:
        """Stop the server (fast shutdown: sessions are cut), keeping its data."""
        assert self._pg_ctl is not None
        self._pg_ctl("stop")

    def resume(self) -> None:
        """Start the server again on the same port after ``pause``."""
        assert self._pg_ctl is not None
        self._pg_ctl("start")

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._stop()


def start_throwaway_cluster(parent: Path | None = None) -> ThrowawayCluster:
    """Start a private cluster on a free port (stopped at interpreter exit at the latest),
    in a new folder under ``parent`` (e.g. a small filesystem) or the temporary folder."""
    initdb = _find_initdb()
    if initdb is None:
        _install_postgresql()
        initdb = _find_initdb()
        if initdb is None:
            raise PostgresUnavailableError("apt-get installed postgresql but initdb is missing")
    pg_ctl = initdb.with_name("pg_ctl")
    account = _cluster_user()

    root = Path(tempfile.mkdtemp(prefix="dockyard-pg-", dir=parent))
    data_dir = root / "data"
    log_file = root / "postgres.log"
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)

    def run(cmd: list[str]) -> None:
        subprocess.run(
            cmd,
            check=True,
            capture_output=True,
            cwd=root,
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
        )

    port = _free_port()
    try:
        run(
            [
                str(initdb),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        options = f"-p {port} -k {root} -c listen_addresses={DEFAULT_HOST} -F"
        run(
            [
                str(pg_ctl),
                "-D",
                str(data_dir),
                "-o",
                options,
                "-l",
                str(log_file),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
    except subprocess.CalledProcessError as exc:
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailableError(
            f"{exc.cmd[0]} failed: {exc.stderr.decode(errors='replace')}{log}"
        ) from exc

    def stop() -> None:
        with suppress(subprocess.CalledProcessError):
            run([str(pg_ctl), "-D", str(data_dir), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)

    def pg_ctl_action(action: str) -> None:
        command = [str(pg_ctl), "-D", str(data_dir), "-w", "-t", "60"]
        if action == "start":
            command += ["-o", options, "-l", str(log_file)]
        else:
            command += ["-m", "fast"]
        run([*command, action])

    cluster = ThrowawayCluster(
        url=_admin_url("postgres", DEFAULT_HOST, port),
        root=root,
        _stop=stop,
        _pg_ctl=pg_ctl_action,
    )
    atexit.register(cluster.stop)
    return cluster
