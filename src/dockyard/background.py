"""A background flush loop for work queued in memory off the request path.

The audit log's pull recorder and the webhook event writer both queue events in
memory and write them in batches: every few seconds, at once when woken (a full
queue, an urgent event), and a last time when the process stops. ``Flusher``
is that loop; its owner keeps the queue and the ``flush`` that empties it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("dockyard")

CLOSE_SECONDS = 10.0


class Flusher:
    """Calls ``flush`` every ``interval`` seconds, or sooner when woken, on the running
    loop; ``close`` stops the loop and calls ``flush`` once more."""

    def __init__(self, flush: Callable[[], Awaitable[object]], interval: float, name: str) -> None:
        self._flush = flush
        self._interval = interval
        self._name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        """Make sure the loop runs (started lazily, by the first queued item)."""
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:  # no running loop: close() flushes what is queued
                self._task = None

    def wake(self) -> None:
        """Flush now rather than at the next tick."""
        self._wake.set()
        self.start()

    async def _run(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self._flush()

    async def close(self) -> None:
        """Stop the loop (waiting up to ``CLOSE_SECONDS``), then flush what is left."""
        self.closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, CLOSE_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("the %s failed", self._name)
        await self._flush()
