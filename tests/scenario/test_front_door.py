"""The front door: contact, out-of-hours handover, MASH screening and decision, NFA and early help.

Each scenario runs the shipped processes/ diagrams on a fake clock and asserts the dates a council is
inspected on (London time): decision within 1 working day of receipt, handover by 09:00 on the next
working day, letters before closure, one record per child.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from lxml import etree

from engine.errors import InvalidData
from engine.models import Outbox
from engine.registry import default_processes_dir
from tests.scenario.harness import LONDON, Council

PROCESSES = default_processes_dir()
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"

SCHOOL = {
    "name": "Jo Head",
    "organisation": "Hillside Primary School",
    "relationship": "Designated safeguarding lead",
    "email": "dsl@hillside.example",
}
NO_CONSENT = {"sought": False, "reason_not_sought": "Asking the family could put the child at risk"}
CONSENT = {"sought": True, "given": True}


def contact(
    council: Council,
    received_at: str,
    children: list[dict[str, Any]] | None = None,
    by: str = "sam.screener",
    team: str = "mash",
    **shared: Any,
) -> list[str]:
    """Record a contact as the start form does (shared answers plus the list of children)."""
    answers: dict[str, Any] = {
        "received_at": received_at,
        "referrer": SCHOOL,
        "source": "2A",
        "concern": "Bruising to the arm, child says a parent grabbed her",
        "consent": NO_CONSENT,
    }
    answers.update(shared)
    results = council.engine.start_for_subjects(
        "contact",
        by,
        children or [{"name": "Amy Ash", "date_of_birth": "2016-05-01", "gender": "female"}],
        answers,
        team_key=team,
        subject_field="child",
        subjects_field="children",
    )
    return [r.case_reference for r in results if r.case_reference]


def check(known: bool = False, information: str = "Nothing known") -> dict[str, Any]:
    return {"known": known, "information": information}


def screen(council: Council, case: str, urgency: str = "amber") -> None:
    """The MASH rates urgency and the three partners answer their checks."""
    council.complete(case, "rate_urgency", "mo.manager", urgency=urgency, urgency_reason="Injury to a child")
    council.complete(case, "police_check", "pat.police", police_check=check())
    council.complete(case, "health_check", "hana.health", health_check=check())
    council.complete(case, "education_check", "ed.education", education_check=check(True, "Bruises seen"))


def decide(council: Council, case: str, response: str, **extra: Any) -> None:
    decision = {"response": response, "reasons": "Reasons given", "consent": CONSENT, **extra}
    council.complete(case, "decide_response", "mo.manager", mash_decision=decision)


def letter() -> dict[str, Any]:
    return {"sent_by": "letter", "summary": "The outcome, and how to raise a new concern"}


def local_due(council: Council, case: str, element: str) -> datetime:
    due = council.task(case, element).due_at
    assert due is not None
    return due.astimezone(LONDON).replace(tzinfo=None)


def notifications(council: Council) -> list[dict[str, Any]]:
    with council.engine.db.read() as session:
        return [row.payload for row in session.scalars(sa.select(Outbox).order_by(Outbox.id))]


def user_tasks_of(process_file: str) -> set[str]:
    root = etree.parse(str(PROCESSES / process_file)).getroot()
    return {element.get("id") for element in root.iter(f"{BPMN}userTask")}


# --------------------------------------------------------------------------- the 1 working day decision


def test_contact_before_the_state_funeral_is_decided_by_tuesday(council: Council) -> None:
    council.at("2022-09-16 10:00")  # Friday; Monday 19 September 2022 was the Queen's state funeral
    [case] = contact(council, "2022-09-16T10:00")

    assert council.facts(case)["contact_date"] == "2022-09-16"
    assert council.facts(case)["contact_source"] == "2A"
    assert council.clock_target_date(case, "mash_decision") == date(2022, 9, 20)
    assert council.open_elements(case) == {"rate_urgency"}

    council.complete(case, "rate_urgency", "mo.manager", urgency="amber", urgency_reason="Injury")
    # Amber: the checks are due 24 working hours after receipt, the funeral skipped.
    assert local_due(council, case, "police_check") == datetime(2022, 9, 22, 10, 0)
    council.complete(case, "police_check", "pat.police", police_check=check())
    council.complete(case, "health_check", "hana.health", health_check=check())
    council.complete(case, "education_check", "ed.education", education_check=check())
    assert council.due_date(case, "decide_response") == date(2022, 9, 20)

    council.at("2022-09-20 16:00")
    decide(council, case, "referral", significant_harm_suspected=True)
    clock = council.clocks(case)["mash_decision"]
    assert clock.stopped_at is not None and clock.breached is False
    assert council.facts(case)["contact_outcome"] == "referral"
    assert council.facts(case)["contact_decision_date"] == "2022-09-20"
    assert council.events(case, "task.escalated") == []


def test_contact_on_maundy_thursday_is_decided_by_the_tuesday_after_easter(council: Council) -> None:
    council.at("2024-03-28 10:00")  # Good Friday 29 March and Easter Monday 1 April 2024
    [case] = contact(council, "2024-03-28T10:00")
    assert council.clock_target_date(case, "mash_decision") == date(2024, 4, 2)

    council.complete(case, "rate_urgency", "mo.manager", urgency="red", urgency_reason="Disclosure")
    # Red: the checks are due within 4 working hours of receipt.
    for element in ("police_check", "health_check", "education_check"):
        assert local_due(council, case, element) == datetime(2024, 3, 28, 14, 0)
    council.complete(case, "police_check", "pat.police", police_check=check())
    council.complete(case, "health_check", "hana.health", health_check=check())
    council.complete(case, "education_check", "ed.education", education_check=check())
    assert council.due_date(case, "decide_response") == date(2024, 4, 2)

    council.at("2024-04-02 10:00")
    assert council.task(case, "decide_response").escalation_level == 0
    decide(council, case, "referral")
    assert council.clocks(case)["mash_decision"].breached is False


def test_a_decision_that_slips_escalates_and_breaches_the_clock(council: Council) -> None:
    council.at("2023-05-04 10:00")  # Thursday; Monday 8 May 2023 was the coronation bank holiday
    [case] = contact(council, "2023-05-04T10:00")
    screen(council, case)
    council.claim(case, "decide_response", "mo.manager")
    assert council.due_date(case, "decide_response") == date(2023, 5, 5)
    assert council.clock_target_date(case, "mash_decision") == date(2023, 5, 5)

    council.at("2023-05-05 17:01")
    assert council.task(case, "decide_response").escalation_level == 1
    council.at("2023-05-08 17:01")  # the holiday is not a working day: no second step yet
    assert council.task(case, "decide_response").escalation_level == 1
    council.at("2023-05-09 17:01")
    assert council.task(case, "decide_response").escalation_level == 2

    escalations = [n for n in notifications(council) if n.get("kind") == "escalation"]
    assert [n["level"] for n in escalations] == [1, 2]
    assert escalations[0]["to"] == ["mo.manager"]  # the holder is reminded
    assert "Escalated to the team manager" in escalations[1]["subject"]
    levels = [e.data["level"] for e in council.events(case, "task.escalated")]
    assert levels == [1, 2]
    fired = [e.occurred_at.astimezone(LONDON).date() for e in council.events(case, "task.escalated")]
    assert fired == [date(2023, 5, 5), date(2023, 5, 9)]

    council.at("2023-05-10 09:30")
    decide(council, case, "nfa")
    clock = council.clocks(case)["mash_decision"]
    assert clock.breached is True
    assert clock.stopped_at is not None
    assert clock.stopped_at.astimezone(LONDON).date() == date(2023, 5, 10)
    # The service manager's step (Wednesday 17:00) never fires: the decision was made.
    council.at("2023-05-10 17:30")
    assert [e.data["level"] for e in council.events(case, "task.escalated")] == [1, 2]


# ------------------------------------------------------------------------------------ out of hours


def test_friday_evening_contact_taken_by_edt_is_handed_over_after_christmas(council: Council) -> None:
    council.at("2023-12-22 17:30")  # Friday; 25 and 26 December 2023 are bank holidays
    [case] = contact(council, "2023-12-22T17:30", by="eddie.edt", team="edt", taken_by="eddie.edt")

    handover = council.task(case, "handover_to_day_service")
    assert handover.role_key == "contact_officer" and handover.team_key == "mash"
    assert local_due(council, case, "handover_to_day_service") == datetime(2023, 12, 27, 9, 0)
    assert council.clock_target_date(case, "mash_decision") == date(2023, 12, 27)
    assert council.facts(case)["contact_date"] == "2023-12-22"

    council.at("2023-12-27 09:05")  # the day service is late picking it up
    assert council.task(case, "handover_to_day_service").escalation_level == 1
    council.complete(
        case,
        "handover_to_day_service",
        "sam.screener",
        edt_handover={"actions_out_of_hours": "Police welfare check", "child_safe_overnight": True},
    )
    assert council.case(case).team_key == "mash"
    assert council.open_elements(case) == {"rate_urgency"}
    assert local_due(council, case, "rate_urgency") == datetime(2023, 12, 27, 13, 0)


def test_weekday_contact_goes_straight_to_screening(council: Council) -> None:
    council.at("2024-03-06 11:00")
    [case] = contact(council, "2024-03-06T11:00")
    assert "handover_to_day_service" not in council.open_elements(case)
    assert council.open_elements(case) == {"rate_urgency"}


# ------------------------------------------------------------------------------------------ outcomes


def test_no_further_action_closes_only_after_the_referrer_is_told(council: Council) -> None:
    council.at("2024-03-06 10:00")
    [case] = contact(council, "2024-03-06T10:00", consent=CONSENT)
    screen(council, case, urgency="green")
    council.at("2024-03-06 15:00")
    decide(council, case, "nfa")

    # Decided, not closed: the referrer's letter is a task with a deadline, and the case waits for it.
    assert council.case(case).status == "open"
    assert council.open_elements(case) == {"tell_referrer_outcome"}
    assert council.due_date(case, "tell_referrer_outcome") == date(2024, 3, 11)
    assert "closure_date" not in council.facts(case)

    council.at("2024-03-08 11:00")
    council.complete(case, "tell_referrer_outcome", "sam.screener", contact_outcome_letter=letter())
    record = council.case(case)
    assert record.status == "closed" and record.closed_reason == "RC7"
    facts = council.facts(case)
    assert facts["contact_outcome"] == "nfa"
    assert facts["referrer_letter_sent_date"] == "2024-03-08"
    assert facts["closure_date"] == "2024-03-08"
    assert facts["closure_reason"] == "RC7"
    assert "referral_date" not in facts  # a contact, never a referral
    closed = council.events(case, "case.closed")[0].seq
    letter_done = [e.seq for e in council.events(case, "task.completed")][-1]
    assert letter_done < closed


def test_advice_needs_the_advice_written_down(council: Council) -> None:
    council.at("2024-03-06 10:00")
    [case] = contact(council, "2024-03-06T10:00")
    screen(council, case)
    task = council.task(case, "decide_response")
    no_advice = {"mash_decision": {"response": "advice", "reasons": "x", "consent": CONSENT}}
    with pytest.raises(InvalidData, match="advice"):
        council.engine.complete(task.id, "mo.manager", no_advice)
    decide(council, case, "advice", advice="Advised the school to talk to the parents about the bruising")
    assert council.open_elements(case) == {"tell_referrer_outcome"}


def test_early_help_step_down_tells_referrer_and_family_then_closes(council: Council) -> None:
    council.at("2024-03-06 10:00")
    [case] = contact(council, "2024-03-06T10:00", consent=CONSENT)
    screen(council, case, urgency="green")
    decide(council, case, "early_help")
    assert council.facts(case)["contact_outcome"] == "early_help"

    offer = council.task(case, "eh_agree_offer")
    assert offer.role_key == "contact_officer" and offer.team_key == "mash"
    assert council.due_date(case, "eh_agree_offer") == date(2024, 3, 13)
    council.at("2024-03-07 10:00")
    council.complete(
        case,
        "eh_agree_offer",
        "sam.screener",
        early_help_offer={
            "family_agreed": True,
            "offer": "Family support worker from the children's centre",
            "lead_professional": "Pat Lee, Hillside Children's Centre",
        },
    )
    assert council.open_elements(case) == {"eh_letter_referrer", "eh_letter_family"}
    assert council.due_date(case, "eh_letter_family") == date(2024, 3, 12)

    council.complete(case, "eh_letter_referrer", "sam.screener", early_help_referrer_letter=letter())
    assert council.case(case).status == "open"  # not before the family's letter
    council.at("2024-03-08 10:00")
    council.complete(case, "eh_letter_family", "sam.screener", early_help_family_letter=letter())

    record = council.case(case)
    assert record.status == "closed" and record.closed_reason == "RC7"
    facts = council.facts(case)
    assert facts["referrer_letter_sent_date"] == "2024-03-07"
    assert facts["family_letter_sent_date"] == "2024-03-08"
    assert facts["closure_date"] == "2024-03-08"
    assert facts["closure_reason"] == "RC7"


def test_early_help_after_an_assessment_closes_with_rc9(council: Council) -> None:
    council.at("2024-03-06 10:00")
    started = council.engine.start(
        "early_help",
        "tara.team",
        case_reference="CH-900001",
        data={"after_assessment": True},
        team_key="assessment",
        subject_name="Ben Birch",
    )
    case = started.case_reference
    assert case is not None
    offer = council.task(case, "eh_agree_offer_sw")
    assert offer.role_key == "social_worker" and offer.team_key == "assessment"
    council.complete(
        case,
        "eh_agree_offer_sw",
        "sara.social",
        early_help_offer={"family_agreed": False, "offer": "Parenting course", "why_declined": "Not wanted"},
    )
    council.complete(case, "eh_letter_referrer_sw", "sara.social", early_help_referrer_letter=letter())
    council.complete(case, "eh_letter_family_sw", "sara.social", early_help_family_letter=letter())
    assert council.case(case).closed_reason == "RC9"
    assert council.facts(case)["closure_reason"] == "RC9"


def test_referral_moves_the_case_into_the_referral_process(council: Council) -> None:
    council.at("2024-03-06 10:00")
    [case] = contact(council, "2024-03-06T10:00")
    screen(council, case, urgency="red")
    decide(council, case, "referral", significant_harm_suspected=True)

    referral_tasks = user_tasks_of("referral.bpmn")
    open_elements = council.open_elements(case)
    assert open_elements and open_elements <= referral_tasks
    assert not open_elements & user_tasks_of("contact.bpmn")
    assert council.case(case).status == "open"
    assert council.facts(case)["contact_outcome"] == "referral"


# ------------------------------------------------------------------------------- open cases, siblings


def test_child_with_an_open_case_is_passed_to_the_allocated_worker(council: Council) -> None:
    council.at("2024-03-06 10:00")
    child = {"name": "Cara Cole", "date_of_birth": "2012-02-02", "existing_case": "CH-000777"}
    [case] = contact(council, "2024-03-06T10:00", children=[child])

    assert council.open_elements(case) == {"pass_to_allocated_worker"}
    assert council.due_date(case, "pass_to_allocated_worker") == date(2024, 3, 7)
    council.complete(
        case,
        "pass_to_allocated_worker",
        "sam.screener",
        passed_to_allocated_worker={"worker": "sara.social", "how": "case_note"},
    )
    record = council.case(case)
    assert record.status == "closed"
    facts = council.facts(case)
    assert facts["contact_outcome"] == "passed_to_allocated_worker"
    assert facts["contact_existing_case"] == "CH-000777"
    assert "referral_date" not in facts
    assert council.clocks(case)["mash_decision"].breached is False
    # No screening, no new referral.
    elements = {e.data.get("element") for e in council.events(case, "task.created")}
    assert elements == {"pass_to_allocated_worker"}


def test_three_siblings_make_three_linked_records_each_with_its_own_answers(council: Council) -> None:
    council.at("2024-03-06 10:00")
    children = [
        {"name": "Dan Dale", "date_of_birth": "2014-01-01", "gender": "male"},
        {"name": "Eve Dale", "date_of_birth": "2016-06-06", "gender": "female"},
        {"name": "Fay Dale", "date_of_birth": "2020-09-09", "gender": "female"},
    ]
    dan, eve, fay = contact(council, "2024-03-06T10:00", children=children)

    assert council.linked(dan) == {eve, fay}
    assert council.linked(eve) == {dan, fay}
    assert council.linked(fay) == {dan, eve}
    for case in (dan, eve, fay):
        assert council.facts(case)["contact_date"] == "2024-03-06"
        assert council.clock_target_date(case, "mash_decision") == date(2024, 3, 7)
        assert council.open_elements(case) == {"rate_urgency"}

    # Each child is screened on their own record: Dan's police answer stays on Dan's.
    council.complete(dan, "rate_urgency", "mo.manager", urgency="red", urgency_reason="Dan's disclosure")
    council.complete(
        dan,
        "police_check",
        "pat.police",
        police_check=check(True, "Dan seen with a black eye at the station"),
    )
    council.complete(eve, "rate_urgency", "mo.manager", urgency="green", urgency_reason="No injury")

    shared = {"received_at", "referrer", "source", "concern", "consent"}
    for case, name in ((dan, "Dan Dale"), (eve, "Eve Dale"), (fay, "Fay Dale")):
        [data] = council.instance_data(case)
        assert data["child"]["name"] == name
        assert "children" not in data
        text = repr(data)
        for other in {"Dan Dale", "Eve Dale", "Fay Dale"} - {name}:
            assert other not in text
        assert shared <= set(data)
    [dan_data] = council.instance_data(dan)
    [eve_data] = council.instance_data(eve)
    [fay_data] = council.instance_data(fay)
    assert dan_data["urgency"] == "red" and "black eye" in repr(dan_data)
    assert eve_data["urgency"] == "green" and "black eye" not in repr(eve_data)
    assert "urgency" not in fay_data and "police_check" not in fay_data
    assert "police_check" not in eve_data
