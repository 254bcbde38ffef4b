"""A case's history must not make its next step cost more: stored state stays the size of what is live."""

from __future__ import annotations

import sqlalchemy as sa

from engine.core import Engine
from engine.models import AuditEvent, ProcessInstance, Task
from tests.conftest import fixture_bpmn

HOLDERS = {
    "Record the contact": "sam.screener",
    "Police check": "pat.police",
    "Health check": "hana.health",
    "Decide the response": "mo.manager",
}


def _loop_once(engine: Engine, round_number: int) -> None:
    for _ in range(4):
        task = engine.tasks(case_reference="C-1")[0]
        engine.complete(task.id, HOLDERS[task.name], {"decision": "more_information", "round": round_number})


def _state_size(engine: Engine) -> int:
    with engine.db.read() as session:
        return len(session.scalar(sa.select(ProcessInstance.state)) or "")


def test_state_does_not_grow_with_completed_history(engine: Engine) -> None:
    engine.deploy([fixture_bpmn("triage.bpmn")], "test")
    engine.start("triage", "sam.screener", case_reference="C-1", team_key="mash")
    for n in range(2):
        _loop_once(engine, n)
    early = _state_size(engine)
    for n in range(2, 52):
        _loop_once(engine, n)
    late = _state_size(engine)

    # 200 more completed tasks, and the stored state is the same size give or take a few bytes of data.
    assert abs(late - early) < 64, (early, late)
    # ...while the history is all still there, where reports read it.
    with engine.db.read() as session:
        completed = session.scalar(sa.select(sa.func.count()).where(Task.status == "completed"))
        audited = session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "task.completed")
        )
    assert completed == audited == 208


def test_pruned_case_still_runs_to_the_end(engine: Engine) -> None:
    engine.deploy([fixture_bpmn("triage.bpmn")], "test")
    started = engine.start("triage", "sam.screener", case_reference="C-1", team_key="mash")
    for n in range(5):
        _loop_once(engine, n)
    for _ in range(4):
        task = engine.tasks(case_reference="C-1")[0]
        answer = {"decision": "refer"} if task.name == "Decide the response" else {"last": True}
        engine.complete(task.id, HOLDERS[task.name], answer)
    [allocate] = engine.tasks(case_reference="C-1")
    assert allocate.name == "Allocate to a social worker"
    engine.complete(allocate.id, "mo.manager", {})
    data = engine.instance_data(started.instance_id)
    assert data["decision"] == "refer" and data["round"] == 4 and data["last"] is True
    with engine.db.read() as session:
        assert session.scalar(sa.select(ProcessInstance.status)) == "completed"
