"""The ``dockyard`` command: serve, migrate, and admin chores."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dockyard.db.engine import Database, explain_database_error
from dockyard.errors import AppError, ConfigurationError
from dockyard.logs import configure_logging
from dockyard.settings import Settings, load_settings
from dockyard.system.bootstrap import PRIVATE_UMASK, BootstrapReport, prepare, secure_data_dir

if TYPE_CHECKING:
    from dockyard.quota.service import UsageCheck


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


def _prepare(settings: Settings) -> BootstrapReport:
    """Migrate and create the first-start rows; a database that cannot be reached, logged
    in to or opened stops the command with one line saying what to check."""
    url = settings.effective_database_url

    async def run() -> BootstrapReport:
        db = Database(url)
        try:
            return await prepare(settings, db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    except Exception as exc:
        explained = explain_database_error(exc, url)
        if explained is None:
            raise
        raise click.ClickException(explained) from None


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


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Dockyard: an enterprise container registry."""
    # Every file and directory a command creates (database, blobs, uploads) is private
    # to this user; ASGI worker processes inherit the mask.
    previous = os.umask(PRIVATE_UMASK)
    ctx.call_on_close(lambda: os.umask(previous))


@main.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 5000).")
@data_dir_option
@config_option
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workers", type=int, help="ASGI worker processes (default 1).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config: Path | None, **options: Any) -> None:
    """Migrate the database if needed and serve the registry."""
    settings = _settings(config, log=True, **options)
    _ensure_port_free(settings.host, settings.port)
    _announce(_prepare(settings))

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
@config_option
@click.option(
    "--concurrency", type=click.IntRange(1, 64), help="Tasks run at once (default: job_workers)."
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def worker(config: Path | None, concurrency: int | None, **options: Any) -> None:
    """Run job workers only (GC, retention, webhooks…), sharing the database with
    ``serve``. Start as many as you like, on any machine; stop with Ctrl-C or SIGTERM
    (running tasks are handed back and retried elsewhere)."""
    import signal

    from dockyard.app import build_state, start_workers

    settings = _settings(config, log=True, **options)
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


@main.command()
@data_dir_option
@config_option
def migrate(config: Path | None, data_dir: Path | None) -> None:
    """Apply database migrations (``serve`` does this too)."""
    settings = _settings(config, data_dir=data_dir)
    report = _prepare(settings)
    click.echo(f"database at revision {report.migrated_to}")
    _announce(report)


@main.group()
def project() -> None:
    """Manage projects (until the REST API for projects lands)."""


@project.command("create")
@click.argument("name")
@click.option("--public", is_flag=True, help="Anyone, anonymous users included, may pull.")
@data_dir_option
@config_option
def project_create(name: str, public: bool, config: Path | None, data_dir: Path | None) -> None:
    """Create project NAME, owned by admin."""
    from dockyard.iam import repository as users
    from dockyard.projects.service import create_project

    settings = _settings(config, data_dir=data_dir)
    _announce(_prepare(settings))

    async def run() -> int:
        db = Database(settings.effective_database_url)
        try:
            async with db.write() as session:
                admin = await users.find_user_by_name(session, "admin")
                assert admin is not None
                created = await create_project(session, name, owner_id=admin.user_id, public=public)
                return created.project_id
        finally:
            await db.dispose()

    try:
        project_id = asyncio.run(run())
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created {'public' if public else 'private'} project {name} (id {project_id})")


@main.group()
def quota() -> None:
    """Check project storage quotas."""


_RECOMPUTE_BATCH = 500


@quota.command("recompute")
@click.option(
    "--project",
    "names",
    multiple=True,
    help="Check only this project (repeat for several); default every project.",
)
@click.option("--fix", is_flag=True, help="Store the recomputed usage where it differs.")
@data_dir_option
@config_option
def quota_recompute(
    names: tuple[str, ...], fix: bool, config: Path | None, data_dir: Path | None
) -> None:
    """Recompute every project's storage usage from its blobs and compare it with the
    stored number. Exits 0 when all agree, 1 when some differ (also with --fix, which
    then stores the recomputed numbers)."""
    from dockyard.quota import repository as quota_repo
    from dockyard.quota import service as quotas

    settings = _settings(config, data_dir=data_dir)
    _announce(_prepare(settings))

    async def run() -> list[quotas.UsageCheck]:
        db = Database(settings.effective_database_url)
        try:
            async with db.read() as session:
                projects = await quota_repo.live_projects(session, list(names) if names else None)
            unknown = sorted(set(names) - {name for _, name in projects})
            if unknown:
                raise click.BadParameter(
                    f"no such project: {', '.join(unknown)}", param_hint="--project"
                )
            checks: list[quotas.UsageCheck] = []
            for start in range(0, len(projects), _RECOMPUTE_BATCH):
                batch = projects[start : start + _RECOMPUTE_BATCH]
                async with db.read() as session:
                    checks += await quotas.check_usage(session, batch)
                if len(projects) > _RECOMPUTE_BATCH:
                    click.echo(f"checked {len(checks)} of {len(projects)} projects", err=True)
            if fix:
                for check in checks:
                    if not check.agrees:
                        async with db.write() as session:
                            await quotas.fix_usage(session, check.project_id)
            return checks
        finally:
            await db.dispose()

    try:
        checks = asyncio.run(run())
    except AppError as exc:
        raise click.ClickException(exc.message) from None
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
