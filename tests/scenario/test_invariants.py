"""Engine-level invariant: no case ever holds a started section 47 enquiry without a started assessment.

The inspection's first finding: core assessments were not always started when a section 47 enquiry
began. After many varied scenarios (every branch of the referral, both guidance versions) the check
reads the database only: the audit trail (what ever happened) and the projections (what holds now).
Every sign of a started enquiry (its s47_start_date fact, its 'icpc' clock, its lead's task) must have
an assessment clock ('core_assessment' under 2010, 'assessment' from 2013) started in the same
transaction of the same instance. A deliberately broken section47 diagram shows the check catches it.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from lxml import etree

from engine import clock, definitions
from engine.core import Engine
from engine.errors import DefinitionError
from engine.models import AuditEvent, CaseFact, CaseRecord, StatutoryClock, Task
from engine.validation import ValidationContext
from tests.scenario.harness import LONDON, Council
from tests.scenario.test_referral import (
    FEEDBACK,
    LETTER,
    PROCESSES,
    accept,
    assess,
    authorise,
    conclude_enquiry,
    core_assessment,
    outcome_letters,
    plan_letters,
    refer,
    strategy,
    to_strategy_discussion,
)

ASSESSMENT_CLOCKS = ("core_assessment", "assessment")
ASSESSMENT_TASKS = ("core_assessment", "section47_assessment")
ENQUIRY_TASKS = ("lead_section47",)
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiff": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}


def enquiries_without_assessment(engine: Engine) -> list[str]:
    """Every started section 47 with no assessment started in the same transaction, described."""
    problems: list[str] = []
    with engine.db.read() as session:
        refs = dict(session.execute(sa.select(CaseRecord.id, CaseRecord.reference)).all())

        # History: each command's audit events share its instant (occurred_at).
        events = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action.in_(("case.fact_recorded", "clock.started", "task.created")))
            .order_by(AuditEvent.seq)
        ).all()
        started = {
            (e.case_id, e.instance_id, e.occurred_at)
            for e in events
            if e.action == "clock.started" and e.data.get("clock") in ASSESSMENT_CLOCKS
        }
        for e in events:
            if e.action == "case.fact_recorded" and e.data.get("fact") == "s47_start_date":
                what = "s47_start_date recorded"
            elif e.action == "clock.started" and e.data.get("clock") == "icpc":
                what = "the icpc clock started"
            elif e.action == "task.created" and e.data.get("element") in ENQUIRY_TASKS:
                what = "the enquiry lead's task created"
            else:
                continue
            if (e.case_id, e.instance_id, e.occurred_at) not in started:
                problems.append(
                    f"{refs.get(e.case_id)}: {what} (audit #{e.seq}) without an assessment clock "
                    "started in the same transaction"
                )

        # State: the projections the census and the queues read.
        clocks = session.scalars(sa.select(StatutoryClock)).all()
        assessments: dict[tuple[int | None, int], list[StatutoryClock]] = {}
        for clock in clocks:
            if clock.name in ASSESSMENT_CLOCKS:
                assessments.setdefault((clock.case_id, clock.instance_id), []).append(clock)
        for clock in clocks:
            if clock.name == "icpc" and not any(
                a.started_by_element == clock.started_by_element and a.started_at == clock.started_at
                for a in assessments.get((clock.case_id, clock.instance_id), [])
            ):
                problems.append(
                    f"{refs.get(clock.case_id)}: an icpc clock with no assessment clock beside it"
                )
        for fact in session.scalars(sa.select(CaseFact).where(CaseFact.name == "s47_start_date")):
            if not any(
                a.started_by_element == fact.element_id
                and a.started_at.astimezone(LONDON).date().isoformat() == fact.value
                for a in assessments.get((fact.case_id, fact.instance_id), [])
            ):
                problems.append(
                    f"{refs.get(fact.case_id)}: s47_start_date with no assessment started that day"
                )
        tasks = session.scalars(
            sa.select(Task).where(Task.element_id.in_(ENQUIRY_TASKS + ASSESSMENT_TASKS))
        ).all()
        assessment_tasks = {(t.instance_id, t.created_at) for t in tasks if t.element_id in ASSESSMENT_TASKS}
        for task in tasks:
            if (
                task.element_id in ENQUIRY_TASKS
                and (task.instance_id, task.created_at) not in assessment_tasks
            ):
                problems.append(f"{refs.get(task.case_id)}: an enquiry lead's task with no assessment task")
    return sorted(set(problems))


class TickingCouncil(Council):
    """Each command a second after the last, so one transaction's audit instant is its own."""

    def complete(self, case: str, element: str, user: str, **answers: Any) -> None:
        self.advance(seconds=1)
        super().complete(case, element, user, **answers)

    def claim(self, case: str, element: str, user: str) -> None:
        self.advance(seconds=1)
        super().claim(case, element, user)


@pytest.fixture
def ticking(council: Council) -> TickingCouncil:
    return TickingCouncil(council.engine, council.clock)


# ------------------------------------------------------------------------------- the scenarios


def nfa_after_assessment(c: Council, case: str) -> None:
    refer(c, case)
    accept(c, case)
    plan_letters(c, case)
    c.complete(
        case,
        "initial_assessment",
        "sara.social",
        child_seen=False,
        child_not_seen_reason="Family away",
        assessment_factors=["21"],
        assessment_summary="Nothing of concern",
        recommended_outcome="nfa",
    )
    c.complete(
        case, "authorise_assessment", "tara.team", assessment_authorised=False, manager_comments="See him"
    )
    assess(c, case)
    authorise(c, case, "nfa")
    outcome_letters(c, case)
    c.complete(case, "ask_feedback", "sara.social", feedback=FEEDBACK)


def nfa_at_referral(c: Council, case: str) -> None:
    refer(c, case)
    c.complete(case, "accept_referral", "tara.team", accept_referral=False, referral_nfa_reason="Duplicate")
    outcome_letters(c, case)
    c.complete(case, "ask_feedback", "sara.social", feedback={**FEEDBACK, "responded": False})


def early_help(c: Council, case: str) -> None:
    refer(c, case)
    accept(c, case, tell_family=False)
    c.complete(case, "referrer_plan_letter", "sara.social", referrer_plan_letter=LETTER)
    assess(c, case, recommend="early_help")
    authorise(c, case, "early_help")


def strategy_without_enquiry(c: Council, case: str) -> None:
    refer(c, case)
    accept(c, case)
    plan_letters(c, case)
    assess(c, case, recommend="strategy_discussion")
    authorise(c, case, "strategy_discussion")
    strategy(c, case, c.now_local().date().isoformat(), start=False, outcome_without_enquiry="nfa")
    outcome_letters(c, case)


def strategy_first_then_assessment_then_enquiry(c: Council, case: str) -> None:
    to_strategy_discussion(c, case)
    strategy(c, case, c.now_local().date().isoformat(), start=False, outcome_without_enquiry="assessment")
    assess(c, case, recommend="strategy_discussion")
    authorise(c, case, "strategy_discussion")
    strategy(c, case, c.now_local().date().isoformat())
    conclude_enquiry(c, case, conference=False)
    core_assessment(c, case)


def enquiry_with_plan(c: Council, case: str) -> None:
    to_strategy_discussion(c, case)
    strategy(c, case, c.now_local().date().isoformat())
    conclude_enquiry(c, case)
    c.complete(
        case,
        "hold_icpc",
        "tara.team",
        icpc_date=c.now_local().date().isoformat(),
        conference_chair="Chair",
        cp_plan=True,
        abuse_category="PHY",
        conference_summary="Plan",
    )
    core_assessment(c, case)


def enquiry_led_after_agency_refusal(c: Council, case: str) -> None:
    to_strategy_discussion(c, case, worker="alex.agency")
    strategy(c, case, c.now_local().date().isoformat())
    c.claim(case, "lead_section47", "tara.team")
    conclude_enquiry(c, case, lead="tara.team", conference=False)


def enquiry_under_2013(c: Council, case: str) -> None:
    refer(c, case)
    accept(c, case)
    plan_letters(c, case)
    c.complete(
        case,
        "assessment",
        "sara.social",
        child_seen=True,
        assessment_factors=["3A"],
        assessment_summary="Domestic abuse",
        recommended_outcome="strategy_discussion",
    )
    authorise(c, case, "strategy_discussion")
    strategy(c, case, c.now_local().date().isoformat())
    conclude_enquiry(c, case, conference=False)


def strategy_first_under_2013(c: Council, case: str) -> None:
    to_strategy_discussion(c, case)
    strategy(c, case, c.now_local().date().isoformat())


SCENARIOS_2010 = [
    nfa_after_assessment,
    nfa_at_referral,
    early_help,
    strategy_without_enquiry,
    strategy_first_then_assessment_then_enquiry,
    enquiry_with_plan,
    enquiry_led_after_agency_refusal,
]
SCENARIOS_2013 = [enquiry_under_2013, strategy_first_under_2013]


def deploy_2013(c: Council) -> None:
    path = PROCESSES / "variants" / "referral_2013.bpmn"
    c.engine.deploy([(path.name, path.read_bytes())], "olive.owner")


def test_no_case_ever_holds_a_section_47_without_an_assessment(ticking: TickingCouncil) -> None:
    ticking.at("2023-04-24 09:30")
    for round_ in range(2):
        for scenario in SCENARIOS_2010:
            scenario(ticking, f"{scenario.__name__}-{round_}")
            ticking.advance(hours=3)
    deploy_2013(ticking)
    for scenario in SCENARIOS_2013:
        scenario(ticking, scenario.__name__)
    # Let every timer on the open cases fire (escalations), then look.
    ticking.advance(days=60)

    with ticking.engine.db.read() as session:
        enquiries = session.scalar(
            sa.select(sa.func.count()).select_from(CaseFact).where(CaseFact.name == "s47_start_date")
        )
        closed = session.scalar(
            sa.select(sa.func.count()).select_from(CaseRecord).where(CaseRecord.status == "closed")
        )
    assert enquiries == 2 * 3 + 2  # the scenarios did start enquiries...
    assert closed >= 4  # ...and closed others, on several branches
    assert enquiries_without_assessment(ticking.engine) == []


def broken_section47(kind: str) -> bytes:
    """section47.bpmn with its assessment clock removed, or moved to a later step."""
    root = etree.fromstring((PROCESSES / "section47.bpmn").read_bytes())
    props = root.xpath(
        "//spiff:property[starts-with(@name, 'clock.start') and contains(@name, 'core_assessment')]",
        namespaces=NS,
    )
    assert props, "section47.bpmn no longer starts core_assessment: update this test"
    later = root.xpath("//bpmn:userTask[@id='core_assessment']//spiff:properties", namespaces=NS)[0]
    for prop in props:
        prop.getparent().remove(prop)
        if kind == "assessment clock one step later" and "startedAt" not in prop.get("name"):
            later.append(prop)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@pytest.mark.parametrize("kind", ["enquiry starts alone", "assessment clock one step later"])
def test_the_check_catches_a_diagram_that_starts_the_enquiry_alone(
    ticking: TickingCouncil, kind: str
) -> None:
    ticking.at("2023-04-24 09:30")
    enquiry_with_plan(ticking, "GOOD")
    assert enquiries_without_assessment(ticking.engine) == []

    files = [("section47_broken.bpmn", broken_section47(kind))]
    if kind == "enquiry starts alone":
        # The safeguarding rules refuse this diagram at deploy, naming the step...
        with pytest.raises(DefinitionError) as refused:
            ticking.engine.deploy(files, "olive.owner")
        assert "begin_enquiry_and_assessment" in str(refused.value)
        # ...and the run-time check must still catch it if it got in some other way.
        with ticking.engine.db.transaction() as session:
            [result] = definitions.deploy(
                session, files, "olive.owner", clock.now(), context=ValidationContext()
            )
    else:
        [result] = ticking.engine.deploy(files, "olive.owner")
    assert result.key == "section47" and result.created
    ticking.advance(hours=1)
    to_strategy_discussion(ticking, "BROKEN")
    strategy(ticking, "BROKEN", "2023-04-24")
    if kind == "assessment clock one step later":
        core_assessment(ticking, "BROKEN")

    problems = enquiries_without_assessment(ticking.engine)
    assert problems, "a broken diagram must be caught"
    assert all(p.startswith("BROKEN:") for p in problems)
    assert any("s47_start_date recorded" in p for p in problems)
    assert any("icpc clock" in p for p in problems)
