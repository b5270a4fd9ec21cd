"""Failed-login throttling per user and per source address (sliding window, in process)."""

from __future__ import annotations

import time
from collections import defaultdict, deque

WINDOW_SECONDS = 300.0


class LoginThrottle:
    def __init__(self, limit: int, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def retry_after(self, *keys: str) -> int:
        """Seconds until a login may be tried again for these keys (0: now)."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.limit:
                wait = max(wait, times[0] + self.window - now)
        return int(wait) + 1 if wait else 0

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures[key].append(now)
            if len(self._failures) > 100_000:  # bound memory under a spray of names
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, user_key: str) -> None:
        self._failures.pop(user_key, None)
