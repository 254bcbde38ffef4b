"""Versions and live state: moving running cases to a new version, a case's diagram, a process heatmap.

- Migration (process owner only): running cases on older versions of a process, a pre-check of
  each (what changes for it, or why it cannot move: engine.migrate, on SpiffWorkflow's diff) and
  the move itself, one transaction per case, each audited as ``instance.migrated``.
- Case diagram (whoever may see the case; audited like the case page): the BPMN of the version
  the case runs, with completed, active and waiting elements marked and waiting timers' due
  dates as overlays.
- Heatmap (process owners and managers): open and overdue tasks per element, counted in the task
  projection with one indexed query (ix_task_process_open); nothing is deserialized.

Every diagram page also gives what it shows as an HTML table: that is what screen readers (and the
tests) read.  The diagrams are drawn by web/static/js/state_diagram.js from JSON in the page.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask_login import login_required
from SpiffWorkflow.util.task import TaskState
from sqlalchemy.orm import Session

from engine import clock, migrate
from engine.core import Engine
from engine.errors import FrontdoorError
from engine.models import CaseRecord, ProcessDefinition, ProcessInstance, Task, Timer
from engine.projection import OPEN_STATUSES

from . import engine_of
from .access import can_view_process_heatmap, is_process_owner, record_view, require, viewable_case
from .auth import person
from .cases import date_time, plural
from .process_owner import DIAGRAM_CSP

bp = Blueprint("process_views", __name__)

STATE_WORDS = {"completed": "Completed", "active": "In progress", "waiting": "Waiting"}


def _diagram_page(html: str, status: int = 200) -> Any:
    response = current_app.make_response((html, status))
    response.headers["Content-Security-Policy"] = DIAGRAM_CSP
    return response


def _versions(session: Session, key: str) -> list[ProcessDefinition]:
    return list(
        session.scalars(
            sa.select(ProcessDefinition)
            .where(ProcessDefinition.key == key)
            .order_by(ProcessDefinition.version.desc())
        )
    )


# ---------------------------------------------------------------------- migration


def _running(session: Session, key: str, versions: list[ProcessDefinition]) -> list[dict[str, Any]]:
    """Every running instance that runs a version of ``key``: as its own process, or as a process it
    calls (pinned in ``called_definitions``), with its case, the version and its open steps."""
    by_id = {d.id: d for d in versions}
    rows = session.execute(
        sa.select(
            ProcessInstance.id,
            ProcessInstance.definition_id,
            ProcessInstance.called_definitions,
            ProcessInstance.started_at,
            CaseRecord.reference,
            ProcessDefinition.name,
            ProcessDefinition.key,
        )
        .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
        .outerjoin(CaseRecord, CaseRecord.id == ProcessInstance.case_id)
        .where(ProcessInstance.status == "running")
        .order_by(ProcessInstance.id)
    ).all()
    found = []
    for r in rows:
        pinned = (r.called_definitions or {}).get(key) if r.key != key else r.definition_id
        if pinned in by_id:
            found.append((r, by_id[pinned], r.key != key))
    steps: dict[int, list[str]] = {}
    if found:
        open_rows = session.execute(
            sa.select(Task.instance_id, Task.name)
            .where(Task.instance_id.in_([r.id for r, _, _ in found]), Task.status.in_(OPEN_STATUSES))
            .order_by(Task.created_at, Task.id)
        )
        for instance_id, name in open_rows:
            steps.setdefault(instance_id, []).append(name)
    return [
        {
            "id": r.id,
            "definition_id": definition.id,
            "version": definition.version,
            "case": r.reference or "No case",
            "via": f"called by {r.name or r.key}" if called else "",
            "started": date_time(r.started_at),
            "steps": ", ".join(steps.get(r.id, [])) or "No open tasks",
        }
        for r, definition, called in sorted(found, key=lambda f: (f[1].version, f[0].id))
    ]


@bp.route("/processes/<key>/migration", methods=["GET", "POST"])
@login_required
def migration(key: str) -> Any:
    viewer = person()
    require(is_process_owner(viewer))
    engine = engine_of(current_app)
    with engine.db.read() as session:
        versions = _versions(session, key)
    if not versions:
        abort(404)
    by_id = {d.id: d for d in versions}
    errors: list[tuple[str, str]] = []
    target = versions[0]
    chosen: list[int] = []
    checks: list[migrate.Precheck] = []
    outcomes: list[migrate.Outcome] = []
    changes: list[tuple[int, migrate.SpecChanges]] = []
    status = 200
    if request.method == "POST":
        raw_target = request.form.get("target", "")
        if raw_target.isdigit() and int(raw_target) in by_id:
            target = by_id[int(raw_target)]
        else:
            errors.append(("target", "Choose the version to move the cases to"))
        raw_ids = request.form.getlist("instance")
        if not raw_ids or not all(i.isdigit() for i in raw_ids):
            errors.append(("instance", "Choose at least one case to move"))
        else:
            chosen = [int(i) for i in raw_ids]
        if not errors:
            try:
                if request.form.get("action") == "migrate":
                    outcomes = migrate.migrate(engine, chosen, target.id, viewer.username)
                else:
                    checks = migrate.precheck(engine, chosen, target.id)
                    from_ids = sorted({c.from_definition_id for c in checks if c.from_definition_id in by_id})
                    changes = [
                        (by_id[i].version, migrate.version_changes(engine, i, target.id))
                        for i in from_ids
                        if i is not None
                        if i != target.id
                    ]
            except FrontdoorError as exc:
                errors.append(("instance", str(exc)))
        if errors:
            status = 400
    with engine.db.read() as session:
        running_now = _running(session, key, versions)
        references = dict(
            session.execute(
                sa.select(ProcessInstance.id, CaseRecord.reference)
                .join(CaseRecord, CaseRecord.id == ProcessInstance.case_id)
                .where(ProcessInstance.id.in_(chosen or [-1]))
            ).all()
        )
    candidates = [r for r in running_now if r["definition_id"] != target.id]
    running: dict[int, int] = {}
    for r in running_now:
        running[r["definition_id"]] = running.get(r["definition_id"], 0) + 1
    return render_template(
        "process_views/migration.html",
        key=key,
        name=versions[0].name or key,
        versions=[
            {
                "id": d.id,
                "version": d.version,
                "deployed": date_time(d.deployed_at),
                "by": d.deployed_by,
                "running": running.get(d.id, 0),
            }
            for d in versions
        ],
        target=target,
        candidates=candidates,
        chosen=set(chosen),
        checks=checks,
        movable=[c.instance_id for c in checks if c.can_move],
        outcomes=outcomes,
        moved=sum(1 for o in outcomes if o.moved),
        changes=changes,
        references=references,
        errors=errors,
        plural=plural,
    ), status


# ---------------------------------------------------------------------- case diagram


def _diagram_key(definition: ProcessDefinition) -> str:
    return f"d{definition.id}"


def _case_diagrams(
    engine: Engine, session: Session, instance: ProcessInstance
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """One diagram per process file the instance runs (its own, and the processes it has called).

    Completed, active and waiting elements come from the instance state (what it still holds:
    completed history is pruned) and the projections (completed tasks, fired and waiting timers).
    """
    pins = instance.called_definitions or {}
    definitions = {instance.definition_id: session.get(ProcessDefinition, instance.definition_id)}
    for called in pins.values():
        definitions[called] = session.get(ProcessDefinition, called)
    # Which diagram each process spec (called or embedded) is drawn in.
    home: dict[str, int] = {}
    for definition_id, definition in definitions.items():
        if definition is None:
            continue
        own = engine.specs.bundle(session, definition_id, {})
        home.setdefault(own.spec.name, definition_id)
        for name in own.subprocess_specs:
            home.setdefault(name, definition_id)
    states: dict[int, dict[str, str]] = {d: {} for d in definitions}
    rank = {"completed": 0, "waiting": 1, "active": 2}

    def mark(definition_id: int | None, element: str, state: str) -> None:
        if definition_id is None or definition_id not in states:
            return
        current = states[definition_id].get(element)
        if current is None or rank[state] > rank[current]:
            states[definition_id][element] = state

    bundle = engine.specs.bundle(session, instance.definition_id, pins)
    workflow = engine.runtime.load(instance.state, bundle)
    for task in workflow.get_tasks():
        spec = task.task_spec
        element = getattr(spec, "bpmn_id", None)
        if element is None:
            continue
        where = home.get(task.workflow.spec.name)
        if task.has_state(TaskState.COMPLETED):
            mark(where, element, "completed")
        elif task.has_state(TaskState.READY | TaskState.STARTED):
            mark(where, element, "active")
        elif task.has_state(TaskState.WAITING):
            mark(where, element, "waiting")
    for process_key, element, status in session.execute(
        sa.select(Task.process_key, Task.element_id, Task.status).where(Task.instance_id == instance.id)
    ):
        if status == "completed":
            mark(home.get(process_key), element, "completed")
        elif status in OPEN_STATUSES:
            mark(home.get(process_key), element, "active")
    # Pruned history drops passed automatic steps (events, gateways); a process that has started
    # has passed its start event, when it has only one.
    for sp in [workflow, *workflow.subprocesses.values()]:
        starts = [s for s in sp.spec.start.outputs if getattr(s, "bpmn_id", None)]
        if len(starts) == 1:
            mark(home.get(sp.spec.name), starts[0].bpmn_id, "completed")
    element_home = {}
    for definition_id in definitions:
        own = engine.specs.bundle(session, definition_id, {})
        for spec in [own.spec, *own.subprocess_specs.values()]:
            for task_spec in spec.task_specs.values():
                if getattr(task_spec, "bpmn_id", None):
                    element_home.setdefault(task_spec.bpmn_id, definition_id)
    overlays: dict[int, list[dict[str, str]]] = {d: [] for d in definitions}
    timers = session.execute(
        sa.select(Timer.element_id, Timer.name, Timer.status, Timer.due_at)
        .where(Timer.instance_id == instance.id, Timer.status.in_(("waiting", "fired")))
        .order_by(Timer.due_at)
    ).all()
    timer_rows = []
    for element, name, status, due_at in timers:
        where = element_home.get(element)
        if status == "fired":
            mark(where, element, "completed")
            continue
        mark(where, element, "waiting")
        text = f"Due {date_time(due_at)}"
        if where is not None:
            overlays[where].append({"element_id": element, "text": text, "class": "fd-overlay--timer"})
        timer_rows.append({"name": name or element, "element": element, "due": date_time(due_at)})
    diagrams = []
    for definition_id, definition in definitions.items():
        if definition is None:
            continue
        spec = engine.specs.bundle(session, definition_id, {}).spec
        names = {ts.bpmn_id: ts.bpmn_name or ts.bpmn_id for ts in spec.task_specs.values() if ts.bpmn_id}
        # A called process that has not started (nothing marked) is left out.
        if definition_id != instance.definition_id and not states[definition_id]:
            continue
        diagrams.append(
            {
                "id": _diagram_key(definition),
                "title": f"{definition.name or definition.key}, version {definition.version}",
                "data": {
                    "xml": definition.bpmn_xml,
                    "markers": [
                        {"element_id": element, "class": f"fd-marker--{state}"}
                        for element, state in sorted(states[definition_id].items())
                    ],
                    "overlays": overlays[definition_id],
                },
                "rows": [
                    {"element": e, "name": names.get(e, e), "state": STATE_WORDS[s]}
                    for e, s in sorted(states[definition_id].items(), key=lambda i: (-rank[i[1]], i[0]))
                ],
            }
        )
    return diagrams, timer_rows


@bp.route("/cases/<reference>/diagram")
@login_required
def case_diagram(reference: str) -> Any:
    engine = engine_of(current_app)
    viewer = person()
    case = viewable_case(viewer, reference)
    with engine.db.read() as session:
        instances = session.execute(
            sa.select(
                ProcessInstance.id,
                ProcessInstance.status,
                ProcessDefinition.name,
                ProcessDefinition.key,
                ProcessDefinition.version,
            )
            .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
            .where(ProcessInstance.case_id == case.id)
            .order_by(ProcessInstance.status != "running", ProcessInstance.id.desc())
        ).all()
        wanted = request.args.get("instance", "")
        chosen = next((i for i in instances if str(i.id) == wanted), None) if wanted else None
        if wanted and chosen is None:
            abort(404)
        chosen = chosen or (instances[0] if instances else None)
        diagrams: list[dict[str, Any]] = []
        timers: list[dict[str, str]] = []
        if chosen is not None:
            instance = session.get(ProcessInstance, chosen.id)
            assert instance is not None
            diagrams, timers = _case_diagrams(engine, session, instance)
    record_view(viewer, case, "diagram")
    html = render_template(
        "process_views/case_diagram.html",
        case=case,
        instances=[
            {
                "id": i.id,
                "title": f"{i.name or i.key}, version {i.version}",
                "status": "Running" if i.status == "running" else i.status.capitalize(),
                "url": url_for(".case_diagram", reference=reference, instance=i.id),
                "current": chosen is not None and i.id == chosen.id,
            }
            for i in instances
        ],
        diagrams=diagrams,
        timers=timers,
    )
    return _diagram_page(html)


# ---------------------------------------------------------------------- heatmap

# Open and overdue tasks per element of one process, from the task projection alone.
_HEATMAP = (
    sa.select(
        Task.element_id,
        sa.func.min(Task.name).label("name"),
        sa.func.count().label("open"),
        sa.func.count(Task.due_at).filter(Task.due_at < sa.bindparam("now")).label("overdue"),
    )
    .where(Task.process_key == sa.bindparam("key"), Task.status.in_(OPEN_STATUSES))
    .group_by(Task.element_id)
)


def heatmap_counts(session: Session, key: str, now: Any) -> list[Any]:
    return list(session.execute(_HEATMAP, {"key": key, "now": now}).all())


def heat(row: dict[str, Any], busiest: int) -> int:
    """1-4: overdue work is hottest (4 when at least half of the step's work is overdue)."""
    if row["overdue"]:
        return 4 if row["overdue"] * 2 >= row["open"] else 3
    return 2 if row["open"] * 2 >= busiest else 1


@bp.route("/processes/<key>/heatmap")
@login_required
def heatmap(key: str) -> Any:
    require(can_view_process_heatmap(person()))
    engine = engine_of(current_app)
    now = clock.now()
    with engine.db.read() as session:
        versions = _versions(session, key)
        if not versions:
            abort(404)
        newest = versions[0]
        counts = heatmap_counts(session, key, now)
        spec = engine.specs.bundle(session, newest.id, {}).spec
    names = {ts.bpmn_id: ts.bpmn_name or ts.bpmn_id for ts in spec.task_specs.values() if ts.bpmn_id}
    rows = sorted(
        (
            {
                "element": row.element_id,
                "name": names.get(row.element_id, row.name),
                "open": int(row.open),
                "overdue": int(row.overdue or 0),
                "in_diagram": row.element_id in names,
            }
            for row in counts
        ),
        key=lambda r: (-r["overdue"], -r["open"], r["name"]),
    )
    busiest = max((r["open"] for r in rows), default=0)
    data = {
        "xml": newest.bpmn_xml,
        "markers": [
            {"element_id": r["element"], "class": f"fd-marker--heat-{heat(r, busiest)}"} for r in rows
        ],
        "overlays": [
            {
                "element_id": r["element"],
                "text": f"{r['open']} open" + (f", {r['overdue']} overdue" if r["overdue"] else ""),
                "class": "fd-overlay--finding" if r["overdue"] else "",
            }
            for r in rows
        ],
    }
    html = render_template(
        "process_views/heatmap.html",
        key=key,
        name=newest.name or key,
        version=newest.version,
        rows=rows,
        total_open=sum(r["open"] for r in rows),
        total_overdue=sum(r["overdue"] for r in rows),
        data=data,
        is_owner=is_process_owner(person()),
        now=date_time(now),
    )
    return _diagram_page(html)
