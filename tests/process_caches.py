"""What a test process keeps across tests because building it again per test only costs time (tests/conftest.py
installs each with a session fixture; production code is unchanged).

- ``ProcessCompiledCache``: one SQLAlchemy compiled-statement cache for every engine of the process.
- ``RenderOnce``: the notice renderer lays out each distinct notice once per process.
- ``SeededSerials``: the random source of notice serials, seeded again for each test, so that a test that
  issues the notice another test issued (same case state, same clock) renders the same HTML and ``RenderOnce``
  finds it.
"""

from __future__ import annotations

import hashlib
import random
import threading
from typing import Any


class ProcessCompiledCache:
    """An engine caches the SQL it compiled for a statement, keyed by its own dialect object, so the per-test
    engines (a database per test; ``bind_state`` makes the app a new engine per test) each compiled every
    statement again: about a quarter of an integration test's CPU. This cache keys by what the compiled SQL
    depends on in the dialect (its class, the server's version, the parameter style and the features found
    on connecting), which is the same for every engine on one backend in a test process. A production
    process keeps one engine and so its own cache."""

    def __init__(self, capacity: int = 3000) -> None:
        from sqlalchemy.util import LRUCache

        self._lru: Any = LRUCache(capacity)

    @staticmethod
    def _key(key: tuple) -> tuple:
        d, *rest = key
        return (type(d), d.server_version_info, d.paramstyle, d.label_length, d.max_identifier_length,
                d.insert_returning, d.update_returning, d.delete_returning, d.use_insertmanyvalues, *rest)

    def get(self, key: tuple, default: Any = None) -> Any:
        return self._lru.get(self._key(key), default)

    def __setitem__(self, key: tuple, value: Any) -> None:
        self._lru[self._key(key)] = value

    def __len__(self) -> int:
        return len(self._lru)

    def clear(self) -> None:
        self._lru.clear()


class RenderOnce:
    """Wraps ``NoticeRenderer.render``: WeasyPrint's output is a function of the HTML, the catalog's stylesheets
    and the process's fonts (the same bytes each time: no date or random identifier in it), so a notice laid
    out before is returned as it was (≈ 0.35 s each otherwise). Signing, storing and every check still run on
    each issue; a renderer that is not the process's (test_notices_size makes its own) renders every time."""

    MAX_KEPT = 128  # RenderedPdf of a few hundred KB each

    def __init__(self, render) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._done: dict[tuple, Any] = {}

    def __call__(self, html: str, catalog, stylesheet_names=None):
        names = None if stylesheet_names is None else tuple(stylesheet_names)
        key = (hashlib.sha256(html.encode("utf-8")).digest(), catalog.content_sha256, names)
        with self._lock:
            done = self._done.get(key)
        if done is None:
            done = self._render(html, catalog, names)  # RenderedPdf: frozen, bytes
            with self._lock:
                if len(self._done) >= self.MAX_KEPT:
                    self._done.clear()
                self._done[key] = done
        return done


class SeededSerials:
    """Stands in for the ``secrets`` module in engine/notices/issue.py, whose ``choice`` draws the 8 characters of
    a notice serial. Production draws them from the OS; a test process draws them from a PRNG seeded again
    before each test and each snapshot build (``reseed``), so the same test issues the same serials. Serials
    stay distinct within a test (the issuer still draws again on a clash with a stored one), nothing asserts
    on their unpredictability, and notice batches run in spawned processes, which draw from the OS."""

    def __init__(self) -> None:
        self._random = random.Random(0)

    def reseed(self) -> None:
        self._random.seed(0)

    def choice(self, seq):
        return self._random.choice(seq)
