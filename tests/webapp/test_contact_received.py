"""Record a contact: when it was received is asked with the GOV.UK date input and a time field,
and kept as the process keeps it (London wall-clock text, "2024-03-06T09:15")."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask

from engine.models import CaseRecord, ProcessInstance
from tests.webapp.conftest import csrf_token, engine_of_app, text_of
from tests.webapp.test_contacts import ANSWERS

RECEIVED = {
    "received_at-day": "6",
    "received_at-month": "3",
    "received_at-year": "2024",
    "received_at-time": "9:15",
}
ONE_CHILD = {k: v for k, v in ANSWERS.items() if not k.startswith(("children.1.", "received_at"))}


def _received_at(app: Flask) -> list[str]:
    engine = engine_of_app(app)
    with engine.db.read() as session:
        instances = session.scalars(
            sa.select(ProcessInstance.id).join(CaseRecord, CaseRecord.id == ProcessInstance.case_id)
        ).all()
    return [engine.instance_data(i)["received_at"] for i in instances]


def test_the_form_asks_for_a_date_and_a_time(app: Flask, as_user: Any) -> None:
    page = as_user("sam.screener").get("/contacts/new").get_data(as_text=True)
    for part in ("day", "month", "year", "time"):
        assert f'name="received_at-{part}"' in page
    assert 'name="received_at"' not in page
    words = text_of(page)
    assert "When was the contact received?" in words and "For example, 27 3 2024 and 14:30" in words


def test_the_date_and_time_are_kept_as_london_wall_clock_time(app: Flask, as_user: Any) -> None:
    client = as_user("sam.screener")
    data = {**ONE_CHILD, **RECEIVED, "csrf_token": csrf_token(client, "/contacts/new")}
    response = client.post("/contacts/new", data=data)
    assert response.status_code == 302, text_of(response.get_data(as_text=True))
    assert _received_at(app) == ["2024-03-06T09:15"]


def test_a_summer_time_is_kept_as_written(app: Flask, as_user: Any) -> None:
    client = as_user("sam.screener")
    summer = {**RECEIVED, "received_at-month": "7", "received_at-time": "2:30pm"}
    data = {**ONE_CHILD, **summer, "csrf_token": csrf_token(client, "/contacts/new")}
    assert client.post("/contacts/new", data=data).status_code == 302
    assert _received_at(app) == ["2024-07-06T14:30"]


def test_an_impossible_date_or_a_missing_time_is_explained_and_nothing_saved(
    app: Flask, as_user: Any
) -> None:
    client = as_user("sam.screener")
    token = csrf_token(client, "/contacts/new")
    for wrong, message in (
        ({"received_at-day": "31", "received_at-month": "2"}, "must be a real date"),
        ({"received_at-time": ""}, "must include a time"),
    ):
        response = client.post("/contacts/new", data={**ONE_CHILD, **RECEIVED, **wrong, "csrf_token": token})
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "There is a problem" in page and message in text_of(page)
        assert 'href="#received_at-day"' in page and 'id="received_at-day"' in page  # the summary's link
        assert 'value="2024"' in page  # what was typed is shown again
    assert _received_at(app) == []
