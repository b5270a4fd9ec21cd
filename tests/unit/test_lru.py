"""The small LRU cache the app keeps chart files in: bounded by entries and by weight."""

from __future__ import annotations

from dockyard.lru import LruCache


def test_least_recently_used_go_first_by_count_and_by_weight() -> None:
    cache: LruCache[str, str | None] = LruCache(3, 10, lambda value: len(value or ""))
    for key in "abc":
        cache.put(key, key)
    assert cache.get("a") == (True, "a")  # now the most recent
    cache.put("d", "d")
    assert cache.keys() == ["c", "a", "d"]
    cache.put("e", "x" * 9)  # weight 9 + 1 + 1 > 10: the oldest go until it fits
    assert cache.keys() == ["d", "e"]
    assert cache.get("b") == (False, None)


def test_a_kept_none_is_found_and_a_too_heavy_value_is_not_kept() -> None:
    cache: LruCache[str, str | None] = LruCache(4, 5, lambda value: len(value or ""))
    cache.put("none", None)
    assert cache.get("none") == (True, None)
    cache.put("none", "x" * 6)
    assert "none" not in cache and len(cache) == 0
