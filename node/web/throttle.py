"""What a key may do in a window of time: failed sign-ins per user name and per address
(``node.web.desk``: passwords cannot be guessed at the speed of the server, and each guess
costs it an Argon2id hash, 64 MiB and about a seventh of a second of a core), citizen
submissions per address (``node.web.intake``).

A key (a user name, an address) counted ``limit`` times within ``window`` seconds waits
until the oldest of those is ``window`` old; a successful sign-in clears its name's count.
Counts live in the process: a restart forgets them, and each worker of ``serve --workers``
counts its own (the limit is then per worker, still a bound). The table is bounded: past
``MAX_KEYS`` keys, the least recently counted are forgotten."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

__all__ = ["Throttle"]

MAX_KEYS = 10_000


class Throttle:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._counted: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._counted.get(key)
            if times is None:
                return 0.0
            while times and now - times[0] >= self.window:
                times.popleft()
            if len(times) < self.limit:
                return 0.0
            return self.window - (now - times[0])

    def count(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._counted.pop(key, None) or deque()
            times.append(now)
            while len(times) > self.limit:
                times.popleft()
            self._counted[key] = times  # the most recently counted last
            while len(self._counted) > MAX_KEYS:
                self._counted.popitem(last=False)

    def clear(self, key: str) -> None:
        with self._lock:
            self._counted.pop(key, None)

    def reset(self) -> None:
        """Forget every count (what a restart does)."""
        with self._lock:
            self._counted.clear()
