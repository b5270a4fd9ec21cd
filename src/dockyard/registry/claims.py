"""Who holds an upload's claim, and whether that process still exists.

A request that appends to an upload claims it (``blob_upload.busy_until``, see
docs/architecture.md, "Upload lifecycle") and records its process as the
claim's ``holder``. A server killed mid-chunk never releases its claims; a
request that finds a claim whose holder is provably gone takes it over at once
instead of waiting for the lease to end.

A holder is ``<place>/<pid>/<process start time>``, the place a short hash of
the host name, the boot id and the pid namespace. Only a holder of this very
place can be judged: there, it is gone when no process with that pid and start
time runs (a pid reused by another process, common in containers, does not keep
a dead holder alive; a zombie does not either). A claim taken anywhere else —
another node, another container with the same host name, this host before a
reboot — cannot be judged safely and waits for its lease. Where ``/proc`` is
missing the start time is unknown, and a live pid counts as the holder.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket

__all__ = ["holder_is_gone", "this_process"]

_SEPARATOR = "/"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None when it does not run."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "-"
    # Fields 3 (state) and 22 (start time); the command name (field 2) may hold spaces,
    # so count after its ")". A zombie (killed, not yet reaped: a container's init may
    # never reap it) runs no more.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields and fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode() if len(fields) > 19 else "-"


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"


@functools.cache
def _place() -> str:
    """Where pids mean the same thing — host name, boot, pid namespace — as a short key
    (the holder column is 128 characters; a host name alone may take 64)."""
    where = "\n".join((socket.gethostname(), _boot_id(), _pid_namespace()))
    return hashlib.sha256(where.encode()).hexdigest()[:16]


@functools.cache
def _identity(pid: int) -> str:
    return _SEPARATOR.join((_place(), str(pid), _start_time(pid) or "-"))


def this_process() -> str:
    """This process's holder id (recomputed after a fork: the pid is part of the key)."""
    return _identity(os.getpid())


def holder_is_gone(holder: str | None) -> bool:
    """True only when ``holder`` certainly names no running process."""
    if not holder:
        return False
    parts = holder.split(_SEPARATOR)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    if parts[0] != _place():
        return False  # pids elsewhere cannot be checked from here: the lease decides
    pid, started = int(parts[1]), parts[2]
    if pid == os.getpid():
        return holder != this_process()
    if started == "-":
        return not _pid_runs(pid)
    now = _start_time(pid)
    if now is None:
        return True
    return now not in ("-", started)
