"""APScheduler only ticks the timer worker; timers themselves live in the timer table.

Each web process may run its own tick: claiming with a lease (and SKIP LOCKED on
PostgreSQL) makes every timer fire once however many ticks run. No job store is shared.
"""

from __future__ import annotations

import logging
import os

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

log = logging.getLogger(__name__)


def start_scheduler(app: Flask) -> BackgroundScheduler | None:
    if os.environ.get("WERKZEUG_RUN_MAIN") == "false":  # the reloader's parent process
        return None
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
