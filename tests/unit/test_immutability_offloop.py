"""Which immutability checks run on the event loop and which in a worker thread."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.immutability import service
from dockyard.immutability.matcher import Rule, RuleSet, Selector


def _rules(tag_pattern: str, count: int = 15) -> RuleSet:
    return RuleSet(
        Rule(i, (Selector("repoMatches", f"{{**,x{i}}}"),), (Selector("matches", tag_pattern),))
        for i in range(count)
    )


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = service.to_thread.run_sync

    async def recording(func: Any, *args: Any) -> Any:
        calls.append(len(args[1]))
        return await real(func, *args)

    monkeypatch.setattr(service.to_thread, "run_sync", recording)
    return calls


async def test_a_few_cheap_checks_stay_on_the_loop(threaded: list[int]) -> None:
    found = await service.protecting_each(_rules("v*"), [("p/app", "v1"), ("p/app", "x")])
    assert [rule is not None for rule in found] == [True, False]
    assert threaded == []


async def test_a_page_of_many_tags_goes_to_a_thread(threaded: list[int]) -> None:
    pairs = [("p/app", f"v{i}") for i in range(200)]  # 200 x 15 > INLINE_MATCHES
    found = await service.protecting_each(_rules("v1*"), pairs)
    assert sum(rule is not None for rule in found) == 1 + 10 + 100
    assert threaded == [200]


async def test_a_stored_pattern_past_the_bounds_always_goes_to_a_thread(
    threaded: list[int],
) -> None:
    legacy = _rules("{a,b}" * 6 + "*", count=1)
    assert not legacy.bounded
    [rule] = await service.protecting_each(legacy, [("p/app", "abab" + "ab" + "tail")])
    assert rule is not None
    assert threaded == [1]
