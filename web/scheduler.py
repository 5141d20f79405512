"""APScheduler only ticks the timer worker; timers themselves live in the timer table.

Each web process may run its own tick: claiming with a lease (and SKIP LOCKED on
PostgreSQL) makes every timer fire once however many ticks run. No job store is shared.
"""

from __future__ import annotations

import logging
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

log = logging.getLogger(__name__)


def start_on_first_request(app: Flask) -> None:
    lock = threading.Lock()

    @app.before_request
    def _ensure_scheduler():
        if "xiangflow_scheduler" not in app.extensions:
            with lock:
                if "xiangflow_scheduler" not in app.extensions:
                    start_scheduler(app)


def start_scheduler(app: Flask) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(daemon=True, timezone="UTC")

    def tick():
        from web.cli import fire_due

        with app.app_context():
            try:
                fired = fire_due()
                if fired:
                    log.info("fired %d timers", fired)
            except Exception:  # keep ticking; the error is logged with its traceback
                log.exception("timer tick failed")

    scheduler.add_job(tick, "interval", seconds=app.config["XIANGFLOW_TIMER_TICK_SECONDS"],
                      id="xiangflow-timers", max_instances=1, coalesce=True)
    scheduler.start()
    app.extensions["xiangflow_scheduler"] = scheduler
    return scheduler
