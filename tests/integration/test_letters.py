"""Letter tasks write their PDF when completed, in the same command, with only that child's data.

Runs the shipped processes/ (referral's outcome letters, the contact's letter to the referrer) with
the WeasyPrint adapter wired as the web application and the command line wire it, and reads the
text back out of each PDF with pypdf.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from adapters.letters import WeasyPrintLetters
from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.errors import ProcessError
from engine.models import AuditEvent, Letter

from .helpers import snapshot

REFERRER = {
    "name": "Jo Head",
    "organisation": "Hillside Primary School",
    "relationship": "Designated safeguarding lead",
    "address": "Hillside Primary School, Hill Road, Northshire NS2 3BB",
}
CONSENT = {"sought": True, "given": True}
ALICE = {"name": "Alice Ashdown", "date_of_birth": "2016-05-01", "gender": "female"}
BOBBY = {"name": "Bobby Ashdown", "date_of_birth": "2018-09-12", "gender": "male"}


def council(url: str) -> Engine:
    engine = Engine(Database(url))
    engine.init(demo=True)
    engine.use_letter_renderer(WeasyPrintLetters(engine.registry.root))
    return engine


@pytest.fixture
def council_engine(sqlite_url: str, fake_clock: FakeClock) -> Iterator[Engine]:
    engine = council(sqlite_url)
    yield engine
    engine.db.dispose()


@pytest.fixture
def any_council_engine(any_db_url: str, fake_clock: FakeClock) -> Iterator[Engine]:
    """The same on SQLite and on PostgreSQL (the PDF is a BLOB on one, a bytea on the other)."""
    engine = council(any_db_url)
    yield engine
    engine.db.dispose()


def refer_siblings(engine: Engine) -> list[str]:
    """Two siblings referred together: two cases, each with its own referral instance."""
    shared = {
        "received_at": "2024-03-06T09:00",
        "referrer": REFERRER,
        "source": "2A",
        "concern": "Both children came to school hungry",
        "consent": CONSENT,
        "mash_decision": {"response": "referral", "reasons": "Neglect", "consent": CONSENT},
    }
    results = engine.start_for_subjects(
        "referral",
        "mo.manager",
        [ALICE, BOBBY],
        shared,
        team_key="assessment",
        subject_field="child",
        subjects_field="children",
    )
    return [r.case_reference for r in results if r.case_reference]


def decline(engine: Engine, case: str) -> None:
    """The referral is not accepted: the outcome letters open straight away."""
    task = task_of(engine, case, "accept_referral")
    engine.complete(
        task.id,
        "tara.team",
        {"accept_referral": False, "referral_nfa_reason": "Needs are met by the school's support"},
    )


def task_of(engine: Engine, case: str, element: str) -> Any:
    matches = [t for t in engine.tasks(case_reference=case) if t.element_id == element]
    assert matches, (
        f"no open {element} on {case}: {[t.element_id for t in engine.tasks(case_reference=case)]}"
    )
    return matches[0]


def letters_of(engine: Engine, case: str) -> list[Letter]:
    case_id = engine.get_case(case).id
    with engine.db.read() as session:
        return list(session.scalars(sa.select(Letter).where(Letter.case_id == case_id).order_by(Letter.id)))


def pdf_text(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def outcome(marker: str) -> dict[str, Any]:
    return {
        "family_outcome_letter": {
            "sent_to": "Mrs Carol Ashdown",
            "method": "post",
            "summary": f"No further action for {marker}: the school will keep supporting the family",
        }
    }


def test_completing_the_family_outcome_letter_writes_that_childs_letter_only(
    any_council_engine: Engine,
) -> None:
    engine = any_council_engine
    alice, bobby = refer_siblings(engine)
    decline(engine, alice)
    decline(engine, bobby)

    engine.complete(task_of(engine, alice, "family_outcome_letter").id, "sara.social", outcome("ALICE-NFA"))
    engine.complete(task_of(engine, bobby, "family_outcome_letter").id, "sara.social", outcome("BOBBY-NFA"))

    [letter] = letters_of(engine, alice)
    assert letter.pdf.startswith(b"%PDF")
    assert letter.recipient == "family"
    assert letter.template == "family-outcome"
    assert letter.title == "What we decided: letter to the family"
    assert letter.sent_by == "sara.social"
    assert letter.sent_at == engine_now()
    text = pdf_text(letter.pdf)
    assert "Alice Ashdown" in text
    assert "ALICE-NFA" in text  # the outcome, as the worker wrote it
    assert "Mrs Carol Ashdown" in text
    assert "Northshire County Council" in text  # from processes/council.json
    assert alice in text  # our reference
    assert "Bobby" not in text and "BOBBY-NFA" not in text

    [bobbys] = letters_of(engine, bobby)
    bobby_text = pdf_text(bobbys.pdf)
    assert "Bobby Ashdown" in bobby_text and "BOBBY-NFA" in bobby_text
    assert "Alice" not in bobby_text and "ALICE-NFA" not in bobby_text


def engine_now() -> Any:
    from engine import clock

    return clock.now()


def test_the_referrer_letter_goes_to_the_referrer_and_is_on_the_audit_trail(council_engine: Engine) -> None:
    engine = council_engine
    alice, _ = refer_siblings(engine)
    decline(engine, alice)
    answers = {
        "referrer_outcome_letter": {
            "sent_to": "Jo Head",
            "method": "post",
            "summary": "We will not take further action; the school's support continues",
        }
    }

    engine.complete(task_of(engine, alice, "referrer_outcome_letter").id, "sara.social", answers)

    [letter] = letters_of(engine, alice)
    text = pdf_text(letter.pdf)
    assert letter.recipient == "referrer"
    assert "Jo Head" in text and "Hillside Primary School" in text
    assert "the school's support continues" in text
    with engine.db.read() as session:
        event = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "letter.written")).one()
    assert event.case_id == letter.case_id
    assert event.actor == "sara.social"
    assert event.data["letter"] == letter.id
    assert event.data["sha256"] == letter.sha256


def test_a_letter_that_cannot_be_written_refuses_the_completion_and_changes_nothing(
    council_engine: Engine, tmp_path: Path
) -> None:
    engine = council_engine
    alice, _ = refer_siblings(engine)
    decline(engine, alice)
    empty = tmp_path / "processes"
    (empty / "letters").mkdir(parents=True)
    engine.use_letter_renderer(WeasyPrintLetters(empty))
    before = snapshot(engine)

    with pytest.raises(ProcessError) as refused:
        engine.complete(task_of(engine, alice, "family_outcome_letter").id, "sara.social", outcome("X"))

    assert "family_outcome_letter" in str(refused.value)
    assert "family-outcome.html" in str(refused.value)
    assert snapshot(engine) == before


def test_without_a_renderer_the_task_completes_and_no_letter_is_stored(council_engine: Engine) -> None:
    engine = council_engine
    engine.use_letter_renderer(None)
    alice, _ = refer_siblings(engine)
    decline(engine, alice)

    engine.complete(task_of(engine, alice, "family_outcome_letter").id, "sara.social", outcome("X"))

    assert letters_of(engine, alice) == []
    assert "family_outcome_letter" not in {t.element_id for t in engine.tasks(case_reference=alice)}


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from engine.ports import LetterRequest

    folder = tmp_path / "processes" / "letters"
    folder.mkdir(parents=True)
    (folder / "peek.html").write_text("<html><body>{{ ''.__class__ }}</body></html>")
    (folder / "reach.html").write_text(
        "<html><body>{{ ''.__class__.__mro__[1].__subclasses__() }}</body></html>"
    )
    renderer = WeasyPrintLetters(tmp_path / "processes")

    def request(template: str) -> LetterRequest:
        return LetterRequest(template, "family", {}, "C-1", "Amy", datetime.now(UTC), "u", "U")

    # Python's internals are not reachable from a template: the attribute is simply not there...
    assert renderer.html(request("peek")) == "<html><body></body></html>"
    # ...and using it as if it were is an error that names the template.
    with pytest.raises(ValueError, match=r"reach\.html"):
        renderer.render(request("reach"))


def test_frontdoor_complete_on_the_command_line_writes_the_letter(
    council_engine: Engine, sqlite_url: str
) -> None:
    """`frontdoor` (web/cli.py) plugs the letter adapter into the engine's commands."""
    import json

    from click.testing import CliRunner

    from web.cli import adapter_hooks, cli

    engine = council_engine
    alice, _ = refer_siblings(engine)
    decline(engine, alice)
    task = task_of(engine, alice, "family_outcome_letter")

    answers = json.dumps(outcome("CLI-NFA"))
    arguments = [
        "--database-url",
        sqlite_url,
        "complete",
        task.id,
        "--user",
        "sara.social",
        "--data",
        answers,
    ]
    result = CliRunner().invoke(
        cli,
        arguments,
        obj=adapter_hooks(),
    )

    assert result.exit_code == 0, result.output
    [letter] = letters_of(engine, alice)
    assert "CLI-NFA" in pdf_text(letter.pdf)
