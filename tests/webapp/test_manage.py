"""Manager pages: escalations, caseloads and agency share, timeliness this month, feedback."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from engine.clock import FakeClock
from engine.core import Engine
from engine.seed import run_seed
from tests.webapp.conftest import client_for, engine_of_app, page, text_of
from web import charts, reports

PAGES = ["/manage/escalations", "/manage/caseloads", "/manage/timeliness", "/manage/feedback"]
DEMO_CASES = Path(__file__).resolve().parents[2] / "processes" / "demo" / "cases.json"


def fire_due_timers(engine: Engine) -> int:
    fired = 0
    while engine.fire_next_due() is not None:
        fired += 1
    return fired


# ------------------------------------------------------------------- building work

CHECKS = [
    ("rate_urgency", "mo.manager", {"urgency": "amber", "urgency_reason": "Needs a look."}),
    ("police_check", "pat.police", {"police_check": {"known": False, "information": "Nothing known"}}),
    ("health_check", "hana.health", {"health_check": {"known": False, "information": "Nothing known"}}),
    (
        "education_check",
        "ed.education",
        {"education_check": {"known": False, "information": "Nothing known"}},
    ),
]


def record_contact(engine: Engine, name: str, received_at: str) -> str:
    results = engine.start_for_subjects(
        "contact",
        "sam.screener",
        [{"name": name, "date_of_birth": "2015-01-01"}],
        {
            "received_at": received_at,
            "referrer": {"name": "A teacher", "organisation": "A school", "relationship": "Teacher"},
            "source": "2A",
            "concern": "A concern.",
            "consent": {"sought": True, "given": True},
        },
        team_key="mash",
        subject_field="child",
        subjects_field="children",
    )
    reference = results[0].case_reference
    assert reference is not None
    return reference


def complete(engine: Engine, reference: str, element: str, user: str, answers: dict[str, Any]) -> None:
    task = next(t for t in engine.tasks(case_reference=reference) if t.element_id == element)
    engine.complete(task.id, user, answers)


def screen(engine: Engine, reference: str) -> None:
    for element, user, answers in CHECKS:
        complete(engine, reference, element, user, answers)


def decide(engine: Engine, reference: str, response: str = "nfa", harm: bool = False) -> None:
    decision = {
        "response": response,
        "reasons": "Reasons.",
        "consent": {"sought": True, "given": True},
        "significant_harm_suspected": harm,
    }
    complete(engine, reference, "decide_response", "mo.manager", {"mash_decision": decision})


def refer(engine: Engine, name: str, worker: str, section47: bool = False) -> str:
    """A contact screened, referred and allocated to ``worker``; with ``section47``, the enquiry begun."""
    reference = record_contact(engine, name, "2024-03-06T09:10")
    screen(engine, reference)
    decide(engine, reference, "referral", harm=section47)
    accept: dict[str, Any] = {
        "accept_referral": True,
        "allocated_worker": worker,
        "tell_family": not section47,
    }
    if section47:
        accept["family_not_told_reason"] = "Telling the family now could put the child at risk"
    complete(engine, reference, "accept_referral", "tara.team", accept)
    if section47:
        complete(
            engine,
            reference,
            "strategy_discussion",
            "tara.team",
            {
                "strategy_discussion_date": "2024-03-06",
                "participants": [
                    {"name": "Tara Team-Manager", "agency": "social_care", "role": "Chair"},
                    {"name": "DC Pat Police", "agency": "police", "role": "Investigating officer"},
                    {"name": "Hana Health", "agency": "health", "role": "Named nurse"},
                ],
                "discussion_summary": "Enquiry needed.",
                "start_section47": True,
                "joint_with_police": False,
                "enquiry_plan": "Visit today.",
            },
        )
    return reference


# ------------------------------------------------------------------------ access


@pytest.mark.parametrize("path", PAGES)
def test_only_managers_see_the_manager_pages(demo_app: Flask, path: str) -> None:
    assert demo_app.test_client().get(path).status_code == 302  # sign in first
    for username in ("sara.social", "sam.screener", "alex.agency", "pat.police", "olive.owner", "adi.admin"):
        assert "You cannot see this page" in page(client_for(demo_app, username), path, 403)
    for username in ("mo.manager", "tara.team", "lee.longterm", "sid.service"):
        html = page(client_for(demo_app, username), path)
        assert html.count("<h1") == 1
        assert html.count("<table") == html.count('<caption class="govuk-table__caption')  # every table
        assert "<script>" not in html and " style=" not in html and "onclick" not in html


# ------------------------------------------------------------------- escalations


def test_escalations_show_level_lateness_and_who_holds_the_work(
    demo_app: Flask, fake_clock: FakeClock
) -> None:
    engine = engine_of_app(demo_app)
    mo = client_for(demo_app, "mo.manager")
    html = page(mo, "/manage/escalations")
    words = text_of(html)
    # Dan's decision was due on Monday 4 March; today is Wednesday 6 March.
    assert "Dan Okafor DEMO-004 Decide the response" in words
    assert "Level 2: team manager 2 working days late Not claimed" in words
    assert "Eve Marsh DEMO-005 Hand over to the day service" in words
    assert "Level 1: reminder to the worker Late today Not claimed" in words
    assert words.index("Dan Okafor") < words.index("Eve Marsh")  # most escalated first
    assert 'href="/cases/DEMO-004"' in html
    assert 'href="/cases/DEMO-005"' not in html  # Eve's case is the EDT's: Mo may not open it
    # Nothing of the assessment team's is late yet.
    tara = client_for(demo_app, "tara.team")
    assert "No escalations: every task is on time" in text_of(page(tara, "/manage/escalations"))

    # Six days later (Tuesday 12 March), with the timers fired.
    fake_clock.set(datetime(2024, 3, 12, 10, 0, tzinfo=UTC))
    assert fire_due_timers(engine) > 0
    words = text_of(page(tara, "/manage/escalations"))
    assert (
        "Accept the referral and allocate Assessment Team Level 3: service manager 3 working days late"
        in words
    )
    assert "Not claimed" in words
    assert "Tell the referrer what will happen" in words and "Sara Social Permanent" in words
    assert "Level 1: reminder to the worker 1 working day late Sara Social" in words
    assert "Dan Okafor" not in words  # the MASH's work is not Tara's
    levels = [int(n) for n in re.findall(r"Level (\d):", words)]
    assert levels == sorted(levels, reverse=True)
    words = text_of(page(mo, "/manage/escalations"))
    assert words.index("Dan Okafor") < words.index("Ben Walker")
    assert "Level 3: service manager 6 working days late" in words
    # The service manager sees every team's, the long-term team's transfer decisions too.
    words = text_of(page(client_for(demo_app, "sid.service"), "/manage/escalations"))
    assert "Accept or decline the transfer" in words and "Decide the response" in words


def test_an_agency_holder_is_named_as_agency(app: Flask, fake_clock: FakeClock) -> None:
    engine = engine_of_app(app)
    refer(engine, "Kai Agency-Held", "alex.agency")
    fake_clock.set(datetime(2024, 3, 13, 10, 0, tzinfo=UTC))  # the plan letters were due on the 11th
    fire_due_timers(engine)
    words = text_of(page(client_for(app, "tara.team"), "/manage/escalations"))
    assert "Tell the family what will happen" in words
    assert "2 working days late Alex Agency Agency" in words


# --------------------------------------------------------------------- caseloads


def test_caseloads_and_the_share_agency_staff_hold(app: Flask) -> None:
    engine = engine_of_app(app)
    refer(engine, "Pia Permanent", "sara.social")
    refer(engine, "Quin Agency", "alex.agency")
    refer(engine, "Rex Enquiry", "alex.agency", section47=True)
    tasks = {t.element_id: t for t in engine.tasks() if t.element_id in ("lead_section47", "core_assessment")}
    # The council keeps section 47 leads with permanent staff: offered to them, not given to Alex.
    assert tasks["lead_section47"].assignee is None and tasks["core_assessment"].assignee == "alex.agency"

    words = text_of(page(client_for(app, "tara.team"), "/manage/caseloads"))
    assert "Section 47 enquiries 1 0 of 1 0% 1" in words
    assert "Assessments 3 2 of 3 67% 0" in words  # two initial assessments and a core assessment
    assert "Alex Agency Agency Assessment Team 2 " in words
    assert "Sara Social Permanent Assessment Team 1 " in words
    assert "Ash Assistant Permanent Assessment Team 0 0" in words
    assert "They hold 2 of the 3 open cases allocated to these workers" in words
    # The MASH manager's view: the MASH's people, and no assessments of the MASH's.
    words = text_of(page(client_for(app, "mo.manager"), "/manage/caseloads"))
    assert "Sam Screener Permanent Multi-Agency Safeguarding Hub" in words
    assert "Alex Agency" not in words and "Assessments 0 None open –" in words


def test_agency_share_elements_are_the_diagrams_element_ids() -> None:
    """The constant names real user tasks: each id is a userTask in one of the diagrams."""
    root = DEMO_CASES.parents[1]
    diagrams = "".join(
        (root / name).read_text(encoding="utf-8")
        for name in ("referral.bpmn", "section47.bpmn", "variants/referral_2013.bpmn")
    )
    for elements in reports.AGENCY_SHARE_ELEMENTS.values():
        for element in elements:
            assert f'<bpmn:userTask id="{element}"' in diagrams, element


# -------------------------------------------------------------------- timeliness


def test_timeliness_counts_decisions_inside_and_outside_one_working_day(
    app: Flask, fake_clock: FakeClock
) -> None:
    engine = engine_of_app(app)
    # Two contacts received on Wednesday 6 March at 09:15: each decision is due by Thursday 17:00.
    on_time = record_contact(engine, "Ola On-Time", "2024-03-06T09:15")
    late = record_contact(engine, "Lee Late", "2024-03-06T09:15")
    screen(engine, on_time)
    screen(engine, late)
    fake_clock.set(datetime(2024, 3, 7, 16, 0, tzinfo=UTC))
    decide(engine, on_time)
    fake_clock.set(datetime(2024, 3, 8, 10, 0, tzinfo=UTC))
    decide(engine, late)
    record_contact(engine, "Una Undecided", "2024-03-08T09:45")  # still running: not counted

    mo = client_for(app, "mo.manager")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "statutory_clock" in statement:
            statements.append(statement)

    sa.event.listen(engine.db.engine, "before_cursor_execute", count)
    try:
        html = page(mo, "/manage/timeliness")
    finally:
        sa.event.remove(engine.db.engine, "before_cursor_execute", count)
    assert len(statements) == len(reports.TIMELINESS_FIGURES)  # one query per figure
    words = text_of(html)
    assert "Timeliness in March 2024" in words
    assert "Decisions within 1 working day 1 2 50%" in words
    assert "Assessments within their timescale 0 0 –" in words
    assert "Conferences within 15 working days 0 0 –" in words
    # The chart repeats the table: an SVG drawn with classes, with a title, beside the table.
    assert '<svg class="fd-chart"' in html and 'class="fd-chart__bar"' in html
    assert "Decisions within 1 working day: 1 of 2 (50%)" in html
    assert " style=" not in html

    # Another month: nothing finished then.
    words = text_of(page(mo, "/manage/timeliness?month=2024-02"))
    assert "No decisions, assessments or conferences were completed in February 2024" in words
    assert "Next month" in words
    # A month that is not one: the error summary, beside the field, and this month's figures.
    html = page(mo, "/manage/timeliness?month=2024-13", 400)
    assert "There is a problem" in html and 'href="#month"' in html
    assert "Error: Timeliness" in html
    # The assessment team did not make these decisions.
    words = text_of(page(client_for(app, "tara.team"), "/manage/timeliness"))
    assert "Decisions within 1 working day 0 0 –" in words


def test_timeliness_counts_assessments_and_conferences_on_the_demo(demo_app: Flask) -> None:
    words = text_of(page(client_for(demo_app, "sid.service"), "/manage/timeliness?month=2024-03"))
    # Ola's initial assessment, Max's and Nia's core assessments and conferences, all in time.
    assert "Assessments within their timescale 3 3 100%" in words
    assert "of which initial assessment 1 1 100%" in words
    assert "of which core assessment 2 2 100%" in words
    assert "Conferences within 15 working days 2 2 100%" in words


# ---------------------------------------------------------------------- feedback


def _ola_steps() -> list[dict[str, Any]]:
    """The demo's Ola: a referral assessed, letters sent, feedback asked, the case closed."""
    steps = json.loads(DEMO_CASES.read_text(encoding="utf-8"))["steps"]
    return [s for s in steps if s.get("case") == "ola" or s.get("cases") == ["ola"]]


def _with_feedback(feedback: dict[str, Any]) -> list[dict[str, Any]]:
    steps = _ola_steps()
    asked = next(s for s in steps if s.get("complete") == "ask_feedback")
    asked["answers"] = {"feedback": feedback}
    return steps


def test_feedback_summary_on_the_demo(demo_app: Flask) -> None:
    words = text_of(page(client_for(demo_app, "sid.service"), "/manage/feedback"))
    assert "Families asked 1 Gave feedback 1 (100%) Felt listened to 1 of 1 (100%)" in words
    assert "Average rating 4.0 out of 5" in words
    assert "The social worker explained what was happening" in words
    # The long-term team has asked nobody yet.
    words = text_of(page(client_for(demo_app, "lee.longterm"), "/manage/feedback"))
    assert "No feedback has been recorded yet" in words


def test_feedback_summary_counts_ratings_and_escapes_comments(app: Flask) -> None:
    engine = engine_of_app(app)
    run_seed(
        engine,
        _with_feedback(
            {
                "asked": ["parent"],
                "how_asked": "phone",
                "responded": True,
                "rating": 2,
                "felt_listened_to": False,
                "what_could_be_better": "<script>alert(1)</script> & call back sooner",
            }
        ),
        reference_prefix="FBA-",
    )
    run_seed(
        engine,
        _with_feedback({"asked": ["parent", "child"], "how_asked": "letter", "responded": False}),
        reference_prefix="FBB-",
    )
    html = page(client_for(app, "sid.service"), "/manage/feedback")
    words = text_of(html)
    assert "Families asked 2 Gave feedback 1 (50%) Felt listened to 0 of 1 (0%)" in words
    assert "Average rating 2.0 out of 5" in words
    assert "1: not at all helpful 0 2 1 3 0 4 0 5: very helpful 0" in words
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; call back sooner" in html
    assert "<script>alert(1)" not in html
    assert 'class="fd-chart__bar"' in html


# ------------------------------------------------------------------------ charts


def test_the_bar_chart_is_svg_with_classes_and_escaped_words() -> None:
    svg = str(
        charts.bar_chart(
            "c", "A <chart>", [charts.Bar("Half & half", 50, "1 of 2"), charts.Bar("None", None, "–")]
        )
    )
    assert svg.startswith('<svg class="fd-chart"') and 'role="img"' in svg
    assert '<title id="c-title">A &lt;chart&gt;</title>' in svg and "Half &amp; half" in svg
    assert svg.count('class="fd-chart__bar"') == 1  # no bar for no figures
    assert 'width="130.0"' in svg  # half of the 260-unit plot
    assert "style" not in svg and "<script" not in svg
