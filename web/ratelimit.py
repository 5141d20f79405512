"""Login rate limiting: too many failures for one address or one username lock it out a while.

Kept in process memory: with several web processes each keeps its own count, so the
effective limit is per process. Enough to stop password guessing through one process;
a shared store is the next step for a multi-host deployment.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class LoginLimiter:
    def __init__(self, max_failures: int, window_seconds: int):
        self.max_failures = max_failures
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] < now - self.window:
            q.popleft()
        return q

    def blocked(self, addr: str, username: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in (f"a:{addr}", f"u:{username}"))

    def failed(self, addr: str, username: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"a:{addr}", f"u:{username}"):
                self._recent(key, now).append(now)

    def succeeded(self, addr: str, username: str) -> None:
        with self._lock:
            self._failures.pop(f"u:{username}", None)
