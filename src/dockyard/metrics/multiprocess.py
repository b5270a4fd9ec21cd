"""Request counters summed across Granian workers: ``prometheus-client``'s multiprocess mode.

``dockyard serve`` names a fresh directory in ``PROMETHEUS_MULTIPROC_DIR`` before Granian
starts its workers (``prepare_directory``); each worker's metric values then live in files
named by its pid, and a scrape answered by any worker sums them all. A worker that stops
removes its in-flight gauges (``worker_stopped``); one that died without doing so is found
at the next scrape (``forget_dead_workers``). Counters of a dead worker stay: they are
part of the totals, which must never go down.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE = re.compile(r"gauge_live\w*_(\d+)\.db")


def directory() -> Path | None:
    """The multiprocess directory of this process, or None when it counts alone."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def prepare_directory() -> tuple[Path, bool]:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for the workers about to start, emptied of any earlier
    run's files. Keeps a directory the operator named in it; else makes a temporary one.
    Returns it and whether it was made here (so the caller removes it at exit)."""
    given = directory()
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        for stale in given.glob("*.db"):
            stale.unlink(missing_ok=True)
        return given, False
    made = Path(tempfile.mkdtemp(prefix="dockyard-metrics-"))
    os.environ[ENV] = str(made)
    return made, True


def worker_stopped() -> None:
    """This process is stopping: its in-flight gauges leave the sums."""
    path = directory()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(path))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def forget_dead_workers(path: Path) -> list[int]:
    """Remove the in-flight gauges of workers that died without saying so (``kill -9``, a
    crash); Granian starts a new worker in its place. Returns their pids."""
    from prometheus_client import multiprocess

    dead: set[int] = set()
    for entry in path.glob("gauge_live*.db"):
        match = _LIVE_GAUGE.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)
