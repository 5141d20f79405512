"""Login throttling: a per-username lockout and a looser per-address limit that a success relaxes.

Five failures for one username within the window lock that username (from any address) until the
oldest failure leaves the window; other users are not affected. An address (an office behind one NAT)
may fail ``addr_max_failures`` times within the window before every login from it is refused; each
successful login from it forgives ``max_failures`` of those, so colleagues mistyping their passwords
do not lock the office out.

Kept in process memory: with several web processes each keeps its own count, so the effective
limit is per process. Enough to stop password guessing through one process; a shared store is the
next step for a multi-host deployment.
"""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_KEYS = 50_000  # distinct usernames/addresses remembered; beyond it, expired ones are dropped


class LoginLimiter:
    def __init__(self, max_failures: int, window_seconds: int, addr_max_failures: int | None = None):
        self.max_failures = max_failures
        self.addr_max_failures = addr_max_failures or max_failures * 6
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] < now - self.window:
            q.popleft()
        return q

    def blocked(self, addr: str, username: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return (len(self._recent(f"u:{username}", now)) >= self.max_failures
                    or len(self._recent(f"a:{addr}", now)) >= self.addr_max_failures)

    def failed(self, addr: str, username: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > MAX_KEYS:
                self._prune(now)
            for key in (f"a:{addr}", f"u:{username}"):
                self._recent(key, now).append(now)

    def succeeded(self, addr: str, username: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures.pop(f"u:{username}", None)
            q = self._recent(f"a:{addr}", now)
            for _ in range(min(self.max_failures, len(q))):
                q.popleft()

    def _prune(self, now: float) -> None:
        for key in [k for k, q in self._failures.items() if not q or q[-1] < now - self.window]:
            del self._failures[key]
