"""Run podman the way the tests need it: no daemon, no system state.

Every call gets its own storage (``vfs``, which needs no kernel overlay support), run
directory and auth file under ``workdir``, cgroupfs and file events (no systemd), so a test
machine's own containers are never touched and nothing is left behind. ``pull`` accepts
any signature, whatever the machine's ``/etc/containers/policy.json`` says.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.commands import run_checked

DEFAULT_TIMEOUT = 300.0


class PodmanError(AssertionError):
    """podman exited non-zero where success was expected."""


@dataclass
class Podman:
    executable: str
    workdir: Path
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        auth = self.workdir / "auth.json"
        if not auth.exists():
            auth.write_text("{}")
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))

    @property
    def policy(self) -> Path:
        return self.workdir / "policy.json"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``podman ARGS`` with the isolated setup; with ``check``, fail loudly on error."""
        cmd = [
            self.executable,
            "--root",
            str(self.workdir / "storage"),
            "--runroot",
            str(self.workdir / "run"),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *args,
        ]
        env = {
            **os.environ,
            "REGISTRY_AUTH_FILE": str(self.workdir / "auth.json"),
            "XDG_RUNTIME_DIR": str(self.workdir / "xdg"),
        }
        return run_checked(cmd, env=env, timeout=self.timeout, check=check, error=PodmanError)

    def pull(self, reference: str, *extra: str) -> str:
        """Pull into this podman's storage; returns the image id podman prints."""
        args = ["pull", "-q", "--signature-policy", str(self.policy), *extra, reference]
        return self.run(*args).stdout.strip().splitlines()[-1]
