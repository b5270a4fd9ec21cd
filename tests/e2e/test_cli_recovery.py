"""Password recovery beside a running server process (issue 15): ``dockyard user
reset-password`` takes effect at once in the server, and a restart with
DOCKYARD_ADMIN_PASSWORD on the existing database says once that it was ignored."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e


def _cli(server: DockyardServer, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args, "--data-dir", str(server.data_dir)],
        env=server.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _status(server: DockyardServer, auth: tuple[str, str]) -> int:
    with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
        return client.get("/api/v2.0/users/current").status_code


def test_reset_password_beside_a_running_server(server: DockyardServer) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    created = _cli(
        server, "user", "create", name, "--email", f"{name}@example.com", stdin="Old12345\n"
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert _status(server, (name, "Old12345")) == 200
    reset = _cli(server, "user", "reset-password", name, stdin="New12345\n")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert f"password of {name} changed" in reset.stdout
    assert _status(server, (name, "Old12345")) == 401
    assert _status(server, (name, "New12345")) == 200


def test_restart_with_admin_password_says_once_it_was_ignored(server: DockyardServer) -> None:
    offset = server.log_offset()
    server.restart()
    lines = [line for line in server.output_since(offset).splitlines() if "was ignored" in line]
    assert len(lines) == 1, server.output_since(offset)
    assert "dockyard user reset-password admin" in lines[0]
    assert _status(server, server.admin_auth) == 200  # the first password is still in force
