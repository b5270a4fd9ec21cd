"""The ``dockyard`` command: serve, migrate, and admin chores."""

from __future__ import annotations

import asyncio
import errno
import getpass
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from dockyard.db.engine import Database, explain_database_error
from dockyard.errors import AppError, ConfigurationError
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
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    except click.ClickException:
        raise
    except Exception as exc:
        explained = explain_database_error(exc, url)
        if explained is None:
            raise
        raise click.ClickException(explained) from None


def _check_storage(settings: Settings) -> None:
    """Ask an object store once now, so a missing bucket or refused credentials stop
    the command with one line (not a traceback in each server worker's start)."""
    if settings.storage_driver == "filesystem":
        return
    from dockyard.app import open_storage

    # In a child process: the object store client's runtime threads, once started here,
    # would not exist in the server's forked workers, whose first store request would
    # then wait forever (the server never answered).
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit
        os.close(read)
        code = 0
        try:
            asyncio.run(open_storage(settings))
        except ConfigurationError as exc:
            os.write(write, exc.message.encode())
            code = 1
        except BaseException as exc:
            os.write(write, f"cannot reach the object store: {type(exc).__name__}: {exc}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        message = answer.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise click.ClickException(message or "the object store check failed")


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
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log messages written to stderr (default info).",
)
def serve(config: Path | None, **options: Any) -> None:
    """Migrate the database if needed and serve the registry."""
    settings = _settings(config, log=True, **options)
    _ensure_port_free(settings.host, settings.port)
    _check_storage(settings)
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

    settings = _settings(config, log=True, **options)
    _check_storage(settings)
    _announce(_prepare(settings))

    async def run() -> None:
        state = await build_state(settings)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
