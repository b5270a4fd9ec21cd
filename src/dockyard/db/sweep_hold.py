"""Holding off garbage collection's sweep while a backup copies blobs.

A backup (``dockyard backup``, embedded default only: SQLite and the filesystem driver)
snapshots the database, then copies every blob the snapshot names. A sweep that claimed
and deleted one of those blobs in between would leave the backup without it, so the two
take turns through two ``flock`` files beside the SQLite database:

- the sweep, per batch, takes the *gate* shared, then the *lock* shared, and lets go of
  the gate; it keeps the lock from the batch's claim until the batch's bytes are gone;
- a backup takes the gate exclusive (no new batch may start), then the lock exclusive
  (it waits for the batches in flight to finish deleting), and keeps both until every
  blob is copied.

So a blob the snapshot shows live is not claimed until the copy is done, and a blob
claimed before the snapshot shows as ``deleting`` in it (the backup skips it). The gate
keeps a stream of overlapping batches from starving the backup. Both sides are one
machine (SQLite cannot be shared between machines); a process that dies releases its
locks with its file descriptors. With PostgreSQL nothing is held: ``dockyard backup``
refuses that deployment (docs/backup.md).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("dockyard.gc")

GATE_SUFFIX = ".sweep-gate"
LOCK_SUFFIX = ".sweep-lock"
_POLL_SECONDS = 0.1


class SweepTurn:
    """One batch's hold on the sweep lock; ``release()`` once its bytes are gone."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def sweep_turn(database_file: str | None) -> SweepTurn:
    """Wait until no backup holds the sweep off, then hold it open for one batch.

    ``database_file`` is the SQLite file (``None`` on PostgreSQL: nothing to hold)."""
    if database_file is None:
        return SweepTurn(None)
    gate = os.open(f"{database_file}{GATE_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(gate, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("garbage collection waits for a backup to finish copying blobs")
                    waited = True
                await asyncio.sleep(_POLL_SECONDS)
        lock = os.open(f"{database_file}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600)
        # Never blocks: a backup holds the lock exclusive only while it holds the gate.
        fcntl.flock(lock, fcntl.LOCK_SH)
        return SweepTurn(lock)
    finally:
        os.close(gate)


@contextmanager
def sweeps_held(database_file: str) -> Iterator[None]:
    """Hold garbage collection's sweep off (blocking; for the ``backup`` command): new
    batches wait at the gate, and this waits for the batches in flight to finish."""
    gate = os.open(f"{database_file}{GATE_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        lock = os.open(f"{database_file}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)
    finally:
        os.close(gate)
