"""Flask CLI: ``flask xiangflow init [--demo]`` and ``flask timers run [--once]``."""

from __future__ import annotations

import time

import click
from flask import Flask, current_app

from engine.bootstrap import setup_database
from engine.runtime.timers import TimerWorker
from web.services import clock, due_soon, smtp_settings, state


def register(app: Flask) -> None:
    @app.cli.group("xiangflow")
    def xiangflow():
        """Database set-up."""

    @xiangflow.command("init")
    @click.option("--demo/--no-demo", default=False, help="load demo users, households and cases")
    def init(demo: bool):
        """Run the migrations, load regions and roles, deploy workflows/ (and demo data)."""
        if demo and current_app.config["XIANGFLOW_REFUSE_DEMO"]:
            raise click.ClickException("production 环境不允许加载演示数据")
        setup_database(state().engine, clock(), demo=demo)
        click.echo("数据库已就绪" + (",演示数据已加载" if demo else ""))

    @app.cli.group("timers")
    def timers():
        """Durable BPMN timers."""

    @timers.command("run")
    @click.option("--once", is_flag=True, help="fire what is due now and exit")
    @click.option("--interval", default=10, show_default=True, help="seconds between ticks")
    def run(once: bool, interval: int):
        """Fire due timers (each exactly once, under the case lock)."""
        while True:
            fired = fire_due()
            click.echo(f"fired {fired}")
            if once:
                return
            time.sleep(interval)


def fire_due(batch: int = 100) -> int:
    """One tick: fire due timers, send 催办 reminders, mail notifications; return timers fired."""
    worker = TimerWorker(state().factory, clock())
    fired = worker.run_once(batch)
    worker.remind(due_soon())
    worker.mail(smtp_settings())
    return fired
