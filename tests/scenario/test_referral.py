"""From referral to closure: allocation, assessment, strategy discussion, section 47, conference, letters.

Each scenario runs the shipped processes/ diagrams (referral, section47, conference; the 2013 variant
where said) on a fake clock and asserts the dates a council is inspected on, in London time. Most
start the `referral` process directly with the front door's data; one goes through `contact`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from engine.errors import InvalidData, PermissionDenied
from engine.models import CaseRecord, ProcessDefinition, ProcessInstance
from engine.registry import default_processes_dir
from tests.scenario.harness import LONDON, Council

PROCESSES = default_processes_dir()

REFERRER = {
    "name": "Jo Head",
    "organisation": "Hillside Primary School",
    "relationship": "Designated safeguarding lead",
    "email": "dsl@hillside.example",
}
CONSENT = {"sought": True, "given": True}
LETTER = {"sent_to": "Named person", "method": "post", "summary": "What was decided, and how to complain"}
PARTICIPANTS = [
    {"name": "Tara Team-Manager", "agency": "social_care", "role": "Chair"},
    {"name": "DC Pat Police", "agency": "police"},
    {"name": "Hana Health", "agency": "health", "role": "Named nurse"},
]
FEEDBACK = {
    "asked": ["parent", "child"],
    "how_asked": "in_person",
    "responded": True,
    "rating": 4,
    "felt_listened_to": True,
    "what_went_well": "The social worker explained everything",
    "what_could_be_better": "Fewer changes of appointment",
}


# ------------------------------------------------------------------------------------ the steps


def refer(council: Council, case: str, harm_suspected: bool = False, **data: Any) -> str:
    """The front door refers one child: the `referral` process starts with the contact's data."""
    answers: dict[str, Any] = {
        "received_at": council.now_local().strftime("%Y-%m-%dT%H:%M"),
        "referrer": REFERRER,
        "source": "2A",
        "concern": "Bruising to the arm; the child says a parent grabbed her",
        "consent": CONSENT,
        "child": {"name": f"Child {case}", "date_of_birth": "2016-05-01", "gender": "female"},
        "mash_decision": {
            "response": "referral",
            "reasons": "Injury to a child",
            "consent": CONSENT,
            "significant_harm_suspected": harm_suspected,
        },
    }
    answers.update(data)
    council.engine.start("referral", "mo.manager", case_reference=case, team_key="assessment", data=answers)
    return case


def contact_to_referral(council: Council, child: dict[str, Any], concern: str = "Bruising to the arm") -> str:
    """A contact about ``child`` recorded now, rated red, checked by partners, decided a referral."""
    [result] = council.engine.start_for_subjects(
        "contact",
        "sam.screener",
        [child],
        {
            "received_at": council.now_local().strftime("%Y-%m-%dT%H:%M"),
            "referrer": REFERRER,
            "source": "2A",
            "concern": concern,
            "consent": CONSENT,
        },
        team_key="mash",
        subject_field="child",
        subjects_field="children",
    )
    ref = result.case_reference
    assert ref is not None
    council.complete(ref, "rate_urgency", "mo.manager", urgency="red", urgency_reason="Injury to a child")
    for element, user in (
        ("police_check", "pat.police"),
        ("health_check", "hana.health"),
        ("education_check", "ed.education"),
    ):
        council.complete(ref, element, user, **{element: {"known": False, "information": "Nothing known"}})
    council.complete(
        ref,
        "decide_response",
        "mo.manager",
        mash_decision={
            "response": "referral",
            "reasons": "Injury to a child",
            "consent": CONSENT,
            "significant_harm_suspected": False,
        },
    )
    return ref


def accept(council: Council, case: str, worker: str = "sara.social", tell_family: bool = True) -> None:
    answers: dict[str, Any] = {
        "accept_referral": True,
        "allocated_worker": worker,
        "tell_family": tell_family,
    }
    if not tell_family:
        answers["family_not_told_reason"] = "The father may harm the child if he learns of the referral"
    council.complete(case, "accept_referral", "tara.team", **answers)


def plan_letters(council: Council, case: str, worker: str = "sara.social") -> None:
    council.complete(case, "referrer_plan_letter", worker, referrer_plan_letter=LETTER)
    council.complete(case, "family_plan_letter", worker, family_plan_letter=LETTER)


def assess(council: Council, case: str, worker: str = "sara.social", recommend: str = "nfa") -> None:
    council.complete(
        case,
        "initial_assessment",
        worker,
        child_seen=True,
        assessment_factors=["3B", "4B"],
        assessment_summary="Domestic abuse between the parents; mother's mental health",
        recommended_outcome=recommend,
    )


def authorise(council: Council, case: str, outcome: str) -> None:
    council.complete(
        case, "authorise_assessment", "tara.team", assessment_authorised=True, assessment_outcome=outcome
    )


def strategy(council: Council, case: str, held_on: str, start: bool = True, **extra: Any) -> None:
    answers: dict[str, Any] = {
        "strategy_discussion_date": held_on,
        "participants": PARTICIPANTS,
        "discussion_summary": "Police and health shared what they know",
        "start_section47": start,
    }
    if start:
        answers.update(joint_with_police=True, enquiry_plan="Joint visit tomorrow; medical today")
    answers.update(extra)
    council.complete(case, "strategy_discussion", "tara.team", **answers)


def conclude_enquiry(council: Council, case: str, lead: str = "sara.social", conference: bool = True) -> None:
    answers: dict[str, Any] = {
        "enquiry_child_seen": True,
        "enquiry_findings": "Non-accidental injury confirmed by the paediatrician",
        "concerns_substantiated": conference,
        "icpc_required": conference,
    }
    if not conference:
        answers["icpc_not_required_reason"] = "Concerns not substantiated; family engaging"
    council.complete(case, "lead_section47", lead, **answers)


def core_assessment(council: Council, case: str, worker: str = "sara.social") -> None:
    council.complete(
        case,
        "core_assessment",
        worker,
        core_child_seen=True,
        core_assessment_factors=["3B", "18B"],
        core_assessment_summary="Parents separated; father's contact supervised",
    )
    council.complete(case, "authorise_core_assessment", "tara.team", core_assessment_authorised=True)


def outcome_letters(council: Council, case: str, worker: str = "sara.social") -> None:
    council.complete(case, "family_outcome_letter", worker, family_outcome_letter=LETTER)
    council.complete(case, "referrer_outcome_letter", worker, referrer_outcome_letter=LETTER)


def to_strategy_discussion(council: Council, case: str, worker: str = "sara.social") -> None:
    """Refer with significant harm suspected at the front door: the strategy discussion comes first."""
    refer(council, case, harm_suspected=True)
    accept(council, case, worker)
    plan_letters(council, case, worker)


def versions(council: Council, case: str) -> list[tuple[str, int]]:
    """The process key and version each instance of the case runs."""
    with council.engine.db.read() as session:
        rows = session.execute(
            sa.select(ProcessDefinition.key, ProcessDefinition.version)
            .join(ProcessInstance, ProcessInstance.definition_id == ProcessDefinition.id)
            .join(CaseRecord, CaseRecord.id == ProcessInstance.case_id)
            .where(CaseRecord.reference == case)
        )
        return [(key, version) for key, version in rows]


def level(council: Council, case: str, element: str) -> int:
    return council.task(case, element).escalation_level


# -------------------------------------------------------------------------------- the scenarios


def test_initial_assessment_due_ten_working_days_after_a_referral_in_jubilee_week(council: Council) -> None:
    council.at("2012-05-30 10:00")  # Wednesday; 4 and 5 June 2012 were bank holidays
    case = refer(council, "IA-2012")
    assert council.open_elements(case) == {"accept_referral"}
    assert council.task(case, "accept_referral").team_key == "assessment"

    accept(council, case)
    facts = council.facts(case)
    assert facts["referral_date"] == "2012-05-30"
    assert facts["referral_source"] == "2A"
    assert facts["referral_team"] == "assessment"
    assert facts["referral_nfa"] is False
    assert facts["assessment_start_date"] == "2012-05-30"
    record = council.case(case)
    assert (record.team_key, record.worker) == ("assessment", "sara.social")

    assert council.clock_target_date(case, "initial_assessment") == date(2012, 6, 15)
    assert council.due_date(case, "initial_assessment") == date(2012, 6, 15)
    assert council.task(case, "initial_assessment").assignee == "sara.social"
    # Letters too skip the jubilee: 3 working days after 30 May is 6 June.
    assert council.due_date(case, "referrer_plan_letter") == date(2012, 6, 6)
    assert council.open_elements(case) == {"initial_assessment", "referrer_plan_letter", "family_plan_letter"}

    # The escalation ladder: the worker on the day, the team manager, then the service manager.
    council.at("2012-06-15 16:59")
    assert level(council, case, "initial_assessment") == 0
    council.at("2012-06-15 17:01")
    assert level(council, case, "initial_assessment") == 1
    council.at("2012-06-19 17:01")
    assert level(council, case, "initial_assessment") == 2
    council.at("2012-06-22 17:01")
    assert level(council, case, "initial_assessment") == 3

    assess(council, case)
    authorise(council, case, "nfa")
    clock = council.clocks(case)["initial_assessment"]
    assert clock.stopped_at is not None and clock.breached is True


def test_christmas_and_new_year_push_the_initial_assessment_into_january(council: Council) -> None:
    council.at("2023-12-20 11:00")  # Wednesday; 25, 26 December and 1 January are bank holidays
    case = refer(council, "IA-XMAS")
    accept(council, case)
    assert council.clock_target_date(case, "initial_assessment") == date(2024, 1, 8)
    assert council.due_date(case, "initial_assessment") == date(2024, 1, 8)
    assert council.due_date(case, "family_plan_letter") == date(2023, 12, 27)

    council.at("2024-01-08 16:00")
    plan_letters(council, case)
    assess(council, case)
    authorise(council, case, "nfa")
    clock = council.clocks(case)["initial_assessment"]
    assert clock.breached is False
    assert council.facts(case)["assessment_authorised_date"] == "2024-01-08"


def test_strategy_discussion_on_28_april_2023_puts_the_conference_at_23_may(council: Council) -> None:
    council.at("2023-04-20 10:00")
    case = refer(council, "S47-ICPC")
    accept(council, case)
    plan_letters(council, case)
    council.at("2023-04-27 15:00")
    assess(council, case, recommend="strategy_discussion")
    authorise(council, case, "strategy_discussion")
    assert council.facts(case)["assessment_outcome"] == "strategy_discussion"
    assert council.open_elements(case) == {"strategy_discussion"}

    council.at("2023-04-28 12:00")  # Friday; 1 May and the 8 May coronation holiday do not count
    strategy(council, case, "2023-04-28")
    facts = council.facts(case)
    assert facts["strategy_discussion_date"] == "2023-04-28"
    assert facts["s47_start_date"] == "2023-04-28"
    assert facts["icpc_target_date"] == "2023-05-23"
    target = council.clock_target_date(case, "icpc")
    assert target == date(2023, 5, 23) and target.weekday() < 5
    assert council.clock_target_date(case, "core_assessment") == date(2023, 6, 21)

    council.at("2023-05-15 10:00")
    conclude_enquiry(council, case)
    assert council.due_date(case, "hold_icpc") == date(2023, 5, 23)
    council.at("2023-05-23 10:00")
    council.complete(
        case,
        "hold_icpc",
        "tara.team",
        icpc_date="2023-05-23",
        conference_chair="Independent chair",
        cp_plan=False,
        conference_summary="No plan: the family is working with the child in need plan",
    )
    facts = council.facts(case)
    assert facts["icpc_date"] == "2023-05-23"
    assert facts["icpc_not_required"] is False
    assert "cp_plan_start_date" not in facts
    icpc = council.clocks(case)["icpc"]
    assert icpc.stopped_at is not None and icpc.breached is False


def test_starting_the_enquiry_starts_the_core_assessment_in_the_same_command(council: Council) -> None:
    council.at("2023-04-28 09:30")
    case = "S47-SAME"
    to_strategy_discussion(council, case)
    assert council.open_elements(case) == {"strategy_discussion"}
    assert "initial_assessment" not in council.clocks(case)  # strategy first: no initial assessment

    strategy_task = council.task(case, "strategy_discussion")
    council.at("2023-04-28 11:00")
    strategy(council, case, "2023-04-28")

    # Both tasks exist after the one completion...
    lead, core = council.task(case, "lead_section47"), council.task(case, "core_assessment")
    assert lead.created_at == core.created_at
    # ...and both clocks, started by the same element, on the same day.
    clocks = council.clocks(case)
    assert clocks["core_assessment"].started_by_element == clocks["icpc"].started_by_element
    assert clocks["core_assessment"].started_at == clocks["icpc"].started_at
    assert clocks["core_assessment"].started_at.astimezone(LONDON).date() == date(2023, 4, 28)
    assert council.facts(case)["s47_start_date"] == "2023-04-28"

    # One audit transaction: the completion, the fact, both clocks and both tasks share one instant.
    events = council.events(case)
    [completed] = [e for e in events if e.action == "task.completed" and e.task_id == strategy_task.id]
    same = [e for e in events if e.occurred_at == completed.occurred_at]
    assert {e.data.get("element") for e in same if e.action == "task.created"} >= {
        "lead_section47",
        "core_assessment",
    }
    assert {e.data.get("clock") for e in same if e.action == "clock.started"} == {"core_assessment", "icpc"}
    assert "s47_start_date" in {e.data.get("fact") for e in same if e.action == "case.fact_recorded"}


def test_only_a_qualified_permanent_social_worker_may_lead_the_enquiry(council: Council) -> None:
    council.at("2023-03-01 10:00")
    case = "S47-LEAD"
    to_strategy_discussion(council, case, worker="alex.agency")  # an agency social worker is allocated
    strategy(council, case, "2023-03-01")

    # The core assessment goes to the allocated (agency) worker; the enquiry lead cannot.
    assert council.task(case, "core_assessment").assignee == "alex.agency"
    lead = council.task(case, "lead_section47")
    assert lead.assignee is None and lead.role_key == "section47_lead"
    [refused] = council.events(case, "task.assignment_refused")
    assert refused.data["assignee"] == "alex.agency" and "agency" in refused.data["reason"]

    with pytest.raises(PermissionDenied, match="limited to permanent staff and they are agency"):
        council.claim(case, "lead_section47", "alex.agency")
    with pytest.raises(PermissionDenied, match="needs a qualified, registered practitioner"):
        council.claim(case, "lead_section47", "ash.assistant")
    with pytest.raises(PermissionDenied, match="limited to permanent staff"):
        council.assign(case, "lead_section47", "alex.agency", by="tara.team")
    assert council.task(case, "lead_section47").assignee is None

    council.claim(case, "lead_section47", "sara.social")
    assert council.task(case, "lead_section47").assignee == "sara.social"
    conclude_enquiry(council, case, lead="sara.social", conference=False)
    assert council.facts(case)["icpc_not_required"] is True
    assert council.clocks(case)["icpc"].stopped_at is not None


def test_letters_gate_closure(council: Council) -> None:
    council.at("2024-02-05 10:00")
    case = refer(council, "LETTERS")
    accept(council, case)
    assess(council, case)
    authorise(council, case, "nfa")
    # The "what will happen" letters are still outstanding: no outcome letters, no closure yet.
    assert council.open_elements(case) == {"referrer_plan_letter", "family_plan_letter"}
    plan_letters(council, case)
    assert council.open_elements(case) == {"family_outcome_letter", "referrer_outcome_letter"}
    assert council.due_date(case, "family_outcome_letter") == date(2024, 2, 8)

    council.complete(case, "family_outcome_letter", "sara.social", family_outcome_letter=LETTER)
    assert council.open_elements(case) == {"referrer_outcome_letter"}
    assert council.case(case).status == "open"
    assert council.events(case, "case.closed") == []
    assert "closure_date" not in council.facts(case)

    council.at("2024-02-06 10:00")
    council.complete(case, "referrer_outcome_letter", "sara.social", referrer_outcome_letter=LETTER)
    assert council.case(case).status == "open"
    assert council.open_elements(case) == {"ask_feedback"}
    facts = council.facts(case)
    assert facts["family_letter_sent_date"] == "2024-02-05"
    assert facts["referrer_letter_sent_date"] == "2024-02-06"

    council.complete(case, "ask_feedback", "sara.social", feedback=FEEDBACK)
    assert council.case(case).status == "closed"


def test_no_further_action_after_assessment_closes_with_rc8_and_asks_for_feedback(council: Council) -> None:
    council.at("2024-06-03 09:30")
    case = refer(council, "NFA-RC8")
    accept(council, case, tell_family=False)  # telling the family would put the child at risk
    assert "family_plan_letter" not in council.open_elements(case)
    council.complete(case, "referrer_plan_letter", "sara.social", referrer_plan_letter=LETTER)
    council.at("2024-06-10 14:00")
    assess(council, case)
    authorise(council, case, "nfa")
    outcome_letters(council, case)
    assert council.task(case, "ask_feedback").assignee == "sara.social"
    council.at("2024-06-11 10:00")
    council.complete(case, "ask_feedback", "sara.social", feedback=FEEDBACK)

    record = council.case(case)
    assert (record.status, record.closed_reason) == ("closed", "RC8")
    facts = council.facts(case)
    assert facts["closure_reason"] == "RC8"
    assert facts["closure_date"] == "2024-06-11"
    assert facts["referral_nfa"] is False  # it was assessed: not a 'no further action' referral
    assert facts["assessment_outcome"] == "nfa"
    assert facts["assessment_authorised_date"] == "2024-06-10"
    assert facts["child_seen"] is True
    assert facts["assessment_factors"] == ["3B", "4B"]
    assert facts["feedback_requested_date"] == "2024-06-11"
    assert facts["feedback"]["rating"] == 4 and facts["feedback"]["asked"] == ["parent", "child"]
    assert council.open_tasks(case) == []


def test_a_referral_needing_no_assessment_is_flagged_nfa_and_still_gets_its_letters(council: Council) -> None:
    council.at("2024-06-03 09:30")
    case = refer(council, "REF-NFA")
    council.complete(
        case,
        "accept_referral",
        "tara.team",
        accept_referral=False,
        referral_nfa_reason="Duplicate of a referral already being assessed for a sibling",
    )
    assert council.facts(case)["referral_nfa"] is True
    assert "initial_assessment" not in council.clocks(case)
    assert council.open_elements(case) == {"family_outcome_letter", "referrer_outcome_letter"}
    # Nobody was allocated: the letters wait in the team's queue for a social worker.
    assert council.task(case, "family_outcome_letter").assignee is None
    outcome_letters(council, case)
    council.complete(case, "ask_feedback", "sara.social", feedback={**FEEDBACK, "responded": False})
    # RC8 means "closed after assessment"; with no assessment the census code is RC7.
    assert council.case(case).closed_reason == "RC7"


def test_conference_decides_a_plan_with_a_category_of_abuse(council: Council) -> None:
    council.at("2023-04-28 09:30")
    case = "PLAN"
    to_strategy_discussion(council, case)
    strategy(council, case, "2023-04-28")
    council.at("2023-05-12 10:00")
    conclude_enquiry(council, case)
    council.at("2023-05-22 10:00")
    council.complete(
        case,
        "hold_icpc",
        "tara.team",
        icpc_date="2023-05-22",
        conference_chair="Independent chair",
        cp_plan=True,
        abuse_category="NEG",
        conference_summary="Neglect: plan agreed",
    )
    facts = council.facts(case)
    assert (facts["icpc_date"], facts["cp_plan_start_date"], facts["abuse_category"]) == (
        "2023-05-22",
        "2023-05-22",
        "NEG",
    )
    # The first core group within 10 working days of the conference.
    assert council.due_date(case, "first_core_group") == date(2023, 6, 6)
    assert council.task(case, "first_core_group").assignee == "sara.social"
    council.complete(
        case,
        "first_core_group",
        "sara.social",
        core_group_date="2023-06-01",
        core_group_members=["Mother", "Health visitor", "School"],
        plan_summary="Daily nursery attendance; weekly visits",
    )
    assert council.facts(case)["first_core_group_date"] == "2023-06-01"

    council.at("2023-06-20 10:00")
    core_assessment(council, case)
    assert council.clocks(case)["core_assessment"].breached is False
    outcome_letters(council, case)
    # A child on a plan: the letters go, the case stays open, no closure and no feedback request.
    assert council.case(case).status == "open"
    assert council.open_tasks(case) == []
    assert "closure_date" not in council.facts(case)


def test_a_plan_needs_a_category_of_abuse(council: Council) -> None:
    council.at("2023-04-28 09:30")
    case = "PLAN-CAT"
    to_strategy_discussion(council, case)
    strategy(council, case, "2023-04-28")
    conclude_enquiry(council, case)
    base = {"icpc_date": "2023-05-02", "conference_chair": "Chair", "conference_summary": "Plan"}
    with pytest.raises(InvalidData, match="abuse_category"):
        council.complete(case, "hold_icpc", "tara.team", cp_plan=True, **base)
    with pytest.raises(InvalidData, match="abuse_category"):
        council.complete(case, "hold_icpc", "tara.team", cp_plan=True, abuse_category="XYZ", **base)
    with pytest.raises(InvalidData, match="assessment_factors"):
        council.complete(
            case,
            "core_assessment",
            "sara.social",
            core_child_seen=True,
            core_assessment_factors=["21", "3B"],  # 21 (no factors) stands alone
            core_assessment_summary="x",
        )


def test_step_down_to_early_help_after_assessment(council: Council) -> None:
    council.at("2024-06-03 09:30")
    case = refer(council, "EH")
    accept(council, case)
    plan_letters(council, case)
    assess(council, case, recommend="early_help")
    authorise(council, case, "early_help")
    # Feedback first; the early help process then writes to the family and referrer and closes (RC9).
    assert council.open_elements(case) == {"ask_feedback_step_down"}
    council.complete(case, "ask_feedback_step_down", "sara.social", feedback=FEEDBACK)
    assert council.facts(case)["feedback_requested_date"] == "2024-06-03"
    [data] = council.instance_data(case)
    assert data["after_assessment"] is True
    assert council.case(case).status == "open"

    # The front door's early help process (its element ids and forms) takes it from here.
    council.complete(
        case,
        "eh_agree_offer_sw",
        "sara.social",
        early_help_offer={
            "family_agreed": True,
            "offer": "Family support worker",
            "lead_professional": "Ms Lee",
        },
    )
    eh_letter = {"sent_by": "letter", "summary": "Early help will contact you"}
    council.complete(case, "eh_letter_referrer_sw", "sara.social", early_help_referrer_letter=eh_letter)
    council.complete(case, "eh_letter_family_sw", "sara.social", early_help_family_letter=eh_letter)
    record = council.case(case)
    assert (record.status, record.closed_reason) == ("closed", "RC9")
    assert council.facts(case)["closure_reason"] == "RC9"
    assert council.facts(case)["assessment_outcome"] == "early_help"


def test_the_2013_variant_gives_one_assessment_45_working_days_and_leaves_open_cases_alone(
    council: Council,
) -> None:
    council.at("2024-03-20 10:00")  # Wednesday before Easter; early May and spring bank holidays follow
    before = refer(council, "V-OLD")
    [(_, old_version)] = versions(council, before)

    [result] = council.engine.deploy(
        [("referral_2013.bpmn", (PROCESSES / "variants" / "referral_2013.bpmn").read_bytes())], "olive.owner"
    )
    assert (result.key, result.created, result.version) == ("referral", True, old_version + 1)

    after = refer(council, "V-NEW")
    assert versions(council, after) == [("referral", old_version + 1)]
    assert versions(council, before) == [("referral", old_version)]

    accept(council, before)
    accept(council, after)
    # The case referred before the deployment keeps the 2010 initial assessment...
    assert council.clock_target_date(before, "initial_assessment") == date(2024, 4, 5)
    assert "assessment" not in council.clocks(before)
    assert "initial_assessment" in council.open_elements(before)
    # ...the new one has a single assessment within 45 working days of the referral.
    assert council.clock_target_date(after, "assessment") == date(2024, 5, 28)
    assert council.due_date(after, "assessment") == date(2024, 5, 28)
    assert "initial_assessment" not in council.clocks(after)
    assert "assessment" in council.open_elements(after)

    # Under 2013 a section 47 enquiry starts its assessment the same day too.
    plan_letters(council, after)
    council.complete(
        after,
        "assessment",
        "sara.social",
        child_seen=True,
        assessment_factors=["21"],
        assessment_summary="Concerns about injuries",
        recommended_outcome="strategy_discussion",
    )
    authorise(council, after, "strategy_discussion")
    strategy(council, after, "2024-04-10")
    assert {"lead_section47", "section47_assessment"} <= council.open_elements(after)
    # The first assessment's clock stopped at authorisation; the enquiry's own runs 45 days from its start.
    enquiry_assessment = council.clocks(after)["assessment"]  # the newest clock of that name
    assert enquiry_assessment.stopped_at is None
    assert enquiry_assessment.started_by_element == "begin_enquiry_and_assessment"
    assert council.clock_target_date(after, "assessment") == date(2024, 6, 14)
    assert council.clock_target_date(after, "icpc") == date(2024, 5, 1)
    assert council.facts(after)["assessment_factors"] == ["21"]


@pytest.mark.skipif(
    not (PROCESSES / "contact.bpmn").exists(), reason="the front door's contact.bpmn is not in processes/ yet"
)
def test_a_contact_goes_through_the_front_door_to_a_referral_and_closure(council: Council) -> None:
    council.at("2023-04-27 10:00")
    ref = contact_to_referral(
        council,
        {"name": "Amy Ash", "date_of_birth": "2016-05-01", "gender": "female"},
        concern="Bruising to the arm; the child says a parent grabbed her",
    )
    assert council.open_elements(ref) == {"accept_referral"}
    accept(council, ref)
    facts = council.facts(ref)
    assert facts["contact_date"] == "2023-04-27"
    assert facts["referral_date"] == "2023-04-27"
    assert facts["referral_source"] == "2A"
    assert council.case(ref).team_key == "assessment"

    plan_letters(council, ref)
    assess(council, ref)
    authorise(council, ref, "nfa")
    outcome_letters(council, ref)
    council.complete(ref, "ask_feedback", "sara.social", feedback=FEEDBACK)
    record = council.case(ref)
    assert (record.status, record.closed_reason) == ("closed", "RC8")


def test_a_process_owner_changes_the_initial_assessment_to_7_working_days_in_the_diagram(
    council: Council,
) -> None:
    council.at("2012-05-30 10:00")
    shipped = (PROCESSES / "referral.bpmn").read_text(encoding="utf-8")
    assert shipped.count("initial_assessment_days = 10") == 1
    seven = shipped.replace("initial_assessment_days = 10", "initial_assessment_days = 7")
    [result] = council.engine.deploy([("referral.bpmn", seven.encode("utf-8"))], "olive.owner")
    assert result.created

    case = refer(council, "IA-7")
    accept(council, case)
    assert council.clock_target_date(case, "initial_assessment") == date(2012, 6, 12)
    assert council.due_date(case, "initial_assessment") == date(2012, 6, 12)
