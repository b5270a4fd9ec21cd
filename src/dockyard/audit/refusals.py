"""Refused operations waiting to be written to the audit log, bounded. Pure (no I/O).

A refusal (a failed login, a permission denied, an immutable tag, a full quota)
is recorded off the request path: the request only adds it to a ``RefusalQueue``
and the audit hooks' background writer drains the queue in batches. A flood of
refusals — an anonymous client guessing passwords, a script pushing to a project
it may not — must neither slow requests nor grow the table without limit, so:

- **Repeats are one row.** A refusal equal to one still waiting (same actor,
  address, operation, resource and reason) only counts; its row says
  ``(N times)``, at the time of the first.
- **New rows are rate-limited.** Each distinct refusal spends one token of a
  bucket holding ``BURST`` tokens, refilled at ``ROWS_PER_SECOND``. Refusals
  that find the bucket empty are only counted (by source address, the
  ``MAX_SOURCES`` busiest kept), and at most once every ``SUMMARY_SECONDS`` one
  row says how many were not recorded one by one and where most came from.

So a flood writes at most ``BURST`` rows at once and ``ROWS_PER_SECOND`` rows
a second after that (plus one summary a ``SUMMARY_SECONDS``), and the queue
never holds more than ``BURST`` plus a flush interval's refill of rows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from dockyard.audit.events import Actor, AuditEvent

BURST = 100
ROWS_PER_SECOND = 1.0
SUMMARY_SECONDS = 60.0
MAX_SOURCES = 16

Refusal = tuple[Actor, AuditEvent, datetime]


@dataclass(slots=True)
class _Waiting:
    first: datetime
    count: int = 1


class RefusalQueue:
    """Refusals waiting for the background writer, coalesced and rate-limited."""

    def __init__(
        self,
        *,
        burst: int = BURST,
        rows_per_second: float = ROWS_PER_SECOND,
        summary_seconds: float = SUMMARY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._rate = rows_per_second
        self._summary_seconds = summary_seconds
        self._clock = clock
        self._tokens = float(burst)
        self._refilled = clock()
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
        if self._take_token():
            self._waiting[key] = _Waiting(when)
            return
        self._dropped += 1
        if self._dropped_first is None:
            self._dropped_first = (actor, key[1], when)
        source = actor.source_ip
        if source in self._dropped_sources or len(self._dropped_sources) < MAX_SOURCES:
            self._dropped_sources[source] += 1

    def _take_token(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
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
            f"(more than {self._rate:g} a second); {from_source} of them from {source}"
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
