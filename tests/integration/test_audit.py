"""The audit trail: every command leaves its events, and `frontdoor audit verify` finds any row
that was changed or removed afterwards."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from engine.audit import event_hash
from engine.cli import cli
from engine.core import Engine
from engine.models import AuditEvent

from .helpers import audit_actions, bpmn, deploy_triage, do_checks, open_task, start_triage


def database_url(engine: Engine) -> str:
    return engine.db.engine.url.render_as_string(hide_password=False)


def verify(engine: Engine) -> Result:
    return CliRunner().invoke(cli, ["--database-url", database_url(engine), "audit", "verify"])


def events(engine: Engine) -> list[AuditEvent]:
    with engine.db.read() as session:
        return list(session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))


def seq_of(engine: Engine, action: str, task_id: str | None = None) -> int:
    return next(
        e.seq for e in events(engine) if e.action == action and (task_id is None or e.task_id == task_id)
    )


def raw_sql(engine: Engine, statement: str, **params: Any) -> None:
    """What someone with database access, and not the engine, would do."""
    with engine.db.engine.begin() as connection:
        connection.execute(sa.text(statement), params)


def set_data(engine: Engine, seq: int, data: dict[str, Any]) -> None:
    cast = "CAST(:data AS jsonb)" if engine.db.dialect == "postgresql" else ":data"
    raw_sql(engine, f"UPDATE audit_event SET data = {cast} WHERE seq = :seq", data=json.dumps(data), seq=seq)


CASE_ACTIONS = (
    "case.opened",
    "instance.started",
    "task.created",
    "task.claimed",
    "task.unclaimed",
    "task.assigned",
    "task.completed",
    "instance.completed",
)


@pytest.fixture
def walked(any_engine: Engine) -> Engine:
    """One triage case taken from contact to allocation, with a claim, an unclaim and an assignment."""
    engine = any_engine
    deploy_triage(engine)
    start_triage(engine, "C-1", "mash", data={"referrer": "school"})
    record = open_task(engine, "C-1", "record_contact")
    engine.claim(record.id, "sam.screener")
    engine.unclaim(record.id, "sam.screener")
    engine.assign(record.id, "sam.screener", by="mo.manager")
    engine.complete(record.id, "sam.screener", {"note": "worried neighbour"})
    do_checks(engine, "C-1")
    engine.complete(open_task(engine, "C-1", "decide").id, "mo.manager", {"decision": "refer"})
    engine.complete(open_task(engine, "C-1", "allocate").id, "mo.manager", {"allocated_to": "sara.social"})
    return engine


def test_every_command_writes_its_events(walked: Engine) -> None:
    rows = events(walked)
    case_id = walked.get_case("C-1").id
    record = next(
        t for t in walked.tasks(case_reference="C-1", include_closed=True) if t.element_id == "record_contact"
    )

    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert rows[0].action == "process.deployed" and rows[0].data == {"key": "triage", "version": 1}
    by_action: dict[str, list[AuditEvent]] = {}
    for row in rows:
        by_action.setdefault(row.action, []).append(row)
    for action in CASE_ACTIONS:
        assert action in by_action, f"no {action} event"
        assert all(e.case_id == case_id for e in by_action[action]), action

    [opened] = by_action["case.opened"]
    assert (opened.actor, opened.data["reference"], opened.data["team"]) == ("sam.screener", "C-1", "mash")
    [started] = by_action["instance.started"]
    assert started.actor == "sam.screener" and started.data["data"] == {"referrer": "school"}
    created = {e.data["element"] for e in by_action["task.created"]}
    assert created == {"record_contact", "police_check", "health_check", "decide", "allocate"}
    assert all(e.task_id for e in by_action["task.created"])
    [claimed] = by_action["task.claimed"]
    assert (claimed.actor, claimed.task_id) == ("sam.screener", record.id)
    [assigned] = by_action["task.assigned"]
    assert (assigned.actor, assigned.task_id, assigned.data["assignee"]) == (
        "mo.manager",
        record.id,
        "sam.screener",
    )
    completed = {e.task_id: e for e in by_action["task.completed"]}
    assert completed[record.id].actor == "sam.screener"
    assert completed[record.id].data["changes"] == {"note": "worried neighbour"}
    assert {e.actor for e in by_action["task.completed"]} == {
        "sam.screener",
        "pat.police",
        "hana.health",
        "mo.manager",
    }
    [finished] = by_action["instance.completed"]
    assert finished.actor == "mo.manager" and finished.seq == rows[-1].seq
    # The case is opened before the instance exists; every later event belongs to the instance.
    assert opened.instance_id is None
    assert all(e.instance_id == started.instance_id for e in rows[2:])


def test_cancel_and_refusals_in_the_trail(any_engine: Engine) -> None:
    deploy_triage(any_engine)
    started = start_triage(any_engine)
    before = audit_actions(any_engine)
    with pytest.raises(Exception, match="Contact officer"):
        any_engine.claim(open_task(any_engine, "C-1", "record_contact").id, "pat.police")
    assert audit_actions(any_engine) == before  # a refused command writes nothing

    any_engine.cancel(started.instance_id, "mo.manager", "sent to the wrong council")

    rows = events(any_engine)
    assert [e.action for e in rows[len(before) :]] == ["task.cancelled", "instance.cancelled"]
    assert rows[-1].data == {"reason": "sent to the wrong council"}
    assert {e.actor for e in rows[len(before) :]} == {"mo.manager"}


def test_verify_says_ok_on_an_untouched_trail(walked: Engine) -> None:
    result = verify(walked)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok"


@pytest.mark.parametrize("what", ["data", "actor", "action", "time"])
def test_verify_finds_a_changed_row(walked: Engine, what: str) -> None:
    record = next(
        t for t in walked.tasks(case_reference="C-1", include_closed=True) if t.element_id == "record_contact"
    )
    seq = seq_of(walked, "task.completed", record.id)
    if what == "data":
        set_data(walked, seq, {"changes": {"note": "nothing to worry about"}})
    elif what == "actor":
        raw_sql(walked, "UPDATE audit_event SET actor = 'mo.manager' WHERE seq = :seq", seq=seq)
    elif what == "action":
        raw_sql(walked, "UPDATE audit_event SET action = 'task.viewed' WHERE seq = :seq", seq=seq)
    else:
        with walked.db.engine.begin() as connection:
            connection.execute(
                sa.update(AuditEvent.__table__)
                .where(AuditEvent.__table__.c.seq == seq)
                .values(occurred_at=events(walked)[0].occurred_at + timedelta(hours=1))
            )

    result = verify(walked)

    assert result.exit_code == 1, result.output
    assert f"broken at row {seq}" in result.output
    assert "Traceback" not in result.output


def test_verify_finds_a_row_deleted_from_the_middle(walked: Engine) -> None:
    rows = events(walked)
    middle = rows[len(rows) // 2].seq
    raw_sql(walked, "DELETE FROM audit_event WHERE seq = :seq", seq=middle)

    result = verify(walked)

    assert result.exit_code == 1, result.output
    assert f"broken at row {middle}" in result.output


def test_verify_finds_the_last_row_deleted(walked: Engine) -> None:
    last = events(walked)[-1].seq
    raw_sql(walked, "DELETE FROM audit_event WHERE seq = :seq", seq=last)

    result = verify(walked)

    assert result.exit_code == 1, result.output
    assert f"broken at row {last}" in result.output


def test_verify_finds_a_changed_row_even_when_its_own_hash_was_recomputed(walked: Engine) -> None:
    row = events(walked)[3]
    forged = {"forged": True}
    fields = (row.seq, row.prev_hash, row.occurred_at, row.actor, row.action, row.case_id, row.instance_id)
    digest = event_hash(*fields, row.task_id, forged)
    set_data(walked, row.seq, forged)
    raw_sql(walked, "UPDATE audit_event SET hash = :h WHERE seq = :seq", h=digest, seq=row.seq)

    result = verify(walked)

    assert result.exit_code == 1, result.output
    assert f"broken at row {row.seq + 1}" in result.output


def test_verify_on_a_trail_with_awkward_numbers(any_engine: Engine) -> None:
    """Answers are hashed as given; reading them back must not make the chain look tampered with."""
    deploy_triage(any_engine)
    start_triage(any_engine, data={"income": 1e16, "score_change": round(-0.04, 1), "ratio": 0.1})

    result = verify(any_engine)

    assert result.output.strip() == "ok"
    assert result.exit_code == 0


def test_verify_on_an_empty_trail_is_ok(any_engine: Engine) -> None:
    result = verify(any_engine)

    assert (result.exit_code, result.output.strip()) == (0, "ok")


def test_deploying_records_who_deployed(any_engine: Engine) -> None:
    any_engine.deploy([bpmn("triage.bpmn")], "olive.owner")

    [row] = events(any_engine)
    assert (row.actor, row.action, row.data) == (
        "olive.owner",
        "process.deployed",
        {"key": "triage", "version": 1},
    )
