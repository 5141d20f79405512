"""Timers: claiming and firing due timer rows, and the worker that does it in its own transactions.

Claiming commits a lease first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a compare-and-set
on SQLite), so several workers and web processes share the work without firing a timer
twice; firing runs through the mutation pipeline under the case lock and re-checks the timer, so a
worker killed mid-fire leaves the timer to be fired again once its lease expires. A timer that keeps
failing is retried with backoff and then becomes an incident for admins; it never blocks the others.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.models import TimerRow, TimerStatus
from engine.runtime.notify import SmtpSettings

if TYPE_CHECKING:
    from engine.runtime.pipeline import CasePipeline, Mutation

MAX_TIMER_ATTEMPTS = 5
TIMER_BACKOFF = timedelta(minutes=1)


class TimerFiring:
    """The timer part of CaseService: claim due timers, fire one under the case lock, count failures."""

    session: Session
    clock: object
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
        timer = self.session.get(TimerRow, timer_id)
        timer.attempts += 1
        timer.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if timer.attempts >= MAX_TIMER_ATTEMPTS:
            timer.status = TimerStatus.incident
            timer.claimed_until = None
            self.pipeline.audit.record("timer_incident", case_id=timer.case_id,
                                       detail={"timer": timer.title, "error": timer.last_error})
        else:
            timer.claimed_until = self.pipeline.clock.now() + TIMER_BACKOFF * (2 ** (timer.attempts - 1))
        self.session.flush()
        return timer.status

    def claim_due_timers(self, now: datetime, limit: int) -> list[int]:
        """Claim up to limit due timers with a lease; return their ids."""
        stmt = (
            select(TimerRow.id)
            .where(TimerRow.status == TimerStatus.waiting, TimerRow.due_at < now)  # SpiffWorkflow fires when due < now
            .where((TimerRow.claimed_until.is_(None)) | (TimerRow.claimed_until < now))
            .order_by(TimerRow.due_at)
            .limit(limit)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(self.session.scalars(stmt))
        claimed = []
        for timer_id in ids:
            res = self.session.execute(
                update(TimerRow)
                .where(TimerRow.id == timer_id, TimerRow.status == TimerStatus.waiting)
                .where((TimerRow.claimed_until.is_(None)) | (TimerRow.claimed_until < now))
                .values(claimed_until=now + self.timer_lease)
            )
            if res.rowcount == 1:
                claimed.append(timer_id)
        return claimed

    def fire_timer(self, timer_id: int, worker: str = "worker") -> bool:
        """Fire one claimed timer under the case lock; False if it was already fired or not due.

        :raises CaseExecutionError: the workflow failed while advancing past the timer.
        """
        timer = self.session.get(TimerRow, timer_id)
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
    def __init__(self, session_factory: sessionmaker, clock, name: str | None = None):
        self.session_factory = session_factory
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"

    def run_once(self, batch: int = 100, pause_after: int | None = None, on_pause=None) -> int:
        """Fire everything due now, batch by batch; return how many timers fired.

        pause_after/on_pause let a test stop the worker in the middle of a claimed batch.
        """
        total = 0
        while True:
            with _unit_of_work(self.session_factory, self.clock) as work:
                claimed = work.cases.claim_due_timers(self.clock.now(), batch)
            for timer_id in claimed:
                total += self._fire_one(timer_id)
                if pause_after is not None and total == pause_after and on_pause is not None:
                    on_pause()
            if len(claimed) < batch:
                return total

    def _fire_one(self, timer_id: int) -> int:
        try:
            with _unit_of_work(self.session_factory, self.clock) as work:
                return int(work.cases.fire_timer(timer_id, self.name))
        except Exception as exc:  # recorded on the timer; an incident after the last attempt
            with _unit_of_work(self.session_factory, self.clock) as work:
                work.cases.record_timer_failure(timer_id, exc)
            return 0

    def remind(self, window: timedelta) -> int:
        """催办 reminders for tasks due within window (each task once)."""
        with _unit_of_work(self.session_factory, self.clock) as work:
            return work.notifications.remind_due_tasks(window)

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
    parser.add_argument("--pause-after", type=int, help="(tests) stop mid-batch after N firings until stdin closes")
    args = parser.parse_args(argv)
    clock = FixedClock(datetime.fromisoformat(args.at)) if args.at else SystemClock()
    engine = make_engine(args.url)
    import sys

    def pause():
        print("paused", flush=True)
        sys.stdin.readline()

    fired = TimerWorker(make_session_factory(engine), clock, args.name).run_once(
        args.batch, args.pause_after, pause)
    print(f"fired {fired}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
