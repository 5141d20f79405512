"""Timers: claiming and firing due timer rows, and the worker that does it in its own transactions.

Claiming commits a short lease first, one statement per batch (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, a compare-and-set on SQLite), so several workers and web processes share the work
without firing a timer twice; a heartbeat renews the lease while the worker runs, so the timers of
a worker that dies are free again within TIMER_LEASE; firing runs through the mutation pipeline under the case lock and re-checks the timer, so a
worker killed mid-fire leaves the timer to be fired again once its lease expires. A timer that keeps
failing is retried with backoff and then becomes an incident for admins; it never blocks the others.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.core.clock import Clock
from engine.core.errors import XiangFlowError
from engine.models import TimerRow, TimerStatus
from engine.runtime.notify import REMIND_BATCH, SmtpSettings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from engine.runtime.pipeline import CasePipeline, Mutation

MAX_TIMER_ATTEMPTS = 5
TIMER_BACKOFF = timedelta(minutes=1)
# a claimed timer is the worker's for this long; the worker's heartbeat renews the lease every third of it
# while the worker runs, so a worker that dies (kill -9) holds its unfired timers for at most this long
TIMER_LEASE = timedelta(seconds=30)
# a tick's 催办 pass stops after this long (its batches are committed; the rest wait for the next tick)
REMIND_BUDGET_SECONDS = 20.0


class TimerFiring:
    """The timer part of CaseService: claim due timers, fire one under the case lock, count failures."""

    session: Session
    clock: Clock
    pipeline: CasePipeline
    timer_lease: timedelta

    def fire_due_timers(self, limit: int = 100, worker: str = "worker") -> int:
        """Claim and fire due timers inside this unit of work (tests and single-shot use).

        The worker (``TimerWorker``) does the same with one transaction per timer.
        """
        fired = 0
        for timer_id in self.claim_due_timers(self.pipeline.clock.now(), limit):
            try:
                with self.session.begin_nested():
                    fired += self.fire_timer(timer_id, worker)
            except Exception as exc:  # one bad timer never blocks the others
                self.record_timer_failure(timer_id, exc)
        return fired

    def record_timer_failure(self, timer_id: int, exc: BaseException) -> TimerStatus:
        """Count a failed firing: retry later with backoff, or open an incident after the last try."""
        timer = self.session.get_one(TimerRow, timer_id)
        timer.attempts += 1
        # an engine error carries a Chinese message for the admin's incident list; anything else is a
        # defect, kept with its exception name for the operator
        message = str(exc) if isinstance(exc, XiangFlowError) else f"{type(exc).__name__}: {exc}"
        timer.last_error = message[:2000]
        if timer.attempts >= MAX_TIMER_ATTEMPTS:
            timer.status = TimerStatus.incident
            timer.claimed_until = None
            self.pipeline.audit.record("timer_incident", case_id=timer.case_id,
                                       detail={"timer": timer.title, "error": timer.last_error})
        else:
            timer.claimed_until = self.pipeline.clock.now() + TIMER_BACKOFF * (2 ** (timer.attempts - 1))
        self.session.flush()
        return timer.status

    def claim_due_timers(self, now: datetime, limit: int, lease: timedelta | None = None) -> list[int]:
        """Claim up to limit due timers with a lease (default: the service's), in one statement; return their
        ids, soonest due first.

        One statement per batch — on PostgreSQL ``WITH due AS (… FOR UPDATE SKIP LOCKED LIMIT n) UPDATE …
        FROM due … RETURNING``, so concurrent workers get disjoint batches; on SQLite an UPDATE … WHERE id IN
        (…) with the lease re-checked under the writer lock.
        """
        due = (
            select(TimerRow.id)
            .where(TimerRow.status == TimerStatus.waiting, TimerRow.due_at < now)  # SpiffWorkflow fires when due < now
            .where((TimerRow.claimed_until.is_(None)) | (TimerRow.claimed_until < now))
            .order_by(TimerRow.due_at, TimerRow.id)
            .limit(limit)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            # a CTE runs once; an IN (subquery … SKIP LOCKED LIMIT n) may be rescanned and lease more than n
            due_rows = due.with_for_update(skip_locked=True).cte("due")
            chosen = TimerRow.id == due_rows.c.id
        else:
            chosen = TimerRow.id.in_(due.scalar_subquery())
        claimed = self.session.execute(
            update(TimerRow)
            .where(chosen, TimerRow.status == TimerStatus.waiting)
            .where((TimerRow.claimed_until.is_(None)) | (TimerRow.claimed_until < now))
            .values(claimed_until=now + (lease or self.timer_lease))
            .returning(TimerRow.id, TimerRow.due_at)
            .execution_options(synchronize_session=False)
        ).all()
        return [timer_id for timer_id, _due in sorted(claimed, key=lambda r: (r[1], r[0]))]

    def renew_timer_leases(self, timer_ids: list[int], now: datetime, lease: timedelta | None = None) -> int:
        """Extend the lease of timers a worker still holds (its heartbeat); how many were renewed."""
        if not timer_ids:
            return 0
        return cast("CursorResult[Any]", self.session.execute(
            update(TimerRow)
            .where(TimerRow.id.in_(timer_ids), TimerRow.status == TimerStatus.waiting)
            .values(claimed_until=now + (lease or self.timer_lease))
            .execution_options(synchronize_session=False)
        )).rowcount

    def fire_timer(self, timer_id: int, worker: str = "worker") -> bool:
        """Fire one claimed timer under the case lock; False if it was already fired or not due.

        :raises CaseExecutionError: the workflow failed while advancing past the timer.
        """
        timer = self.session.get_one(TimerRow, timer_id)
        case = self.pipeline.lock(timer.case_id)
        self.session.refresh(timer)
        if timer.status != TimerStatus.waiting:
            return False
        due_before = timer.due_at

        def act(m: Mutation) -> None:
            m.workflow.refresh_timers()  # the pipeline's engine steps then run what the due timer started

        self.pipeline.run(case, act)
        self.session.refresh(timer)
        if timer.status == TimerStatus.waiting and timer.due_at == due_before:
            # the engine did not consider it due (clock skew): release the claim
            timer.claimed_until = None
            return False
        return True


def _unit_of_work(factory: sessionmaker, clock):
    from engine.uow import UnitOfWork  # the composition root sits above the runtime: imported when run

    return UnitOfWork(factory, clock)


class TimerWorker:
    def __init__(self, session_factory: sessionmaker, clock, name: str | None = None,
                 lease: timedelta = TIMER_LEASE):
        self.session_factory = session_factory
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = lease
        self._held: set[int] = set()  # claimed by this worker and not yet fired (the heartbeat renews them)
        self._held_lock = threading.Lock()

    def run_once(self, batch: int = 100, pause_after: int | None = None, on_pause=None) -> int:
        """Fire everything due now, batch by batch; return how many timers fired.

        Each batch is claimed with one lease query; each timer then fires in its own transaction (under its
        case's lock, re-checked, so never twice). While this runs a heartbeat renews the lease of the
        timers still held. pause_after/on_pause let a test stop the worker in the middle of a claimed batch.
        """
        total = 0
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(stop,), name="timer-lease-heartbeat",
                                     daemon=True)
        heartbeat.start()
        try:
            while True:
                with _unit_of_work(self.session_factory, self.clock) as work:
                    claimed = work.cases.claim_due_timers(self.clock.now(), batch, self.lease)
                with self._held_lock:
                    self._held.update(claimed)
                for timer_id in claimed:
                    total += self._fire_one(timer_id)
                    with self._held_lock:
                        self._held.discard(timer_id)
                    if pause_after is not None and total == pause_after and on_pause is not None:
                        on_pause()
                if len(claimed) < batch:
                    return total
        finally:
            stop.set()
            heartbeat.join(timeout=10)

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease.total_seconds() / 3):
            with self._held_lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                with _unit_of_work(self.session_factory, self.clock) as work:
                    work.cases.renew_timer_leases(held, self.clock.now(), self.lease)
            except Exception:  # a missed beat only shortens the lease; firing stays exactly-once
                log.exception("timer lease heartbeat failed")

    def _fire_one(self, timer_id: int) -> int:
        try:
            with _unit_of_work(self.session_factory, self.clock) as work:
                return int(work.cases.fire_timer(timer_id, self.name))
        except Exception as exc:  # recorded on the timer; an incident after the last attempt
            with self._held_lock:  # its backoff is the next claim time now: the heartbeat must not renew it
                self._held.discard(timer_id)
            with _unit_of_work(self.session_factory, self.clock) as work:
                work.cases.record_timer_failure(timer_id, exc)
            return 0

    def remind(self, window: timedelta, batch: int = REMIND_BATCH, budget: float = REMIND_BUDGET_SECONDS) -> int:
        """催办 reminders for tasks due within window (each task once), a batch per transaction until none is
        left or the tick's time budget is spent (the rest go out on the next tick); return tasks reminded."""
        began, total = time.monotonic(), 0
        while True:
            with _unit_of_work(self.session_factory, self.clock) as work:
                done = work.notifications.remind_due_tasks(window, batch)
            total += done
            if done < batch or time.monotonic() - began >= budget:
                return total

    def mail(self, smtp: SmtpSettings | None) -> int:
        """Send pending notifications by e-mail when SMTP is configured."""
        if smtp is None:
            return 0
        with _unit_of_work(self.session_factory, self.clock) as work:
            return work.notifications.send_email(smtp)


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.runtime.timers``: run a timer worker process (tests and benchmarks use it).

    --at freezes the worker's clock at an ISO time (tests); without it the system clock is used.
    """
    import argparse
    from datetime import datetime

    from engine.core.clock import FixedClock, SystemClock
    from engine.core.db import make_engine, make_session_factory
    from engine.core.settings import database_url

    parser = argparse.ArgumentParser(description="XiangFlow timer worker")
    parser.add_argument("--url", default=database_url())
    parser.add_argument("--at", help="fixed ISO time for the worker's clock")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--name")
    parser.add_argument("--lease-seconds", type=float, default=TIMER_LEASE.total_seconds(),
                        help="how long a claim lasts without the heartbeat")
    parser.add_argument("--pause-after", type=int, help="(tests) stop mid-batch after N firings until stdin closes")
    args = parser.parse_args(argv)
    clock = FixedClock(datetime.fromisoformat(args.at)) if args.at else SystemClock()
    engine = make_engine(args.url)
    import sys

    def pause():
        print("paused", flush=True)
        sys.stdin.readline()

    fired = TimerWorker(make_session_factory(engine), clock, args.name, timedelta(seconds=args.lease_seconds)).run_once(
        args.batch, args.pause_after, pause)
    print(f"fired {fired}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
