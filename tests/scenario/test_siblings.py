"""Siblings: one record per child, each with its own decisions, dates, letters and answers.

A contact naming three children makes three linked cases; the MASH then decides for each child on
their own, and only the child who goes to a section 47 enquiry has its facts, clocks and tasks. A
strategy discussion about two siblings records an outcome for each of them. The leak checks search
the whole of each child's record (every instance's data, the stored workflow state, the case facts,
every task's answers and the audit trail) for marker strings given only for another child.
Dates are asserted in London time; no test asserts a duration.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import sqlalchemy as sa

from engine.models import ProcessInstance
from tests.scenario.harness import Council

REFERRER = {
    "name": "Jo Head",
    "organisation": "Hillside Primary School",
    "relationship": "Designated safeguarding lead",
    "email": "dsl@hillside.example",
}
CONSENT = {"sought": True, "given": True}
SHARED_CONCERN = "The three children came to school hungry and said their father hit their mother"
PARTICIPANTS = [
    {"name": "Tara Team-Manager", "agency": "social_care", "role": "Chair"},
    {"name": "DC Pat Police", "agency": "police"},
    {"name": "Hana Health", "agency": "health", "role": "Named nurse"},
]
FEEDBACK = {"asked": ["parent"], "how_asked": "phone", "responded": False}

SECTION47_FACTS = {
    "s47_start_date",
    "icpc_target_date",
    "icpc_date",
    "icpc_not_required",
    "cp_plan_start_date",
}
SECTION47_CLOCKS = {"icpc", "core_assessment"}
SECTION47_TASKS = {"lead_section47", "core_assessment", "authorise_core_assessment", "hold_icpc"}


# ------------------------------------------------------------------------------------ the steps


def shared_contact(received_at: str) -> dict[str, Any]:
    """The contact's shared answers, as the record-contact form takes them (children apart)."""
    return {
        "received_at": received_at,
        "referrer": REFERRER,
        "source": "2A",
        "concern": SHARED_CONCERN,
        "consent": CONSENT,
    }


def screen(council: Council, case: str, urgency: str, marker: str) -> None:
    """Urgency and the three partner checks, each answer carrying this child's marker."""
    council.complete(case, "rate_urgency", "mo.manager", urgency=urgency, urgency_reason=f"{marker} urgency")
    for element, user in (
        ("police_check", "pat.police"),
        ("health_check", "hana.health"),
        ("education_check", "ed.education"),
    ):
        council.complete(
            case, element, user, **{element: {"known": True, "information": f"{marker} {element}"}}
        )


def decide(council: Council, case: str, response: str, marker: str, **extra: Any) -> None:
    decision = {"response": response, "reasons": f"{marker} decision reasons", "consent": CONSENT, **extra}
    council.complete(case, "decide_response", "mo.manager", mash_decision=decision)


def letter(marker: str, what: str) -> dict[str, Any]:
    return {"sent_to": "Named person", "method": "post", "summary": f"{marker} {what}"}


def accept_and_tell(council: Council, case: str, marker: str) -> None:
    council.complete(
        case,
        "accept_referral",
        "tara.team",
        accept_referral=True,
        allocated_worker="sara.social",
        tell_family=True,
        allocation_notes=f"{marker} allocation notes",
    )
    council.complete(case, "referrer_plan_letter", "sara.social", referrer_plan_letter=letter(marker, "plan"))
    council.complete(case, "family_plan_letter", "sara.social", family_plan_letter=letter(marker, "plan"))


def hold_strategy_discussion(council: Council, case: str, held_on: str, marker: str, start: bool) -> None:
    answers: dict[str, Any] = {
        "strategy_discussion_date": held_on,
        "participants": PARTICIPANTS,
        "discussion_summary": f"{marker} strategy discussion summary",
        "start_section47": start,
    }
    if start:
        answers.update(joint_with_police=True, enquiry_plan=f"{marker} enquiry plan")
    else:
        answers.update(outcome_without_enquiry="nfa")
    council.complete(case, "strategy_discussion", "tara.team", **answers)


def close_after_assessment(council: Council, case: str, marker: str) -> None:
    """The outcome letters and the feedback request: the referral's no-further-action ending."""
    council.complete(
        case, "family_outcome_letter", "sara.social", family_outcome_letter=letter(marker, "outcome")
    )
    council.complete(
        case, "referrer_outcome_letter", "sara.social", referrer_outcome_letter=letter(marker, "outcome")
    )
    council.complete(case, "ask_feedback", "sara.social", feedback=FEEDBACK)


# ------------------------------------------------------------------------------------ the record


def record_text(council: Council, case: str) -> str:
    """Everything held for one child, serialised: the leak checks search this text."""
    with council.engine.db.read() as session:
        case_id = Council._case_id(session, case)
        states = session.scalars(
            sa.select(ProcessInstance.state).where(ProcessInstance.case_id == case_id)
        ).all()
    tasks = council.engine.tasks(case_reference=case, include_closed=True)
    record = {
        "subject": council.case(case).subject_name,
        "facts": council.facts(case),
        "instance_data": council.instance_data(case),
        "workflow_state": list(states),
        "task_answers": [task.outcome for task in tasks],
        "audit": [event.data for event in council.events(case)],
    }
    return json.dumps(record, default=str, sort_keys=True)


def assert_only_own_markers(council: Council, markers: dict[str, list[str]]) -> None:
    """Each child's markers are in their own record (so the search can fail) and in no other."""
    texts = {case: record_text(council, case) for case in markers}
    for case, text in texts.items():
        missing = [m for m in markers[case] if m not in text]
        assert not missing, f"{case}'s own answers are missing from its record: {missing}"
        for other, theirs in markers.items():
            if other != case:
                leaked = [m for m in theirs if m in text]
                assert not leaked, f"{case}'s record holds {other}'s answers: {leaked}"


def task_elements(council: Council, case: str) -> set[str]:
    """Every user task the case ever had, open or done."""
    return {t.element_id for t in council.engine.tasks(case_reference=case, include_closed=True)}


def instance_values(council: Council, case: str, key: str) -> list[Any]:
    """A key's value in each instance's data (Council.instance_data: the top-level process's data, which
    holds a called process's answers only once that call has returned)."""
    return [data[key] for data in council.instance_data(case) if key in data]


def answers(council: Council, case: str, element: str) -> list[dict[str, Any]]:
    """The answers given on this case's tasks of one element, oldest first."""
    done = [
        t for t in council.engine.tasks(case_reference=case, include_closed=True) if t.element_id == element
    ]
    return [t.outcome or {} for t in sorted(done, key=lambda t: t.completed_at or t.created_at)]


# -------------------------------------------------------------------------------- the scenarios


def test_three_siblings_one_to_section47_two_closed_at_the_front_door_share_nothing(council: Council) -> None:
    council.at("2023-04-27 10:00")  # Thursday; 1 May and the 8 May 2023 coronation are bank holidays
    children = [
        {
            "name": "Zephyrine Quill",
            "date_of_birth": "2015-02-03",
            "gender": "female",
            "identifier": "ZQ-111",
        },
        {"name": "Barnaby Quill", "date_of_birth": "2017-07-08", "gender": "male", "identifier": "BQ-222"},
        {"name": "Cosima Quill", "date_of_birth": "2020-11-12", "gender": "female", "identifier": "CQ-333"},
    ]
    a, b, c = council.contact(children, **shared_contact("2023-04-27T10:00"))
    assert len({a, b, c}) == 3
    assert council.linked(a) == {b, c}
    assert council.linked(b) == {a, c}
    assert council.linked(c) == {a, b}

    # Markers: answers given for one child only (the name and identifier come from the contact).
    markers = {
        a: ["Zephyrine", "ZQ-111", "ALPHA-ZQ"],
        b: ["Barnaby", "BQ-222", "BRAVO-BQ"],
        c: ["Cosima", "CQ-333", "CHARLIE-CQ"],
    }
    for case in (a, b, c):
        assert council.facts(case)["contact_date"] == "2023-04-27"
        assert council.clock_target_date(case, "mash_decision") == date(2023, 4, 28)

    screen(council, a, "red", "ALPHA-ZQ")
    screen(council, b, "amber", "BRAVO-BQ")
    screen(council, c, "green", "CHARLIE-CQ")
    council.at("2023-04-27 15:00")
    decide(council, a, "referral", "ALPHA-ZQ", significant_harm_suspected=True)
    decide(council, b, "early_help", "BRAVO-BQ")
    decide(council, c, "nfa", "CHARLIE-CQ")
    assert [council.facts(x)["contact_outcome"] for x in (a, b, c)] == ["referral", "early_help", "nfa"]
    for case in (a, b, c):
        assert council.clocks(case)["mash_decision"].breached is False

    # Child A: referral, allocation, the strategy discussion, a section 47 enquiry.
    accept_and_tell(council, a, "ALPHA-ZQ")
    assert council.open_elements(a) == {"strategy_discussion"}
    council.at("2023-04-28 11:00")
    hold_strategy_discussion(council, a, "2023-04-28", "ALPHA-ZQ", start=True)
    assert council.open_elements(a) == {"lead_section47", "core_assessment"}
    a_facts = council.facts(a)
    assert a_facts["referral_date"] == "2023-04-27"
    assert a_facts["strategy_discussion_date"] == "2023-04-28"
    assert a_facts["s47_start_date"] == "2023-04-28"
    assert a_facts["icpc_target_date"] == "2023-05-23"
    assert council.clock_target_date(a, "icpc") == date(2023, 5, 23)
    assert council.clock_target_date(a, "core_assessment") == date(2023, 6, 21)

    # Child C: no further action, closed once the referrer has the outcome in writing.
    assert council.open_elements(c) == {"tell_referrer_outcome"}
    council.complete(
        c,
        "tell_referrer_outcome",
        "sam.screener",
        contact_outcome_letter={"sent_by": "letter", "summary": "CHARLIE-CQ referrer told"},
    )

    # Child B: early help; closed once the referrer and the family are told, after the bank holiday.
    council.complete(
        b,
        "eh_agree_offer",
        "sam.screener",
        early_help_offer={
            "family_agreed": True,
            "offer": "BRAVO-BQ family support worker",
            "lead_professional": "BRAVO-BQ lead professional",
        },
    )
    eh_letter = {"sent_by": "letter", "summary": "BRAVO-BQ early help letter"}
    council.complete(b, "eh_letter_referrer", "sam.screener", early_help_referrer_letter=eh_letter)
    assert council.case(b).status == "open"
    council.at("2023-05-02 10:00")  # Tuesday after the early May bank holiday
    council.complete(b, "eh_letter_family", "sam.screener", early_help_family_letter=eh_letter)

    # B and C are closed, each for its own reason on its own date; A's enquiry goes on.
    assert (council.case(b).status, council.case(b).closed_reason) == ("closed", "RC7")
    assert (council.case(c).status, council.case(c).closed_reason) == ("closed", "RC7")
    assert council.case(a).status == "open"
    b_facts, c_facts = council.facts(b), council.facts(c)
    assert (b_facts["closure_date"], b_facts["closure_reason"]) == ("2023-05-02", "RC7")
    assert (c_facts["closure_date"], c_facts["closure_reason"]) == ("2023-04-28", "RC7")
    assert b_facts["referrer_letter_sent_date"] == "2023-04-28"
    assert b_facts["family_letter_sent_date"] == "2023-05-02"
    assert c_facts["referrer_letter_sent_date"] == "2023-04-28"
    assert "family_letter_sent_date" not in c_facts
    assert "closure_date" not in council.facts(a)
    assert council.open_tasks(b) == [] and council.open_tasks(c) == []

    # Only A has section 47 facts, clocks and tasks; B and C were never referred.
    for case in (b, c):
        facts = council.facts(case)
        assert not SECTION47_FACTS & set(facts)
        assert "referral_date" not in facts and "strategy_discussion_date" not in facts
        assert set(council.clocks(case)) == {"mash_decision"}
        assert not (SECTION47_TASKS | {"strategy_discussion", "accept_referral"}) & task_elements(
            council, case
        )
    assert set(council.clocks(a)) >= SECTION47_CLOCKS
    assert {"strategy_discussion", "lead_section47", "core_assessment"} <= task_elements(council, a)
    for element in ("lead_section47", "core_assessment", "strategy_discussion"):
        owners = {t.case_id for t in council.engine.tasks(include_closed=True) if t.element_id == element}
        assert len(owners) == 1, f"{element} tasks on more than one case"

    # The exact answers too, so the search is shown to reach into the called processes' answers.
    markers[a] += ["ALPHA-ZQ strategy discussion summary", "ALPHA-ZQ enquiry plan"]
    markers[b] += ["BRAVO-BQ family support worker", "BRAVO-BQ early help letter"]
    markers[c] += ["CHARLIE-CQ referrer told"]
    assert_only_own_markers(council, markers)

    # A's enquiry ends without a conference; the core assessment is authorised; A closes with RC8.
    council.at("2023-05-12 10:00")
    council.complete(
        a,
        "lead_section47",
        "sara.social",
        enquiry_child_seen=True,
        enquiry_findings="ALPHA-ZQ enquiry findings: bruising explained by a fall",
        concerns_substantiated=False,
        icpc_required=False,
        icpc_not_required_reason="ALPHA-ZQ no conference needed",
    )
    assert council.facts(a)["icpc_not_required"] is True
    assert council.clocks(a)["icpc"].stopped_at is not None
    council.at("2023-06-01 10:00")
    council.complete(
        a,
        "core_assessment",
        "sara.social",
        core_child_seen=True,
        core_assessment_factors=["3B"],
        core_assessment_summary="ALPHA-ZQ core assessment summary",
    )
    council.complete(a, "authorise_core_assessment", "tara.team", core_assessment_authorised=True)
    assert council.clocks(a)["core_assessment"].breached is False
    close_after_assessment(council, a, "ALPHA-ZQ")

    assert (council.case(a).status, council.case(a).closed_reason) == ("closed", "RC8")
    a_facts = council.facts(a)
    assert (a_facts["closure_date"], a_facts["closure_reason"]) == ("2023-06-01", "RC8")
    assert a_facts["family_letter_sent_date"] == "2023-06-01"
    assert a_facts["referrer_letter_sent_date"] == "2023-06-01"
    # B's and C's records are as they were when they closed.
    assert council.facts(b) == b_facts and council.facts(c) == c_facts

    # The contact's shared answers were copied to each child, visibly; nothing else was.
    for case in (a, b, c):
        [data] = council.instance_data(case)
        assert data["concern"] == SHARED_CONCERN and data["referrer"] == REFERRER
        assert "children" not in data
    assert [instance_values(council, x, "child")[0]["name"] for x in (a, b, c)] == [
        "Zephyrine Quill",
        "Barnaby Quill",
        "Cosima Quill",
    ]
    markers[a] += ["enquiry findings: bruising explained by a fall", "ALPHA-ZQ core assessment summary"]
    # Every process has returned: each child's data holds that child's own decisions and nothing else.
    assert instance_values(council, a, "start_section47") == [True]
    assert instance_values(council, a, "icpc_required") == [False]
    assert [d["response"] for d in instance_values(council, a, "mash_decision")] == ["referral"]
    assert [d["response"] for d in instance_values(council, b, "mash_decision")] == ["early_help"]
    assert [d["response"] for d in instance_values(council, c, "mash_decision")] == ["nfa"]
    assert instance_values(council, b, "early_help_offer")[0]["family_agreed"] is True
    assert len(instance_values(council, c, "contact_outcome_letter")) == 1
    for key in ("start_section47", "enquiry_findings", "core_assessment_summary", "accept_referral"):
        assert instance_values(council, b, key) == [] and instance_values(council, c, key) == []
    assert (
        instance_values(council, a, "early_help_offer")
        == instance_values(council, c, "early_help_offer")
        == []
    )
    assert instance_values(council, a, "contact_outcome_letter") == []
    assert instance_values(council, b, "contact_outcome_letter") == []
    assert_only_own_markers(council, markers)


def test_a_strategy_discussion_about_two_siblings_records_an_outcome_for_each(council: Council) -> None:
    council.at("2024-03-27 10:00")  # Wednesday; Good Friday 29 March and Easter Monday 1 April 2024
    children = [
        {"name": "Dorian Vale", "date_of_birth": "2013-04-05", "gender": "male"},
        {"name": "Elspeth Vale", "date_of_birth": "2016-09-10", "gender": "female"},
    ]
    dorian, elspeth = council.contact(children, **shared_contact("2024-03-27T10:00"))
    assert council.linked(dorian) == {elspeth} and council.linked(elspeth) == {dorian}
    markers = {
        dorian: ["Dorian", "DELTA-DV strategy discussion summary", "DELTA-DV enquiry plan"],
        elspeth: ["Elspeth", "ECHO-EV strategy discussion summary", "ECHO-EV outcome"],
    }

    for case, marker in ((dorian, "DELTA-DV"), (elspeth, "ECHO-EV")):
        screen(council, case, "red", marker)
        decide(council, case, "referral", marker, significant_harm_suspected=True)
        accept_and_tell(council, case, marker)

    # The discussion covers both children, but each child has a strategy discussion task of their own.
    dorian_task = council.task(dorian, "strategy_discussion")
    elspeth_task = council.task(elspeth, "strategy_discussion")
    assert dorian_task.id != elspeth_task.id
    assert dorian_task.instance_id != elspeth_task.instance_id

    council.at("2024-03-28 14:00")  # the Thursday before Easter
    hold_strategy_discussion(council, dorian, "2024-03-28", "DELTA-DV", start=True)
    # Deciding for Dorian decides nothing for Elspeth.
    assert council.task(elspeth, "strategy_discussion").id == elspeth_task.id
    assert "strategy_discussion_date" not in council.facts(elspeth)
    hold_strategy_discussion(council, elspeth, "2024-03-28", "ECHO-EV", start=False)

    # Dorian: an enquiry, with its core assessment, and a conference due after Easter.
    dorian_facts = council.facts(dorian)
    assert dorian_facts["strategy_discussion_date"] == "2024-03-28"
    assert dorian_facts["s47_start_date"] == "2024-03-28"
    assert dorian_facts["icpc_target_date"] == "2024-04-22"
    assert council.clock_target_date(dorian, "icpc") == date(2024, 4, 22)
    assert council.open_elements(dorian) == {"lead_section47", "core_assessment"}
    [dorian_decision] = answers(council, dorian, "strategy_discussion")
    assert dorian_decision["start_section47"] is True
    assert dorian_decision["enquiry_plan"] == "DELTA-DV enquiry plan"
    assert "outcome_without_enquiry" not in dorian_decision

    # Elspeth: the same discussion, no enquiry; her referral ends with letters and closes (RC8).
    elspeth_facts = council.facts(elspeth)
    assert elspeth_facts["strategy_discussion_date"] == "2024-03-28"
    assert not SECTION47_FACTS & set(elspeth_facts)
    assert not SECTION47_CLOCKS & set(council.clocks(elspeth))
    assert not SECTION47_TASKS & task_elements(council, elspeth)
    [elspeth_decision] = answers(council, elspeth, "strategy_discussion")
    assert elspeth_decision["start_section47"] is False
    assert elspeth_decision["outcome_without_enquiry"] == "nfa"
    assert "enquiry_plan" not in elspeth_decision
    assert council.open_elements(elspeth) == {"family_outcome_letter", "referrer_outcome_letter"}

    council.at("2024-04-02 10:00")  # Tuesday after Easter Monday
    close_after_assessment(council, elspeth, "ECHO-EV")
    assert (council.case(elspeth).status, council.case(elspeth).closed_reason) == ("closed", "RC8")
    assert council.facts(elspeth)["closure_date"] == "2024-04-02"
    assert council.case(dorian).status == "open"
    assert "closure_date" not in council.facts(dorian)
    # Her referral has returned: her data holds her decision, and not Dorian's.
    assert instance_values(council, elspeth, "start_section47") == [False]
    assert instance_values(council, elspeth, "outcome_without_enquiry") == ["nfa"]
    assert instance_values(council, elspeth, "enquiry_plan") == []

    # Each record holds its own discussion summary and decision, and nothing of the other's.
    assert_only_own_markers(council, markers)
