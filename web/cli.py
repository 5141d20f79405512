"""Flask CLI: ``flask xiangflow init [--demo]``, ``flask timers run [--once]``, ``flask users …``."""

from __future__ import annotations

import time

import click
from flask import Flask, current_app

from engine.bootstrap import setup_database
from engine.runtime.timers import TimerWorker
from web.services import clock, due_soon, smtp_settings, state, work


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

    @app.cli.group("users")
    def users():
        """User accounts: password, deactivate, activate (each ends the user's login sessions)."""

    @users.command("create")
    @click.argument("username")
    @click.argument("display_name")
    @click.option("--grant", "grants", multiple=True, required=True, metavar="ROLE@REGION",
                  help="a role at a 12-digit region code, e.g. system_admin@510000000000 (repeatable)")
    @click.password_option()
    def create(username: str, display_name: str, grants: tuple[str, ...], password: str):
        """Create an account (the county's first admin; later users are made on 用户与授权 or POST /api/v1/users)."""
        from engine.registry.users import USERNAME, password_problem

        problem = password_problem(password, username) or (None if USERNAME.fullmatch(username) else "用户名无效")
        if problem:
            raise click.ClickException(problem)
        pairs = [tuple(g.split("@", 1)) for g in grants]
        if any(len(p) != 2 for p in pairs):
            raise click.ClickException("--grant 的格式是 角色@区划代码")
        try:
            with work() as w:
                if w.directory.user_by_username(username) is not None:
                    raise click.ClickException(f"用户名 {username} 已被使用")
                w.directory.create_user(username, display_name, password, [(p[0], p[1]) for p in pairs])
        except (ValueError, KeyError) as exc:
            raise click.ClickException(f"授权无效:{exc}") from None
        click.echo(f"已创建 {username}({'、'.join(grants)})")

    @users.command("password")
    @click.argument("username")
    @click.password_option()
    def password(username: str, password: str):
        """Set a new password; the user's open sessions end."""
        with work() as w:
            w.directory.set_password(username, password)
        click.echo(f"已为 {username} 设置新密码,其登录会话已失效")

    @users.command("deactivate")
    @click.argument("username")
    def deactivate(username: str):
        """Deactivate the account; its open sessions end at once."""
        with work() as w:
            w.directory.set_active(username, False)
        click.echo(f"已停用 {username},其登录会话已失效")

    @users.command("activate")
    @click.argument("username")
    def activate(username: str):
        """Activate the account again."""
        with work() as w:
            w.directory.set_active(username, True)
        click.echo(f"已启用 {username}")

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
