"""Run skopeo the way the tests need it: isolated auth file, accept-anything signature policy."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise SkopeoError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)
