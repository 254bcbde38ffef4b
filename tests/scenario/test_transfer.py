"""Transfer of a child's case between teams: checklist, receiving manager's acceptance, siblings together.

The cases are set up with a small process of the test's own (``test_case_setup``, deployed through
the engine's API) that opens a case in a team with a worker, and closes it when asked: the transfer
starts where the pathway leaves a case, without walking the whole pathway first.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine import directory
from engine.errors import InvalidData, PermissionDenied
from tests.scenario.harness import Council

SETUP_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="Definitions_test_case_setup" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="test_case_setup" name="Test: a case held by a team and a worker" isExecutable="true">
    <bpmn:startEvent id="opened">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="case.team" value="team" />
        <spiffworkflow:property name="case.worker" value="worker" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:outgoing>to_gateway</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:exclusiveGateway id="close_it" default="stay_open">
      <bpmn:incoming>to_gateway</bpmn:incoming>
      <bpmn:outgoing>stay_open</bpmn:outgoing>
      <bpmn:outgoing>to_closed</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:endEvent id="still_open"><bpmn:incoming>stay_open</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="closed">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="case.close" value="close_reason" />
        <spiffworkflow:property name="closesWithoutLetters" value="Test set-up: closes a case directly." />
        <spiffworkflow:property name="record.closure_date" value="today()" />
        <spiffworkflow:property name="record.closure_reason" value="close_reason" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>to_closed</bpmn:incoming>
    </bpmn:endEvent>
    <bpmn:sequenceFlow id="to_gateway" sourceRef="opened" targetRef="close_it" />
    <bpmn:sequenceFlow id="stay_open" sourceRef="close_it" targetRef="still_open" />
    <bpmn:sequenceFlow id="to_closed" sourceRef="close_it" targetRef="closed">
      <bpmn:conditionExpression>close_reason != ''</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
  </bpmn:process>
</bpmn:definitions>
"""

LONG_TERM_TEAM = {
    "teams": [{"key": "longterm", "name": "Child Protection and Long-term Team"}],
    "users": [
        {
            "username": "lee.longterm",
            "display_name": "Lee Long-term Manager",
            "qualified": True,
            "employment": "permanent",
            "memberships": [["longterm", "team_manager"]],
        },
        {
            "username": "liz.longterm",
            "display_name": "Liz Long-term Worker",
            "qualified": True,
            "employment": "permanent",
            "memberships": [["longterm", "social_worker"]],
        },
    ],
}

REASON = "Child protection plan made: the long-term team holds the case after the first core group"

CHECKLIST: dict[str, Any] = {
    "chronology_up_to_date": True,
    "case_recording_up_to_date": True,
    "assessment_status": "authorised",
    "plan_status": "current",
    "child_last_seen_date": "2023-04-27",
    "child_views_recorded": True,
    "family_informed": True,
    "partners_informed": True,
    "siblings_moving": "no_siblings",
    "handover_summary": "Mother engaging with the plan; contact with father supervised; attendance up.",
}


def prepare(council: Council) -> None:
    """Deploy the set-up process and add a receiving team (the demo staff has one team with workers)."""
    council.engine.deploy([("test_case_setup.bpmn", SETUP_BPMN)], "test")
    with council.engine.db.transaction() as session:
        directory.sync_staff(session, LONG_TERM_TEAM)


def open_case(
    council: Council, reference: str, team: str = "assessment", worker: str = "sara.social", close: str = ""
) -> str:
    council.engine.start(
        "test_case_setup",
        "tara.team",
        case_reference=reference,
        team_key=team,
        data={"team": team, "worker": worker, "close_reason": close},
    )
    return reference


def open_siblings(council: Council, references: list[str], worker: str = "sara.social") -> list[str]:
    """Linked cases, one per child, as a contact about several children makes them."""
    council.engine.start_for_subjects(
        "test_case_setup",
        "tara.team",
        [{"name": f"Child {r}", "reference": r} for r in references],
        {"team": "assessment", "worker": worker, "close_reason": ""},
        team_key="assessment",
        subject_field="child",
        subjects_field="children",
    )
    return references


def request_transfer(council: Council, case: str, siblings: list[str] | None = None) -> None:
    council.engine.start(
        "case_transfer",
        "sara.social",
        case_reference=case,
        data={
            "to_team": "longterm",
            "reason": REASON,
            "transfer_point": "after_first_core_group",
            "siblings": siblings or [],
        },
    )


def test_accepted_transfer_moves_team_and_worker_with_the_reason_recorded(council: Council) -> None:
    prepare(council)
    council.at("2023-04-28 10:00")  # Friday; 1 May and the 8 May coronation are bank holidays
    case = open_case(council, "CH-T0001")
    request_transfer(council, case)

    assert council.facts(case)["transfer_requested_date"] == "2023-04-28"
    checklist = council.task(case, "complete_transfer_checklist")
    assert (checklist.team_key, checklist.role_key) == ("assessment", "social_worker")
    assert council.due_date(case, "complete_transfer_checklist").isoformat() == "2023-05-09"

    # Every item must be confirmed: an out-of-date chronology cannot be sent.
    with pytest.raises(InvalidData) as refused:
        stale = {**CHECKLIST, "chronology_up_to_date": False}
        council.complete(case, "complete_transfer_checklist", "sara.social", **stale)
    assert "chronology_up_to_date" in refused.value.fields

    council.at("2023-05-02 10:00")
    council.complete(case, "complete_transfer_checklist", "sara.social", **CHECKLIST)

    decision = council.task(case, "decide_transfer")
    assert (decision.team_key, decision.role_key) == ("longterm", "team_manager")
    # Decided within 3 working days of the request reaching the receiving team.
    assert council.due_date(case, "decide_transfer").isoformat() == "2023-05-05"
    # The sending team's manager cannot take the receiving team's decision.
    with pytest.raises(PermissionDenied):
        council.claim(case, "decide_transfer", "tara.team")
    assert council.case(case).team_key == "assessment"

    council.at("2023-05-04 15:00")
    council.complete(
        case, "decide_transfer", "lee.longterm", transfer_decision="accept", allocated_worker="liz.longterm"
    )

    record = council.case(case)
    assert (record.team_key, record.worker) == ("longterm", "liz.longterm")
    facts = council.facts(case)
    assert facts["worker_change_reason"] == REASON
    assert facts["transfer_date"] == "2023-05-04"
    changes = [e.data for e in council.events(case, "case.worker_changed")]
    assert changes[-1] == {"from": "sara.social", "to": "liz.longterm"}
    assert council.events(case, "case.team_changed")[-1].data == {"from": "assessment", "to": "longterm"}

    # The new worker holds the joint handover visit, due within 10 working days.
    visit = council.task(case, "handover_visit")
    assert (visit.team_key, visit.assignee) == ("longterm", "liz.longterm")
    assert council.due_date(case, "handover_visit").isoformat() == "2023-05-19"
    council.complete(
        case, "handover_visit", "liz.longterm", handover_visit_date="2023-05-10", handover_child_seen=True
    )
    assert council.facts(case)["transfer_handover_visit_date"] == "2023-05-10"
    assert council.open_elements(case) == set()


def test_declined_transfer_changes_nothing_and_escalates_while_waiting(council: Council) -> None:
    prepare(council)
    council.at("2023-04-28 10:00")
    case = open_case(council, "CH-T0002")
    request_transfer(council, case)
    council.complete(case, "complete_transfer_checklist", "sara.social", **CHECKLIST)

    # Nobody decides: a reminder after 3 working days, the service manager after 5.
    council.at("2023-05-04 17:30")
    assert council.task(case, "decide_transfer").escalation_level == 1
    council.at("2023-05-09 17:30")
    decision = council.task(case, "decide_transfer")
    assert decision.escalation_level == 3
    escalated = council.events(case, "task.escalated")[-1].data
    assert escalated["level"] == 3 and "sid.service" in escalated["notified"]

    council.complete(
        case,
        "decide_transfer",
        "lee.longterm",
        transfer_decision="decline",
        decline_reason="The core group has not met yet: transfer after the first core group",
    )
    assert council.open_elements(case) == {"respond_to_declined_transfer"}
    council.complete(
        case,
        "respond_to_declined_transfer",
        "sara.social",
        declined_transfer_response="withdraw",
        declined_transfer_notes="Will request again after the core group on 16 May",
    )

    record = council.case(case)
    assert (record.team_key, record.worker, record.status) == ("assessment", "sara.social", "open")
    facts = council.facts(case)
    assert "worker_change_reason" not in facts and "transfer_date" not in facts
    assert council.events(case, "case.team_changed") == []
    assert council.open_elements(case) == set()


def test_siblings_move_together(council: Council) -> None:
    prepare(council)
    council.at("2023-04-28 10:00")
    amy, ben = open_siblings(council, ["CH-T0003", "CH-T0004"])
    assert council.linked(amy) == {ben}

    # One transfer per child, started together, each naming the other.
    request_transfer(council, amy, siblings=[ben])
    request_transfer(council, ben, siblings=[amy])
    for child in (amy, ben):
        council.complete(
            child,
            "complete_transfer_checklist",
            "sara.social",
            **{**CHECKLIST, "siblings_moving": "together"},
        )
    # The receiving manager sees both requests in the team's queue and decides them together.
    queue = council.engine.tasks(team="longterm")
    assert {(t.element_id, t.case_id) for t in queue} == {
        ("decide_transfer", council.case(amy).id),
        ("decide_transfer", council.case(ben).id),
    }
    for child in (amy, ben):
        council.complete(
            child,
            "decide_transfer",
            "lee.longterm",
            transfer_decision="accept",
            allocated_worker="liz.longterm",
        )
    for child in (amy, ben):
        record = council.case(child)
        assert (record.team_key, record.worker) == ("longterm", "liz.longterm")
        assert council.facts(child)["worker_change_reason"] == REASON
    # Each child's transfer is on that child's record, naming the other only by reference.
    transfers = [d for d in council.instance_data(amy) if "to_team" in d]
    assert [d["siblings"] for d in transfers] == [[ben]]


def test_separating_siblings_needs_a_reason_and_a_service_manager(council: Council) -> None:
    prepare(council)
    council.at("2023-04-28 10:00")
    amy, ben = open_siblings(council, ["CH-T0005", "CH-T0006"])
    request_transfer(council, amy, siblings=[ben])

    separated = {**CHECKLIST, "siblings_moving": "separated"}
    with pytest.raises(InvalidData) as refused:
        council.complete(amy, "complete_transfer_checklist", "sara.social", **separated)
    assert "siblings_separation_reason" in refused.value.fields

    council.complete(
        amy,
        "complete_transfer_checklist",
        "sara.social",
        **separated,
        siblings_separation_reason="Ben is 17 and lives with his father in another authority",
    )
    agree = council.task(amy, "agree_sibling_separation")
    assert (agree.team_key, agree.role_key) == ("service", "service_manager")
    council.complete(
        amy,
        "agree_sibling_separation",
        "sid.service",
        separation_agreed=False,
        separation_decision_notes="Ben's move is not settled: transfer them together",
    )
    # Back to the checklist; nothing moved.
    assert council.open_elements(amy) == {"complete_transfer_checklist"}
    assert council.case(amy).team_key == "assessment"
