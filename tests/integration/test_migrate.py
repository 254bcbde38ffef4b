"""Moving running cases to a new version of their process (engine/migrate.py), on SQLite and PostgreSQL.

Version 1 is the triage test shape.  Version 2 adds a step after the decision ("Record the
reason") and removes "Allocate to a social worker": a case waiting there cannot move, the others
can, and a moved case goes on under version 2.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine import migrate
from engine.clock import FakeClock
from engine.core import Engine
from engine.errors import InvalidData, NotFound
from engine.models import AuditEvent, ProcessDefinition

from .helpers import (
    FIXTURES,
    chain_break,
    deploy_triage,
    do_checks,
    instance_row,
    open_task,
    open_tasks,
    snapshot,
    start_triage,
    walk_to_allocate,
)

Cases = tuple[Engine, dict[str, int], int]  # engine, instance ids by place, version 2

ADDED_TASK = """    <bpmn:userTask id="record_reason" name="Record the reason">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="noDeadline" value="a test shape" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f_response</bpmn:incoming>
      <bpmn:outgoing>f_reason</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f_reason" sourceRef="record_reason" targetRef="which_response" />
"""


def version_2() -> bytes:
    """Triage with 'Record the reason' after the decision and no 'Allocate to a social worker'."""
    xml = (FIXTURES / "triage.bpmn").read_text(encoding="utf-8")
    xml = re.sub(r'\s*<bpmn:userTask id="allocate".*?</bpmn:userTask>', "", xml, flags=re.S)
    xml = re.sub(r'\s*<bpmn:sequenceFlow id="f_allocated"[^>]*/>', "", xml)
    xml = re.sub(r'\s*<bpmndi:BPMN(Shape|Edge) id="(allocate|f_allocated)_di".*?</bpmndi:BPMN\1>', "", xml)
    xml = xml.replace("<bpmn:flowNodeRef>allocate</bpmn:flowNodeRef>", "")
    xml = xml.replace('targetRef="allocate">', 'targetRef="end_referred">')
    xml = xml.replace("<bpmn:incoming>f_allocated</bpmn:incoming>", "<bpmn:incoming>f_refer</bpmn:incoming>")
    xml = xml.replace(
        '<bpmn:sequenceFlow id="f_response" sourceRef="decide" targetRef="which_response" />',
        '<bpmn:sequenceFlow id="f_response" sourceRef="decide" targetRef="record_reason" />\n' + ADDED_TASK,
    )
    xml = xml.replace(
        "<bpmn:incoming>f_response</bpmn:incoming>\n      <bpmn:outgoing>f_refer</bpmn:outgoing>",
        "<bpmn:incoming>f_reason</bpmn:incoming>\n      <bpmn:outgoing>f_refer</bpmn:outgoing>",
    )
    xml = xml.replace(
        "<bpmn:flowNodeRef>decide</bpmn:flowNodeRef>",
        "<bpmn:flowNodeRef>decide</bpmn:flowNodeRef><bpmn:flowNodeRef>record_reason</bpmn:flowNodeRef>",
    )
    return xml.encode("utf-8")


def deploy_version_2(engine: Engine) -> int:
    [result] = engine.deploy([("triage.bpmn", version_2())], "olive.owner")
    assert (result.version, result.created) == (2, True)
    return result.definition_id


@pytest.fixture
def three_cases(any_engine: Engine) -> Cases:
    """Version 1 with a case at each of three places, then version 2 deployed."""
    engine = any_engine
    deploy_triage(engine)
    at_start = start_triage(engine, "C-START").instance_id
    at_checks = start_triage(engine, "C-CHECKS").instance_id
    engine.complete(open_task(engine, "C-CHECKS", "record_contact").id, "sam.screener", {"note": "x"})
    allocate = walk_to_allocate(engine, "C-ALLOC")
    target = deploy_version_2(engine)
    ids = {"start": at_start, "checks": at_checks, "allocate": allocate.instance_id}
    return engine, ids, target


def version_of(engine: Engine, instance_id: int) -> int:
    row = instance_row(engine, instance_id)
    with engine.db.read() as session:
        version = session.scalar(
            sa.select(ProcessDefinition.version).where(ProcessDefinition.id == row.definition_id)
        )
    return int(version or 0)


def test_deploying_leaves_running_cases_on_their_version(three_cases: Cases) -> None:
    engine, ids, _ = three_cases
    assert {version_of(engine, i) for i in ids.values()} == {1}
    # A case started now gets version 2.
    new = start_triage(engine, "C-NEW").instance_id
    assert version_of(engine, new) == 2


def test_version_changes_name_the_added_and_removed_steps(three_cases: Cases) -> None:
    engine, ids, target = three_cases
    changes = migrate.version_changes(engine, instance_row(engine, ids["start"]).definition_id, target)
    assert "Record the reason (record_reason)" in changes.added
    assert "Allocate to a social worker (allocate)" in changes.removed
    assert "Record the contact (record_contact)" not in changes.changed  # unchanged steps are not listed


def test_precheck_says_which_can_move_and_why_not(three_cases: Cases) -> None:
    engine, ids, target = three_cases
    before = snapshot(engine)
    results = {r.instance_id: r for r in migrate.precheck(engine, list(ids.values()), target)}

    start = results[ids["start"]]
    assert (start.can_move, start.from_version, start.to_version) == (True, 1, 2)
    assert [(t.element_id, t.state, t.maps_to) for t in start.tasks] == [
        ("record_contact", "ready", "record_contact")
    ]
    checks = results[ids["checks"]]
    assert checks.can_move
    assert sorted(t.element_id for t in checks.tasks) == ["health_check", "police_check"]

    allocate = results[ids["allocate"]]
    assert not allocate.can_move
    assert allocate.reasons == [
        "'Allocate to a social worker' is ready and version 2 has no step 'allocate' to move it to"
    ]
    assert [(t.element_id, t.maps_to) for t in allocate.tasks] == [("allocate", None)]
    assert snapshot(engine) == before  # a precheck writes nothing


def test_migrate_moves_the_movable_and_leaves_the_rest(three_cases: Cases) -> None:
    engine, ids, target = three_cases
    untouched = instance_row(engine, ids["allocate"])
    checks_tasks = {t.id for t in engine.tasks(case_reference="C-CHECKS")}

    outcomes = {o.instance_id: o for o in migrate.migrate(engine, list(ids.values()), target, "olive.owner")}

    assert outcomes[ids["start"]].moved and outcomes[ids["checks"]].moved
    assert not outcomes[ids["allocate"]].moved
    assert "has no step 'allocate'" in outcomes[ids["allocate"]].reasons[0]
    assert version_of(engine, ids["start"]) == version_of(engine, ids["checks"]) == 2
    # The case that could not move is exactly as it was.
    after = instance_row(engine, ids["allocate"])
    assert (after.definition_id, after.revision, after.state) == (
        untouched.definition_id,
        untouched.revision,
        untouched.state,
    )
    assert instance_row(engine, ids["checks"]).revision == 3  # started 1, completed 2, migrated 3
    # Open tasks keep their rows (ids, claims) across the move.
    assert {t.id for t in engine.tasks(case_reference="C-CHECKS")} == checks_tasks

    # The moved case goes on under version 2: after the decision comes the new step.
    do_checks(engine, "C-CHECKS")
    engine.complete(open_task(engine, "C-CHECKS", "decide").id, "mo.manager", {"decision": "refer"})
    assert set(open_tasks(engine, "C-CHECKS")) == {"record_reason"}
    engine.complete(open_task(engine, "C-CHECKS", "record_reason").id, "mo.manager", {})
    assert instance_row(engine, ids["checks"]).status == "completed"  # referred: no allocate step any more

    with engine.db.read() as session:
        migrated = session.execute(
            sa.select(AuditEvent.instance_id, AuditEvent.actor, AuditEvent.data).where(
                AuditEvent.action == "instance.migrated"
            )
        ).all()
    assert {row.instance_id for row in migrated} == {ids["start"], ids["checks"]}
    for row in migrated:
        assert (row.actor, row.data["from_version"], row.data["to_version"]) == ("olive.owner", 1, 2)
    assert chain_break(engine) is None


def test_a_waiting_timer_keeps_its_due_moment(any_engine: Engine, fake_clock: FakeClock) -> None:
    engine = any_engine
    name, content = "timer_cycle.bpmn", (FIXTURES / "timer_cycle.bpmn").read_bytes()
    [v1] = engine.deploy([(name, content)], "olive.owner")
    started = engine.start(v1.key, "sam.screener", case_reference="C-T", team_key="mash")
    due_before = {t.element_id: t.due_at for t in engine.timers()}
    assert due_before, "the fixture waits on a timer"
    fake_clock.advance(timedelta(minutes=30))
    unused = b"<bpmn:task id='unused_step' name='Unused' />"
    changed = content.replace(b"</bpmn:process>", unused + b"</bpmn:process>")
    [v2] = engine.deploy([(name, changed)], "olive.owner")
    [outcome] = migrate.migrate(engine, [started.instance_id], v2.definition_id, "olive.owner")
    assert outcome.moved, outcome.reasons
    assert {t.element_id: t.due_at for t in engine.timers()} == due_before


def test_refusals_change_nothing(three_cases: Cases) -> None:
    engine, ids, target = three_cases
    before = snapshot(engine)
    with pytest.raises(InvalidData, match="choose at least one case"):
        migrate.migrate(engine, [], target, "olive.owner")
    with pytest.raises(NotFound, match="no deployed process version"):
        migrate.migrate(engine, [ids["start"]], 9999, "olive.owner")
    [same] = migrate.migrate(engine, [ids["start"]], instance_row(engine, ids["start"]).definition_id, "o")
    assert not same.moved and same.reasons == ["it is already on version 1"]
    assert snapshot(engine) == before


# --------------------------------------------------------------------------- a called process

WRITE_UP = """    <bpmn:userTask id="write_up" name="Write up the visit">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="noDeadline" value="a test shape" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>cf_done</bpmn:incoming>
      <bpmn:outgoing>cf_written</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="cf_written" sourceRef="write_up" targetRef="child_end" />
"""


def child_version_2() -> bytes:
    """The called home visit with 'Write up the visit' after the visit."""
    xml = (FIXTURES / "child_process.bpmn").read_text(encoding="utf-8")
    xml = xml.replace(
        'sourceRef="visit_child" targetRef="child_end" />',
        'sourceRef="visit_child" targetRef="write_up" />\n' + WRITE_UP,
    )
    xml = xml.replace(
        "<bpmn:incoming>cf_done</bpmn:incoming>\n    </bpmn:endEvent>",
        "<bpmn:incoming>cf_written</bpmn:incoming>\n    </bpmn:endEvent>",
    )
    xml = xml.replace(
        "<bpmn:flowNodeRef>child_end</bpmn:flowNodeRef>",
        "<bpmn:flowNodeRef>child_end</bpmn:flowNodeRef><bpmn:flowNodeRef>write_up</bpmn:flowNodeRef>",
    )
    return xml.encode("utf-8")


def test_cases_in_a_called_process_move_to_its_new_version(any_engine: Engine) -> None:
    engine = any_engine
    engine.deploy(
        [
            ("parent_calls_child.bpmn", (FIXTURES / "parent_calls_child.bpmn").read_bytes()),
            ("child_process.bpmn", (FIXTURES / "child_process.bpmn").read_bytes()),
        ],
        "olive.owner",
    )
    started = engine.start("parent_process", "sara.social", case_reference="C-V", team_key="assessment")
    parent_definition = instance_row(engine, started.instance_id).definition_id
    [child_v2] = engine.deploy([("child_process.bpmn", child_version_2())], "olive.owner")

    [check] = migrate.precheck(engine, [started.instance_id], child_v2.definition_id)
    assert (check.can_move, check.from_version, check.to_version) == (True, 1, 2)
    assert [(t.element_id, t.maps_to) for t in check.tasks] == [("visit_child", "visit_child")]

    [outcome] = migrate.migrate(engine, [started.instance_id], child_v2.definition_id, "olive.owner")
    assert outcome.moved, outcome.reasons
    row = instance_row(engine, started.instance_id)
    # The case keeps its own version; its call to the home visit now runs version 2.
    assert row.definition_id == parent_definition
    assert row.called_definitions["child_process"] == child_v2.definition_id
    engine.complete(open_task(engine, "C-V", "visit_child").id, "sara.social", {"seen_alone": True})
    assert set(open_tasks(engine, "C-V")) == {"write_up"}


def test_a_called_process_in_progress_cannot_become_another_kind_of_step(any_engine: Engine) -> None:
    engine = any_engine
    parent = (FIXTURES / "parent_calls_child.bpmn").read_text(encoding="utf-8")
    engine.deploy(
        [
            ("parent_calls_child.bpmn", parent.encode()),
            ("child_process.bpmn", (FIXTURES / "child_process.bpmn").read_bytes()),
        ],
        "olive.owner",
    )
    started = engine.start("parent_process", "sara.social", case_reference="C-V", team_key="assessment")
    # Version 2 does the home visit as a plain task instead of calling the home visit process.
    plain = re.sub(
        r'<bpmn:callActivity id="call_visit"(.*?)calledElement="child_process">(.*?)</bpmn:callActivity>',
        r'<bpmn:task id="call_visit"\1>\2</bpmn:task>',
        parent,
        flags=re.S,
    )
    [v2] = engine.deploy([("parent_calls_child.bpmn", plain.encode())], "olive.owner")
    before = snapshot(engine)
    [check] = migrate.precheck(engine, [started.instance_id], v2.definition_id)
    assert not check.can_move
    assert check.reasons == [
        "'Home visit' is in progress and in version 2 its place is 'Home visit', a different kind of step"
    ]
    [outcome] = migrate.migrate(engine, [started.instance_id], v2.definition_id, "olive.owner")
    assert not outcome.moved and outcome.reasons == check.reasons
    assert snapshot(engine) == before
