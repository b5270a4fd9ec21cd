"""A small filesystem of its own for disk-full tests: a tmpfs mounted for the test.

Mounting needs root (CI runs as root); where it is impossible the test is skipped with the
reason printed, so a skipped disk-full test is never silent.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_filesystem(size: int) -> Iterator[Path]:
    """Mount a ``size``-byte tmpfs on a fresh directory; unmount and remove it afterwards."""
    where = Path(tempfile.mkdtemp(prefix="dockyard-small-fs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        where.rmdir()
        reason = (
            "cannot mount a small tmpfs for the disk-full tests (needs root): "
            f"{mounted.stderr.strip() or mounted.returncode}"
        )
        print(reason)  # shown in CI logs as well as with -rs
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()
