"""``frontdoor``: the command line.

Errors a user can act on are printed as ``error: ...`` with exit status 1 (2 for bad
arguments, as click does); never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa

from . import audit
from .calendar_cli import calendar_group
from .core import Engine
from .db import Database
from .errors import DefinitionError, FrontdoorError
from .models import Task

F = TypeVar("F", bound=Callable[..., Any])
LONDON = ZoneInfo("Europe/London")


def _engine(ctx: click.Context) -> Engine:
    engine = ctx.obj.get("engine") if ctx.obj else None
    if engine is None:
        engine = Engine(Database(ctx.obj.get("database_url") if ctx.obj else None))
        # The command line that runs us (web/cli.py) plugs the adapters in: letters, ...
        configure = ctx.obj.get("configure_engine") if ctx.obj else None
        if configure is not None:
            configure(engine)
        ctx.ensure_object(dict)["engine"] = engine
    return engine


def user_errors(function: F) -> F:
    """Turn the engine's errors into a message and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DefinitionError as exc:
            for finding in exc.findings:
                click.echo(f"error: {finding}", err=True)
            sys.exit(1)
        except FrontdoorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            # No schema yet, or no database to talk to: say which, not a traceback.
            text = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "no such table" in text or ("does not exist" in text and "relation" in text):
                click.echo(
                    "error: the database has no Frontdoor tables yet; run `frontdoor init` first", err=True
                )
            else:
                click.echo(f"error: cannot use the database ({text}); check FRONTDOOR_DATABASE_URL", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _json_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise click.BadParameter('give a JSON object, e.g. \'{"decision": "refer"}\'')
    return data


@click.group()
@click.option("--database-url", envvar="FRONTDOOR_DATABASE_URL", help="Defaults to instance/frontdoor.db.")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Frontdoor: the BPMN workflow engine for the front door of children's social care."""
    ctx.ensure_object(dict)["database_url"] = database_url


cli.add_command(calendar_group)


@cli.command()
@click.option("--no-demo", is_flag=True, help="Do not create the demo teams and users.")
@click.option(
    "--demo-cases", is_flag=True, help="Also add the example cases (processes/demo/cases.json), once."
)
@click.pass_context
@user_errors
def init(ctx: click.Context, no_demo: bool, demo_cases: bool) -> None:
    """Create or upgrade the database, deploy processes/, add demo staff. Safe to run again."""
    if demo_cases and not no_demo:
        click.echo("adding the example cases (a few seconds)...", err=True)
    counts = _engine(ctx).init(demo=not no_demo, demo_cases=demo_cases and not no_demo)
    cases = f"; {counts['demo_cases']} example cases added" if demo_cases else ""
    click.echo(
        f"ok: schema up to date; {counts['roles']} roles, {counts['staff']} staff records and "
        f"{counts['deployed']} process versions added{cases}"
    )


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--by", default="cli", show_default=True, help="Who is deploying (for the audit trail).")
@click.pass_context
@user_errors
def deploy(ctx: click.Context, files: tuple[Path, ...], by: str) -> None:
    """Deploy BPMN FILES together (call activities may cross them). All or nothing."""
    for result in _engine(ctx).deploy_paths(files, by):
        state = "deployed" if result.created else "unchanged, already deployed as"
        click.echo(f"{result.key}: {state} version {result.version}")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check BPMN FILES together as deploy would, without a database.

    Prints each finding as FILE: ELEMENT_ID (name): message; exit status 0 when the files can
    be deployed, 1 when there are findings.  Whether a called process is deployed is only
    known to deploy.
    """
    try:
        status = _validate(files)
    except Exception as exc:
        click.echo(f"error: the files could not be validated ({type(exc).__name__}: {exc})", err=True)
        status = 1
    sys.exit(status)


def _validate(paths: tuple[Path, ...]) -> int:
    from .registry import Registry
    from .validation import ValidationContext, format_finding, validate_files

    try:
        context = ValidationContext.from_registry(Registry())
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    files: list[tuple[str, bytes]] = []
    unreadable = 0
    for path in paths:
        try:
            files.append((str(path), path.read_bytes()))
        except OSError as exc:
            unreadable += 1
            reason = (
                "there is no such file" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            )
            click.echo(f"{path}: -: cannot read the file ({reason}); check the path")
    findings = validate_files(files, context) if files else []
    names = [name for name, _ in files]
    for name in dict.fromkeys(names):
        mine = [f for f in findings if f.file == name]
        for finding in mine:
            click.echo(format_finding(finding))
        if not mine:
            click.echo(f"{name}: ok")
    for finding in findings:
        if finding.file not in names:
            click.echo(format_finding(finding))
    return 1 if findings or unreadable else 0


@cli.group()
def processes() -> None:
    """Deployed processes."""


@processes.command("list")
@click.pass_context
@user_errors
def processes_list(ctx: click.Context) -> None:
    """Every deployed version, newest last."""
    rows = _engine(ctx).list_processes()
    if not rows:
        click.echo("nothing deployed yet: run `frontdoor init` or `frontdoor deploy FILE`")
    for d in rows:
        when = d.deployed_at.astimezone(LONDON).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{d.key}\tv{d.version}\t{d.status}\t{when}\t{d.deployed_by}\t{d.name or ''}")


@cli.command()
@click.argument("key")
@click.option("--case", "case_reference", help="The child's case reference; created if new.")
@click.option("--team", help="The team a new case belongs to.")
@click.option("--data", callback=_json_option, help="Initial process data as a JSON object.")
@click.option("--by", default="cli", show_default=True, help="Who is starting it.")
@click.pass_context
@user_errors
def start(
    ctx: click.Context, key: str, case_reference: str | None, team: str | None, data: Any, by: str
) -> None:
    """Start the newest version of process KEY."""
    result = _engine(ctx).start(key, by, case_reference=case_reference, data=data, team_key=team)
    click.echo(
        f"started instance {result.instance_id}"
        + (f" on case {result.case_reference}" if result.case_reference else "")
    )
    for task_id in result.open_tasks:
        click.echo(f"  task {task_id}")


def _task_dict(task: Task) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.astimezone(UTC).isoformat() if value else None

    return {
        "id": task.id,
        "name": task.name,
        "process": task.process_key,
        "element": task.element_id,
        "instance": task.instance_id,
        "case": task.case_id,
        "role": task.role_key,
        "team": task.team_key,
        "assignee": task.assignee,
        "status": task.status,
        "created_at": iso(task.created_at),
        "due_at": iso(task.due_at),
        "escalation_level": task.escalation_level,
        "form": task.form_key,
    }


@cli.command()
@click.option("--user", help="Tasks assigned to this user (my tasks).")
@click.option("--team", help="The team's queue.")
@click.option("--case", "case_reference", help="Tasks of one case.")
@click.option("--all", "include_closed", is_flag=True, help="Include completed and cancelled tasks.")
@click.option(
    "--due",
    type=click.Choice(["overdue", "today", "soon"]),
    help="Only overdue tasks, those due today, or those due within 2 working days.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def tasks(
    ctx: click.Context,
    user: str | None,
    team: str | None,
    case_reference: str | None,
    include_closed: bool,
    due: str | None,
    as_json: bool,
) -> None:
    """Open tasks, soonest due first."""
    rows = _engine(ctx).tasks(
        user=user, team=team, case_reference=case_reference, include_closed=include_closed, due=due
    )
    if as_json:
        click.echo(json.dumps([_task_dict(t) for t in rows], indent=2))
        return
    if not rows:
        click.echo("no tasks")
    for t in rows:
        due = t.due_at.astimezone(LONDON).strftime("%Y-%m-%d %H:%M") if t.due_at else "-"
        fields = [
            t.id,
            t.name,
            t.status,
            t.assignee or "-",
            t.team_key or "-",
            t.role_key or "-",
            f"due {due}",
        ]
        click.echo("\t".join(fields))


@cli.command()
@click.argument("task_id")
@click.option("--user", required=True)
@click.pass_context
@user_errors
def claim(ctx: click.Context, task_id: str, user: str) -> None:
    """Take a task from the queue."""
    _engine(ctx).claim(task_id, user)
    click.echo(f"claimed by {user}")


@cli.command()
@click.argument("task_id")
@click.option("--user", required=True)
@click.pass_context
@user_errors
def unclaim(ctx: click.Context, task_id: str, user: str) -> None:
    """Put a claimed task back in the queue."""
    _engine(ctx).unclaim(task_id, user)
    click.echo("back in the queue")


@cli.command()
@click.argument("task_id")
@click.option("--to", "assignee", required=True, help="Who gets the task.")
@click.option("--by", required=True, help="The manager assigning it.")
@click.pass_context
@user_errors
def assign(ctx: click.Context, task_id: str, assignee: str, by: str) -> None:
    """A manager assigns or reassigns a task."""
    _engine(ctx).assign(task_id, assignee, by)
    click.echo(f"assigned to {assignee}")


@cli.command()
@click.argument("task_id")
@click.option("--user", required=True)
@click.option("--data", callback=_json_option, help="The form's answers as a JSON object.")
@click.pass_context
@user_errors
def complete(ctx: click.Context, task_id: str, user: str, data: Any) -> None:
    """Complete a task and move the process on."""
    _engine(ctx).complete(task_id, user, data or {})
    click.echo("completed")


@cli.group("audit")
def audit_group() -> None:
    """The audit trail."""


@audit_group.command("verify")
@click.pass_context
@user_errors
def audit_verify(ctx: click.Context) -> None:
    """Check the whole hash chain; exit status 1 at the first broken row."""
    with _engine(ctx).db.read() as session:
        broken = audit.verify(session)
    if broken is None:
        click.echo("ok")
        return
    click.echo(f"broken at row {broken.seq}: {broken.reason}")
    sys.exit(1)


@cli.command()
@click.option("--due-before", help="Only timers due before this instant (ISO 8601; local time if no offset).")
@click.option(
    "--status",
    default="waiting",
    show_default=True,
    type=click.Choice(["waiting", "fired", "failed", "cancelled"]),
)
@click.pass_context
@user_errors
def timers(ctx: click.Context, due_before: str | None, status: str) -> None:
    """Timers, soonest due first."""
    before = None
    if due_before:
        try:
            before = datetime.fromisoformat(due_before)
        except ValueError:
            raise click.BadParameter(
                "give an ISO 8601 instant, e.g. 2024-03-06T17:00", param_hint="--due-before"
            ) from None
        if before.tzinfo is None:
            before = before.replace(tzinfo=LONDON)
    rows = _engine(ctx).timers(due_before=before, status=status)
    if not rows:
        click.echo(f"no {status} timers")
    for t in rows:
        due = t.due_at.astimezone(LONDON).strftime("%Y-%m-%dT%H:%M")
        level = f"\tescalation {t.escalation_level}" if t.escalation_level else ""
        click.echo(f"{due}\t{t.id}\tinstance {t.instance_id}\t{t.element_id}\t{t.kind}{level}")


@cli.command()
@click.option("--once", is_flag=True, help="Fire what is due now, then exit.")
@click.pass_context
@user_errors
def worker(ctx: click.Context, once: bool) -> None:
    """Fire timers as they fall due (run one or more of these beside the web process)."""
    from .worker import TimerWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    engine = _engine(ctx)
    # Jobs beside the timers (e-mail from the outbox), passed in by web/cli.py: engine imports no adapter.
    jobs_for = ctx.obj.get("worker_jobs") if ctx.obj else None
    timer_worker = TimerWorker(engine, jobs=jobs_for(engine) if jobs_for else ())
    if once:
        click.echo(f"fired {timer_worker.drain()} timer(s)")
        timer_worker.run_jobs()
        return
    timer_worker.run_forever()


def main() -> None:
    cli(obj={})
