"""Record a contact: one form, one case per child, nothing saved when the form is wrong."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask

from engine.models import CaseLink, CaseRecord
from tests.webapp.conftest import csrf_token, engine_of_app

ANSWERS = {
    "received_at": "2024-03-06T09:15",
    "referrer.name": "Ms Head",
    "referrer.organisation": "Northshire Primary",
    "referrer.relationship": "Head teacher",
    "source": "2A",
    "concern": "Both children arrived hungry and with bruises this week.",
    "consent.sought": "true",
    "consent.given": "true",
    "children.0.name": "Ada Example",
    "children.0.date_of_birth-day": "4",
    "children.0.date_of_birth-month": "5",
    "children.0.date_of_birth-year": "2016",
    "children.0.gender": "female",
    "children.1.name": "Ben Example",
    "children.1.date_of_birth-day": "9",
    "children.1.date_of_birth-month": "1",
    "children.1.date_of_birth-year": "2019",
    "children.1.gender": "male",
}


def _cases(app: Flask) -> list[CaseRecord]:
    with engine_of_app(app).db.read() as session:
        return list(session.scalars(sa.select(CaseRecord).order_by(CaseRecord.id)))


def test_a_contact_about_two_siblings_opens_two_linked_cases(app: Flask, as_user: Any) -> None:
    client = as_user("sam.screener")
    page = client.get("/contacts/new")
    assert page.status_code == 200 and "Record a contact" in page.get_data(as_text=True)

    response = client.post(
        "/contacts/new", data={**ANSWERS, "csrf_token": csrf_token(client, "/contacts/new")}
    )

    assert response.status_code == 302, response.get_data(as_text=True)
    cases = _cases(app)
    assert [c.subject_name for c in cases] == ["Ada Example", "Ben Example"]
    with engine_of_app(app).db.read() as session:
        links = session.execute(sa.select(CaseLink.case_id, CaseLink.linked_case_id)).all()
    assert sorted(links) == sorted([(cases[0].id, cases[1].id), (cases[1].id, cases[0].id)])
    banner = client.get("/tasks/mine").get_data(as_text=True)
    assert "Contact recorded: 2 cases opened" in banner


def test_a_wrong_contact_shows_what_to_fix_and_saves_nothing(app: Flask, as_user: Any) -> None:
    client = as_user("sam.screener")
    wrong = {**ANSWERS, "concern": "", "children.0.date_of_birth-month": "13"}

    response = client.post("/contacts/new", data={**wrong, "csrf_token": csrf_token(client, "/contacts/new")})

    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "There is a problem" in page and "Error: Record a contact" in page
    assert _cases(app) == []


def test_partners_cannot_record_contacts(app: Flask, as_user: Any) -> None:
    assert as_user("pat.police").get("/contacts/new").status_code == 403
