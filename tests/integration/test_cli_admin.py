"""The admin commands: users, projects, password recovery while a server runs, their
audit rows, help and version, and progress of long work (issue 15, "Recovery and the CLI").

The CLI runs against the session's database (SQLite and PostgreSQL) while the in-process
app of the same database answers requests, as an operator's server would."""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import make_client

from dockyard import cli
from dockyard.audit.models import AuditLog
from dockyard.cli import main
from dockyard.http.state import AppState
from dockyard.settings import Settings

OPERATOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("DOCKYARD_ADMIN_PASSWORD", "DOCKYARD_DATABASE_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _dockyard(
    runner: CliRunner, settings: Settings, *args: str, stdin: str | None = None
) -> Result:
    """``dockyard ARGS`` on the session's database (in a thread: the CLI runs its own loop)."""
    where = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
    return await asyncio.to_thread(runner.invoke, main, [*args, *where], input=stdin)


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _refused(result: Result) -> str:
    """Refused on the CLI's own terms: exit 1, one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def _rows(output: str, first: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [first])


async def _audit(state: AppState, resource: str) -> list[tuple[str, str, str, str]]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(AuditLog).where(AuditLog.resource == resource).order_by(AuditLog.id)
        )
        return [
            (r.username, r.operation, r.resource_type, r.operation_description)
            for r in rows.scalars()
        ]


async def _results(state: AppState, resource: str) -> list[tuple[str, bool]]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(AuditLog).where(AuditLog.resource == resource).order_by(AuditLog.id)
        )
        return [(r.operation, r.operation_result) for r in rows.scalars()]


# --- help, version ----------------------------------------------------------------------


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_version_and_short_help_everywhere(runner: CliRunner) -> None:
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0
    assert version.output.startswith("dockyard, version ")
    assert version.output.split()[-1][0].isdigit()
    paths = list(_commands(main))
    assert {("user", "reset-password"), ("project", "delete"), ("user", "set-admin")} <= set(paths)
    for path in [(), *paths]:
        short = runner.invoke(main, [*path, "-h"])
        assert short.exit_code == 0, (path, short.output)
        assert short.output == runner.invoke(main, [*path, "--help"]).output
        assert "until the REST API" not in short.output


def test_every_option_has_help() -> None:
    for path in _commands(main):
        command: Any = main
        for part in path:
            command = command.commands[part]
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"dockyard {' '.join(path)} {param.opts[0]} has no help"


def test_serve_help_shows_how_to_reach_the_database(runner: CliRunner) -> None:
    text = runner.invoke(main, ["serve", "-h"]).output
    assert "--database-url" in text
    assert "postgresql://" in text
    assert "DOCKYARD_DATABASE_URL" in text
    assert "PEM certificate" in text


# --- projects ---------------------------------------------------------------------------


async def test_project_commands_are_audited(
    app: Starlette, state: AppState, settings: Settings, runner: CliRunner
) -> None:
    name = _name("clip")
    created = _ok(await _dockyard(runner, settings, "project", "create", name, "--public"))
    assert f"created public project {name}" in created
    listed = _ok(await _dockyard(runner, settings, "project", "list"))
    assert listed.splitlines()[0].split() == ["NAME", "ID", "PUBLIC", "REPOSITORIES", "OWNER"]
    row = _rows(listed, name)
    assert row[2:4] == ["yes", "0"]
    assert _rows(listed, "library")[0] == "library"

    again = _refused(await _dockyard(runner, settings, "project", "create", name))
    assert "already exists" in again
    bad = _refused(await _dockyard(runner, settings, "project", "create", "Bad_Name!"))
    assert "Traceback" not in bad

    # The API sees the project the CLI created, and its audit row names the operator.
    async with make_client(app, ("admin", "Harbor12345")) as admin:
        shown = await admin.get(f"/api/v2.0/projects/{name}")
        assert shown.status_code == 200
        assert shown.json()["metadata"]["public"] == "true"
        logs = await admin.get("/api/v2.0/audit-logs", params={"q": f"resource={name}"})
        assert [(e["username"], e["operation"]) for e in logs.json()] == [(OPERATOR, "create")]

    _ok(await _dockyard(runner, settings, "project", "delete", name))
    assert f"{name} " not in _ok(await _dockyard(runner, settings, "project", "list"))
    missing = _refused(await _dockyard(runner, settings, "project", "delete", name))
    assert "not found" in missing
    assert await _audit(state, name) == [
        (OPERATOR, "create", "project", "create project"),
        (OPERATOR, "delete", "project", "delete project"),
    ]


async def test_project_delete_refused_while_it_has_repositories(
    state: AppState, settings: Settings, runner: CliRunner, admin: Any
) -> None:
    name = _name("clirepo")
    _ok(await _dockyard(runner, settings, "project", "create", name))
    blob = b"{}"
    import hashlib

    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    pushed = await admin.post(f"/v2/{name}/app/blobs/uploads/?digest={digest}", content=blob)
    assert pushed.status_code == 201, pushed.text
    manifest = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}",'
        '"size":2},"layers":[]}'
    )
    put = await admin.put(
        f"/v2/{name}/app/manifests/1",
        content=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201, put.text
    refused = _refused(await _dockyard(runner, settings, "project", "delete", name))
    assert "repositor" in refused
    # The refusal is audited as a failed delete, as the API's is.
    assert await _results(state, name) == [("create", True), ("delete", False)]


# --- users ------------------------------------------------------------------------------


async def test_user_commands_are_audited(
    state: AppState, settings: Settings, runner: CliRunner
) -> None:
    name = _name("cliuser")
    created = await _dockyard(
        runner,
        settings,
        "user",
        "create",
        name,
        "--email",
        f"{name}@example.com",
        stdin="Initial123\n",
    )
    assert f"created user {name}" in _ok(created)
    listed = _ok(await _dockyard(runner, settings, "user", "list"))
    assert listed.splitlines()[0].split() == ["USERNAME", "ID", "EMAIL", "ADMIN"]
    assert _rows(listed, name)[2:] == [f"{name}@example.com", "no"]
    assert _rows(listed, "admin")[3] == "yes"

    assert "now a system administrator" in _ok(
        await _dockyard(runner, settings, "user", "set-admin", name)
    )
    assert _rows(_ok(await _dockyard(runner, settings, "user", "list")), name)[3] == "yes"
    assert "no longer" in _ok(
        await _dockyard(runner, settings, "user", "set-admin", name, "--unset")
    )
    assert _rows(_ok(await _dockyard(runner, settings, "user", "list")), name)[3] == "no"

    weak = await _dockyard(
        runner, settings, "user", "create", _name("weak"), "--email", "w@example.com", stdin="a\n"
    )
    assert "the password must have" in _refused(weak)
    empty = await _dockyard(
        runner, settings, "user", "create", _name("none"), "--email", "n@example.com", stdin=""
    )
    assert "stdin is empty" in _refused(empty)
    failed_before = (await _results(state, "admin")).count(("delete", False))
    builtin = _refused(await _dockyard(runner, settings, "user", "delete", "admin"))
    assert "cannot be deleted" in builtin
    assert (await _results(state, "admin")).count(("delete", False)) == failed_before + 1
    assert "does not exist" in _refused(
        await _dockyard(runner, settings, "user", "delete", "nobody-x")
    )

    _ok(await _dockyard(runner, settings, "user", "delete", name))
    assert name not in _ok(await _dockyard(runner, settings, "user", "list"))
    assert await _audit(state, name) == [
        (OPERATOR, "create", "user", "create user"),
        (OPERATOR, "update", "user", "set sysadmin_flag True"),
        (OPERATOR, "update", "user", "set sysadmin_flag False"),
        (OPERATOR, "delete", "user", "delete user"),
    ]


async def test_user_create_as_admin(state: AppState, settings: Settings, runner: CliRunner) -> None:
    name = _name("cliadm")
    created = await _dockyard(
        runner,
        settings,
        "user",
        "create",
        name,
        "--email",
        f"{name}@example.com",
        "--admin",
        stdin="Initial123\n",
    )
    assert f"created administrator {name}" in _ok(created)
    assert _rows(_ok(await _dockyard(runner, settings, "user", "list")), name)[3] == "yes"


async def test_reset_password_takes_effect_in_the_running_server(
    app: Starlette, state: AppState, settings: Settings, runner: CliRunner
) -> None:
    name = _name("lost")
    _ok(
        await _dockyard(
            runner,
            settings,
            "user",
            "create",
            name,
            "--email",
            f"{name}@example.com",
            stdin="Initial123\n",
        )
    )
    async with make_client(app, (name, "Initial123")) as old:
        # Logged in once: the server has verified (and remembers) this password.
        assert (await old.get("/api/v2.0/users/current")).status_code == 200
        grant = await old.post(
            "/service/token",
            data={
                "grant_type": "password",
                "username": name,
                "password": "Initial123",
                "service": "dockyard",
                "access_type": "offline",
            },
        )
        assert grant.status_code == 200, grant.text
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": grant.json()["refresh_token"],
            "service": "dockyard",
        }
        weak = await _dockyard(runner, settings, "user", "reset-password", name, stdin="short\n")
        assert "the password must have" in _refused(weak)
        same = await _dockyard(
            runner, settings, "user", "reset-password", name, stdin="Initial123\n"
        )
        assert "same as the old one" in _refused(same)
        reset = await _dockyard(
            runner, settings, "user", "reset-password", name, stdin="Changed456\r\n"
        )
        assert f"password of {name} changed" in _ok(reset)
        assert (await old.get("/api/v2.0/users/current")).status_code == 401
        # A refresh token given for the old password is retired too.
        assert (await old.post("/service/token", data=refresh)).status_code == 401
    async with make_client(app, (name, "Changed456")) as new:
        assert (await new.get("/api/v2.0/users/current")).status_code == 200
    missing = await _dockyard(runner, settings, "user", "reset-password", "nobody-y", stdin="X\n")
    assert "does not exist" in _refused(missing)
    assert (OPERATOR, "update", "user", "change password") in await _audit(state, name)


async def test_reset_password_on_a_terminal_asks_twice(
    settings: Settings, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _name("tty")
    _ok(
        await _dockyard(
            runner,
            settings,
            "user",
            "create",
            name,
            "--email",
            f"{name}@example.com",
            stdin="Initial123\n",
        )
    )
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: True)
    mismatch_then_match = "Changed456\nOther4567\nChanged456\nChanged456\n"
    reset = await _dockyard(
        runner, settings, "user", "reset-password", name, stdin=mismatch_then_match
    )
    output = _ok(reset)
    assert "do not match" in output
    assert "Changed456" not in output  # hidden input is not echoed
    assert f"password of {name} changed" in output


# --- serve: an admin password set on an existing database --------------------------------


class _FakeServer:
    started = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def serve(self) -> None:
        _FakeServer.started += 1


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """``serve`` sets up logging to the runner's stderr; put the test process's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.usefixtures("keep_logging")
def test_serve_says_once_that_admin_password_was_ignored(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import granian.server

    from dockyard.app import SERVE_SETTINGS_ENV

    monkeypatch.setattr(granian.server, "Server", _FakeServer)
    monkeypatch.setenv(SERVE_SETTINGS_ENV, "{}")  # serve sets it for its workers
    args = ["serve", "--data-dir", str(tmp_path), "--port", str(_free_port())]
    first = runner.invoke(main, args, env={"DOCKYARD_ADMIN_PASSWORD": "Chosen12345"})
    assert first.exit_code == 0, first.output
    assert "ignored" not in first.output
    again = runner.invoke(main, args, env={"DOCKYARD_ADMIN_PASSWORD": "Other12345"})
    assert again.exit_code == 0, again.output
    warnings = [line for line in again.output.splitlines() if "was ignored" in line]
    assert len(warnings) == 1, again.output
    assert "dockyard user reset-password admin" in warnings[0]
    unset = runner.invoke(main, args)
    assert unset.exit_code == 0
    assert "ignored" not in unset.output
    assert _FakeServer.started == 3


# --- progress of long work ----------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    stream = _Stream(tty=True)
    progress = cli._Progress("checked", "projects", 3, stream)
    for done in (1, 2, 3):
        progress.update(done)
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert text.endswith("checked 3 of 3 projects (100%)\n")
    assert text.count("\n") == 1


def test_progress_writes_periodic_lines_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 11.0, 12.0, 13.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    stream = _Stream(tty=False)
    progress = cli._Progress("checked", "projects", 4, stream)
    for done in (1, 2, 3, 4):
        progress.update(done)
    assert stream.getvalue().splitlines() == [
        "checked 2 of 4 projects (11 s)",
        "checked 4 of 4 projects (13 s)",
    ]
    quiet = _Stream(tty=False)
    monkeypatch.setattr(cli.time, "monotonic", lambda: 0.0)
    short = cli._Progress("checked", "projects", 1, quiet)
    short.update(1)
    assert quiet.getvalue() == ""  # quick work says nothing
