"""Failed sign-ins, counted per user name and per address, so that passwords cannot be
guessed at the speed of the server (each guess also costs it an Argon2id hash: 64 MiB and
about a seventh of a second of a core).

A key (a user name, an address) that failed ``limit`` times within ``window`` seconds is
refused until the oldest of those failures is ``window`` old; a success clears a user
name's count. Counts live in the process: a restart forgets them, and each worker of
``serve --workers`` counts its own (the limit is then per worker, still a bound). The
table is bounded: past ``MAX_KEYS`` keys, the least recently failed are forgotten."""

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
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return 0.0
            while failures and now - failures[0] >= self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0.0
            return self.window - (now - failures[0])

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.pop(key, None) or deque()
            failures.append(now)
            while len(failures) > self.limit:
                failures.popleft()
            self._failures[key] = failures  # the most recently failed last
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def reset(self) -> None:
        """Forget every count (what a restart does)."""
        with self._lock:
            self._failures.clear()
