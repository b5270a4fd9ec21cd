"""Forwarding audit events to a syslog endpoint: after their transaction commits, off the
request path, never failing or slowing the change they describe.

``after_commit(session, endpoint, events)`` holds a change's events in its session;
only when that session's transaction commits are they handed to the process's
``SyslogForwarder`` (a rolled-back change forwards nothing). The forwarder keeps
them in a bounded in-memory queue and a background task sends them in order,
over TCP (octet-counted frames, one connection kept open and reopened after
errors with a growing pause) or UDP (a datagram each). A request only ever
appends to a list.

What is lost, on purpose, rather than slowing the registry down: events beyond
``MAX_QUEUED`` while the endpoint is slow or down (dropped, with a warning),
events for an endpoint that is down when the configuration has since moved to
another one, and what is still queued ``CLOSE_SECONDS`` after shutdown began.
Delivery is at least once while the endpoint is up: a batch whose write failed
is sent again on the next connection.

Each app's forwarder is found from a session through the app's database engines
(``attach``), so two apps in one process keep theirs apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from dockyard.audit import syslog
from dockyard.audit.syslog import Endpoint, SyslogEvent
from dockyard.db.engine import Database, PerDatabase

log = logging.getLogger("dockyard.audit.forwarding")

MAX_QUEUED = 10_000
"""Events held while the endpoint is slow or down; newer ones are dropped beyond this."""
BATCH = 200
CONNECT_SECONDS = 3.0
SEND_SECONDS = 5.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
CLOSE_SECONDS = 3.0
_WARN_EVERY_SECONDS = 30.0
_PENDING = "dockyard_audit_forward"

_FORWARDERS: PerDatabase[SyslogForwarder] = PerDatabase()
"""Each app's forwarder by its database engines (weak: gone with the engine)."""


class _Datagrams(asyncio.DatagramProtocol):
    """A connected UDP socket's protocol: errors (ICMP port unreachable) are only noted."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        self.error = exc


class SyslogForwarder:
    """One process's queue of committed audit events and the task that sends them."""

    def __init__(self, *, max_queued: int = MAX_QUEUED, hostname: str | None = None) -> None:
        self.max_queued = max_queued
        self.hostname = hostname or socket.gethostname() or "-"
        self.procid = os.getpid()
        self.sent = 0
        self.dropped = 0
        self._queue: deque[tuple[Endpoint, SyslogEvent]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._endpoint: Endpoint | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._datagrams: asyncio.DatagramTransport | None = None
        self._last_warning = {"drop": 0.0, "down": 0.0}

    # --- taking events (called after a commit; must never block nor raise) ---------------

    def submit(self, endpoint: Endpoint, events: Iterable[SyslogEvent]) -> None:
        if self._closed:
            return
        dropped = 0
        for item in events:
            if len(self._queue) >= self.max_queued and self._queue[0][0] != endpoint:
                # Full of events for an endpoint the configuration has left: let them go.
                self._discard_other(endpoint)
            if len(self._queue) >= self.max_queued:
                dropped += 1
            else:
                self._queue.append((endpoint, item))
        if dropped:
            self._drop(dropped, f"the queue is full ({self.max_queued} events)")
        self._wake.set()
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:  # no running loop: nothing can send; close() drops them
                self._task = None

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._last_warning["drop"] >= _WARN_EVERY_SECONDS:
            self._last_warning["drop"] = now
            log.warning(
                "dropped %d audit events not forwarded to syslog: %s (%d dropped so far)",
                count,
                why,
                self.dropped,
            )

    @property
    def queued(self) -> int:
        return len(self._queue)

    # --- sending ---------------------------------------------------------------------------

    async def _run(self) -> None:
        pause = RETRY_FIRST_SECONDS
        while not self._closed or self._queue:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            endpoint = self._queue[0][0]
            batch: list[SyslogEvent] = []
            for target, item in self._queue:
                if target != endpoint or len(batch) >= BATCH:
                    break
                batch.append(item)
            try:
                await self._send(endpoint, batch)
            except Exception as exc:  # any transport error: reconnect later
                await self._disconnect()
                if self._discard_stale(endpoint):
                    continue
                if self._closed:
                    self._drop(len(self._queue), f"shutting down; {endpoint} failed: {exc}")
                    self._queue.clear()
                    return
                self._warn_down(endpoint, exc)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
                pause = min(RETRY_MAX_SECONDS, pause * 2)
                continue
            pause = RETRY_FIRST_SECONDS
            self.sent += len(batch)
            # The sent events are still the queue's head, unless a change of endpoint
            # let them go meanwhile (``_discard_other``): pop only those.
            for item in batch:
                if not self._queue or self._queue[0][1] is not item:
                    break
                self._queue.popleft()

    def _discard_stale(self, endpoint: Endpoint) -> bool:
        """When events for another endpoint are queued after ``endpoint``'s (the
        configuration moved on), drop the failing endpoint's; True if any were."""
        newest = self._queue[-1][0] if self._queue else endpoint
        if newest == endpoint:
            return False
        self._discard_other(newest)
        return True

    def _discard_other(self, endpoint: Endpoint) -> None:
        """Drop the queued events of every endpoint but ``endpoint`` (the one now set)."""
        kept = deque(entry for entry in self._queue if entry[0] == endpoint)
        self._drop(len(self._queue) - len(kept), f"the endpoint is now {endpoint}")
        self._queue = kept

    def _warn_down(self, endpoint: Endpoint, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning["down"] >= _WARN_EVERY_SECONDS:
            self._last_warning["down"] = now
            log.warning(
                "cannot forward audit events to %s (%s); %d queued, retrying",
                endpoint,
                exc or type(exc).__name__,
                len(self._queue),
            )

    async def _send(self, endpoint: Endpoint, batch: list[SyslogEvent]) -> None:
        if endpoint != self._endpoint or not self._connected():
            await self._disconnect()
            await self._connect(endpoint)
        if endpoint.transport == syslog.UDP:
            assert self._datagrams is not None
            for item in batch:
                self._datagrams.sendto(self._message(item, syslog.UDP_MAX_BYTES))
            return
        assert self._writer is not None
        self._writer.write(
            b"".join(syslog.frame_octet_counted(self._message(item, None)) for item in batch)
        )
        await asyncio.wait_for(self._writer.drain(), SEND_SECONDS)

    def _message(self, item: SyslogEvent, max_bytes: int | None) -> bytes:
        return syslog.format_message(
            item, hostname=self.hostname, procid=self.procid, max_bytes=max_bytes
        )

    def _connected(self) -> bool:
        if self._datagrams is not None:
            return not self._datagrams.is_closing()
        if self._writer is None or self._reader is None:
            return False
        # The server closing its side shows as end of file: reconnect before writing.
        return not self._writer.is_closing() and not self._reader.at_eof()

    async def _connect(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        if endpoint.transport == syslog.UDP:
            transport, _ = await asyncio.wait_for(
                loop.create_datagram_endpoint(
                    _Datagrams, remote_addr=(endpoint.host, endpoint.port)
                ),
                CONNECT_SECONDS,
            )
            self._datagrams = transport
        else:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(endpoint.host, endpoint.port), CONNECT_SECONDS
            )
        self._endpoint = endpoint

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        datagrams, self._datagrams = self._datagrams, None
        self._endpoint = None
        if datagrams is not None:
            datagrams.close()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def close(self, within: float = CLOSE_SECONDS) -> None:
        """Stop taking events, send what is queued for up to ``within`` seconds, then
        drop the rest and close the connection."""
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, within)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("the audit forwarder failed")
        if self._queue:
            self._drop(len(self._queue), "shutting down")
            self._queue.clear()
        await self._disconnect()


# --- finding the forwarder from a session, and handing it committed events ---------------


def attach(db: Database, forwarder: SyslogForwarder) -> bool:
    """Make ``forwarder`` the one for sessions of ``db``; False when another is attached."""
    return _FORWARDERS.attach(db, forwarder)


def detach(db: Database, forwarder: SyslogForwarder) -> None:
    _FORWARDERS.detach(db, forwarder)


def after_commit(session: AsyncSession, endpoint: Endpoint, events: Iterable[SyslogEvent]) -> None:
    """Forward ``events`` once ``session``'s transaction commits (nothing if it rolls back).

    A process without a forwarder (a command-line tool) forwards nothing."""
    forwarder = _FORWARDERS.find(session.get_bind())
    if forwarder is None:
        return
    sync = session.sync_session
    pending: list[tuple[Endpoint, SyslogEvent]] | None = sync.info.get(_PENDING)
    if pending is None:
        pending = sync.info[_PENDING] = []
        event.listen(sync, "after_commit", partial(_committed, forwarder))
        event.listen(sync, "after_rollback", _rolled_back)
    pending.extend((endpoint, item) for item in events)


def _committed(forwarder: SyslogForwarder, session: Session, *_: Any) -> None:
    pending: list[tuple[Endpoint, SyslogEvent]] = session.info.pop(_PENDING, [])
    by_endpoint: dict[Endpoint, list[SyslogEvent]] = {}
    for endpoint, item in pending:
        by_endpoint.setdefault(endpoint, []).append(item)
    for endpoint, items in by_endpoint.items():
        forwarder.submit(endpoint, items)


def _rolled_back(session: Session, *_: Any) -> None:
    session.info.pop(_PENDING, None)
