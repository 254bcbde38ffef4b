"""What the integration tests share: the fixture diagrams, walking the triage loop, and a
snapshot of everything a command may write, to show that a refused command changed nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine import audit
from engine.core import Engine, StartResult
from engine.models import AuditEvent, Base, ProcessInstance, Task

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bpmn"
PARTNERS = {"police_check": "pat.police", "health_check": "hana.health"}


def bpmn(name: str) -> tuple[str, bytes]:
    path = FIXTURES / name
    return path.name, path.read_bytes()


def deploy_triage(engine: Engine) -> None:
    engine.deploy([bpmn("triage.bpmn")], "olive.owner")


def start_triage(
    engine: Engine, case: str = "C-1", team: str = "mash", data: dict[str, Any] | None = None
) -> StartResult:
    return engine.start("triage", "sam.screener", case_reference=case, team_key=team, data=data)


def open_tasks(engine: Engine, case: str) -> dict[str, Task]:
    """The case's open tasks by element id (the triage loop never has two of one element open)."""
    rows = engine.tasks(case_reference=case)
    by_element = {t.element_id: t for t in rows}
    assert len(by_element) == len(rows), [t.element_id for t in rows]
    return by_element


def open_task(engine: Engine, case: str, element: str) -> Task:
    tasks = open_tasks(engine, case)
    assert element in tasks, f"{element} is not open on {case}; open: {sorted(tasks)}"
    return tasks[element]


def do_checks(engine: Engine, case: str, answers: dict[str, dict[str, Any]] | None = None) -> None:
    """Complete the police check, then the health check."""
    for element in ("police_check", "health_check"):
        task = open_task(engine, case, element)
        engine.complete(task.id, PARTNERS[element], (answers or {}).get(element, {}))


def walk_to_allocate(engine: Engine, case: str = "C-1", team: str = "mash") -> Task:
    """Start a triage case and take it straight to 'Allocate to a social worker'."""
    start_triage(engine, case, team)
    engine.complete(open_task(engine, case, "record_contact").id, "sam.screener", {"note": "first"})
    do_checks(engine, case)
    engine.complete(open_task(engine, case, "decide").id, "mo.manager", {"decision": "refer"})
    return open_task(engine, case, "allocate")


def instance_row(engine: Engine, instance_id: int) -> ProcessInstance:
    with engine.db.read() as session:
        row = session.get(ProcessInstance, instance_id)
        assert row is not None
        return row


def audit_actions(engine: Engine) -> list[str]:
    with engine.db.read() as session:
        return list(session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))


def audit_count(engine: Engine) -> int:
    with engine.db.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0)


def chain_break(engine: Engine) -> audit.ChainBreak | None:
    with engine.db.read() as session:
        return audit.verify(session)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order: equal snapshots mean nothing changed."""
    with engine.db.read() as session:
        return {
            table.name: [
                tuple(row)
                for row in session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            ]
            for table in Base.metadata.sorted_tables
        }


def task_statuses(engine: Engine, instance_id: int) -> dict[str, tuple[str, str, str | None]]:
    """task id -> (element, status, assignee) for every task the instance ever had."""
    with engine.db.read() as session:
        rows = session.execute(
            sa.select(Task.id, Task.element_id, Task.status, Task.assignee).where(
                Task.instance_id == instance_id
            )
        ).all()
    return {row.id: (row.element_id, row.status, row.assignee) for row in rows}
