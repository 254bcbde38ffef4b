"""Letters on the case page: listed with who sent them and when, downloadable by those who may see
the case (each download audited as a view of the child's record), refused to everyone else."""

from __future__ import annotations

from typing import Any

from flask import Flask

from engine.core import Engine
from tests.webapp.conftest import client_for, engine_of_app, page, text_of, views_of

CONSENT = {"sought": True, "given": True}


def case_with_a_family_letter(engine: Engine, reference: str = "REF-1", name: str = "Alice Ashdown") -> None:
    """A referral not accepted, and the letter telling the family so, completed by Sara."""
    engine.start(
        "referral",
        "mo.manager",
        case_reference=reference,
        team_key="assessment",
        subject_name=name,
        data={
            "received_at": "2024-03-06T09:00",
            "referrer": {"name": "Jo Head", "relationship": "Teacher"},
            "source": "2A",
            "concern": "Came to school hungry",
            "consent": CONSENT,
            "child": {"name": name, "date_of_birth": "2016-05-01"},
            "mash_decision": {"response": "referral", "reasons": "Neglect", "consent": CONSENT},
        },
    )
    complete(
        engine, reference, "accept_referral", "tara.team", accept_referral=False, referral_nfa_reason="Met"
    )
    complete(
        engine,
        reference,
        "family_outcome_letter",
        "sara.social",
        family_outcome_letter={"sent_to": "Mrs Ashdown", "method": "post", "summary": "No further action"},
    )


def complete(engine: Engine, reference: str, element: str, user: str, **answers: Any) -> None:
    [task] = [t for t in engine.tasks(case_reference=reference) if t.element_id == element]
    engine.complete(task.id, user, answers)


def letter_link(html: str) -> str:
    import re

    found = re.search(r'href="(/cases/[^"]+/letters/\d+\.pdf)"', html)
    assert found, "no letter link on the case page"
    return found.group(1)


def letter_views(engine: Engine, reference: str) -> list[tuple[str, dict[str, Any]]]:
    return [(actor, data) for actor, data in views_of(engine, reference) if data.get("page") == "letter"]


def test_the_case_page_lists_the_letter_and_the_download_is_the_pdf(app: Flask) -> None:
    engine = engine_of_app(app)
    case_with_a_family_letter(engine)
    sara = client_for(app, "sara.social")

    html = page(sara, "/cases/REF-1")
    words = text_of(html)
    assert "What we decided: letter to the family (PDF," in words
    assert "The family Wednesday 6 March 2024 Sara Social" in words  # to, sent, who
    assert "Letter to the family written by Sara Social" in words  # the timeline

    response = sara.get(letter_link(html))
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    [(actor, data)] = letter_views(engine, "REF-1")
    assert actor == "sara.social" and data["page"] == "letter"


def test_people_who_may_not_see_the_case_cannot_download_its_letters(app: Flask) -> None:
    engine = engine_of_app(app)
    case_with_a_family_letter(engine)
    link = letter_link(page(client_for(app, "sara.social"), "/cases/REF-1"))

    for outsider in ("sam.screener", "pat.police", "olive.owner"):  # MASH, a partner, a process owner
        response = client_for(app, outsider).get(link)
        assert response.status_code == 403, outsider
        assert not response.data.startswith(b"%PDF")
    assert app.test_client().get(link).status_code == 302  # sign in first
    assert letter_views(engine, "REF-1") == []  # a refused look is not a view


def test_a_letter_is_only_found_under_its_own_case(app: Flask) -> None:
    engine = engine_of_app(app)
    case_with_a_family_letter(engine, "REF-1", "Alice Ashdown")
    case_with_a_family_letter(engine, "REF-2", "Bobby Ashdown")
    sid = client_for(app, "sid.service")
    alices = letter_link(page(sid, "/cases/REF-1"))

    # Alice's letter asked for under Bobby's case: not found, whoever asks.
    assert sid.get(alices.replace("REF-1", "REF-2")).status_code == 404
    assert "Alice" not in text_of(page(sid, "/cases/REF-2"))
