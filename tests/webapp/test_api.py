"""The JSON API: tokens, access, problem details, contacts, tasks, cases, escalations, OpenAPI."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from engine.clock import FakeClock
from engine.core import Engine
from engine.errors import ProcessError
from engine.models import ApiToken, AuditEvent, CaseLink, CaseRecord, ProcessInstance, Task, User
from tests.webapp.conftest import engine_of_app
from web import access, openapi
from web.auth import load_person
from web.tokens import create_token, hash_token, revoke_token

CONTACT = {
    "received_at": "2024-03-06T09:10",
    "referrer": {
        "name": "Ms Priya Shah",
        "organisation": "Riverside Primary School",
        "relationship": "Teacher",
    },
    "source": "2A",
    "concern": "Both children arrived hungry and said nobody was home last night.",
    "consent": {"sought": True, "given": True},
    "children": [
        {"name": "Ella Stone", "date_of_birth": "2014-05-01", "gender": "female"},
        {"name": "Finn Stone", "date_of_birth": "2017-11-20", "gender": "male"},
    ],
}


class Api:
    """A test client that sends each demo user's API token."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.engine: Engine = engine_of_app(app)
        self.client: FlaskClient = app.test_client()
        self.tokens: dict[str, str] = {}
        self._document: dict[str, Any] | None = None

    def token(self, username: str) -> str:
        if username not in self.tokens:
            self.tokens[username] = create_token(self.engine.db, f"test-{username}", username)
        return self.tokens[username]

    def headers(self, username: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"} if username else {}

    def get(self, username: str | None, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers(username), **kwargs)

    def post(self, username: str | None, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers=self.headers(username), **kwargs)

    @property
    def document(self) -> dict[str, Any]:
        if self._document is None:
            self._document = self.client.get("/api/openapi.json").get_json()
        return self._document

    def conforms(self, response: Any, status: int, schema: str) -> Any:
        """The response has the status and fits components/schemas/<schema> of the served document,
        strictly: no property the document does not declare."""
        body = response.get_json()
        assert response.status_code == status, body
        expected_type = "application/problem+json" if schema == "Problem" else "application/json"
        assert response.mimetype == expected_type
        schemas = _strict(self.document["components"]["schemas"])
        resource = Resource.from_contents({"components": {"schemas": schemas}}, DRAFT202012)
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"urn:doc#/components/schemas/{schema}"},
            registry=Registry().with_resource("urn:doc", resource),
        )
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, errors
        return body

    def problem(self, response: Any, status: int) -> dict[str, Any]:
        body: dict[str, Any] = self.conforms(response, status, "Problem")
        assert body["status"] == status and body["type"] == openapi.PROBLEMS[status][0]
        return body

    def count(self, model: Any) -> int:
        with self.engine.db.read() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def _strict(schemas: dict[str, Any]) -> dict[str, Any]:
    """The API's own schemas with additionalProperties: false wherever properties are listed."""
    out = copy.deepcopy(schemas)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in openapi.SCHEMAS:
        walk(out[name])
    return out


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app)


@pytest.fixture
def demo_api(demo_app: Flask) -> Api:
    return Api(demo_app)


def _record_contact(api: Api, username: str = "sam.screener", body: dict[str, Any] | None = None) -> Any:
    return api.post(username, "/api/contacts", json=body or CONTACT)


def _open_task(api: Api, reference: str, element_id: str) -> Task:
    with api.engine.db.read() as session:
        task = session.scalar(
            sa.select(Task)
            .join(CaseRecord, CaseRecord.id == Task.case_id)
            .where(
                CaseRecord.reference == reference,
                Task.element_id == element_id,
                Task.status.in_(("ready", "claimed")),
            )
        )
    assert task is not None, f"no open {element_id} on {reference}"
    return task


# ------------------------------------------------------------------------------ the document


def test_the_document_is_openapi_3_1_and_needs_no_token(api: Api) -> None:
    response = api.client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    operation_ids = []
    for path, methods in document["paths"].items():
        declared_path_params = set(re.findall(r"{(\w+)}", path))
        for method, op in methods.items():
            operation_ids.append(op["operationId"])
            assert op["responses"], f"{method} {path} has no responses"
            params = [_resolve(document, p) for p in op.get("parameters", [])]
            assert {p["name"] for p in params if p["in"] == "path"} == declared_path_params, path
            if op.get("security") != []:
                assert "401" in op["responses"], f"{method} {path} needs a token but documents no 401"
    assert len(operation_ids) == len(set(operation_ids))
    for ref in _refs(document):
        _resolve(document, {"$ref": ref})  # every reference points at something
    for name, schema in document["components"]["schemas"].items():
        assert re.fullmatch(r"[a-zA-Z0-9.\-_]+", name)
        jsonschema.Draft202012Validator.check_schema(schema)
    # The full OpenAPI 3.1 meta-schema check, where openapi-spec-validator is installed (dev extra).
    try:
        from openapi_spec_validator import validate
    except ImportError:
        return
    validate(document)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> Any:
    if "$ref" not in node:
        return node
    target: Any = document
    assert node["$ref"].startswith("#/"), node["$ref"]
    for part in node["$ref"][2:].split("/"):
        assert part in target, f"{node['$ref']} does not resolve"
        target = target[part]
    return target


def test_the_document_lists_every_route_the_blueprint_registers(api: Api) -> None:
    routes = set()
    for rule in api.app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes |= {(path, m.lower()) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    documented = {(path, method) for path, methods in api.document["paths"].items() for method in methods}
    assert routes == documented
    assert documented == {(p, m) for p, ms in openapi.OPERATIONS.items() for m in ms}


def test_the_document_schemas_are_the_ones_the_handlers_use(api: Api) -> None:
    document = api.document
    schemas = document["components"]["schemas"]
    for name, schema in openapi.SCHEMAS.items():
        assert schemas[name] == schema
    assert document["components"]["parameters"] == openapi.PARAMETERS
    # The contact's body is the contact process's start form, the schema the engine validates with.
    contact = document["paths"]["/api/contacts"]["post"]["requestBody"]["content"]["application/json"]
    form_key = api.engine.start_form("contact")
    assert form_key == "record-contact.schema.json"
    engine_schema = dict(api.engine.registry.form_schema(form_key))
    engine_schema.pop("$schema")
    assert _resolve(document, contact["schema"]) == engine_schema
    # Every task form is published, so a client knows what `complete` takes.
    with api.engine.db.read() as session:
        task_forms = set(session.scalars(sa.select(Task.form_key).where(Task.form_key.is_not(None))))
    for form in task_forms | {form_key}:
        assert openapi.form_component(form) in schemas
    # complete's body is validated with the schema the document shows.
    complete = document["paths"]["/api/tasks/{task_id}/complete"]["post"]["requestBody"]["content"]
    assert (
        _resolve(document, complete["application/json"]["schema"]) == openapi.SCHEMAS["CompleteTaskRequest"]
    )
    assert openapi.validator("CompleteTaskRequest").schema["$ref"].endswith("/CompleteTaskRequest")
    # Query parameters are checked against their documented limits.
    maximum = openapi.PARAMETERS["limit"]["schema"]["maximum"]
    body = api.problem(api.get("sam.screener", f"/api/tasks?limit={maximum + 1}"), 400)
    assert body["errors"] == [
        {"field": "limit", "message": f"limit: {maximum + 1} is greater than the maximum of {maximum}"}
    ]
    assert api.get("sam.screener", f"/api/tasks?limit={maximum}").status_code == 200


# ---------------------------------------------------------------------------------- tokens


def test_no_token_a_bad_token_and_a_revoked_token_get_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Basic c2FtOnB3"}, {"Authorization": "Bearer "}):
        response = api.client.get("/api/tasks", headers=headers)
        body = api.problem(response, 401)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="frontdoor"'
        assert "Bearer" in body["detail"]
    for token in ("fdt_not-a-real-token", "nonsense", "fdt_" + "x" * 300):
        response = api.client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
        api.problem(response, 401)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="frontdoor", error="invalid_token"'
    assert api.get("sam.screener", "/api/tasks").status_code == 200
    revoke_token(api.engine.db, "test-sam.screener")
    api.problem(api.get("sam.screener", "/api/tasks"), 401)
    # A token whose user has left stops working too.
    assert api.get("sara.social", "/api/tasks").status_code == 200
    with api.engine.db.transaction() as session:
        session.execute(sa.update(User).where(User.username == "sara.social").values(active=False))
    api.problem(api.get("sara.social", "/api/tasks"), 401)
    # The session cookie of a signed-in person is no API credential.
    api.problem(api.client.get("/api/processes"), 401)


def test_tokens_are_stored_hashed_and_last_use_is_noted(api: Api, fake_clock: FakeClock) -> None:
    token = api.token("sam.screener")
    assert token.startswith("fdt_") and len(token) > 40
    with api.engine.db.read() as session:
        row = session.scalar(sa.select(ApiToken).where(ApiToken.name == "test-sam.screener"))
    assert row is not None and row.token_hash == hash_token(token) and token not in row.token_hash
    assert row.last_used_at is None
    api.get("sam.screener", "/api/processes")
    with api.engine.db.read() as session:
        used = session.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.id == row.id))
    assert used == fake_clock.now()
    fake_clock.advance(timedelta(seconds=10))
    api.get("sam.screener", "/api/processes")  # within the minute: no write
    with api.engine.db.read() as session:
        assert session.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.id == row.id)) == used


def test_the_tokens_command_creates_and_revokes(api: Api) -> None:
    from web.cli import cli

    url = api.engine.db.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    created = runner.invoke(
        cli, ["--database-url", url, "tokens", "create", "case-system", "--user", "sam.screener"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert token.startswith("fdt_")
    with api.engine.db.read() as session:
        stored = session.execute(sa.select(ApiToken.name, ApiToken.token_hash)).all()
    assert stored == [("case-system", hash_token(token))]
    assert api.client.get("/api/processes", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    again = runner.invoke(
        cli, ["--database-url", url, "tokens", "create", "case-system", "--user", "sam.screener"]
    )
    assert again.exit_code == 1 and "already a token called 'case-system'" in again.output
    nobody = runner.invoke(cli, ["--database-url", url, "tokens", "create", "x", "--user", "no.body"])
    assert nobody.exit_code == 1 and "no active user" in nobody.output
    listed = runner.invoke(cli, ["--database-url", url, "tokens", "list"])
    assert "case-system" in listed.output and "sam.screener" in listed.output and token not in listed.output
    revoked = runner.invoke(cli, ["--database-url", url, "tokens", "revoke", "case-system"])
    assert revoked.exit_code == 0, revoked.output
    assert api.client.get("/api/processes", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    unknown = runner.invoke(cli, ["--database-url", url, "tokens", "revoke", "no-such-token"])
    assert unknown.exit_code == 1
    with api.engine.db.read() as session:
        actions = session.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.action.like("api_token.%"))
        ).all()
    assert actions == ["api_token.created", "api_token.revoked"]


# ------------------------------------------------------------------------------- processes


def test_processes_lists_the_newest_version_and_start_form(api: Api) -> None:
    body = api.conforms(api.get("pat.police", "/api/processes"), 200, "ProcessList")
    by_key = {p["key"]: p for p in body["items"]}
    assert by_key["contact"]["start_form"] == "record-contact.schema.json"
    assert by_key["contact"]["version"] == 1 and by_key["contact"]["name"]
    assert set(by_key) == {d.key for d in api.engine.list_processes()}


def test_unknown_api_paths_and_methods_get_problem_details(api: Api) -> None:
    api.problem(api.get("sam.screener", "/api/no-such-thing"), 404)
    response = api.post("sam.screener", "/api/processes")
    api.problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_a_failing_process_is_a_problem_not_a_page(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*_args: Any, **_kwargs: Any) -> Any:
        raise ProcessError("division by zero", "note_how_contact_came", "Note when")

    monkeypatch.setattr(api.engine, "start_for_subjects", fails)
    body = api.problem(_record_contact(api), 500)
    assert "note_how_contact_came" in body["detail"]


# -------------------------------------------------------------------------------- contacts


def test_a_contact_about_two_siblings_opens_two_linked_cases(api: Api) -> None:
    before = api.count(CaseRecord)
    response = _record_contact(api)
    body = api.conforms(response, 201, "ContactCreated")
    assert api.count(CaseRecord) == before + 2
    cases = body["cases"]
    assert [c["child_name"] for c in cases] == ["Ella Stone", "Finn Stone"]
    assert response.headers["Location"] == cases[0]["url"] == f"/api/cases/{cases[0]['reference']}"
    for case in cases:
        assert [t["element_id"] for t in case["open_tasks"]] == ["rate_urgency"]
        assert case["open_tasks"][0]["case_reference"] == case["reference"]
    first, second = (c["reference"] for c in cases)
    with api.engine.db.read() as session:
        links = session.execute(sa.select(CaseLink.case_id, CaseLink.linked_case_id, CaseLink.kind)).all()
        actors = set(session.scalars(sa.select(ProcessInstance.started_by)))
    assert len(links) == 2 and {kind for *_, kind in links} == {"sibling"}
    assert actors == {"sam.screener"}  # the token's user took the contact
    # Each case shows its sibling by reference only, never the sibling's details.
    ella = api.conforms(api.get("sam.screener", f"/api/cases/{first}"), 200, "CaseSummary")
    assert ella["linked_cases"] == [{"reference": second, "kind": "sibling"}]
    assert ella["child"]["name"] == "Ella Stone" and "Finn" not in str(ella)


def test_a_bad_contact_is_refused_field_by_field_and_changes_nothing(api: Api) -> None:
    def counts() -> tuple[int, ...]:
        return tuple(api.count(m) for m in (CaseRecord, Task, ProcessInstance, AuditEvent, CaseLink))

    api.token("sam.screener")
    api.token("pat.police")
    before = counts()
    bad = copy.deepcopy(CONTACT)
    del bad["referrer"]["name"]
    del bad["children"][1]["date_of_birth"]
    bad["consent"] = {"sought": False}
    body = api.problem(_record_contact(api, body=bad), 422)
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert {"referrer/name", "children/1/date_of_birth", "consent/reason_not_sought"} <= set(fields)
    assert fields["referrer/name"] == "Answer this question"

    body = api.problem(_record_contact(api, body={**CONTACT, "children": []}), 422)
    assert [e["field"] for e in body["errors"]] == ["children"]
    body = api.problem(_record_contact(api, body={**CONTACT, "children": "Ella"}), 422)
    assert [e["field"] for e in body["errors"]] == ["children"]
    with_reference = {**CONTACT, "children": [{**CONTACT["children"][0], "reference": "CH-999999"}]}
    body = api.problem(_record_contact(api, body=with_reference), 422)
    assert [e["field"] for e in body["errors"]] == ["children/0/reference"]
    body = api.problem(_record_contact(api, body={**CONTACT, "_secret": 1}), 422)
    assert body["errors"][0]["field"] == ""
    api.problem(api.post("sam.screener", "/api/contacts", json=["not", "an", "object"]), 422)
    api.problem(
        api.post("sam.screener", "/api/contacts", data="{not json", content_type="application/json"), 400
    )
    api.problem(api.post("sam.screener", "/api/contacts", data="received_at=today"), 415)
    # A partner cannot record a contact at all.
    api.problem(_record_contact(api, "pat.police"), 403)
    assert counts() == before


# ----------------------------------------------------------------------------------- tasks


def test_tasks_are_those_the_caller_may_see_filtered_and_paged(demo_api: Api) -> None:
    api = demo_api
    everyone = [
        "sam.screener",
        "mo.manager",
        "sara.social",
        "tara.team",
        "sid.service",
        "pat.police",
        "hana.health",
    ]
    with api.engine.db.read() as session:
        rows = session.execute(
            sa.select(Task, CaseRecord)
            .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
            .where(Task.status.in_(("ready", "claimed")))
        ).all()
    for username in everyone:
        body = api.conforms(api.get(username, "/api/tasks?limit=200"), 200, "TaskPage")
        with api.engine.db.read() as session:
            user_id = session.scalar(sa.select(User.id).where(User.username == username))
        with api.app.app_context():
            person = load_person(user_id)
            assert person is not None
            expected = {t.id for t, c in rows if access.can_view_task(person, t, c)}
        assert {t["id"] for t in body["items"]} == expected, username
        assert body["next_offset"] is None
    police = api.get("hana.health", "/api/tasks").get_json()["items"]
    assert police and {t["role"] for t in police} == {"health_partner"}
    service = api.get("sid.service", "/api/tasks?limit=200").get_json()["items"]
    assert len(service) == len(rows)
    dues = [t["due_at"] for t in service if t["due_at"]]
    assert dues == sorted(dues)

    first = api.conforms(api.get("sid.service", "/api/tasks?limit=5"), 200, "TaskPage")
    second = api.get("sid.service", "/api/tasks?limit=5&offset=5").get_json()
    assert first["next_offset"] == 5 and len(first["items"]) == 5
    assert [t["id"] for t in first["items"] + second["items"]] == [t["id"] for t in service[:10]]

    mine = api.get("sara.social", "/api/tasks?user=sara.social").get_json()["items"]
    assert mine and {t["assignee"] for t in mine} == {"sara.social"}
    team = api.get("mo.manager", "/api/tasks?team=mash").get_json()["items"]
    assert team and {t["team"] for t in team} == {"mash"}
    overdue = api.get("sid.service", "/api/tasks?due=overdue").get_json()["items"]
    assert overdue and {t["due"] for t in overdue} == {"overdue"}
    reference = next(c.reference for t, c in rows if c is not None and t.element_id == "decide_response")
    of_case = api.get("mo.manager", f"/api/tasks?case={reference}").get_json()["items"]
    assert {t["case_reference"] for t in of_case} == {reference}
    assert api.get("sara.social", f"/api/tasks?case={reference}").get_json()["items"] == []

    for query, field in (
        ("due=tomorrow", "due"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
    ):
        body = api.problem(api.get("sid.service", f"/api/tasks?{query}"), 400)
        assert [e["field"] for e in body["errors"]] == [field]


def test_claim_and_complete_through_the_api_move_the_case_on(api: Api) -> None:
    reference = _record_contact(api).get_json()["cases"][0]["reference"]
    task = _open_task(api, reference, "rate_urgency")
    claim = f"/api/tasks/{task.id}/claim"
    complete = f"/api/tasks/{task.id}/complete"

    # The screener sees the task (their team's case) but may not hold a manager's task.
    api.problem(api.post("sam.screener", claim), 403)
    # An assessment social worker cannot even see it; nor can a partner.
    api.problem(api.post("sara.social", claim), 403)
    api.problem(api.post("pat.police", claim), 403)
    api.problem(api.post("mo.manager", "/api/tasks/no-such-task/claim"), 404)

    claimed = api.conforms(api.post("mo.manager", claim), 200, "Task")
    assert claimed["status"] == "claimed" and claimed["assignee"] == "mo.manager"
    assert api.post("mo.manager", claim).status_code == 200  # claiming your own again is fine
    body = api.problem(api.post("sid.service", claim), 409)
    assert "mo.manager" in body["detail"]

    revision = claimed["revision"]
    audit_before = api.count(AuditEvent)
    # Bad input: field-level errors, in the request body's terms, and nothing changes.
    body = api.problem(api.post("mo.manager", complete, json={"data": {"urgency": "purple"}}), 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"data/urgency", "data/urgency_reason"}
    body = api.problem(api.post("mo.manager", complete, json={"answers": {}}), 422)
    assert {e["field"] for e in body["errors"]} == {"data", "answers"}
    body = api.problem(api.post("mo.manager", complete, json={"data": {}, "expected_revision": "one"}), 422)
    assert [e["field"] for e in body["errors"]] == ["expected_revision"]
    api.problem(api.post("mo.manager", complete, data="urgency=red"), 415)
    answers = {"urgency": "amber", "urgency_reason": "Children left alone overnight."}
    api.problem(
        api.post("mo.manager", complete, json={"data": answers, "expected_revision": revision + 7}), 409
    )
    # Only the holder completes a claimed task.
    api.problem(api.post("sid.service", complete, json={"data": answers}), 409)
    api.problem(api.post("mo.manager", "/api/tasks/no-such-task/complete", json={"data": answers}), 404)
    assert api.count(AuditEvent) == audit_before
    assert _open_task(api, reference, "rate_urgency").id == task.id

    done = api.conforms(
        api.post("mo.manager", complete, json={"data": answers, "expected_revision": revision}),
        200,
        "CompleteTaskResult",
    )
    assert done["task"]["status"] == "completed" and done["task"]["completed_by"] == "mo.manager"
    assert done["case_reference"] == reference
    next_steps = {t["element_id"] for t in done["open_tasks"]}
    assert "rate_urgency" not in next_steps and "police_check" in next_steps
    listed = api.get("mo.manager", f"/api/tasks?case={reference}").get_json()["items"]
    assert {t["element_id"] for t in listed} == next_steps
    api.problem(api.post("mo.manager", complete, json={"data": answers}), 409)  # not twice


# ----------------------------------------------------------------------------------- cases


def test_a_case_as_its_page_shows_it_with_access_and_audit(api: Api) -> None:
    reference = _record_contact(api).get_json()["cases"][1]["reference"]

    def views() -> int:
        with api.engine.db.read() as session:
            return int(
                session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "case.viewed")) or 0
            )

    body = api.conforms(api.get("sam.screener", f"/api/cases/{reference}"), 200, "CaseSummary")
    assert body["reference"] == reference and body["child_name"] == "Finn Stone" and body["team"] == "mash"
    assert body["child"] == CONTACT["children"][1]
    assert body["facts"]["contact_date"] == "2024-03-06"
    clock = next(c for c in body["clocks"] if c["name"] == "mash_decision")
    assert clock["stopped_at"] is None and clock["working_days_left"] == 1
    assert [t["element_id"] for t in body["open_tasks"]] == ["rate_urgency"]
    assert views() == 1
    with api.engine.db.read() as session:
        event = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "case.viewed")).one()
    assert event.actor == "sam.screener" and event.data == {"page": "api"}

    assert api.get("mo.manager", f"/api/cases/{reference}").status_code == 200
    assert api.get("sid.service", f"/api/cases/{reference}").status_code == 200
    assert views() == 3
    # Another team, and partners, get 403; nothing goes to the record.
    api.problem(api.get("sara.social", f"/api/cases/{reference}"), 403)
    api.problem(api.get("pat.police", f"/api/cases/{reference}"), 403)
    api.problem(api.get("sam.screener", "/api/cases/CH-999999"), 404)
    assert views() == 3


# ----------------------------------------------------------------------------- escalations


def test_escalations_for_managers_only(demo_api: Api) -> None:
    api = demo_api
    body = api.conforms(api.get("mo.manager", "/api/escalations"), 200, "EscalationPage")
    assert body["items"], "the demo has an overdue decision"
    levels = [e["level"] for e in body["items"]]
    assert levels == sorted(levels, reverse=True)
    decision = next(e for e in body["items"] if e["task"]["element_id"] == "decide_response")
    assert decision["level"] == 2 and decision["label"] == "Escalated to the team manager"
    assert decision["late_by_hours"] > 0 and decision["working_days_late"] >= 1
    assert decision["holder"] is None and decision["task"]["team"] == "mash"
    assert {e["task"]["team"] for e in body["items"]} == {"mash"}

    everything = api.conforms(api.get("sid.service", "/api/escalations"), 200, "EscalationPage")
    assert len(everything["items"]) >= len(body["items"])
    assert api.get("tara.team", "/api/escalations").get_json()["items"] == []  # none in assessment
    paged = api.get("sid.service", "/api/escalations?limit=1").get_json()
    assert len(paged["items"]) == 1 and paged["next_offset"] == (1 if len(everything["items"]) > 1 else None)
    for username in ("sam.screener", "sara.social", "pat.police"):
        api.problem(api.get(username, "/api/escalations"), 403)
    api.problem(api.get("mo.manager", "/api/escalations?limit=201"), 400)
