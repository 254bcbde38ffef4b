"""Every page a person can reach passes axe-core with no serious or critical violations.

One live server (the demo council, its fifteen example cases, and two more children driven through
the engine to a strategy discussion and a child protection conference) serves the whole module:
the pages are only read here, so they can share it, and the module stays quick.  Each test signs
in as the person who would see the page, opens it and runs axe-core.

Targets are paths, or ``task:<step>`` (an open task of that step, found through the engine),
``done:<step>`` (a completed one), or a named situation (a form sent back with errors, a queue row
just claimed with htmx).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engine import clock as clock_module
from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.models import Task, User
from tests.browser.conftest import DEMO_PASSWORD, LiveServer, axe_violations, sign_in
from web import create_app
from web.auth import hasher

ANONYMOUS = "anonymous"

PAGES: list[tuple[str, str]] = [
    # Signing in.
    (ANONYMOUS, "/sign-in"),
    (ANONYMOUS, "sign-in with errors"),
    # Queues: my tasks, team queues (a practitioner's, a manager's with Assign, a partner's), filtered.
    ("sam.screener", "/tasks/mine"),
    ("sam.screener", "/teams/mash/queue"),
    ("sam.screener", "/teams/mash/queue?step=handover_to_day_service&child=Eve&due=overdue"),
    ("sam.screener", "/teams/mash/queue?child=nobody-at-all"),
    ("sam.screener", "queue row claimed with htmx"),
    ("mo.manager", "the second page of a queue"),
    ("mo.manager", "/teams/mash/queue"),
    ("sara.social", "/tasks/mine"),
    ("tara.team", "/teams/assessment/queue"),
    ("pat.police", "/tasks/mine"),
    ("pat.police", "/teams/mash/queue"),
    ("sid.service", "/teams/longterm/queue"),
    # Recording a contact.
    ("sam.screener", "/contacts/new"),
    ("sam.screener", "contact form with errors"),
    # Task pages, one of each form.
    ("eddie.edt", "task:handover_to_day_service"),
    ("mo.manager", "task:rate_urgency"),
    ("mo.manager", "rate urgency with errors"),
    ("hana.health", "task:health_check"),
    ("ed.education", "task:education_check"),
    ("pat.police", "done:police_check"),
    ("mo.manager", "task:decide_response"),
    ("sam.screener", "task:tell_referrer_outcome"),
    ("sam.screener", "task:eh_agree_offer"),
    ("tara.team", "task:accept_referral"),
    ("sara.social", "task:referrer_plan_letter"),
    ("sara.social", "task:family_plan_letter"),
    ("sara.social", "task:initial_assessment"),
    ("tara.team", "task:authorise_assessment"),
    ("tara.team", "task:strategy_discussion"),
    ("sara.social", "task:lead_section47"),
    ("sara.social", "task:core_assessment"),
    ("tara.team", "task:hold_icpc"),
    ("sara.social", "task:family_outcome_letter"),
    ("sara.social", "task:referrer_outcome_letter"),
    ("lee.longterm", "task:decide_transfer"),
    ("lee.longterm", "task:audit_case_file"),
    ("tara.team", "task:hold_supervision"),
    ("mo.manager", "done:rate_urgency"),
    # Case pages: siblings, an allocated case with letters and clocks, a closed case.
    ("mo.manager", "/cases/DEMO-002"),
    ("sara.social", "/cases/DEMO-010"),
    ("sara.social", "/cases/DEMO-015"),
    # The manager pages, for a team manager and for the whole service.
    ("mo.manager", "/manage/escalations"),
    ("mo.manager", "/manage/caseloads"),
    ("mo.manager", "/manage/timeliness"),
    ("mo.manager", "/manage/feedback"),
    ("sid.service", "/manage/escalations"),
    ("sid.service", "/manage/timeliness?month=2024-02"),
    # Refusals and missing pages.
    ("pat.police", "/cases/DEMO-001"),
    ("sam.screener", "/manage/escalations"),
    ("sara.social", "/cases/NO-SUCH-CASE"),
    ("sara.social", "/tasks/no-such-task"),
]

EXPECTED_STATUS = {
    ("pat.police", "/cases/DEMO-001"): 403,
    ("sam.screener", "/manage/escalations"): 403,
    ("sara.social", "/cases/NO-SUCH-CASE"): 404,
    ("sara.social", "/tasks/no-such-task"): 404,
}

CONSENT = {"sought": True, "given": True}
LETTER = {"sent_to": "Named person", "method": "post", "summary": "What was decided, and what happens next"}


# ----------------------------------------------------------------------------- the server


def _complete(engine: Engine, reference: str, step: str, user: str, **answers: Any) -> None:
    [task] = [t for t in engine.tasks(case_reference=reference) if t.element_id == step]
    engine.complete(task.id, user, answers)


def _to_strategy_discussion(engine: Engine) -> tuple[str, str]:
    """Two siblings referred with significant harm suspected, up to their strategy discussions."""
    results = engine.start_for_subjects(
        "contact",
        "sam.screener",
        [
            {"name": "Uma Reed", "date_of_birth": "2014-02-02", "gender": "female"},
            {"name": "Vic Reed", "date_of_birth": "2017-07-07", "gender": "male"},
        ],
        {
            "received_at": "2024-03-06T09:30",
            "referrer": {"name": "Jo Head", "relationship": "Designated safeguarding lead"},
            "source": "2A",
            "concern": "Both children describe being hit",
            "consent": {"sought": False, "reason_not_sought": "Asking could put the children at risk"},
        },
        team_key="mash",
        subject_field="child",
        subjects_field="children",
    )
    references = tuple(str(r.case_reference) for r in results)
    check = {"known": False, "information": "Nothing known"}
    for ref in references:
        _complete(engine, ref, "rate_urgency", "mo.manager", urgency="red", urgency_reason="Disclosure")
        _complete(engine, ref, "police_check", "pat.police", police_check=check)
        _complete(engine, ref, "health_check", "hana.health", health_check=check)
        _complete(engine, ref, "education_check", "ed.education", education_check=check)
        decision = {
            "response": "referral",
            "reasons": "Disclosure of physical abuse",
            "consent": CONSENT,
            "significant_harm_suspected": True,
        }
        _complete(engine, ref, "decide_response", "mo.manager", mash_decision=decision)
        _complete(
            engine,
            ref,
            "accept_referral",
            "tara.team",
            accept_referral=True,
            allocated_worker="sara.social",
            tell_family=True,
        )
        _complete(engine, ref, "referrer_plan_letter", "sara.social", referrer_plan_letter=LETTER)
        _complete(engine, ref, "family_plan_letter", "sara.social", family_plan_letter=LETTER)
    return references[0], references[1]


def _to_conference(engine: Engine, reference: str) -> None:
    _complete(
        engine,
        reference,
        "strategy_discussion",
        "tara.team",
        strategy_discussion_date="2024-03-06",
        participants=[
            {"name": "Tara Team-Manager", "agency": "social_care", "role": "Chair"},
            {"name": "DC Pat Police", "agency": "police"},
            {"name": "Hana Health", "agency": "health", "role": "Named nurse"},
        ],
        discussion_summary="Police and health shared what they know",
        start_section47=True,
        joint_with_police=True,
        enquiry_plan="Joint visit today",
    )
    _complete(
        engine,
        reference,
        "lead_section47",
        "sara.social",
        enquiry_child_seen=True,
        enquiry_findings="Non-accidental injury confirmed",
        concerns_substantiated=True,
        icpc_required=True,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (overrides the per-test one: these pages are only read)."""
    fake = FakeClock(datetime(2024, 3, 6, 9, 30, tzinfo=UTC))
    previous = clock_module.set_clock(fake)
    path: Path = tmp_path_factory.mktemp("accessibility") / "browser.db"
    engine = Engine(Database(f"sqlite:///{path}"))
    engine.init(demo=True, demo_cases=True)
    with engine.db.transaction() as session:
        session.execute(sa.update(User).values(password_hash=hasher.hash(DEMO_PASSWORD)))
    _, conference = _to_strategy_discussion(engine)
    _to_conference(engine, conference)
    app = create_app(
        {"SECRET_KEY": "browser-tests", "RATELIMIT_ENABLED": False, "SESSION_COOKIE_SECURE": False},
        engine=engine,
    )
    server = LiveServer(app, engine, fake)
    yield server
    server.stop()
    engine.db.dispose()
    clock_module.set_clock(previous)


# ----------------------------------------------------------------------------- finding the page


def _task_id(engine: Engine, step: str, status: str) -> str:
    with engine.db.read() as session:
        found = session.scalar(
            sa.select(Task.id)
            .where(
                Task.element_id == step,
                Task.status.in_(("ready", "claimed") if status == "open" else (status,)),
            )
            .order_by(Task.created_at, Task.id)
            .limit(1)
        )
    assert found, f"no {status} {step} task in the demo data"
    return str(found)


def _open(page: Any, live: LiveServer, target: str) -> Any:
    """Go to the target; the response of the page's own document."""
    if target.startswith("task:"):
        return page.goto(f"/tasks/{_task_id(live.engine, target[5:], 'open')}")
    if target.startswith("done:"):
        return page.goto(f"/tasks/{_task_id(live.engine, target[5:], 'completed')}")
    if target == "sign-in with errors":
        page.goto("/sign-in")
        page.get_by_label("Username").fill("sam.screener")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator(".govuk-error-summary")).to_contain_text("Enter your password")
        return None
    if target == "contact form with errors":
        page.goto("/contacts/new")
        page.get_by_role("button", name="Record the contact").click()
        expect(page.locator(".govuk-error-summary")).to_be_visible()
        return None
    if target == "rate urgency with errors":
        page.goto(f"/tasks/{_task_id(live.engine, 'rate_urgency', 'open')}")
        page.get_by_role("button", name="Complete", exact=True).click()
        expect(page.locator(".govuk-error-summary")).to_be_visible()
        return None
    if target == "the second page of a queue":  # the demo's queues fit on one page of 50: pages of 3
        import web.queues

        previous = web.queues.LIMIT
        web.queues.LIMIT = 3
        try:
            response = page.goto("/teams/mash/queue?page=2")
        finally:
            web.queues.LIMIT = previous
        expect(page.locator(".govuk-pagination")).to_contain_text("Previous")
        expect(page.locator("#queue-results")).to_contain_text("Showing 4 to 6 of")
        return response
    if target == "queue row claimed with htmx":
        page.goto("/teams/mash/queue")
        claimed = page.locator("tbody tr").filter(has_text="Agree the early help offer")
        claimed.get_by_role("button", name=re.compile("^Claim")).click()
        expect(claimed).to_contain_text("You claimed")
        return None
    return page.goto(target)


@pytest.fixture(scope="module")
def sessions(live: LiveServer) -> dict[str, list[Any]]:
    """username -> the cookies of a signed-in session (signing in once per person keeps this quick)."""
    return {}


def _signed_in(page: Any, user: str, sessions: dict[str, list[Any]]) -> None:
    if user in sessions:
        page.context.add_cookies(sessions[user])
        return
    sign_in(page, user)
    expect(page.get_by_role("button", name=re.compile("^Sign out"))).to_be_visible()
    sessions[user] = page.context.cookies()


@pytest.mark.parametrize(("user", "target"), PAGES, ids=[f"{u} {t}" for u, t in PAGES])
def test_the_page_has_no_serious_accessibility_problems(
    page: Any, live: LiveServer, sessions: dict[str, list[Any]], user: str, target: str
) -> None:
    page.set_default_timeout(10_000)
    if user != ANONYMOUS:
        _signed_in(page, user, sessions)
    try:
        response = _open(page, live, target)
        if response is not None:
            assert response.status == EXPECTED_STATUS.get((user, target), 200), page.url
        expect(page.locator("h1")).to_have_count(1)
        violations = axe_violations(page)
        assert violations == [], "\n".join(
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
            for v in violations
        )
    finally:
        if target == "queue row claimed with htmx":
            for task in live.engine.tasks(user="sam.screener"):
                live.engine.unclaim(task.id, "sam.screener")
