"""A small least-recently-used cache bounded by entries and by the total size of its values.

Pure and synchronous; an instance lives in the app's state (created by ``create_app``),
never at module level, so two apps in one process share nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``max_entries`` values whose ``weigh(value)`` sums to at most ``max_weight``;
    the least recently used go first. A value heavier than ``max_weight`` is not kept."""

    def __init__(self, max_entries: int, max_weight: int, weigh: Callable[[V], int]) -> None:
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_weight = max_weight
        self._weigh = weigh
        self._weight = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def keys(self) -> list[K]:
        return list(self._entries)

    def get(self, key: K) -> tuple[bool, V | None]:
        """(found, value): ``value`` may itself be ``None`` when that was what was kept."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        self._entries.move_to_end(key)
        return True, entry[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        old = self._entries.pop(key, None)
        if old is not None:
            self._weight -= old[1]
        if weight > self._max_weight:
            return
        self._entries[key] = (value, weight)
        self._weight += weight
        while len(self._entries) > self._max_entries or self._weight > self._max_weight:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._weight -= dropped
