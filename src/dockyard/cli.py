"""The ``dockyard`` command: serve, migrate, and admin chores."""

from __future__ import annotations

import asyncio
import errno
import getpass
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from dockyard.db.engine import Database, explain_database_error
from dockyard.errors import AppError, ConfigurationError, DatabaseUnavailableError
from dockyard.logs import configure_logging
from dockyard.settings import Settings, load_settings
from dockyard.system.bootstrap import PRIVATE_UMASK, BootstrapReport, prepare, secure_data_dir

if TYPE_CHECKING:
    from dockyard.audit.events import Actor
    from dockyard.iam.policy import Principal
    from dockyard.quota.service import UsageCheck

T = TypeVar("T")
_log = logging.getLogger("dockyard.cli")


def _settings(config: Path | None, *, log: bool = False, **overrides: Any) -> Settings:
    """Load the settings (with ``log``, set up logging from them), then create the data
    directory private to this user, tightening it if found open to others."""
    try:
        settings = load_settings(config, **overrides)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from None
    if log:
        configure_logging(settings.log_level)
    try:
        secure_data_dir(settings)
    except OSError as exc:
        where = exc.filename or settings.data_dir
        raise click.ClickException(
            f"cannot set up the data directory at {where}: {exc.strerror}; check --data-dir "
            "(or data_dir/storage_root) and that this user may write there"
        ) from None
    return settings


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh connection pool to the settings' database. A refusal of a
    service (``AppError``) and a database that cannot be reached, logged in to or
    opened stop the command with one line saying what is wrong."""
    url = settings.effective_database_url

    async def run() -> T:
        db = Database(url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except DatabaseUnavailableError as exc:
        # The cause says more to an operator (which host, refused or timed out).
        cause = exc.__cause__
        explained = explain_database_error(cause, url) if cause is not None else None
        raise click.ClickException(explained or exc.message) from None
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    except click.ClickException:
        raise
    except Exception as exc:
        explained = explain_database_error(exc, url)
        if explained is None:
            raise
        raise click.ClickException(explained) from None


def _check_storage(settings: Settings, *, before_fork: bool = False) -> None:
    """Ask an object store once now, so a missing bucket or refused credentials stop
    the command with one line (not a traceback in each server worker's start).

    ``before_fork``: the server forks its workers after this, and the S3 client's
    runtime (threads) does not survive a fork (a forked worker hung in its first
    storage call), so the question is asked from a short-lived spawned process."""
    if settings.storage_driver == "filesystem":
        return
    if before_fork:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            problem = pool.submit(_storage_problem, settings).result()
    else:
        problem = _storage_problem(settings)
    if problem is not None:
        raise click.ClickException(problem)


def _storage_problem(settings: Settings) -> str | None:
    from dockyard.app import open_storage

    try:
        asyncio.run(open_storage(settings))
    except ConfigurationError as exc:
        return exc.message
    return None


def _prepare(settings: Settings) -> BootstrapReport:
    """Migrate and create the first-start rows."""
    return _run(settings, lambda db: prepare(settings, db))


async def _overridden_settings(settings: Settings, db: Database) -> list[str]:
    """A line for each start-time setting given (file, variable or option) that an
    administrator has since overridden at run time, so that it does nothing."""
    from dockyard.settings import RUN_TIME_NAMES
    from dockyard.system import config

    lines = []
    async with db.read() as session:
        for item_key, field in RUN_TIME_NAMES.items():
            if field not in settings.model_fields_set:
                continue
            changed = await config.run_time_value(session, item_key)
            given = getattr(settings, field)
            if changed is not None and changed != given:
                lines.append(
                    f"{field} ({given}) is overridden by {item_key} ({changed}), set at run "
                    "time; change it with PUT /api/v2.0/configurations or the console's "
                    "Configuration page"
                )
    return lines


def _ensure_port_free(host: str, port: int) -> None:
    """Refuse to start when something already listens on ``host:port``.

    The ASGI server binds with ``SO_REUSEPORT``, so a second ``dockyard serve`` on a
    taken port would start quietly and the kernel would split connections between
    the two, each with its own data and token key. A probe bound without that
    option fails instead (``SO_REUSEADDR`` only lets it past connections of a
    stopped server still in TIME_WAIT)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"{host}:{port} is already in use (another Dockyard, or another program); "
                    "stop it or choose another --port"
                ) from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _announce(report: BootstrapReport) -> None:
    if report.migrated_from != report.migrated_to:
        click.echo(f"database migrated: {report.migrated_from or 'empty'} -> {report.migrated_to}")
    if report.generated_admin_password:
        click.echo(
            "created user 'admin' with password: "
            f"{report.generated_admin_password}\n"
            "(shown once; set DOCKYARD_ADMIN_PASSWORD before the first start to choose it)"
        )


config_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML settings file (like harbor.yml).",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the database and blobs live (default ./dockyard-data).",
)


def _version() -> str:
    try:
        return version("dockyard")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="dockyard")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Dockyard: an enterprise container registry.

    Every command reads its settings from --config (a YAML file like harbor.yml),
    DOCKYARD_* environment variables and its options; the database is
    DOCKYARD_DATABASE_URL (or database_url in the file), by default SQLite in the
    data directory. Changes made here are audited with the operator cli:<OS user>."""
    # Every file and directory a command creates (database, blobs, uploads) is private
    # to this user; ASGI worker processes inherit the mask.
    previous = os.umask(PRIVATE_UMASK)
    ctx.call_on_close(lambda: os.umask(previous))


database_url_option = click.option(
    "--database-url",
    metavar="URL",
    help="sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB; default SQLite at "
    "DATA_DIR/dockyard.db. Also DOCKYARD_DATABASE_URL or database_url in --config, which "
    "keep a password out of the process list.",
)


_HTTP1_BUFFER = 4 << 20  # Granian's HTTP/1 read buffer, at most (see serve)


@main.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 5000).")
@data_dir_option
@database_url_option
@config_option
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate (chain) to serve HTTPS with; needs --tls-key (default: plain HTTP).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.option("--workers", type=int, help="ASGI worker processes (default 1).")
@click.option(
    "--file-read-threads",
    type=click.IntRange(1, 512),
    help="Threads per worker that read blob files for downloads (Granian's runtime "
    "blocking threads; default Granian's, up to 512). 1 keeps one thread reading for "
    "all downloads, with fewer wake-ups, but a slow disk read then holds up the others.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log messages written to stderr (default info).",
)
def serve(config: Path | None, file_read_threads: int | None, **options: Any) -> None:
    """Migrate the database if needed and serve the registry."""
    settings = _settings(config, log=True, **options)
    _ensure_port_free(settings.host, settings.port)
    made_metrics_dir = None
    if settings.metrics_enabled:
        if settings.metrics_port is not None:
            _ensure_port_free(settings.host, settings.metrics_port)
        from dockyard.metrics import multiprocess

        # First: the forked workers must find it when they first import prometheus_client.
        metrics_dir, made = multiprocess.prepare_directory()
        made_metrics_dir = metrics_dir if made else None
    try:
        _serve(settings, config, options, file_read_threads)
    finally:
        if made_metrics_dir is not None:
            shutil.rmtree(made_metrics_dir, ignore_errors=True)


def _serve(
    settings: Settings,
    config: Path | None,
    options: dict[str, Any],
    file_read_threads: int | None = None,
) -> None:
    _check_storage(settings, before_fork=True)
    report = _prepare(settings)
    _announce(report)
    for line in _run(settings, lambda db: _overridden_settings(settings, db)):
        _log.warning(line)
    if report.admin_password_ignored:
        _log.warning(
            "admin_password (DOCKYARD_ADMIN_PASSWORD) is set but was ignored: it only "
            "chooses admin's password when the database is created. To reset a password, "
            "run: dockyard user reset-password admin"
        )

    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.server import Server

    from dockyard.app import SERVE_SETTINGS_ENV

    overrides = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None
    }
    if config is not None:
        overrides["config_file"] = str(config)
    # Workers are new processes: they rebuild the same settings from this.
    os.environ[SERVE_SETTINGS_ENV] = json.dumps(overrides)
    click.echo(f"Dockyard serving the registry at {settings.public_url}", err=True)
    if settings.metrics_enabled:
        where = f"port {settings.metrics_port}" if settings.metrics_port else "the main port"
        click.echo(f"Prometheus metrics at {settings.metrics_path} on {where}", err=True)
    server = Server(
        "dockyard.app:app_from_environment",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.auto,
        log_level=settings.log_level,  # type: ignore[arg-type]
        ssl_cert=settings.tls_cert,
        ssl_key=settings.tls_key,
        ssl_protocol_min="tls1.2",  # type: ignore[arg-type]
        # A request body arrives as one ASGI message per read of the socket, and a
        # read takes at most this much: hyper's default (408 KiB) made a curl upload
        # ~1,300 messages per 256 MiB, each a wake-up of the event loop; 4 MiB makes
        # it ~270 (docs/benchmarks.md, "Byte path"). Memory: the buffer grows to
        # this size only on a connection whose body arrives faster than it is read.
        # It also bounds a request's head (hyper answers 431 past it): a client may
        # hold up to 4 MiB per connection for the 30 s header timeout, not 408 KiB.
        http1_settings=HTTP1Settings(max_buffer_size=_HTTP1_BUFFER),
        # A whole-blob GET goes by pathsend: Granian reads the file 128 KiB at a time
        # on these threads (docs/benchmarks.md, "Pull and download, a second look").
        runtime_blocking_threads=file_read_threads,  # None: Granian's default (512)
    )
    server.serve()


@main.command()
@data_dir_option
@database_url_option
@config_option
@click.option(
    "--concurrency", type=click.IntRange(1, 64), help="Tasks run at once (default: job_workers)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log messages written to stderr (default info).",
)
def worker(config: Path | None, concurrency: int | None, **options: Any) -> None:
    """Run job workers only (GC, retention, webhooks…), sharing the database with
    serve. Start as many as you like, on any machine; stop with Ctrl-C or SIGTERM
    (running tasks are handed back and retried elsewhere)."""
    import signal

    from dockyard.app import build_state, start_workers
    from dockyard.tracing import open_tracing

    settings = _settings(config, log=True, **options)
    _check_storage(settings)
    _announce(_prepare(settings))

    async def run() -> None:
        tracing = open_tracing(settings)  # the jobs' SQL and storage calls, when enabled
        state = await build_state(settings, tracing)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            runner = await start_workers(state, concurrency or max(1, settings.job_workers))
            click.echo(
                f"Dockyard job worker {runner.pool_id} running {runner.concurrency} slot(s) "
                f"for: {', '.join(sorted(state.job_types)) or 'no job types'}",
                err=True,
            )
            await stop.wait()
            click.echo("stopping: handing running tasks back", err=True)
        finally:
            if state.jobs is not None:
                await state.jobs.close()
            await state.registry.hooks.close()
            await state.db.dispose()
            if tracing is not None:
                tracing.shutdown()

    asyncio.run(run())


def _store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--data-dir, --database-url and --config: where a command finds the database."""
    return data_dir_option(database_url_option(config_option(command)))


def _ready(config: Path | None, data_dir: Path | None, database_url: str | None) -> Settings:
    """Settings for a command that works on the database, migrated and ready."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    _announce(_prepare(settings))
    return settings


@main.command()
@_store_options
def migrate(config: Path | None, data_dir: Path | None, database_url: str | None) -> None:
    """Apply database migrations (serve does this too)."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    report = _prepare(settings)
    click.echo(f"database at revision {report.migrated_to}")
    _announce(report)


# --- who the CLI acts as ---------------------------------------------------------------------


def _operator() -> Actor:
    """The audit log's operator for a change made with the CLI: ``cli:<OS user>``
    (``cli`` when the OS cannot name the user)."""
    from dockyard.audit.events import Actor

    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = ""
    return Actor(f"cli:{user}" if user else "cli", "-")


def _cli_principal(operator: Actor) -> Principal:
    """Whoever may run the CLI on the database may do anything: a system administrator
    that is no user (it owns nothing, and cannot be the user it deletes)."""
    from dockyard.iam.policy import Principal

    return Principal(kind="user", name=operator.name, sysadmin=True)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


_LIST_PAGE = 100


# --- projects --------------------------------------------------------------------------------


@main.group()
def project() -> None:
    """List, create and delete projects (audited as cli:<OS user>)."""


@project.command("list")
@_store_options
def project_list(config: Path | None, data_dir: Path | None, database_url: str | None) -> None:
    """List every project: name, id, whether public, repositories and owner."""
    from dockyard.db.listing import PageRequest
    from dockyard.projects import schemas
    from dockyard.projects import service as projects

    settings = _ready(config, data_dir, database_url)
    principal = _cli_principal(_operator())

    async def work(db: Database) -> list[schemas.Project]:
        found: list[schemas.Project] = []
        page = 1
        while True:
            async with db.read() as session:
                views, total = await projects.list_projects(
                    session, principal, projects.ProjectQuery(), PageRequest(page, _LIST_PAGE)
                )
            found += views
            if not views or len(found) >= total:
                return found
            page += 1

    rows = [("NAME", "ID", "PUBLIC", "REPOSITORIES", "OWNER")]
    for view in _run(settings, work):
        public = "yes" if view.metadata.get("public") == "true" else "no"
        owner = view.owner_name or "-"
        rows.append((view.name, str(view.project_id), public, str(view.repo_count), owner))
    _table(rows)


@project.command("create")
@click.argument("name")
@click.option("--public", is_flag=True, help="Anyone, anonymous users included, may pull.")
@_store_options
def project_create(
    name: str,
    public: bool,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Create project NAME, owned by the first system administrator."""
    from dockyard.projects import schemas
    from dockyard.projects import service as projects

    settings = _ready(config, data_dir, database_url)
    operator = _operator()

    async def work(db: Database) -> int:
        async with db.write() as session:
            created = await projects.create_project_for(
                session,
                _cli_principal(operator),
                schemas.ProjectReq(project_name=name, public=public),
                operator=operator,
            )
            return created.project_id

    project_id = _run(settings, work)
    click.echo(f"created {'public' if public else 'private'} project {name} (id {project_id})")


@project.command("delete")
@click.argument("name")
@_store_options
def project_delete(
    name: str, config: Path | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Delete project NAME; refused while it holds repositories."""
    from dockyard.audit import service as audit
    from dockyard.audit.events import AuditEvent
    from dockyard.projects import service as projects

    settings = _ready(config, data_dir, database_url)
    operator = _operator()
    principal = _cli_principal(operator)

    async def work(db: Database) -> None:
        # A refusal (the project holds repositories) is audited as a failed delete, as the
        # API does.
        refused = AuditEvent("delete", "project", name)
        async with audit.failure_recorded(db, operator, refused), db.write() as session:
            found, context = await projects.resolve_project(session, principal, name, by_name=True)
            await projects.delete_project(session, principal, found, context, operator=operator)

    _run(settings, work)
    click.echo(f"deleted project {name}")


# --- users -----------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """List, create and delete users, make them administrators, reset passwords
    (audited as cli:<OS user>)."""


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _read_password(prompt: str) -> str:
    """On a terminal: asked twice, not echoed. Otherwise: the first line of stdin
    (``echo "$PASSWORD" | dockyard user reset-password NAME``)."""
    if _stdin_is_tty():
        entered = click.prompt(prompt, hide_input=True, confirmation_prompt=True, err=True)
        return str(entered)
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException("no password given: stdin is empty")
    return line.rstrip("\r\n")


async def _user_id(db: Database, name: str) -> int:
    from dockyard.errors import NotFoundError
    from dockyard.iam import repository as users_repo

    async with db.read() as session:
        found = await users_repo.find_user_by_name(session, name)
    if found is None:
        raise NotFoundError(f"user {name} does not exist")
    return found.user_id


@user.command("list")
@_store_options
def user_list(config: Path | None, data_dir: Path | None, database_url: str | None) -> None:
    """List users: name, id, e-mail and whether each is a system administrator."""
    from dockyard.db.listing import PageRequest
    from dockyard.iam import users

    settings = _ready(config, data_dir, database_url)

    async def work(db: Database) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        page = 1
        while True:
            async with db.read() as session:
                found, total = await users.list_users(
                    session, [], "username", PageRequest(page, _LIST_PAGE)
                )
                rows += [
                    (u.username, str(u.user_id), u.email or "-", "yes" if u.sysadmin_flag else "no")
                    for u in found
                ]
            if not found or len(rows) >= total:
                return rows
            page += 1

    _table([("USERNAME", "ID", "EMAIL", "ADMIN"), *_run(settings, work)])


@user.command("create")
@click.argument("name")
@click.option("--email", required=True, help="The user's e-mail address (required, unique).")
@click.option("--realname", help="Full name shown in the console (default: NAME).")
@click.option("--comment", default="", help="A note about the user.")
@click.option("--admin", is_flag=True, help="Make the user a system administrator.")
@_store_options
def user_create(
    name: str,
    email: str,
    realname: str | None,
    comment: str,
    admin: bool,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Create local user NAME. The password is asked twice on a terminal, else read
    from the first line of stdin; it must have 8 to 256 characters with an upper-case
    letter, a lower-case letter and a digit."""
    from dockyard.iam import users

    settings = _ready(config, data_dir, database_url)
    password = _read_password(f"Password for {name}")
    operator = _operator()

    async def work(db: Database) -> int:
        async with db.write() as session:
            created = await users.create_user(
                session,
                username=name,
                email=email,
                realname=realname or name,
                comment=comment,
                password=password,
                robot_prefix=settings.robot_name_prefix,
                operator=operator,
            )
            if admin:
                await users.set_sysadmin(
                    session, created.user_id, True, _cli_principal(operator), operator=operator
                )
            return created.user_id

    user_id = _run(settings, work)
    click.echo(f"created {'administrator' if admin else 'user'} {name} (id {user_id})")


@user.command("delete")
@click.argument("name")
@_store_options
def user_delete(
    name: str, config: Path | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Delete user NAME (the built-in admin cannot be deleted); their memberships go."""
    from dockyard.audit import service as audit
    from dockyard.audit.events import AuditEvent
    from dockyard.iam import users

    settings = _ready(config, data_dir, database_url)
    operator = _operator()

    async def work(db: Database) -> None:
        user_id = await _user_id(db, name)
        refused = AuditEvent("delete", "user", name)
        async with audit.failure_recorded(db, operator, refused), db.write() as session:
            await users.delete_user(session, user_id, _cli_principal(operator), operator=operator)

    _run(settings, work)
    click.echo(f"deleted user {name}")


@user.command("set-admin")
@click.argument("name")
@click.option("--unset", is_flag=True, help="Take the administrator role away instead.")
@_store_options
def user_set_admin(
    name: str,
    unset: bool,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Make user NAME a system administrator (with --unset: no longer one)."""
    from dockyard.iam import users

    settings = _ready(config, data_dir, database_url)
    operator = _operator()

    async def work(db: Database) -> None:
        user_id = await _user_id(db, name)
        async with db.write() as session:
            await users.set_sysadmin(
                session, user_id, not unset, _cli_principal(operator), operator=operator
            )

    _run(settings, work)
    click.echo(f"{name} is {'no longer' if unset else 'now'} a system administrator")


@user.command("reset-password")
@click.argument("name")
@_store_options
def user_reset_password(
    name: str, config: Path | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Set a new password for user NAME, e.g. a lost admin password. Asked twice on a
    terminal, else read from the first line of stdin; the password policy applies.
    Safe while the server runs: it takes effect at once on every node, and the user's
    console sessions and refresh tokens end."""
    from dockyard.iam import users

    settings = _ready(config, data_dir, database_url)
    password = _read_password(f"New password for {name}")
    operator = _operator()

    async def work(db: Database) -> None:
        user_id = await _user_id(db, name)
        async with db.write() as session:
            await users.set_password(session, user_id, password, None, operator=operator)

    _run(settings, work)
    click.echo(f"password of {name} changed")


# --- quotas ----------------------------------------------------------------------------------


@main.group()
def quota() -> None:
    """Check project storage quotas."""


_RECOMPUTE_BATCH = 100


class _Progress:
    """Progress of long work on stderr: one line rewritten in place on a terminal,
    else a line every ``interval`` seconds (and a last one when any was written)."""

    interval = 10.0

    def __init__(self, verb: str, noun: str, total: int, stream: TextIO | None = None) -> None:
        self.verb, self.noun, self.total = verb, noun, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.last = time.monotonic()
        self.shown = False

    def update(self, done: int) -> None:
        now = time.monotonic()
        final = done >= self.total
        if self.tty:
            percent = 100 * done // self.total if self.total else 100
            self.stream.write(f"\r{self.verb} {done} of {self.total} {self.noun} ({percent}%)")
            if final:
                self.stream.write("\n")
            self.stream.flush()
            self.shown = True
        elif now - self.last >= self.interval or (final and self.shown):
            elapsed = now - self.started
            self.stream.write(f"{self.verb} {done} of {self.total} {self.noun} ({elapsed:.0f} s)\n")
            self.stream.flush()
            self.last, self.shown = now, True


@quota.command("recompute")
@click.option(
    "--project",
    "names",
    multiple=True,
    help="Check only this project (repeat for several); default every project.",
)
@click.option("--fix", is_flag=True, help="Store the recomputed usage where it differs.")
@_store_options
def quota_recompute(
    names: tuple[str, ...],
    fix: bool,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Recompute every project's storage usage from its blobs and compare it with the
    stored number. Exits 0 when all agree, 1 when some differ (also with --fix, which
    then stores the recomputed numbers). Progress goes to stderr."""
    from dockyard.quota import repository as quota_repo
    from dockyard.quota import service as quotas

    settings = _ready(config, data_dir, database_url)

    async def work(db: Database) -> list[quotas.UsageCheck]:
        async with db.read() as session:
            projects = await quota_repo.live_projects(session, list(names) if names else None)
        unknown = sorted(set(names) - {name for _, name in projects})
        if unknown:
            raise click.BadParameter(
                f"no such project: {', '.join(unknown)}", param_hint="--project"
            )
        checks: list[quotas.UsageCheck] = []
        progress = _Progress("checked", "projects", len(projects))
        for start in range(0, len(projects), _RECOMPUTE_BATCH):
            batch = projects[start : start + _RECOMPUTE_BATCH]
            async with db.read() as session:
                checks += await quotas.check_usage(session, batch)
            progress.update(len(checks))
        if fix:
            differing = [check for check in checks if not check.agrees]
            fixing = _Progress("fixed", "projects", len(differing))
            for done, check in enumerate(differing, 1):
                async with db.write() as session:
                    await quotas.fix_usage(session, check.project_id)
                fixing.update(done)
        return checks

    checks = _run(settings, work)
    _usage_table(checks)
    differing = [check for check in checks if not check.agrees]
    if not differing:
        click.echo(f"all {len(checks)} projects agree")
        return
    click.echo(
        f"{len(differing)} of {len(checks)} projects differ"
        + (
            "; stored the recomputed usage"
            if fix
            else "; run with --fix to store the recomputed usage"
        )
    )
    sys.exit(1)


def _usage_table(checks: list[UsageCheck]) -> None:
    """PROJECT STORED RECOMPUTED DIFFERENCE (bytes; stored ``-``: no quota row yet)."""
    rows = [("PROJECT", "STORED", "RECOMPUTED", "DIFFERENCE")]
    for check in checks:
        stored = "-" if check.stored is None else str(check.stored)
        rows.append(
            (
                check.project,
                stored,
                str(check.recomputed),
                "" if check.agrees else f"{check.difference:+d}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )


# --- backup and restore ----------------------------------------------------------------------


class _BlobProgress(_Progress):
    """Blobs copied and their bytes (``backup``/``restore`` progress on stderr): a first
    line with what there is to do, then as ``_Progress`` shows it."""

    def __init__(self, verb: str) -> None:
        super().__init__(verb, "blobs", 0)

    def __call__(self, done: int, total: int, size: int, total_size: int) -> None:
        self.total = total
        self.noun = f"blobs ({size / (1 << 20):.1f} of {total_size / (1 << 20):.1f} MiB)"
        if done == 0:
            self.stream.write(
                f"{self.verb} {total} blobs, {total_size / (1 << 20):.1f} MiB, "
                "from the database snapshot\n"
            )
            self.stream.flush()
            return
        self.update(done)


@main.command("backup")
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@_store_options
def backup_command(
    dest: Path, config: Path | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Back up the embedded default (SQLite and filesystem storage) into DEST, a new or
    empty folder, while the server keeps serving: a consistent database snapshot and
    every blob it names, with a manifest of checksums. Garbage collection's sweep waits
    meanwhile. PostgreSQL or S3 deployments are refused: see docs/backup.md."""
    from dockyard import backup

    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    started = time.monotonic()
    try:
        summary = backup.backup(settings, dest, progress=_BlobProgress("copying"))
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    blobs = summary.manifest["blobs"]
    click.echo(
        f"backed up {blobs['count']} blobs ({blobs['bytes']} bytes) and the database at "
        f"revision {summary.manifest['schema_revision']} into {dest} "
        f"in {time.monotonic() - started:.1f} s"
    )


@main.command("restore")
@click.argument("source", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--force", is_flag=True, help="Replace the database and blobs already in the data directory."
)
@_store_options
def restore_command(
    source: Path,
    force: bool,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Restore a backup made by `dockyard backup` into the data directory (its database
    and storage root must be empty unless --force). Every checksum is verified before
    anything is put in place; a backup from a newer schema is refused. Start `dockyard
    serve` on the data directory afterwards (it migrates an older schema)."""
    from dockyard import backup
    from dockyard.db.migrate import known_revision

    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    try:
        summary = backup.restore(
            settings,
            source,
            force=force,
            known_revisions=known_revision,
            progress=_BlobProgress("verifying"),
        )
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    counts = summary.manifest.get("counts", {})
    click.echo(
        f"restored {summary.manifest['blobs']['count']} blobs, "
        f"{counts.get('artifact', 0)} artifacts in {counts.get('repository', 0)} "
        f"repositories, database at revision {summary.manifest['schema_revision']}"
    )


def _registry_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where the registry is and who we are there (sign and verify)."""
    for option in reversed(
        (
            click.option(
                "--username",
                "-u",
                envvar="DOCKYARD_USERNAME",
                help="Registry user (or robot) name; also DOCKYARD_USERNAME.",
            ),
            click.option(
                "--password",
                envvar="DOCKYARD_PASSWORD",
                help="Registry password; prefer DOCKYARD_PASSWORD, which stays out of the "
                "process list.",
            ),
            click.option(
                "--plain-http", is_flag=True, help="Talk HTTP, not HTTPS (a registry without TLS)."
            ),
            click.option(
                "--insecure", is_flag=True, help="Do not check the registry's TLS certificate."
            ),
        )
    ):
        command = option(command)
    return command


def _registry_client(
    ref: str, username: str | None, password: str | None, plain_http: bool, insecure: bool
) -> Any:
    from dockyard.signatures.remote import RegistryClient, RegistryError, parse_reference

    try:
        reference = parse_reference(ref)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if username is not None and password is None:
        raise click.ClickException(
            f"--username {username} needs a password: set DOCKYARD_PASSWORD (or --password)"
        )
    return RegistryClient(
        reference,
        username=username,
        password=password,
        plain_http=plain_http,
        verify_tls=not insecure,
    )


@main.command("sign")
@click.argument("ref", metavar="REGISTRY/REPO@DIGEST|REGISTRY/REPO:TAG")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="PEM private key: ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more).",
)
@click.option(
    "--key-password",
    envvar=["DOCKYARD_KEY_PASSWORD", "COSIGN_PASSWORD"],
    help="Password of an encrypted key; also DOCKYARD_KEY_PASSWORD or COSIGN_PASSWORD.",
)
@click.option(
    "--storage",
    type=click.Choice(["tag", "referrer"]),
    default="tag",
    show_default=True,
    help="tag: cosign's sha256-<hex>.sig tag, appended to; referrer: an OCI 1.1 referrer.",
)
@_registry_options
def sign_command(
    ref: str,
    key_path: Path,
    key_password: str | None,
    storage: str,
    username: str | None,
    password: str | None,
    plain_http: bool,
    insecure: bool,
) -> None:
    """Sign an artifact in a registry with a PEM key, in cosign's format (which `cosign
    verify --key` and Dockyard's content trust accept). A tag is resolved to its digest
    first; the signature names the digest."""
    from dockyard.signatures import commands, signing
    from dockyard.signatures.remote import RegistryError

    try:
        key = signing.load_private_key(
            key_path.read_bytes(), key_password.encode() if key_password else None
        )
    except ValueError as exc:
        raise click.ClickException(f"{key_path}: {exc}") from None
    with _registry_client(ref, username, password, plain_http, insecure) as client:
        try:
            result = commands.sign_artifact(
                client,
                key,
                storage="referrer" if storage == "referrer" else "tag",
                say=lambda line: click.echo(line, err=True),
            )
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from None
    state = "signed" if result.added else "already signed with this key and payload"
    click.echo(f"{state}: {result.subject} -> {result.where} ({result.signature_digest})")


@main.command("verify")
@click.argument("ref", metavar="REGISTRY/REPO@DIGEST|REGISTRY/REPO:TAG")
@click.option(
    "--key",
    "key_paths",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="PEM public key (cosign.pub) to trust; repeat for several.",
)
@_registry_options
def verify_command(
    ref: str,
    key_paths: tuple[Path, ...],
    username: str | None,
    password: str | None,
    plain_http: bool,
    insecure: bool,
) -> None:
    """Verify an artifact's cosign signatures (tag scheme and OCI 1.1 referrers) against public
    keys. Prints each signature's verdict; exits 0 when at least one verifies, 1 otherwise."""
    from dockyard.signatures import commands
    from dockyard.signatures.remote import RegistryError
    from dockyard.signatures.verify import TrustedKey, describe_key

    keys = []
    for index, path in enumerate(key_paths, start=1):
        pem = path.read_text(errors="replace")
        try:
            describe_key("cosign", pem)
        except ValueError as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        keys.append(TrustedKey(index, "cosign", pem, name=str(path)))
    with _registry_client(ref, username, password, plain_http, insecure) as client:
        try:
            digest, checked = commands.verify_artifact(
                client, keys, say=lambda line: click.echo(line, err=True)
            )
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from None
    if not checked:
        click.echo(f"{digest}: no cosign signature found (sign it with `dockyard sign`)")
        sys.exit(1)
    for item in checked:
        mark = "verified" if item.verdict.verified else "NOT verified"
        click.echo(f"{mark}: {item.where} {item.digest}: {item.verdict.reason}")
    sys.exit(0 if any(item.verdict.verified for item in checked) else 1)


# --- the built-in scanner's vulnerability database --------------------------------------------


@main.group()
def vulndb() -> None:
    """The OSV vulnerability database the built-in scanner matches against."""


class _ImportProgress:
    """Records read on stderr: one line rewritten in place on a terminal, else a line per
    ``every`` records."""

    every = 10_000

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.next_line = self.every

    def __call__(self, result: Any) -> None:
        line = (
            f"read {result.read} records: {result.inserted} new, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.skipped} skipped"
        )
        if self.tty:
            self.stream.write(f"\r{line}")
        elif result.read >= self.next_line:
            self.stream.write(line + "\n")
            self.next_line = (result.read // self.every + 1) * self.every
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@vulndb.command("import")
@click.argument("sources", nargs=-1, required=True)
@_store_options
def vulndb_import(
    sources: tuple[str, ...], config: Path | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Load OSV records from SOURCES: OSV JSON files (a record or a list of records) and zip
    files of them (OSV's per-ecosystem all.zip), as paths or http(s) URLs. A record is
    replaced only by a newer 'modified'; a record that cannot be read is skipped, counted
    and its reason shown. See docs/scanning.md."""
    from dockyard.scanner import vulndb as vdb

    settings = _ready(config, data_dir, database_url)
    progress = _ImportProgress()

    async def work(db: Database) -> list[tuple[str, Any]]:
        done: list[tuple[str, Any]] = []
        for source in sources:
            try:
                result = await vdb.import_records(db, vdb.iter_source(source), progress=progress)
            except vdb.SourceError as exc:
                progress.close()
                raise click.ClickException(str(exc)) from None
            progress.close()
            done.append((source, result))
        return done

    failed = False
    for source, result in _run(settings, work):
        click.echo(
            f"{source}: {result.read} records read, {result.inserted} new, {result.updated} "
            f"updated, {result.unchanged} unchanged, {result.skipped} skipped"
        )
        for reason in result.reasons:
            click.echo(f"  skipped {reason}")
        if result.skipped > len(result.reasons):
            click.echo(f"  ... and {result.skipped - len(result.reasons)} more skipped")
        failed = failed or (result.read > 0 and result.skipped == result.read)
    if failed:
        raise click.ClickException("no record of a source could be read")


@vulndb.command("status")
@_store_options
def vulndb_status(config: Path | None, data_dir: Path | None, database_url: str | None) -> None:
    """How many OSV records are stored, per ecosystem, and how fresh they are."""
    from dockyard.scanner import vulndb as vdb

    settings = _ready(config, data_dir, database_url)
    found = _run(settings, vdb.status)
    newest = found.newest_modified.isoformat() if found.newest_modified else "-"
    last = found.last_import.isoformat() if found.last_import else "never"
    click.echo(f"records: {found.records} ({found.affected} affected packages)")
    click.echo(f"newest record modified: {newest}")
    click.echo(f"last import: {last}")
    if found.ecosystems:
        _table([("ECOSYSTEM", "RECORDS"), *((eco, str(n)) for eco, n in found.ecosystems)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
