"""POST /api/referrals: referrals from police, health and school systems."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from engine.clock import FakeClock
from engine.models import (
    AuditEvent,
    CaseLink,
    CaseRecord,
    InboundReferral,
    MessageSubscription,
    ProcessInstance,
    Task,
)
from tests.scenario.harness import Council
from tests.scenario.test_front_door import decide, screen
from tests.scenario.test_referral import accept
from tests.webapp.conftest import client_for, page, text_of
from tests.webapp.test_api import Api
from web.tokens import create_token, revoke_token

SENDERS = {"pat.police": "police", "hana.health": "health", "ed.education": "school"}

REFERRAL: dict[str, Any] = {
    "sender_reference": "MPS-2024-000117",
    "agency": "police",
    "referrer": {
        "name": "PC Dana Reid",
        "role": "PC 4471, public protection",
        "organisation": "Metropolitan Police",
    },
    "children": [
        {"name": "Ella Stone", "date_of_birth": "2014-05-01", "gender": "female", "address": "4 Mill Lane"},
        {"name": "Finn Stone", "date_of_birth": "2017-11-20"},
    ],
    "concern": "Called to a domestic incident at 02:00; both children were in the house.",
    "consent": {"sought": False, "reason_not_sought": "Asking would put the children at risk"},
}


class PartnerApi(Api):
    """Each partner user's token is made for their agency (``--sender``)."""

    def token(self, username: str) -> str:
        if username not in self.tokens:
            self.tokens[username] = create_token(
                self.engine.db, f"test-{username}", username, sender=SENDERS.get(username)
            )
        return self.tokens[username]

    def refer(self, username: str | None, body: Any, **kwargs: Any) -> Any:
        return self.post(username, "/api/referrals", json=body, **kwargs)

    def counts(self) -> dict[str, int]:
        return {
            model.__tablename__: self.count(model)
            for model in (CaseRecord, CaseLink, ProcessInstance, Task, InboundReferral, MessageSubscription)
        } | {"audit_event": self.count(AuditEvent)}


@pytest.fixture
def api(app: Flask) -> PartnerApi:
    return PartnerApi(app)


def referral(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(REFERRAL)
    body.update(changes)
    return body


def cases_by_reference(api: Api) -> dict[str, CaseRecord]:
    with api.engine.db.read() as session:
        return {c.reference: c for c in session.scalars(sa.select(CaseRecord))}


def test_a_referral_opens_one_linked_contact_per_child(api: PartnerApi) -> None:
    response = api.refer("pat.police", REFERRAL)
    body = api.conforms(response, 201, "ReferralReceipt")

    assert body["sender"] == "police" and body["sender_reference"] == "MPS-2024-000117"
    assert [(c["name"], c["outcome"]) for c in body["children"]] == [
        ("Ella Stone", "case_opened"),
        ("Finn Stone", "case_opened"),
    ]
    ella, finn = (c["case_references"][0] for c in body["children"])
    assert response.headers["Location"] == f"/api/cases/{ella}"
    cases = cases_by_reference(api)
    assert cases[ella].subject_name == "Ella Stone" and cases[finn].subject_name == "Finn Stone"
    with api.engine.db.read() as session:
        links = {tuple(r) for r in session.execute(sa.select(CaseLink.case_id, CaseLink.linked_case_id))}
    assert links == {(cases[ella].id, cases[finn].id), (cases[finn].id, cases[ella].id)}
    # Each is an ordinary contact: in the MASH queue, the urgency to rate, the police the source.
    for reference in (ella, finn):
        tasks = api.engine.tasks(case_reference=reference)
        assert [t.element_id for t in tasks] == ["rate_urgency"]
    with api.engine.db.read() as session:
        started = session.scalars(
            sa.select(AuditEvent.data).where(
                AuditEvent.case_id == cases[ella].id, AuditEvent.action == "instance.started"
            )
        ).one()
    data = started["data"]
    assert data["source"] == "6" and data["child"]["name"] == "Ella Stone" and "children" not in data
    assert data["referrer"]["relationship"] == "PC 4471, public protection"
    assert data["partner_referral"] == {"sender": "police", "sender_reference": "MPS-2024-000117"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"children": []}, "children", "should be non-empty"),
        ({"children": [{"name": "Ella Stone"}]}, "children/0/date_of_birth", "This is required"),
        ({"children": [{"name": "Ella", "date_of_birth": "2014-13-01"}]}, "children/0/date_of_birth", "date"),
        ({"agency": "fire"}, "agency", "Use one of: police, health, school"),
        ({"consent": {"sought": False}}, "consent/reason_not_sought", "This is required"),
        ({"concern": ""}, "concern", "should be non-empty"),
        ({"colour": "red"}, "colour", "This is not something a referral takes"),
    ],
)
def test_a_referral_that_does_not_fit_is_refused_field_by_field_and_changes_nothing(
    api: PartnerApi, change: dict[str, Any], field: str, message: str
) -> None:
    api.token("pat.police")
    before = api.counts()
    body = api.problem(api.refer("pat.police", referral(**change)), 400)
    assert any(e["field"] == field and message in e["message"] for e in body["errors"]), body["errors"]
    assert "nothing was recorded" in body["detail"]
    assert api.counts() == before


def test_every_missing_field_is_named_at_once(api: PartnerApi) -> None:
    body = api.problem(api.refer("pat.police", {"agency": "police"}), 400)
    assert {e["field"] for e in body["errors"]} == {
        "sender_reference",
        "referrer",
        "children",
        "concern",
        "consent",
    }


def test_a_body_that_is_not_json_is_a_bad_request(api: PartnerApi) -> None:
    response = api.post("pat.police", "/api/referrals", data="{", content_type="application/json")
    api.problem(response, 400)
    api.problem(api.post("pat.police", "/api/referrals", data="x", content_type="text/plain"), 415)
    api.problem(api.refer("pat.police", ["a list"]), 400)


def test_sending_it_again_returns_the_first_answer_and_opens_nothing(api: PartnerApi) -> None:
    first = api.conforms(api.refer("pat.police", REFERRAL), 201, "ReferralReceipt")
    before = api.counts()

    again = api.conforms(api.refer("pat.police", REFERRAL), 200, "ReferralReceipt")

    assert again == first
    assert api.counts() == before


def test_the_same_reference_with_a_different_referral_is_a_conflict(api: PartnerApi) -> None:
    api.refer("pat.police", REFERRAL)
    before = api.counts()
    body = api.problem(api.refer("pat.police", referral(concern="Something else entirely")), 409)
    assert "MPS-2024-000117" in body["detail"] and "new reference" in body["detail"]
    assert api.counts() == before


def test_without_a_valid_partner_token_nothing_is_received(api: PartnerApi, app: Flask) -> None:
    api.problem(api.client.post("/api/referrals", json=REFERRAL), 401)
    wrong = {"Authorization": "Bearer fdt_not-a-real-token"}
    assert api.client.post("/api/referrals", json=REFERRAL, headers=wrong).status_code == 401
    token = api.token("pat.police")
    revoke_token(api.engine.db, "test-pat.police")
    revoked = api.client.post("/api/referrals", json=REFERRAL, headers={"Authorization": f"Bearer {token}"})
    api.problem(revoked, 401)
    # A staff member's token (no sender) cannot send referrals.
    body = api.problem(api.refer("sam.screener", REFERRAL), 403)
    assert "--sender" in body["detail"]
    assert api.count(CaseRecord) == 0 and api.count(InboundReferral) == 0


def test_a_token_sends_only_as_its_own_agency(api: PartnerApi) -> None:
    body = api.problem(api.refer("hana.health", REFERRAL), 403)  # a health token, agency police
    assert body["errors"] == [{"field": "agency", "message": "Must be health, the agency of your token"}]
    assert api.count(CaseRecord) == 0


def test_each_agency_has_its_own_reference_space(api: PartnerApi) -> None:
    police = api.conforms(api.refer("pat.police", REFERRAL), 201, "ReferralReceipt")
    # Health happens to use the same reference for a referral of its own: not a retry, not a conflict.
    health_body = referral(
        agency="health",
        source="3A",
        referrer={"name": "Dr Amir Khan", "role": "GP", "organisation": "Mill Lane Surgery"},
        children=[{"name": "Jay Brook", "date_of_birth": "2019-02-03"}],
    )
    health = api.conforms(api.refer("hana.health", health_body), 201, "ReferralReceipt")
    assert health["sender"] == "health"
    assert health["children"][0]["case_references"] != police["children"][0]["case_references"]
    with api.engine.db.read() as session:
        rows = session.execute(
            sa.select(InboundReferral.sender, InboundReferral.sender_reference).order_by(
                InboundReferral.sender
            )
        ).all()
    assert [tuple(r) for r in rows] == [("health", "MPS-2024-000117"), ("police", "MPS-2024-000117")]


def test_a_child_with_an_open_case_gets_the_referral_on_that_case(
    api: PartnerApi, app: Flask, fake_clock: FakeClock
) -> None:
    first = api.conforms(api.refer("pat.police", REFERRAL), 201, "ReferralReceipt")
    ella = first["children"][0]["case_references"][0]
    # The MASH screens it and refers it; the team manager accepts it and allocates Sara.
    council = Council(api.engine, fake_clock)
    screen(council, ella)
    decide(council, ella, "referral", significant_harm_suspected=False)
    accept(council, ella, worker="sara.social")
    assert api.engine.get_case(ella).worker == "sara.social"
    work_before = {t.id for t in api.engine.tasks(case_reference=ella)}
    before = api.counts()

    school = referral(
        sender_reference="RP-778",
        agency="school",
        referrer={
            "name": "Ms Priya Shah",
            "role": "Designated safeguarding lead",
            "organisation": "Riverside",
        },
        children=[{"name": "  ELLA   stone ", "date_of_birth": "2014-05-01"}],
        concern="Ella said she is scared to go home.",
    )
    response = api.refer("ed.education", school)
    body = api.conforms(response, 201, "ReferralReceipt")

    assert body["children"] == [
        {
            "name": "  ELLA   stone ",
            "outcome": "delivered_to_open_case",
            "case_references": [ella],
            "url": f"/api/cases/{ella}",
        }
    ]
    after = api.counts()
    assert after["case_record"] == before["case_record"]  # no new case
    assert after["process_instance"] == before["process_instance"]
    assert after["inbound_referral"] == before["inbound_referral"] + 1
    news = [t for t in api.engine.tasks(case_reference=ella) if t.element_id == "read_new_information"]
    assert len(news) == 1
    assert news[0].assignee == "sara.social" and news[0].status == "claimed"
    assert news[0].name == "New information from School"
    assert news[0].form_key == "read-new-information.schema.json"
    with api.engine.db.read() as session:
        delivered = session.scalars(
            sa.select(AuditEvent.data).where(AuditEvent.action == "message.correlated")
        ).one()
    assert delivered["payload"]["concern"] == "Ella said she is scared to go home."
    assert delivered["payload"]["sender_reference"] == "RP-778"
    # The referral's own work on the case goes on untouched.
    assert work_before < {t.id for t in api.engine.tasks(case_reference=ella)}
    assert news[0].team_key == "assessment"
    # The allocated worker reads it on the task page, and records what they did.
    html = text_of(page(client_for(app, "sara.social"), f"/tasks/{news[0].id}"))
    assert "Ella said she is scared to go home." in html
    assert "From Ms Priya Shah (Designated safeguarding lead), Riverside" in html
    assert "School reference RP-778, received 6 March 2024 at" in html
    assert "Consent to share: not sought: Asking would put the children at risk" in html
    assert "Does it change the plan for the child?" in html
    api.engine.complete(
        news[0].id,
        "sara.social",
        {"new_information_read": {"changes_plan": True, "action": "visit", "notes": "Visit today"}},
    )
    assert "read_new_information" not in [t.element_id for t in api.engine.tasks(case_reference=ella)]


def test_a_referral_naming_an_open_child_and_a_new_one_does_both_at_once(api: PartnerApi) -> None:
    first = api.conforms(
        api.refer("pat.police", referral(children=[REFERRAL["children"][0]])), 201, "ReferralReceipt"
    )
    ella = first["children"][0]["case_references"][0]
    body = api.conforms(
        api.refer("pat.police", referral(sender_reference="MPS-2024-000118")), 201, "ReferralReceipt"
    )
    assert [(c["outcome"], c["case_references"][0] == ella) for c in body["children"]] == [
        ("delivered_to_open_case", True),
        ("case_opened", False),
    ]
    # Before allocation the new information waits in the case's team queue.
    news = [t for t in api.engine.tasks(case_reference=ella) if t.element_id == "read_new_information"]
    assert [(t.assignee, t.team_key) for t in news] == [(None, "mash")]


def test_the_document_describes_the_referral_endpoint(api: PartnerApi) -> None:
    operation = api.document["paths"]["/api/referrals"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/form.partner-referral"}
    published = api.document["components"]["schemas"]["form.partner-referral"]
    assert published["properties"]["agency"]["oneOf"][0]["const"] == "police"
    assert {"200", "201", "400", "401", "403", "409"} <= set(operation["responses"])


def test_a_duplicate_that_arrives_while_the_first_is_being_recorded_gets_the_first_answer(
    api: PartnerApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web import referrals

    first = api.conforms(api.refer("pat.police", REFERRAL), 201, "ReferralReceipt")
    before = api.counts()
    # As if the earlier request had not committed when this one looked: it meets the unique
    # (sender, reference) on insert, rolls back, and answers as a retry.
    looked_up = referrals._earlier
    calls: list[str] = []

    def late(*args: Any) -> Any:
        calls.append("lookup")
        return None if len(calls) == 1 else looked_up(*args)

    monkeypatch.setattr(referrals, "_earlier", late)
    assert api.conforms(api.refer("pat.police", REFERRAL), 200, "ReferralReceipt") == first
    assert calls == ["lookup", "lookup"]
    assert api.counts() == before


def test_tokens_are_made_for_an_agency_on_the_command_line(api: PartnerApi) -> None:
    from click.testing import CliRunner

    from web.cli import cli

    url = api.engine.db.engine.url.render_as_string(hide_password=False)

    def frontdoor(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--database-url", url, "tokens", *args])

    made = frontdoor("create", "niche-rms", "--user", "pat.police", "--sender", "police")
    assert made.exit_code == 0, made.output
    token = made.output.splitlines()[0].strip()
    listed = frontdoor("list")
    assert "niche-rms" in listed.output and "sender police" in listed.output
    response = api.client.post("/api/referrals", json=REFERRAL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    refused = frontdoor("create", "other", "--user", "pat.police", "--sender", "Police Force")
    assert refused.exit_code == 1 and "lower-case name" in refused.output
