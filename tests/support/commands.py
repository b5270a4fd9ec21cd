"""Run a command-line client for a test: output captured, no stdin, loud on failure."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence


def run_checked(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    check: bool,
    error: type[Exception],
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; with ``check``, a non-zero exit raises ``error`` quoting its output."""
    result = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and result.returncode != 0:
        raise error(
            f"{' '.join(cmd)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
