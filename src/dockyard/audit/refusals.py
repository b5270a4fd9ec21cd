"""Refused operations waiting to be written to the audit log, bounded. Pure (no I/O).

A refusal (a failed login, a permission denied, an immutable tag, a full quota)
is recorded off the request path: the request only adds it to a ``RefusalQueue``
and the audit hooks' background writer drains the queue in batches. A flood of
refusals — an anonymous client guessing passwords, a script pushing to a project
it may not — must neither slow requests nor grow the table without limit, nor
hide another client's refusals, so:

- **Repeats are one row.** A refusal equal to one still waiting (same actor,
  address, operation, resource and reason) only counts; its row says
  ``(N times)``, at the time of the first.
- **Each source address has its own budget.** Each distinct refusal spends one
  token of its address's bucket (``SOURCE_BURST`` tokens, refilled at
  ``SOURCE_ROWS_PER_SECOND``), so a flood from one address spends only that
  address's budget and a refusal from another address is still a row of its
  own. The buckets of at most ``MAX_TRACKED_SOURCES`` addresses are kept, the
  least recently seen forgotten first (a forgotten address starts full again).
- **A global ceiling bounds the rest.** A new row also spends a token of one
  bucket shared by all addresses (``BURST`` tokens, refilled at
  ``ROWS_PER_SECOND``), so many addresses at once (a botnet) cannot grow the
  table faster than that. A row is written only when both buckets have a token;
  neither is spent otherwise.
- **The rest is counted.** Refusals without a token are only counted (by
  source address, the ``MAX_SOURCES`` busiest kept), and at most once every
  ``SUMMARY_SECONDS`` one row says how many were not recorded one by one and
  where most came from.

So a flood writes at most ``BURST`` rows at once and ``ROWS_PER_SECOND`` rows
a second after that (plus one summary a ``SUMMARY_SECONDS``), whatever the
number of addresses; the queue never holds more than ``BURST`` plus a flush
interval's refill of rows, and the buckets kept are at most
``MAX_TRACKED_SOURCES``. It takes more than ``ROWS_PER_SECOND /
SOURCE_ROWS_PER_SECOND`` addresses flooding together to spend the global
budget and hide another address's refusals in the summary.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from dockyard.audit.events import Actor, AuditEvent

BURST = 100
"""Rows all addresses together may write at once (the global bucket's size)."""
ROWS_PER_SECOND = 5.0
"""The global bucket's refill: the most rows a second a flood can add, long-run."""
SOURCE_BURST = 20
"""Rows one source address may write at once."""
SOURCE_ROWS_PER_SECOND = 0.2
"""One address's refill: a row every five seconds once its burst is spent."""
MAX_TRACKED_SOURCES = 1024
"""Addresses whose buckets are kept (least recently seen forgotten first)."""
SUMMARY_SECONDS = 60.0
MAX_SOURCES = 16
"""Addresses counted by name in the summary (the first ones seen)."""

Refusal = tuple[Actor, AuditEvent, datetime]


@dataclass(slots=True)
class _Waiting:
    first: datetime
    count: int = 1


@dataclass(slots=True)
class _Bucket:
    """A token bucket: ``tokens`` as of ``refilled`` (a clock reading)."""

    tokens: float
    refilled: float

    def refill(self, now: float, size: float, rate: float) -> None:
        self.tokens = min(size, self.tokens + (now - self.refilled) * rate)
        self.refilled = now


class RefusalQueue:
    """Refusals waiting for the background writer, coalesced and rate-limited."""

    def __init__(
        self,
        *,
        burst: int = BURST,
        rows_per_second: float = ROWS_PER_SECOND,
        source_burst: int = SOURCE_BURST,
        source_rows_per_second: float = SOURCE_ROWS_PER_SECOND,
        max_tracked_sources: int = MAX_TRACKED_SOURCES,
        summary_seconds: float = SUMMARY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``burst`` and ``rows_per_second`` are the global ceiling, ``source_*``
        one address's budget."""
        self._burst = burst
        self._rate = rows_per_second
        self._source_burst = source_burst
        self._source_rate = source_rows_per_second
        self._max_tracked = max(1, max_tracked_sources)
        self._summary_seconds = summary_seconds
        self._clock = clock
        self._global = _Bucket(float(burst), clock())
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()
        self._waiting: dict[tuple[Actor, AuditEvent], _Waiting] = {}
        self._dropped = 0
        self._dropped_first: Refusal | None = None
        self._dropped_sources: Counter[str] = Counter()
        self._summarised = clock()

    def __len__(self) -> int:
        """Rows waiting (a summary still to come counts as one)."""
        return len(self._waiting) + (1 if self._dropped else 0)

    def add(self, actor: Actor, event: AuditEvent, when: datetime) -> None:
        """Queue one refusal (``event.succeeded`` is taken to be False). Constant time."""
        key = (actor, event if not event.succeeded else replace(event, succeeded=False))
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.count += 1
            return
        if self._take_token(actor.source_ip):
            self._waiting[key] = _Waiting(when)
            return
        self._dropped += 1
        if self._dropped_first is None:
            self._dropped_first = (actor, key[1], when)
        source = actor.source_ip
        if source in self._dropped_sources or len(self._dropped_sources) < MAX_SOURCES:
            self._dropped_sources[source] += 1

    def _take_token(self, source: str) -> bool:
        """Spend a token of ``source``'s bucket and one of the global bucket, or
        neither when either is empty."""
        now = self._clock()
        bucket = self._sources.get(source)
        if bucket is None:
            bucket = self._sources[source] = _Bucket(float(self._source_burst), now)
            if len(self._sources) > self._max_tracked:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
            bucket.refill(now, self._source_burst, self._source_rate)
        self._global.refill(now, self._burst, self._rate)
        if bucket.tokens < 1 or self._global.tokens < 1:
            return False
        bucket.tokens -= 1
        self._global.tokens -= 1
        return True

    def drain(self, *, final: bool = False) -> list[Refusal]:
        """The rows to write now, oldest first; empties the queue. The summary of the
        refusals not recorded one by one comes once ``SUMMARY_SECONDS`` have passed
        since the last one (or at once when ``final``)."""
        rows = [
            (actor, _counted(event, waiting.count), waiting.first)
            for (actor, event), waiting in self._waiting.items()
        ]
        self._waiting = {}
        now = self._clock()
        if self._dropped and (final or now - self._summarised >= self._summary_seconds):
            rows.append(self._summary())
            self._summarised = now
        return rows

    def _summary(self) -> Refusal:
        assert self._dropped_first is not None
        _, first_event, first_time = self._dropped_first
        source, from_source = self._dropped_sources.most_common(1)[0]
        description = (
            f"refused: {self._dropped} more refused requests were not recorded one by one "
            f"(more than {self._source_rate:g} a second from one address or "
            f"{self._rate:g} in all); {from_source} of them from {source}"
        )
        event = AuditEvent(
            first_event.operation,
            first_event.resource_type,
            "(many)",
            0,
            description,
            succeeded=False,
        )
        self._dropped = 0
        self._dropped_first = None
        self._dropped_sources = Counter()
        return (Actor("(many)", source), event, first_time)


def _counted(event: AuditEvent, count: int) -> AuditEvent:
    if count == 1:
        return event
    return replace(event, description=f"{event.description} ({count} times)")
