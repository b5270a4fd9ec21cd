"""``audit.refusals.RefusalQueue``: repeats coalesce, a flood is rate-limited per source
address under a global ceiling, and summarised."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from dockyard.audit.events import Actor, AuditEvent
from dockyard.audit.refusals import RefusalQueue

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _login(name: str) -> AuditEvent:
    return AuditEvent("login", "user", name, 0, "refused: wrong password", succeeded=False)


def _not_recorded(summary: AuditEvent) -> int:
    match = re.search(r"(\d+) more refused requests", summary.description)
    assert match is not None
    return int(match.group(1))


def test_repeats_are_one_row_saying_how_many_at_the_first_time() -> None:
    queue = RefusalQueue(clock=Clock())
    actor = Actor("mallory", "192.0.2.9")
    for i in range(5):
        queue.add(actor, _login("mallory"), T0 + timedelta(seconds=i))
    queue.add(Actor("mallory", "192.0.2.10"), _login("mallory"), T0)
    rows = queue.drain()
    assert [(a.source_ip, e.description, when) for a, e, when in rows] == [
        ("192.0.2.9", "refused: wrong password (5 times)", T0),
        ("192.0.2.10", "refused: wrong password", T0),
    ]
    assert all(not e.succeeded for _, e, _ in rows)
    assert queue.drain() == [] and len(queue) == 0


def test_a_flood_writes_at_most_the_burst_then_the_rate_and_one_summary() -> None:
    clock = Clock()
    queue = RefusalQueue(burst=10, rows_per_second=2, summary_seconds=60, clock=clock)
    for i in range(1000):
        queue.add(Actor("anonymous", "198.51.100.7"), _login(f"guess{i}"), T0)
    assert len(queue) == 11  # ten rows and the summary to come
    rows = queue.drain()
    assert len(rows) == 10  # the summary waits for its minute
    clock.now = 5.0  # five seconds refill ten tokens
    for i in range(1000):
        queue.add(Actor("anonymous", "198.51.100.7"), _login(f"more{i}"), T0)
    assert len(queue.drain()) == 10
    clock.now = 61.0
    rows = queue.drain()
    assert len(rows) == 1
    actor, summary, when = rows[0]
    assert (actor.name, actor.source_ip, summary.resource, when) == (
        "(many)",
        "198.51.100.7",
        "(many)",
        T0,
    )
    assert summary.operation == "login" and not summary.succeeded
    assert "1980 more refused requests" in summary.description
    assert "1980 of them from 198.51.100.7" in summary.description
    assert queue.drain() == []


def test_a_repeat_costs_no_token_and_close_writes_the_summary_at_once() -> None:
    clock = Clock()
    queue = RefusalQueue(burst=1, rows_per_second=0.001, clock=clock)
    actor = Actor("anonymous", "203.0.113.1")
    queue.add(actor, _login("a"), T0)
    queue.add(actor, _login("a"), T0)  # coalesced though the bucket is empty
    queue.add(actor, _login("b"), T0)  # no token: counted
    rows = queue.drain(final=True)
    assert [e.description for _, e, _ in rows] == [
        "refused: wrong password (2 times)",
        "refused: 1 more refused requests were not recorded one by one "
        "(more than 0.2 a second from one address or 0.001 in all); 1 of them from 203.0.113.1",
    ]


def test_the_sources_counted_are_bounded() -> None:
    queue = RefusalQueue(burst=0, clock=Clock())
    for i in range(10_000):
        queue.add(Actor("anonymous", f"10.0.{i // 256}.{i % 256}"), _login("x"), T0)
    assert len(queue._dropped_sources) <= 16
    assert "10000 more" in queue.drain(final=True)[0][1].description


def test_a_flood_from_one_address_does_not_hide_a_refusal_from_another() -> None:
    clock = Clock()
    queue = RefusalQueue(clock=clock)  # the default budgets
    for i in range(10_000):
        queue.add(Actor("anonymous", "198.51.100.7"), _login(f"guess{i}"), T0)
    queue.add(Actor("alice", "192.0.2.50"), _login("alice"), T0)
    rows = queue.drain()
    assert [(a.name, e.resource) for a, e, _ in rows if a.source_ip == "192.0.2.50"] == [
        ("alice", "alice")
    ]
    flooder = [e for a, e, _ in rows if a.source_ip == "198.51.100.7"]
    assert len(flooder) == 20  # that address's burst only
    # Minutes of flooding later, another address is still recorded one by one.
    for minute in range(1, 6):
        clock.now = 60.0 * minute
        for i in range(1000):
            queue.add(Actor("anonymous", "198.51.100.7"), _login(f"m{minute}-{i}"), T0)
        queue.add(Actor("bob", f"192.0.2.{60 + minute}"), _login("bob"), T0)
        rows = queue.drain()
        flooder = [a for a, _, _ in rows if a.name == "anonymous"]
        assert len(flooder) == 12  # 60 s at 0.2 a second
        assert [a.name for a, _, _ in rows if a.name == "(many)"] == ["(many)"]  # a minute on
        assert [a.name for a, _, _ in rows if a.name == "bob"] == ["bob"]


def test_the_global_ceiling_holds_under_many_addresses() -> None:
    clock = Clock()
    queue = RefusalQueue(burst=100, rows_per_second=5, clock=clock)
    written = 0
    sent = 0
    summarised = 0
    for second in range(120):
        clock.now = float(second)
        for i in range(200):  # a botnet: a fresh address for every refusal
            queue.add(Actor("anonymous", f"10.{second}.{i}.1"), _login(f"g{second}-{i}"), T0)
            sent += 1
        rows = queue.drain()
        written += sum(e.resource != "(many)" for _, e, _ in rows)
        summarised += sum(_not_recorded(e) for _, e, _ in rows if e.resource == "(many)")
        assert written <= 100 + 5 * second
    assert written == 100 + 5 * 119
    summarised += sum(_not_recorded(e) for _, e, _ in queue.drain(final=True))
    assert written + summarised == sent  # none lost


def test_the_addresses_tracked_are_bounded() -> None:
    clock = Clock()
    queue = RefusalQueue(max_tracked_sources=1024, clock=clock)
    for i in range(50_000):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        queue.add(Actor("anonymous", address), _login("x"), T0)
        if i % 1000 == 999:
            queue.drain()
    assert len(queue._sources) == 1024
    assert len(queue._dropped_sources) <= 16
    # The least recently seen are forgotten: the newest addresses are the ones kept.
    assert "10.0.195.79" in queue._sources and "10.0.0.0" not in queue._sources
