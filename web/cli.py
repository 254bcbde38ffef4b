"""``frontdoor``: the engine's commands, plus the ones that need the web application."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import click
import sqlalchemy as sa

from adapters.cli import census_group
from adapters.staff_csv import users_group
from engine.cli import _engine, cli, user_errors
from engine.models import User
from web.tokens import tokens_group

DEMO_PASSWORD = "frontdoor-demo"


def _gunicorn(app: Any, bind: str, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 4)

        def load(self) -> Any:
            return app

    from web import freeze_startup_heap

    freeze_startup_heap()  # before the workers fork, so they also share those pages
    Server().run()


def set_demo_passwords(ctx: click.Context) -> int:
    """Give demo users without a password the demo password (so `make run` can sign in)."""
    from web.auth import set_password

    engine = _engine(ctx)
    staff = engine.registry.read_json_optional("demo/staff.json") or {}
    names = [u["username"] for u in staff.get("users", [])]
    with engine.db.transaction() as session:
        missing = session.scalars(
            sa.select(User.username).where(User.username.in_(names), User.password_hash.is_(None))
        ).all()
        for username in missing:
            set_password(session, username, DEMO_PASSWORD)
    return len(missing)


@cli.command()
@click.option("--bind", default="127.0.0.1:5000", show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.pass_context
@user_errors
def web(ctx: click.Context, bind: str, workers: int) -> None:
    """Serve the pages and the JSON API (gunicorn). Timers are fired by `frontdoor worker`, not here."""
    from web import create_app

    _gunicorn(create_app(engine=_engine(ctx)), bind, workers)


@cli.command("run", help="What `make run` starts: the web application and the timer worker together.")
@click.option("--bind", default="127.0.0.1:5000", show_default=True)
@click.pass_context
@user_errors
def run_all(ctx: click.Context, bind: str) -> None:
    from web import create_app

    set_demo_passwords(ctx)
    engine = _engine(ctx)
    with engine.db.read() as session:
        users = session.scalars(sa.select(User).where(User.active.is_(True)).order_by(User.username)).all()
    click.echo(
        f"Frontdoor: http://{bind}/  (database {engine.db.engine.url.render_as_string(hide_password=True)})"
    )
    if users:
        click.echo(f"Demo users, each with the password {DEMO_PASSWORD!r}:")
        for user in users:
            click.echo(f"  {user.username:<16} {user.display_name}")
    url = engine.db.engine.url.render_as_string(hide_password=False)
    worker = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "--database-url", url, "worker"],
        env={**os.environ, "FRONTDOOR_DATABASE_URL": url},
    )
    try:
        # Local http: Chrome and Firefox accept Secure cookies on 127.0.0.1, so sign-in works.
        _gunicorn(create_app(engine=engine), bind, 2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)


# `frontdoor run` from the engine (worker only) is replaced by the one above.
cli.commands.pop("run", None)
cli.add_command(run_all, "run")
cli.add_command(tokens_group)
cli.add_command(users_group)
cli.add_command(census_group)


def adapter_hooks() -> dict[str, Any]:
    """The adapters the engine's commands use: letter PDFs, and the worker's e-mail job."""
    from adapters import wire_letters, worker_jobs

    return {"configure_engine": wire_letters, "worker_jobs": worker_jobs}


def main() -> None:
    cli(obj=adapter_hooks())


if __name__ == "__main__":
    main()
