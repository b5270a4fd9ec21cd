"""``dockyard serve --file-read-threads``: the threads Granian reads blob files on for
pathsend downloads (its runtime blocking threads), passed through and nowhere else."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from dockyard.app import SERVE_SETTINGS_ENV
from dockyard.cli import main


class _RecordingServer:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.made.append(kwargs)

    def serve(self) -> None:
        # What the workers will rebuild their settings from, as they would read it.
        self.made[-1]["worker_settings"] = json.loads(os.environ[SERVE_SETTINGS_ENV])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(("flag", "expected"), [([], None), (["--file-read-threads", "1"], 1)])
def test_file_read_threads_reach_granian_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str], expected: int | None
) -> None:
    import granian.server

    for name in ("DOCKYARD_ADMIN_PASSWORD", "DOCKYARD_DATABASE_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(granian.server, "Server", _RecordingServer)
    monkeypatch.setenv(SERVE_SETTINGS_ENV, "{}")
    _RecordingServer.made.clear()
    args = ["serve", "--data-dir", str(tmp_path), "--port", str(_free_port()), *flag]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (made,) = _RecordingServer.made
    assert made["runtime_blocking_threads"] == expected
    assert "file_read_threads" not in made["worker_settings"]


def test_file_read_threads_refuses_zero(tmp_path: Path) -> None:
    args = ["serve", "--data-dir", str(tmp_path), "--file-read-threads", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--file-read-threads" in result.output
