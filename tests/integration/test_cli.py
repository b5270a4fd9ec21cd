"""The dockyard command: migrate, first-start password, project create, bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
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
