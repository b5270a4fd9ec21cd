"""Run skopeo the way the tests need it: isolated auth file, accept-anything signature policy."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.commands import run_checked

DEFAULT_TIMEOUT = 300.0


class SkopeoError(AssertionError):
    """skopeo exited non-zero where success was expected."""


@dataclass
class Skopeo:
    executable: str
    workdir: Path
    timeout: float = DEFAULT_TIMEOUT

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``skopeo --insecure-policy ARGS``; with ``check``, fail loudly on a non-zero exit."""
        cmd = [self.executable, "--insecure-policy", *args]
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(self.workdir / "auth.json")}
        return run_checked(cmd, env=env, timeout=self.timeout, check=check, error=SkopeoError)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)
