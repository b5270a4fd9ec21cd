"""Measure event-loop stalls of a real ``dockyard serve`` while something heavy runs.

A CPU-heavy request or job that runs on the server's event loop makes every other request
of the process wait, even ``/api/v2.0/ping``. ``PingWatch`` shows it from the outside: a
thread of the test process, with its own HTTP client, pings the server every 50 ms and
records how long each answer took::

    with DockyardServer() as server:
        with PingWatch(server.url) as watch:
            client.get(heavy_url)          # or: start a job and wait for it to end
        watch.assert_no_stall()            # every ping answered within 100 ms

    # or, for work that can be done afresh, judged on a second attempt if the first stalled:
    assert_no_stall_while(server.url, lambda attempt: client.get(heavy_url(attempt)))

Issue 13 sets the bound: while the worst case any role can set up runs, no ping waits more
than 100 ms. Use it for every CPU-heavy feature (matching rules over many tags, unpacking
archives, scanning, SBOM generation, signature verification).

It has to run against a real server process: in-process ASGI transport runs the request in
the test's own loop, where a stall looks different (or not at all).

On a shared, loaded machine a ping can be slow for reasons that have nothing to do with the
server, so ``baseline`` first measures the pings with nothing else running: when the machine
alone already answers slower than the bound, the judgement would be noise, and
``assert_no_stall`` says so (``pytest.skip``) rather than fail or pass by luck. And
``assert_no_stall_while`` runs fresh work a second time when the first attempt saw a slow
ping: a stall of the server's loop comes back every time the same work runs, while a
moment the loaded machine did not schedule the test or the server does not. Give it work
that is new each attempt (another artifact, another job), not an answer from a cache.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import httpx
import pytest

PING_PATH = "/api/v2.0/ping"
INTERVAL = 0.05
"""Seconds between pings (from the end of one answer to the next request)."""
LIMIT = 0.1
"""The issue's bound: no ping may wait longer, in seconds."""


@dataclass(frozen=True, slots=True)
class Ping:
    started: float
    """``time.monotonic()`` when the request went out."""
    seconds: float
    """How long the answer took (the timeout, when there was none)."""
    ok: bool


@dataclass
class PingWatch:
    """Pings ``base_url`` + ``/api/v2.0/ping`` every ``interval`` seconds from a thread while
    the ``with`` block runs; ``pings`` holds each answer's latency."""

    base_url: str
    interval: float = INTERVAL
    limit: float = LIMIT
    timeout: float = 60.0
    pings: list[Ping] = field(default_factory=list)
    baseline_pings: list[Ping] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # --- measuring -------------------------------------------------------------------------

    def baseline(self, seconds: float = 1.0) -> list[Ping]:
        """Ping for ``seconds`` with nothing else running: the machine's own latency."""
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            self._ping(client)  # the connection is opened once, not judged
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                self.baseline_pings.append(self._ping(client))
                time.sleep(self.interval)
        return self.baseline_pings

    def __enter__(self) -> PingWatch:
        if not self.baseline_pings:
            self.baseline()
        self._stop.clear()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(self.timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
            self._thread = None

    def _run(self, ready: threading.Event) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            self._ping(client)
            ready.set()
            while not self._stop.wait(self.interval):
                self.pings.append(self._ping(client))
            # one last ping, so that a stall that lasts to the end of the block is seen
            self.pings.append(self._ping(client))

    def _ping(self, client: httpx.Client) -> Ping:
        started = time.monotonic()
        try:
            ok = client.get(PING_PATH).status_code == 200
        except httpx.HTTPError:
            ok = False
        return Ping(started, time.monotonic() - started, ok)

    # --- judging -----------------------------------------------------------------------------

    @property
    def worst(self) -> float:
        return max((p.seconds for p in self.pings), default=0.0)

    def summary(self) -> str:
        def describe(pings: list[Ping]) -> str:
            if not pings:
                return "none"
            times = sorted(p.seconds * 1000 for p in pings)
            return (
                f"{len(times)} pings, median {statistics.median(times):.1f} ms, "
                f"worst {times[-1]:.1f} ms"
            )

        return f"baseline: {describe(self.baseline_pings)}; under load: {describe(self.pings)}"

    def stalls(self) -> list[Ping]:
        """Pings that waited past the limit, or got no answer."""
        return [p for p in self.pings if p.seconds > self.limit or not p.ok]

    def assert_no_stall(self) -> None:
        """Fail when the server stalled a ping past the limit; skip when the machine alone
        is too slow to judge (its quiet baseline already passed the limit).

        A ping goes out ``interval`` after the last answer, and one more when the block
        ends, so any stall longer than ``limit + interval`` makes some ping wait past the
        limit."""
        assert self.pings, "no ping was sent"
        stalls = self.stalls()
        if not stalls:
            return
        quiet_worst = max((p.seconds for p in self.baseline_pings), default=0.0)
        if quiet_worst > self.limit:
            pytest.skip(f"the machine is too loaded to judge stalls ({self.summary()})")
        worst = max(p.seconds for p in stalls)
        raise AssertionError(
            f"{len(stalls)} ping(s) waited past {self.limit * 1000:.0f} ms, the worst "
            f"{worst * 1000:.0f} ms: something held the server's event loop ({self.summary()})"
        )


def assert_no_stall_while(
    base_url: str, work: Callable[[int], object], *, attempts: int = 2
) -> PingWatch:
    """Run ``work(attempt)`` while a ``PingWatch`` pings ``base_url``, and judge it; when an
    attempt saw a slow ping, run fresh work again, up to ``attempts`` times: the server
    stalls only if every attempt did. The last watch, for figures."""
    watch = PingWatch(base_url)
    for attempt in range(attempts):
        baseline = watch.baseline_pings
        watch = PingWatch(base_url, baseline_pings=baseline)
        with watch:
            work(attempt)
        if not watch.stalls() or attempt + 1 == attempts:
            break
    watch.assert_no_stall()
    return watch
