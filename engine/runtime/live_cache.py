"""The per-process cache of live workflows, so a mutation does not deserialize what this process just saved.

An entry is keyed by (database, case id) and holds the lock_version and a hash of the stored state it
was saved as. It is only used when the locked case row has that lock_version and that state, so it
can never stand for a state the database does not hold: a save by another process (a new
lock_version, the compare-and-set's counter), a rolled-back transaction or a re-created database all
make it miss, and the pipeline deserializes instead.

Entries are filled only after a successful commit: the pipeline hands each saved workflow to
``remember`` and a session ``after_commit`` hook moves it into the cache; a rollback (also of a
savepoint it was saved in) drops it. A mutation ``take``s its entry out of the cache, so two
threads never work on one object; reads ``borrow`` and give it back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from engine.core import settings

_PENDING = "xf_live_workflows"


@dataclass(frozen=True)
class Entry:
    lock_version: int
    state_hash: int
    state_length: int
    workflow: Any
    walk: Any = None  # the projections' walk of the saved tree (the next mutation's tree before its act)

    def matches(self, lock_version: int, state: str) -> bool:
        return self.lock_version == lock_version and self.state_length == len(state) \
            and self.state_hash == hash(state)


class LiveWorkflows:
    """A bounded, thread-safe map (database, case id) → the workflow last committed by this process."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, int], Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, key: tuple[str, int], lock_version: int, state: str) -> Entry | None:
        """The cache entry for exactly this stored state, removed from the cache; else None."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None and entry.matches(lock_version, state):
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def give_back(self, key: tuple[str, int], entry: Entry) -> None:
        """Return an entry whose workflow was only read, unless a newer one arrived meanwhile."""
        with self._lock:
            if key not in self._entries:
                self._put(key, entry)

    def store(self, key: tuple[str, int], entry: Entry) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._put(key, entry)

    def _put(self, key: tuple[str, int], entry: Entry) -> None:
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ the session's side
    def remember(self, session: Session, key: tuple[str, int], lock_version: int, state: str,
                 workflow: Any, walk: Any = None) -> None:
        """Cache workflow as the state saved in session's transaction, once (and if) that commits."""
        if not self.enabled:
            return
        transaction = session.get_nested_transaction() or session.get_transaction()
        pending = session.info.setdefault(_PENDING, {})
        pending[id(self), key] = (self, key, Entry(lock_version, hash(state), len(state), workflow, walk), transaction)


# The session hooks are listened for once on the Session class, not per session: ``event.listen`` on a
# session instance builds that instance's own event dispatch, a cost every unit of work that saves a case
# paid once more. A session with nothing pending returns at once.
@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if _PENDING not in session.info or session.get_nested_transaction() is not None:
        return  # nothing saved, or a savepoint released: its entries wait for the outer commit
    for cache, key, entry, _transaction in session.info.pop(_PENDING).values():
        cache.store(key, entry)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    for pending_key, (_cache, _key, _entry, transaction) in list(pending.items()):
        node = transaction
        while node is not None and node is not previous:
            node = node.parent
        if node is previous:  # saved inside the transaction (or savepoint) that was rolled back
            del pending[pending_key]


LIVE_WORKFLOWS = LiveWorkflows(settings.LIVE_WORKFLOW_CACHE)


def database_key(session: Session) -> str:
    return session.get_bind().engine.url.render_as_string(hide_password=True)
