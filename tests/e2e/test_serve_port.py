"""``dockyard serve`` on a port that is already taken refuses to start.

The ASGI server binds with ``SO_REUSEPORT``: without the check a second server would
start quietly and the kernel would hand it part of the first one's connections, so a
token issued by one would fail on the other ("signature verification failed").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e


def test_a_second_server_on_a_taken_port_refuses_to_start(
    server: DockyardServer, tmp_path: Path
) -> None:
    other = tmp_path / "other-data"
    command = [sys.executable, "-m", "dockyard", "serve", "--port", str(server.port)]
    result = subprocess.run(
        [*command, "--data-dir", str(other)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"127.0.0.1:{server.port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(other.glob("*.db")), "nothing was migrated for the refused server"
    # The first server answers every connection alone: tokens it issues keep working.
    with server.client() as client:
        for _ in range(20):
            assert client.get("/v2/").status_code == 200
