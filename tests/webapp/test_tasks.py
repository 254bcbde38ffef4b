"""The task page: the form from its JSON Schema, validation in words, drafts, completion, conflicts.

Also the unit tests of web/forms.py (schema -> GOV.UK fields, posted form -> JSON, messages).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from engine.models import AuditEvent, ProcessInstance, Task
from engine.registry import Registry
from tests.webapp.conftest import csrf_token, engine_of_app, sign_in
from web import forms

REGISTRY = Registry()

DECISION = {
    "mash_decision.response": "referral",
    "mash_decision.reasons": "Missed health checks and poor home conditions.",
    "mash_decision.significant_harm_suspected": "false",
    "mash_decision.consent.sought": "true",
    "mash_decision.consent.given": "true",
}

# A small form of our own, for the components the council's forms do not use yet.
OWN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["met_at", "colour"],
    "properties": {
        "met_at": {"type": "string", "format": "date-time", "title": "When did you meet?"},
        "colour": {
            "title": "Favourite colour",
            "enum": ["red", "orange", "yellow", "green", "blue", "indigo", "violet", "black", "white"],
        },
        "story": {"type": "string", "maxLength": 2000, "title": "Tell us more"},
        "note": {"type": "string", "x-multiline": True, "title": "Anything else"},
        "email": {"type": "string", "format": "email", "title": "E-mail"},
        "count": {"type": "integer", "minimum": 0, "title": "How many"},
        "share": {"type": "number", "title": "Share"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "title": "Tags"},
    },
}


def client_for(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, username).status_code == 302
    return client


def open_task(app: Flask, element_id: str, reference: str | None = None) -> Task:
    tasks = [t for t in engine_of_app(app).tasks(case_reference=reference) if t.element_id == element_id]
    assert tasks, f"no open {element_id} on {reference}"
    return tasks[0]


def revision_of(app: Flask, task: Task) -> int:
    with engine_of_app(app).db.read() as session:
        revision = session.scalar(
            sa.select(ProcessInstance.revision).where(ProcessInstance.id == task.instance_id)
        )
    assert revision is not None
    return revision


def post_form(client: FlaskClient, task: Task, answers: dict[str, Any], **extra: Any) -> Any:
    path = f"/tasks/{task.id}"
    html = client.get(path).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    revision = re.search(r'name="revision" value="(\d+)"', html)
    assert token and revision
    data = {"csrf_token": token.group(1), "revision": revision.group(1), "action": "complete", **answers}
    data.update(extra)
    return client.post(path, data=data)


def fields_html(app: Flask, schema: dict[str, Any], **kwargs: Any) -> str:
    with app.test_request_context():
        return render_template_string(
            '{% from "tasks/_fields.html" import render_field %}'
            "{% for f in fields %}{{ render_field(f) }}{% endfor %}",
            fields=forms.build_fields(schema, **kwargs),
        )


# ------------------------------------------------------------------ the page


def test_task_page_shows_the_task_and_its_form(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    client = client_for(demo_app, "mo.manager")
    response = client.get(f"/tasks/{task.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>Decide the response – Northshire County Council</title>" in html
    assert html.count("<h1") == 1 and '<h1 class="govuk-heading-l">Decide the response</h1>' in html
    assert "Dan Okafor (DEMO-004)" in html and "Overdue by 2 working days" in html
    assert "What to do" in html and "within 1 working day" in html  # the instructions
    # Radios from oneOf, a textarea, yes/no radios, nested fieldsets with legends.
    assert 'type="radio" value="referral"' in html and "Referral to children&#39;s social care" in html
    assert '<textarea class="govuk-textarea" id="mash_decision-reasons" name="mash_decision.reasons"' in html
    assert 'name="mash_decision.consent.sought" type="radio" value="true"' in html
    assert "Consent to share information" in html and "govuk-fieldset__legend" in html
    assert "Is there reasonable cause to suspect significant harm? (optional)" in html
    assert 'name="revision" value="' in html and 'value="draft"' in html and 'value="complete"' in html
    assert "Claim this task" in html
    if "cases.show" in demo_app.view_functions:
        assert 'href="/cases/DEMO-004"' in html
    with engine_of_app(demo_app).db.read() as session:
        viewed = session.execute(
            sa.select(AuditEvent.actor, AuditEvent.data).where(AuditEvent.action == "case.viewed")
        ).all()
    assert ("mo.manager", {"page": "task"}) in [(a, d) for a, d in viewed]


def test_instructions_are_plain_escaped_paragraphs(demo_app: Flask) -> None:
    task = open_task(demo_app, "rate_urgency", "DEMO-001")
    with engine_of_app(demo_app).db.transaction() as session:  # as if a diagram said so
        session.execute(
            sa.update(Task)
            .where(Task.id == task.id)
            .values(instructions="First <b>line</b>\nsame paragraph\n\n<script>alert(1)</script>")
        )
    html = client_for(demo_app, "mo.manager").get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "First &lt;b&gt;line&lt;/b&gt;<br>same paragraph</p>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html


def test_unknown_task_is_404_and_others_tasks_are_403(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    police = client_for(demo_app, "pat.police")
    assert police.get("/tasks/no-such-task").status_code == 404
    response = police.get(f"/tasks/{task.id}")
    assert response.status_code == 403 and "You cannot see this page" in response.get_data(as_text=True)
    assert (
        police.post(f"/tasks/{task.id}", data={"csrf_token": csrf_token(police, "/tasks/mine")}).status_code
        == 403
    )


def test_a_partner_sees_their_task_without_the_case_link(demo_app: Flask) -> None:
    task = open_task(demo_app, "health_check", "DEMO-002")
    html = client_for(demo_app, "hana.health").get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "Ben Walker (DEMO-002)" in html and "/cases/" not in html
    assert 'name="health_check.known"' in html


def test_someone_else_holding_the_task_sees_no_form(demo_app: Flask) -> None:
    task = open_task(demo_app, "lead_section47", "DEMO-012")
    html = client_for(demo_app, "tara.team").get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "Claimed by Sara Social" in html and "only they can complete it" in html
    assert 'id="task-form"' not in html


# ------------------------------------------------------------------ completing


def test_missing_answers_get_the_error_summary_and_nothing_is_saved(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    before = revision_of(demo_app, task)
    client = client_for(demo_app, "mo.manager")
    response = post_form(client, task, {"mash_decision.reasons": "Some reasons"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<title>Error: Decide the response" in html and "There is a problem" in html
    assert 'href="#mash_decision-response"' in html and "Select an answer for “What is the response?”" in html
    assert 'href="#mash_decision-consent-sought"' in html
    assert 'id="mash_decision-response-error"' in html  # the message beside the field too
    assert "Some reasons</textarea>" in html  # what was typed is kept
    assert engine_of_app(demo_app).get_task(task.id).status == "ready"
    assert revision_of(demo_app, task) == before


def test_conditional_answers_are_checked(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    client = client_for(demo_app, "mo.manager")
    answers = {**DECISION, "mash_decision.response": "advice"}
    html = post_form(client, task, answers).get_data(as_text=True)
    assert 'href="#mash_decision-advice"' in html and "What advice was given, and to whom?" in html


def test_completing_moves_the_case_on(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    client = client_for(demo_app, "mo.manager")
    response = post_form(client, task, DECISION)
    assert response.status_code == 302 and response.headers["Location"] == "/tasks/mine"
    done = engine_of_app(demo_app).get_task(task.id)
    assert done.status == "completed" and done.completed_by == "mo.manager"
    assert done.outcome == {
        "mash_decision": {
            "response": "referral",
            "reasons": "Missed health checks and poor home conditions.",
            "significant_harm_suspected": False,
            "consent": {"sought": True, "given": True},
        }
    }
    assert [t.element_id for t in engine_of_app(demo_app).tasks(case_reference="DEMO-004")] == [
        "accept_referral"
    ]
    html = client.get("/tasks/mine").get_data(as_text=True)
    assert "You completed ‘Decide the response’ for Dan Okafor (DEMO-004)." in html
    assert "govuk-notification-banner--success" in html
    # The completed task shows its answers, and no form.
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "Completed by Mo Manager" in page and "Referral to children&#39;s social care" in page
    assert 'id="task-form"' not in page


def test_a_stale_revision_is_a_conflict_and_nothing_is_saved(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    client = client_for(demo_app, "mo.manager")
    stale = revision_of(demo_app, task) - 1
    response = post_form(client, task, DECISION, revision=str(stale))
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "The case changed since you opened this page: reload" in html
    assert "Missed health checks and poor home conditions.</textarea>" in html
    assert engine_of_app(demo_app).get_task(task.id).status == "ready"


def _page_form(client: FlaskClient, task: Task) -> dict[str, str]:
    html = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    revision = re.search(r'name="revision" value="(\d+)"', html)
    assert token and revision
    return {"csrf_token": token.group(1), "revision": revision.group(1), "action": "complete"}


def test_someone_else_completed_it_a_moment_ago(demo_app: Flask) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(demo_app, "referrer_plan_letter", "DEMO-010")
    engine.unclaim(task.id, "sara.social")  # back in the queue: Sara and Alex may both complete it
    sara = client_for(demo_app, "sara.social")
    opened = _page_form(sara, task)
    letter = {"sent_to": "Ms Shah", "method": "email", "summary": "Accepted; an assessment starts."}
    engine.complete(task.id, "alex.agency", {"referrer_plan_letter": letter})
    answers = {f"referrer_plan_letter.{k}": v for k, v in letter.items()}
    response = sara.post(f"/tasks/{task.id}", data={**opened, **answers})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Someone else completed this task a moment ago (Alex Agency)" in html
    assert engine.get_task(task.id).completed_by == "alex.agency"


def test_completing_twice_says_so(demo_app: Flask) -> None:
    task = open_task(demo_app, "handover_to_day_service", "DEMO-005")
    client = client_for(demo_app, "sam.screener")
    opened = _page_form(client, task)
    answers = {"edt_handover": {"actions_out_of_hours": "None", "child_safe_overnight": True}}
    engine_of_app(demo_app).complete(task.id, "sam.screener", answers)  # from another tab
    response = client.post(f"/tasks/{task.id}", data=opened)
    assert response.status_code == 409
    assert "You have already completed this task" in response.get_data(as_text=True)


def test_completing_without_the_csrf_token_is_refused(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    client = client_for(demo_app, "mo.manager")
    answers = {**DECISION, "action": "complete", "revision": str(revision_of(demo_app, task))}
    response = client.post(f"/tasks/{task.id}", data=answers)
    assert response.status_code == 400
    assert engine_of_app(demo_app).get_task(task.id).status == "ready"


def test_bad_dates_and_numbers_are_explained(demo_app: Flask) -> None:
    task = open_task(demo_app, "education_check", "DEMO-002")
    client = client_for(demo_app, "ed.education")
    answers = {
        "education_check.known": "true",
        "education_check.attendance_percent": "about ninety",
        "education_check.information": "Attends most days.",
    }
    response = post_form(client, task, answers)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'href="#education_check-attendance_percent"' in html and "must be a number" in html
    assert 'value="about ninety"' in html
    answers["education_check.attendance_percent"] = "150"
    html = post_form(client, task, answers).get_data(as_text=True)
    assert "must be at most 100" in html
    answers["education_check.attendance_percent"] = "92.5"
    assert post_form(client, task, answers).status_code == 302
    outcome = engine_of_app(demo_app).get_task(task.id).outcome
    assert outcome == {
        "education_check": {"known": True, "attendance_percent": 92.5, "information": "Attends most days."}
    }


# ------------------------------------------------------------------ drafts


def test_save_as_draft_and_come_back(demo_app: Flask) -> None:
    task = open_task(demo_app, "decide_response", "DEMO-004")
    client = client_for(demo_app, "mo.manager")
    before = revision_of(demo_app, task)
    response = post_form(
        client,
        task,
        {"mash_decision.reasons": "Half written", "mash_decision.response": "advice"},
        action="draft",
    )
    assert response.status_code == 302 and response.headers["Location"] == f"/tasks/{task.id}"
    saved = engine_of_app(demo_app).get_task(task.id)
    assert saved.draft == {"mash_decision": {"reasons": "Half written", "response": "advice"}}
    assert saved.status == "ready" and revision_of(demo_app, task) == before
    # From another device (a new session), the draft is there.
    html = client_for(demo_app, "mo.manager").get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "Half written</textarea>" in html and "Draft saved by Mo Manager" in html
    assert 'value="advice" checked' in html


# ------------------------------------------------------------------ components from real forms


def test_strategy_discussion_components(app: Flask) -> None:
    html = fields_html(app, REGISTRY.form_schema("strategy-discussion.schema.json"))
    # A date: day, month and year.
    for part in ("day", "month", "year"):
        assert f'id="strategy_discussion_date-{part}" name="strategy_discussion_date-{part}"' in html
    # Participants: three repeated fieldsets, each with a name and an agency.
    assert html.count('name="participants.2.name"') == 1 and 'name="participants.3.name"' not in html
    assert "Who took part: entry 1" in html and "Who took part: entry 3" in html
    assert 'name="participants.0.agency" type="radio" value="police"' in html
    assert 'class="govuk-radios govuk-radios--inline"' in html  # yes / no


def test_checkboxes_select_and_numbers(app: Flask) -> None:
    html = fields_html(app, REGISTRY.form_schema("initial-assessment.schema.json"))
    assert 'class="govuk-checkboxes__input" id="assessment_factors" name="assessment_factors"' in html
    assert html.count('name="assessment_factors"') == 38
    supervision = fields_html(app, REGISTRY.form_schema("supervision-record.schema.json"))
    assert 'name="supervision_caseload"' in supervision and 'inputmode="numeric"' in supervision
    assert "Write each one on its own line." in supervision  # a list of case references
    education = fields_html(app, REGISTRY.form_schema("education-check.schema.json"))
    assert 'inputmode="decimal"' in education


def test_own_schema_components(app: Flask) -> None:
    html = fields_html(app, OWN_SCHEMA, errors={"colour": "Select an answer"})
    assert '<select class="govuk-select govuk-select--error" id="colour" name="colour"' in html  # 9 options
    assert 'name="met_at-day"' in html and 'name="met_at-time"' in html
    assert 'id="story" name="story"' in html and "govuk-textarea" in html.split('id="story"')[0][-200:]
    assert 'class="govuk-textarea" id="note"' in html
    assert 'type="email"' in html
    assert 'name="tags" type="checkbox" value="a"' in html
    assert "Select an answer" in html


def test_ui_schema_orders_and_chooses_widgets() -> None:
    schema = REGISTRY.form_schema("transfer-checklist.schema.json")
    ui = REGISTRY.read_json("forms/transfer-checklist.uischema.json")
    fields = forms.build_fields(schema, ui=ui)
    names = [f.name for f in fields]
    assert names[: len(ui["ui:order"])] == [n for n in ui["ui:order"] if n in schema["properties"]]
    by_name = {f.name: f for f in fields}
    assert by_name["handover_summary"].kind == "textarea"
    assert by_name["assessment_status"].kind == "radios"


# ------------------------------------------------------------------ web.forms: form -> JSON -> form


def test_form_to_json_types() -> None:
    form = {
        "met_at-day": ["1"],
        "met_at-month": ["7"],
        "met_at-year": ["2024"],
        "met_at-time": ["2:30pm"],
        "colour": ["green"],
        "story": ["Line one\r\nLine two  "],
        "count": ["1,200"],
        "share": ["0.5"],
        "tags": ["b", "a", "not-an-option"],
        "email": [""],
    }
    converted = forms.form_to_json(OWN_SCHEMA, form)
    assert converted.errors == {}
    assert converted.data == {
        "met_at": "2024-07-01T14:30:00+01:00",  # London summer time
        "colour": "green",
        "story": "Line one\nLine two",
        "count": 1200,
        "share": 0.5,
        "tags": ["b", "a"],
    }
    assert forms.validate(OWN_SCHEMA, converted.data) == {}


def test_form_to_json_booleans_dates_lists_and_nested_objects() -> None:
    schema = REGISTRY.form_schema("supervision-record.schema.json")
    converted = forms.form_to_json(
        schema,
        {
            "supervision_date-day": ["5"],
            "supervision_date-month": ["3"],
            "supervision_date-year": ["2024"],
            "supervision_notes_summary": ["Discussed caseload"],
            "supervision_cases_discussed": ["DEMO-010\n\n DEMO-012 \n"],
            "supervision_caseload": ["12"],
            "supervision_wellbeing_discussed": ["false"],
            "supervision_schedule": ["continue"],
        },
    )
    assert converted.data == {
        "supervision_date": "2024-03-05",
        "supervision_notes_summary": "Discussed caseload",
        "supervision_cases_discussed": ["DEMO-010", "DEMO-012"],
        "supervision_caseload": 12,
        "supervision_wellbeing_discussed": False,
        "supervision_schedule": "continue",
    }
    decision = forms.form_to_json(REGISTRY.form_schema("mash-decision.schema.json"), DECISION).data
    assert decision["mash_decision"]["consent"] == {"sought": True, "given": True}
    # An unanswered required object is still sent (empty), so its own fields say what is missing.
    empty = forms.form_to_json(REGISTRY.form_schema("mash-decision.schema.json"), {}).data
    assert empty == {"mash_decision": {"consent": {}}}


def test_unreadable_answers_are_reported_not_guessed() -> None:
    converted = forms.form_to_json(
        OWN_SCHEMA,
        {
            "met_at-day": ["31"],
            "met_at-month": ["2"],
            "met_at-year": ["2024"],
            "met_at-time": ["10:00"],
            "count": ["four"],
            "colour": ["mauve"],
        },
    )
    assert converted.data == {}
    assert "real date" in converted.errors["met_at"]
    assert "whole number" in converted.errors["count"]
    assert "Select one of the options" in converted.errors["colour"]
    partial = forms.form_to_json(OWN_SCHEMA, {"met_at-day": ["3"], "met_at-year": ["2024"]})
    assert partial.errors == {"met_at": "“When did you meet?” must include a month"}
    no_time = forms.form_to_json(
        OWN_SCHEMA, {"met_at-day": ["3"], "met_at-month": ["4"], "met_at-year": ["2024"]}
    )
    assert "must include a time" in no_time.errors["met_at"]


def test_repeated_items_drop_blanks_and_errors_go_back_to_where_they_were_asked() -> None:
    schema = REGISTRY.form_schema("strategy-discussion.schema.json")
    form = {
        "participants.0.name": [""],
        "participants.0.agency": [""],
        "participants.1.name": ["PC Lee"],
        "participants.1.agency": ["police"],
        "participants.2.name": ["Dr Patel"],
    }
    converted = forms.form_to_json(schema, form)
    assert converted.data["participants"] == [{"name": "PC Lee", "agency": "police"}, {"name": "Dr Patel"}]
    errors = converted.form_errors(forms.validate(schema, converted.data))
    assert errors["participants/2/agency"] == "Select an answer for “Agency”"
    assert errors["participants"] == "Add at least 3 entries to “Who took part”"
    fields = forms.build_fields(schema, form, errors)
    summary = forms.error_list(fields)
    assert {"text": "Select an answer for “Agency”", "href": "#participants-2-agency"} in summary
    assert {"text": "Add at least 3 entries to “Who took part”", "href": "#participants-0-name"} in summary


def test_contains_says_what_is_missing() -> None:
    schema = REGISTRY.form_schema("strategy-discussion.schema.json")
    data = {"participants": [{"name": n, "agency": "social_care"} for n in ("A", "B", "C")]}
    assert forms.validate(schema, data)["participants"] == "“Who took part” must include Police"


def test_an_else_branch_waits_for_its_question() -> None:
    schema = REGISTRY.form_schema("strategy-discussion.schema.json")
    unanswered = forms.validate(schema, {})
    assert "start_section47" in unanswered and "outcome_without_enquiry" not in unanswered
    declined = forms.validate(schema, {"start_section47": False})
    assert declined["outcome_without_enquiry"] == "Select an answer for “Without an enquiry, what happens?”"
    started = forms.validate(schema, {"start_section47": True})
    assert "joint_with_police" in started and "outcome_without_enquiry" not in started


def test_json_to_form_round_trip() -> None:
    data = {
        "met_at": "2024-07-01T13:30:00+00:00",
        "colour": "blue",
        "tags": ["a"],
        "count": 3,
    }
    values = forms.json_to_form(OWN_SCHEMA, data)
    assert values["met_at-time"] == ["14:30"] and values["met_at-month"] == ["7"]
    assert forms.form_to_json(OWN_SCHEMA, values).data == {**data, "met_at": "2024-07-01T14:30:00+01:00"}
    schema = REGISTRY.form_schema("strategy-discussion.schema.json")
    people = {"participants": [{"name": "A", "agency": "police"}], "start_section47": True}
    assert forms.form_to_json(schema, forms.json_to_form(schema, people)).data == people


def test_summary_rows_use_the_titles() -> None:
    schema = REGISTRY.form_schema("mash-decision.schema.json")
    rows = forms.summary_rows(schema, {"mash_decision": {"response": "nfa", "consent": {"sought": False}}})
    assert ("MASH decision: What is the response?", "No further action") in rows
    assert ("MASH decision: Consent to share information: Was the family's consent sought?", "No") in rows


@pytest.mark.parametrize("name", sorted(p.name for p in (REGISTRY.root / "forms").glob("*.schema.json")))
def test_every_council_form_renders(app: Flask, name: str) -> None:
    schema = REGISTRY.form_schema(name)
    html = fields_html(app, schema)
    for top in forms.build_fields(schema):
        for field in top.walk():
            if field.kind not in ("fieldset", "repeat"):
                assert f'id="{field.anchor}"' in html, (name, field.name)
