"""The timer worker: claims due timers, fires each in its own transaction, records failures.

Claiming commits a lease first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a compare-and-set
on SQLite), so several workers and web processes share the work without firing a timer
twice; firing runs under the case lock and re-checks the timer, so a worker killed mid-fire
leaves the timer to be fired again once its lease expires. A timer that keeps failing is
retried with backoff and then becomes an incident for admins; it never blocks the others.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy.orm import sessionmaker

from engine.runtime.notify import SmtpSettings
from engine.uow import UnitOfWork


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
            with UnitOfWork(self.session_factory, self.clock) as work:
                claimed = work.cases.claim_due_timers(self.clock.now(), batch)
            for timer_id in claimed:
                total += self._fire_one(timer_id)
                if pause_after is not None and total == pause_after and on_pause is not None:
                    on_pause()
            if len(claimed) < batch:
                return total

    def _fire_one(self, timer_id: int) -> int:
        try:
            with UnitOfWork(self.session_factory, self.clock) as work:
                return int(work.cases.fire_timer(timer_id, self.name))
        except Exception as exc:  # recorded on the timer; an incident after the last attempt
            with UnitOfWork(self.session_factory, self.clock) as work:
                work.cases.record_timer_failure(timer_id, exc)
            return 0

    def remind(self, window: timedelta) -> int:
        """催办 reminders for tasks due within window (each task once)."""
        with UnitOfWork(self.session_factory, self.clock) as work:
            return work.notifications.remind_due_tasks(window)

    def mail(self, smtp: SmtpSettings | None) -> int:
        """Send pending notifications by e-mail when SMTP is configured."""
        if smtp is None:
            return 0
        with UnitOfWork(self.session_factory, self.clock) as work:
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
