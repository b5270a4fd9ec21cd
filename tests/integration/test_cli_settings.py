"""dockyard.yml and /configurations agree: a setting given where it cannot take effect is
refused or reported, naming the place where it can be changed (issue 15)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.cli import main
from dockyard.db.engine import Database
from dockyard.system import config


async def test_a_start_time_setting_sent_to_configurations_names_the_settings_file(
    admin: httpx.AsyncClient,
) -> None:
    for key in ("upload_max_bytes", "log_level", "token_expiration_minutes"):
        refused = await admin.put("/api/v2.0/configurations", json={key: 5})
        assert refused.status_code == 400
        message = refused.json()["errors"][0]["message"]
        assert f"{key} is a start-time setting" in message
        assert f"dockyard.yml (or DOCKYARD_{key.upper()}) and restart" in message
    unknown = await admin.put("/api/v2.0/configurations", json={"no_such_item": 1})
    assert "not a configuration item" in unknown.json()["errors"][0]["message"]


class _FakeServer:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def serve(self) -> None:
        pass


@pytest.fixture
def keep_logging() -> Iterator[None]:
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
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_serve_reports_a_setting_overridden_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    import granian.server

    from dockyard.app import SERVE_SETTINGS_ENV

    for name in ("DOCKYARD_ADMIN_PASSWORD", "DOCKYARD_DATABASE_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(granian.server, "Server", _FakeServer)
    monkeypatch.setenv(SERVE_SETTINGS_ENV, "{}")
    runner = CliRunner()

    def scenario(url: str) -> None:
        args = ["serve", "--data-dir", str(tmp_path), "--port", str(_free_port())]
        if url:
            args += ["--database-url", url]
        given = {"DOCKYARD_TOKEN_EXPIRATION_MINUTES": "20"}
        first = runner.invoke(main, args, env=given)
        assert first.exit_code == 0, first.output
        assert "overridden" not in first.output

        async def change() -> None:
            db = Database(url or f"sqlite:///{tmp_path / 'dockyard.db'}")
            try:
                async with db.write() as session:
                    await config.update(session, {config.TOKEN_EXPIRATION: 45})
            finally:
                await db.dispose()

        asyncio.run(change())
        again = runner.invoke(main, args, env=given)
        assert again.exit_code == 0, again.output
        lines = [line for line in again.output.splitlines() if "overridden" in line]
        assert len(lines) == 1, again.output
        assert "token_expiration_minutes (20) is overridden by token_expiration (45)" in lines[0]
        assert "PUT /api/v2.0/configurations" in lines[0]
        # Not given at start: the run-time value is simply in force, nothing to report.
        assert "overridden" not in runner.invoke(main, args).output

    if backend == "sqlite":
        scenario("")
    else:
        with temporary_database(postgres_admin_url()) as url:
            scenario(url)
