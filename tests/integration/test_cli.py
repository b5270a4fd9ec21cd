"""The dockyard command: migrate, first-start password, project create, bad settings, a
database that cannot be used, and the modes of the files it creates."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.cli import main


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("DOCKYARD_ADMIN_PASSWORD", "DOCKYARD_DATABASE_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_first_migrate_prints_a_random_admin_password_once(
    runner: CliRunner, tmp_path: Path
) -> None:
    first = runner.invoke(main, ["migrate", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert "database migrated: empty -> " in first.output
    assert "created user 'admin' with password: " in first.output
    password = first.output.split("with password: ")[1].split()[0]
    assert len(password) >= 16
    again = runner.invoke(main, ["migrate", "--data-dir", str(tmp_path)])
    assert again.exit_code == 0
    assert "password" not in again.output
    assert (tmp_path / "dockyard.db").is_file()


def test_admin_password_from_environment(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main,
        ["migrate", "--data-dir", str(tmp_path)],
        env={"DOCKYARD_ADMIN_PASSWORD": "Chosen12345"},
    )
    assert result.exit_code == 0
    assert "password" not in result.output


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_project_create(runner: CliRunner, tmp_path: Path, backend: str) -> None:
    def run(*args: str, env: dict[str, str]) -> str:
        result = runner.invoke(main, [*args, "--data-dir", str(tmp_path)], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    def scenario(env: dict[str, str]) -> None:
        assert "created public project tools" in run(
            "project", "create", "tools", "--public", env=env
        )
        assert "created private project team-a" in run("project", "create", "team-a", env=env)
        again = runner.invoke(
            main, ["project", "create", "tools", "--data-dir", str(tmp_path)], env=env
        )
        assert again.exit_code != 0
        assert "already exists" in again.output
        bad = runner.invoke(
            main, ["project", "create", "Bad_Name!", "--data-dir", str(tmp_path)], env=env
        )
        assert bad.exit_code != 0
        assert "Traceback" not in bad.output

    env = {"DOCKYARD_ADMIN_PASSWORD": "Chosen12345"}
    if backend == "sqlite":
        scenario(env)
    else:
        with temporary_database(postgres_admin_url()) as url:
            scenario({**env, "DOCKYARD_DATABASE_URL": url})


def test_bad_settings_stop_with_a_clear_message(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "dockyard.yml"
    config.write_text("port: not-a-number\n")
    result = runner.invoke(main, ["migrate", "--config", str(config), "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "port" in result.output
    assert "Traceback" not in result.output
    unreachable = runner.invoke(
        main,
        ["migrate", "--data-dir", str(tmp_path)],
        env={
            "DOCKYARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        },
    )
    assert unreachable.exit_code != 0
    assert "database" in unreachable.output


# --- a database that cannot be used: one line saying what to check (issue 12) ------------


def _one_line_error(result: Result) -> str:
    """The command failed on its own terms (no exception escaped) with one line of output."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgresql://dockyard:s3cret@127.0.0.1:1/dockyard", "connection refused"),
        ("postgresql://dockyard:s3cret@127.0.0.1:99999/dockyard", "port 99999"),
        ("postgresql://dockyard:s3cret@name-that-does-not-resolve.invalid/x", "database host"),
        ("mysql://dockyard:s3cret@127.0.0.1/dockyard", "must be a sqlite:/// or postgresql://"),
        ("sqlitex:///dockyard.db", "unsupported scheme"),
        ("postgresql://dockyard:s3cret@127.0.0.1:notaport/x", "not a database URL"),
    ],
)
def test_a_database_url_that_cannot_work_stops_with_one_line(
    runner: CliRunner, tmp_path: Path, url: str, hint: str
) -> None:
    result = runner.invoke(
        main, ["migrate", "--data-dir", str(tmp_path)], env={"DOCKYARD_DATABASE_URL": url}
    )
    line = _one_line_error(result)
    assert hint in line
    assert "s3cret" not in line


def test_postgres_refusing_the_login_or_missing_the_database_stops_with_one_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    server = make_url(postgres_admin_url())
    no_role = server.set(username="no_such_role_dockyard", password="s3cret")
    result = runner.invoke(
        main,
        ["migrate", "--data-dir", str(tmp_path)],
        env={"DOCKYARD_DATABASE_URL": no_role.render_as_string(hide_password=False)},
    )
    line = _one_line_error(result)
    assert "refused the login of user 'no_such_role_dockyard'" in line
    assert "check the user in database_url" in line
    assert "s3cret" not in line

    no_db = server.set(database="no_such_database_dockyard")
    result = runner.invoke(
        main,
        ["migrate", "--data-dir", str(tmp_path)],
        env={"DOCKYARD_DATABASE_URL": no_db.render_as_string(hide_password=False)},
    )
    line = _one_line_error(result)
    assert "database 'no_such_database_dockyard' does not exist" in line


def test_a_sqlite_file_that_cannot_be_opened_stops_with_one_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    missing = runner.invoke(
        main,
        ["migrate", "--data-dir", str(tmp_path / "data")],
        env={"DOCKYARD_DATABASE_URL": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"},
    )
    assert "check that its directory exists" in _one_line_error(missing)
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("plain text, not SQLite\n" * 100)
    not_a_database.chmod(0o600)
    wrong = runner.invoke(
        main,
        ["migrate", "--data-dir", str(tmp_path / "data")],
        env={"DOCKYARD_DATABASE_URL": f"sqlite:///{not_a_database}"},
    )
    assert "is not a SQLite database" in _one_line_error(wrong)
    assert not_a_database.read_text().startswith("plain text")


# --- files private to the service (issue 13.4) -------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_migrate_creates_the_data_dir_and_database_private(
    runner: CliRunner, tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh" / "data"
    before = os.umask(0o022)
    try:
        result = runner.invoke(main, ["migrate", "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output
        assert os.umask(0o022) == 0o022, "the command must give the caller its umask back"
    finally:
        os.umask(before)
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "dockyard.db") == 0o600
    for path in data_dir.rglob("*"):
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_an_open_data_dir_is_tightened_with_a_warning(
    runner: CliRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    assert runner.invoke(main, ["migrate", "--data-dir", str(data_dir)]).exit_code == 0
    data_dir.chmod(0o755)
    (data_dir / "dockyard.db").chmod(0o644)
    outside = tmp_path / "elsewhere.db"
    with caplog.at_level(logging.WARNING, logger="dockyard.system"):
        again = runner.invoke(main, ["migrate", "--data-dir", str(data_dir)])
        assert again.exit_code == 0, again.output
        assert _mode(data_dir) == 0o700
        assert _mode(data_dir / "dockyard.db") == 0o600
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(f"{data_dir} was open to other users (mode 0755)" in w for w in warnings)
        assert any("dockyard.db was open to other users (mode 0644)" in w for w in warnings)

        # A database the operator keeps elsewhere is warned about, never changed.
        outside_url = {"DOCKYARD_DATABASE_URL": f"sqlite:///{outside}"}
        created = runner.invoke(main, ["migrate", "--data-dir", str(data_dir)], env=outside_url)
        assert created.exit_code == 0, created.output
        assert _mode(outside) == 0o600  # created by Dockyard: private from the start
        outside.chmod(0o644)
        caplog.clear()
        assert (
            runner.invoke(main, ["migrate", "--data-dir", str(data_dir)], env=outside_url).exit_code
            == 0
        )
        assert _mode(outside) == 0o644
        assert any(
            f"{outside} is open to other users (mode 0644)" in r.getMessage()
            for r in caplog.records
        )
