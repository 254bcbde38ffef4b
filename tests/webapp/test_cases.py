"""The case page: who may open it, that every view is audited, and what it shows (and never shows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from engine.clock import FakeClock
from engine.seed import run_seed
from tests.webapp.conftest import client_for, engine_of_app, page, text_of, views_of

# ------------------------------------------------------------------------ access


def test_a_practitioner_opens_a_case_of_their_team_and_the_view_is_audited(demo_app: Flask) -> None:
    engine = engine_of_app(demo_app)
    client = client_for(demo_app, "sara.social")
    html = page(client, "/cases/DEMO-012")
    assert "<h1" in html and "Lola Hughes" in html and "DEMO-012" in html
    assert "Lola Hughes (DEMO-012) – Northshire County Council" in html  # the title
    page(client, "/cases/DEMO-012")
    assert views_of(engine, "DEMO-012") == [("sara.social", {"page": "case"})] * 2


def test_a_practitioner_cannot_open_another_teams_case(demo_app: Flask) -> None:
    engine = engine_of_app(demo_app)
    sara = client_for(demo_app, "sara.social")  # assessment team
    html = page(sara, "/cases/DEMO-001", 403)  # Ava: still at the MASH
    assert "You cannot see this page" in html and "Ava Thompson" not in html
    assert views_of(engine, "DEMO-001") == []  # a refused look is not a view of the record
    sam = client_for(demo_app, "sam.screener")  # MASH
    page(sam, "/cases/DEMO-001")
    page(sam, "/cases/DEMO-012", 403)


def test_partners_never_open_case_pages(demo_app: Flask) -> None:
    for partner in ("pat.police", "hana.health", "ed.education"):
        client = client_for(demo_app, partner)
        # Ben's case has tasks offered to the police and health partners; still no case page.
        assert "Ben Walker" not in page(client, "/cases/DEMO-002", 403)


def test_the_service_manager_opens_every_case(demo_app: Flask) -> None:
    client = client_for(demo_app, "sid.service")
    for reference in ("DEMO-001", "DEMO-005", "DEMO-012", "DEMO-015"):
        page(client, f"/cases/{reference}")


def test_an_unknown_case_is_not_found_and_sign_in_comes_first(demo_app: Flask) -> None:
    assert demo_app.test_client().get("/cases/DEMO-001").status_code == 302
    page(client_for(demo_app, "sid.service"), "/cases/NO-SUCH-CASE", 404)


def test_owners_and_administrators_do_not_see_childrens_records(demo_app: Flask) -> None:
    for username in ("olive.owner", "adi.admin"):
        page(client_for(demo_app, username), "/cases/DEMO-001", 403)


# ---------------------------------------------------------------------- contents


def test_details_and_no_inline_script_or_style(demo_app: Flask) -> None:
    html = page(client_for(demo_app, "sara.social"), "/cases/DEMO-015")
    words = text_of(html)
    assert "Ola Nowak" in words and "Assessment Team" in words
    assert "Allocated worker Sara Social (Permanent)" in words
    assert "Closed" in words and "Case closed after assessment, no further action" in words
    assert "Opened Wednesday 6 March 2024 at 09:30" in words
    assert "<script>" not in html and " style=" not in html and "onclick" not in html


def test_clocks_show_working_days_left_breached_and_met(demo_app: Flask, fake_clock: FakeClock) -> None:
    # The fake clock stands at Wednesday 6 March 2024, 09:30 (UTC = London in March).
    lola = text_of(page(client_for(demo_app, "sara.social"), "/cases/DEMO-012"))
    # The conference is due within 15 working days of the strategy discussion held today.
    assert "Initial child protection conference" in lola and "15 working days left" in lola
    mo = client_for(demo_app, "mo.manager")
    # Dan's decision was due on Monday 4 March at 17:00 and is still not made.
    assert "Breached by 2 working days" in text_of(page(mo, "/cases/DEMO-004"))
    # Ivy's decision was made within its working day; Finn's a working day late.
    assert "Met" in text_of(page(mo, "/cases/DEMO-009"))
    assert "Breached by 1 working day " in text_of(page(mo, "/cases/DEMO-006"))

    sara = client_for(demo_app, "sara.social")
    fake_clock.set(datetime(2024, 3, 27, 12, 0, tzinfo=UTC))
    assert "Target is today" in text_of(page(sara, "/cases/DEMO-012"))
    fake_clock.set(datetime(2024, 3, 28, 9, 0, tzinfo=UTC))
    assert "Breached by 1 working day " in text_of(page(sara, "/cases/DEMO-012"))
    # Good Friday and Easter Monday are not working days.
    fake_clock.set(datetime(2024, 4, 2, 9, 0, tzinfo=UTC))
    assert "Breached by 2 working days" in text_of(page(sara, "/cases/DEMO-012"))


def test_open_and_closed_tasks(demo_app: Flask) -> None:
    words = text_of(page(client_for(demo_app, "sara.social"), "/cases/DEMO-012"))
    open_part, closed_part = words.split("Closed tasks, most recent first")
    assert "Lead the section 47 enquiry In progress Sara Social" in open_part
    assert "Core assessment" in open_part
    assert "Decide the response Completed Mo Manager" in closed_part
    mo = text_of(page(client_for(demo_app, "mo.manager"), "/cases/DEMO-004"))
    assert "Decide the response Waiting to be claimed (escalated to level 2) Not claimed" in mo
    assert "2 working days overdue" in mo


def test_the_timeline_is_told_in_sentences_without_the_answers(demo_app: Flask) -> None:
    html = page(client_for(demo_app, "sara.social"), "/cases/DEMO-012")
    words = text_of(html)
    timeline = words.split("What has happened on this case, newest first")[1]
    for sentence in (
        "Case opened by Sam Screener in the Multi-Agency Safeguarding Hub",
        "Contact and MASH screening started by Sam Screener",
        "Task 'Rate the urgency' completed by Mo Manager",
        "Task 'Decide the response' escalated to level 2: team manager",
        "Task 'Decide the response' completed by Mo Manager",
        "Clock stopped: MASH decision (1 working day), target missed",
        "Moved to the Assessment Team",
        "Allocated to Sara Social",
        "Clock started: Initial child protection conference, target Wednesday 27 March 2024",
        "Task 'Lead the section 47 enquiry' given to Sara Social by Tara Team-Manager",
    ):
        assert sentence in timeline, sentence
    # The answers stay on the tasks: no JSON, no free text from the forms.
    assert '{"' not in html and "{&#34;" not in html and "&#34;:" not in html
    for answer in ("Unexplained fracture", "fracture the parents could not explain", "Sister Jane Ford"):
        assert answer not in html
    assert "viewed" not in timeline.lower()


def test_letters_sent_and_not_sent_yet(demo_app: Flask) -> None:
    sara = client_for(demo_app, "sara.social")
    ola = text_of(page(sara, "/cases/DEMO-015"))
    assert "Letter to the referrer about the outcome Sent on Wednesday 6 March 2024" in ola
    assert "Letter to the family about the outcome Sent on Wednesday 6 March 2024" in ola
    assert "Tell the family the outcome in writing Sent on Wednesday 6 March 2024 Sara Social" in ola
    jay = text_of(page(sara, "/cases/DEMO-010"))
    assert "Letter to the referrer about the outcome Not sent yet" in jay
    letter = "Tell the family what will happen Not sent yet: due Monday 11 March 2024 at 17:00 Sara Social"
    assert letter in jay


# ---------------------------------------------------------------------- siblings


def test_siblings_are_links_and_never_their_data(demo_app: Flask) -> None:
    engine = engine_of_app(demo_app)
    cara_health = next(t for t in engine.tasks(case_reference="DEMO-003") if t.element_id == "health_check")
    engine.complete(
        cara_health.id,
        "hana.health",
        {"health_check": {"known": True, "information": "Cara-only: seen by the paediatric asthma nurse"}},
    )
    sam = client_for(demo_app, "sam.screener")
    ben = page(sam, "/cases/DEMO-002")
    assert '<a class="govuk-link" href="/cases/DEMO-003">Cara Walker (DEMO-003)</a>' in ben
    assert "paediatric asthma" not in ben and "Cara-only" not in ben
    # Cara's own timeline says the check was shared, without what it said.
    cara = text_of(page(sam, "/cases/DEMO-003"))
    assert "Task 'Share what health services know' completed by Hana Health" in cara
    assert "paediatric asthma" not in cara
    # Looking at Ben's page is not a view of Cara's record.
    assert [actor for actor, _ in views_of(engine, "DEMO-002")] == ["sam.screener"]
    assert [actor for actor, _ in views_of(engine, "DEMO-003")] == ["sam.screener"]


NOTHING_KNOWN = {"known": False, "information": "Nothing known"}
CONTACT_ANSWERS = [
    ("rate_urgency", "mo.manager", {"urgency": "amber", "urgency_reason": "Needs a look."}),
    ("police_check", "pat.police", {"police_check": NOTHING_KNOWN}),
    ("health_check", "hana.health", {"health_check": NOTHING_KNOWN}),
    ("education_check", "ed.education", {"education_check": NOTHING_KNOWN}),
]


def test_a_sibling_the_reader_may_not_open_is_named_without_a_link(app: Flask) -> None:
    engine = engine_of_app(app)
    steps: list[dict[str, Any]] = [
        {
            "start_for_subjects": "contact",
            "as": "sam.screener",
            "team": "mash",
            "subject_field": "child",
            "subjects_field": "children",
            "cases": ["rose", "sid"],
            "subjects": [
                {"name": "Rose Green", "date_of_birth": "2016-05-01"},
                {"name": "Sidney Green", "date_of_birth": "2018-07-09"},
            ],
            "shared": {
                "received_at": "{today}T09:05",
                "referrer": {"name": "A neighbour", "relationship": "Neighbour"},
                "source": "9",
                "concern": "Both children seen out late.",
                "consent": {"sought": True, "given": True},
            },
        },
        *[{"complete": e, "case": "sid", "as": who, "answers": a} for e, who, a in CONTACT_ANSWERS],
        {
            "complete": "decide_response",
            "case": "sid",
            "as": "mo.manager",
            "answers": {
                "mash_decision": {
                    "response": "referral",
                    "reasons": "Sidney-only reasons for a referral",
                    "consent": {"sought": True, "given": True},
                    "significant_harm_suspected": False,
                }
            },
        },
        {
            "complete": "accept_referral",
            "case": "sid",
            "as": "tara.team",
            "answers": {"accept_referral": True, "allocated_worker": "sara.social", "tell_family": True},
        },
    ]
    summary = run_seed(engine, steps, reference_prefix="SIB-")
    rose, sidney = summary.cases["rose"], summary.cases["sid"]
    sam = client_for(app, "sam.screener")  # MASH: Rose is still there, Sidney went to assessment
    html = page(sam, f"/cases/{rose}")
    assert f"Sidney Green ({sidney}): you cannot open this record" in text_of(html)
    assert f'href="/cases/{sidney}"' not in html and "Sidney-only" not in html
    page(sam, f"/cases/{sidney}", 403)
    sara = client_for(app, "sara.social")  # allocated Sidney; Rose is not her team's
    html = page(sara, f"/cases/{sidney}")
    assert f"Rose Green ({rose}): you cannot open this record" in text_of(html)


@pytest.mark.parametrize("reference", ["DEMO-013", "DEMO-014"])
def test_transferring_siblings_link_to_each_other(demo_app: Flask, reference: str) -> None:
    other = {"DEMO-013": "DEMO-014", "DEMO-014": "DEMO-013"}[reference]
    html = page(client_for(demo_app, "tara.team"), f"/cases/{reference}")
    assert f'href="/cases/{other}"' in html
