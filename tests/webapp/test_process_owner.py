"""The process owner's pages: processes and versions, upload, drafts, check and deploy.

Every model of the BPMN interchange test suite goes through upload -> view -> check -> deploy:
each either deploys or is refused with findings, never a server error.  Bad files (not XML,
entities, too large, not UTF-8, not BPMN) are refused with a page that says why, and change
nothing.  A draft is saved against the revision it started from; deploying makes a new version
and running cases stay on theirs.
"""

from __future__ import annotations

import html
import io
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engine import clock as clock_module
from engine import drafts
from engine.clock import FakeClock
from engine.core import Engine
from engine.errors import Conflict, DefinitionError, NotFound
from engine.models import AuditEvent, ProcessDefinition, ProcessDraft, ProcessInstance
from tests.webapp.conftest import _app, client_for, engine_of_app, page, text_of

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "process_owner" / "home_visit.bpmn"
# The BPMN Model Interchange reference models, beside the project (as tests/integration/test_miwg_corpus.py).
MIWG = Path(
    os.environ.get("FRONTDOOR_MIWG_CORPUS", Path(__file__).resolve().parents[1] / "fixtures" / "miwg")
)
MIWG_FILES = sorted(MIWG.glob("*.bpmn")) if MIWG.is_dir() else []
MIWG_MISSING = f"the MIWG corpus is not at {MIWG} (set FRONTDOOR_MIWG_CORPUS to its folder)"


def token(client: FlaskClient) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page(client, "/processes"))
    assert found
    return found.group(1)


def upload(client: FlaskClient, name: str, content: bytes) -> Any:
    return client.post(
        "/processes/upload",
        data={"csrf_token": token(client), "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def post(client: FlaskClient, path: str, **fields: Any) -> Any:
    csrf = token(client)
    return client.post(path, data={"csrf_token": csrf, **fields}, headers={"X-CSRFToken": csrf})


def words(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def draft_count(engine: Engine) -> int:
    with engine.db.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(ProcessDraft)) or 0)


@pytest.fixture
def owner(app: Flask) -> FlaskClient:
    return client_for(app, "olive.owner")


# ----------------------------------------------------------------------------- pages


def test_processes_and_their_versions(app: Flask, owner: FlaskClient) -> None:
    shown = text_of(page(owner, "/processes"))
    assert "Referral, assessment and child protection" in shown and "Version 1" in shown
    process = text_of(page(owner, "/processes/referral"))
    assert "Versions" in process and "Version 1 Newest" in process

    viewer = owner.get("/processes/referral/versions/1")
    assert viewer.status_code == 200
    assert 'data-diagram-url="/processes/referral/versions/1/diagram.bpmn"' in viewer.get_data(as_text=True)
    # The diagram pages keep the site's policy: no inline script or style.
    assert "'unsafe-inline'" not in viewer.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in owner.get("/processes/referral/edit").headers["Content-Security-Policy"]

    xml = owner.get("/processes/referral/versions/1/diagram.bpmn")
    assert xml.status_code == 200 and xml.mimetype == "application/xml"
    [deployed] = [d for d in engine_of_app(app).list_processes() if d.key == "referral"]
    assert xml.get_data(as_text=True) == deployed.bpmn_xml

    assert owner.get("/processes/referral/versions/9").status_code == 404
    assert owner.get("/processes/no_such_process").status_code == 404
    assert owner.get("/processes/no_such_process/edit").status_code == 404


def test_the_navigation_offers_processes_to_the_owner_only(app: Flask, owner: FlaskClient) -> None:
    assert 'href="/processes"' in page(owner, "/tasks/mine")
    screener = client_for(app, "sam.screener")
    assert 'href="/processes"' not in page(screener, "/tasks/mine")
    assert screener.get("/processes").status_code == 403


# ----------------------------------------------------------------------------- drafts


def test_upload_save_check_and_deploy_a_new_version(app: Flask, owner: FlaskClient) -> None:
    engine = engine_of_app(app)
    engine.deploy([(FIXTURE.name, FIXTURE.read_bytes())], "olive.owner")
    engine.start("home_visit", "sara.social", case_reference="HV-1", team_key="assessment")

    changed = FIXTURE.read_bytes().replace(b"working_days(5)", b"working_days(3)")
    response = upload(owner, "home_visit.bpmn", changed)
    assert response.status_code == 302 and response.headers["Location"] == "/processes/home_visit/edit"
    editor = page(owner, "/processes/home_visit/edit")
    assert 'data-diagram-url="/processes/home_visit/draft.bpmn"' in editor
    assert 'data-revision="1"' in editor
    assert owner.get("/processes/home_visit/draft.bpmn").get_data() == changed

    # A save from an editor opened on an older revision is refused; the newer draft stays.
    stale = post(owner, "/processes/home_visit/draft", xml=FIXTURE.read_text(), revision="")
    assert stale.status_code == 409
    assert "olive.owner saved the draft of home_visit (revision 1)" in stale.get_json()["error"]
    assert "your changes were not saved" in stale.get_json()["error"]
    saved = post(owner, "/processes/home_visit/draft", xml=changed.decode(), revision="1")
    assert saved.status_code == 200 and saved.get_json()["revision"] == 2
    again = post(owner, "/processes/home_visit/draft", xml=FIXTURE.read_text(), revision="1")
    assert again.status_code == 409 and "revision 2" in again.get_json()["error"]

    checked = post(owner, "/processes/home_visit/draft/validate").get_json()
    assert checked == {"revision": 2, "findings": [], "ok": True}

    deployed = post(owner, "/processes/home_visit/draft/deploy", revision="2")
    assert deployed.status_code == 302 and deployed.headers["Location"] == "/processes/home_visit"
    shown = text_of(page(owner, "/processes/home_visit"))
    assert "Deployed version 2 of home_visit" in shown
    assert drafts.get(engine, "home_visit") is None

    engine.start("home_visit", "sara.social", case_reference="HV-2", team_key="assessment")
    with engine.db.read() as session:
        versions = dict(
            session.execute(
                sa.select(ProcessInstance.case_id, ProcessDefinition.version).join(
                    ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id
                )
            ).all()
        )
        actions = session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert versions == {engine.get_case("HV-1").id: 1, engine.get_case("HV-2").id: 2}
    assert "process.draft_saved" in actions and actions.count("process.deployed") >= 2


def test_a_deploy_with_findings_lists_them_and_keeps_the_draft(app: Flask, owner: FlaskClient) -> None:
    engine = engine_of_app(app)
    broken = FIXTURE.read_bytes().replace(
        b'<spiffworkflow:property name="dueDate" value="working_days(5)" />',
        b'<spiffworkflow:property name="dueDate" value="working_days(5)" />'
        b'<spiffworkflow:property name="formJsonSchemaFilename" value="missing.schema.json" />',
    )
    assert upload(owner, "home_visit.bpmn", broken).status_code == 302

    checked = post(owner, "/processes/home_visit/draft/validate").get_json()
    assert checked["ok"] is False
    [finding] = [f for f in checked["findings"] if "missing.schema.json" in f["message"]]
    assert (finding["element_id"], finding["element_name"]) == ("visit_family", "Visit the family")

    refused = post(owner, "/processes/home_visit/draft/deploy", revision="1")
    assert refused.status_code == 400
    shown = text_of(refused.get_data(as_text=True))
    assert "Problems to fix before deploying" in shown
    assert "visit_family (Visit the family): " in shown and "missing.schema.json" in shown
    assert 'id="editor"' in refused.get_data(as_text=True)  # the editor again, to fix them
    assert drafts.get(engine, "home_visit") is not None
    assert not [d for d in engine.list_processes() if d.key == "home_visit"]

    # Deploying a revision that is no longer the draft's changes nothing.
    assert post(owner, "/processes/home_visit/draft/deploy", revision="7").status_code == 409
    assert post(owner, "/processes/home_visit/draft/discard", revision="1").status_code == 302
    assert drafts.get(engine, "home_visit") is None


BAD_FILES = {
    "garbage": (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not well-formed XML"),
    "xxe": (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL">&x;</definitions>',
        "DOCTYPE and ENTITY declarations are not allowed",
    ),
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<lolz>&lol2;</lolz>",
        "DOCTYPE and ENTITY declarations are not allowed",
    ),
    "not bpmn": (b"<html><body>hello</body></html>", "not a BPMN 2.0 file"),
    "not utf-8": (
        FIXTURE.read_bytes()
        .replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"')
        .replace(b"Visit the family", b"Visit the famil\xe9"),
        "not UTF-8",
    ),
    "empty": (b"", "not well-formed XML"),
    "too large": (b"<x>" + b" " * (5 * 1024 * 1024) + b"</x>", "the limit is"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_file_is_refused_with_the_reason_and_changes_nothing(
    kind: str, app: Flask, owner: FlaskClient
) -> None:
    content, reason = BAD_FILES[kind]
    response = upload(owner, f"{kind}.bpmn", content)
    assert response.status_code == 400, kind
    shown = text_of(response.get_data(as_text=True))
    assert "There is a problem" in shown and reason in shown
    assert "Traceback" not in shown
    assert draft_count(engine_of_app(app)) == 0


def test_a_file_over_the_request_limit_gets_a_page_not_an_error(app: Flask, owner: FlaskClient) -> None:
    response = upload(owner, "huge.bpmn", b"<x>" + b" " * (7 * 1024 * 1024) + b"</x>")
    assert response.status_code == 413
    assert "too large" in text_of(response.get_data(as_text=True))
    assert draft_count(engine_of_app(app)) == 0


def test_upload_without_a_file_says_choose_one(owner: FlaskClient) -> None:
    response = owner.post("/processes/upload", data={"csrf_token": token(owner)})
    assert response.status_code == 400
    assert "Choose a BPMN file to upload" in text_of(response.get_data(as_text=True))


def test_saving_something_that_is_not_bpmn_is_refused(app: Flask, owner: FlaskClient) -> None:
    refused = post(owner, "/processes/referral/draft", xml="<not-closed>", revision="")
    assert refused.status_code == 400
    assert "not well-formed XML" in refused.get_json()["findings"][0]["message"]
    empty = post(owner, "/processes/referral/draft", xml="", revision="")
    assert empty.status_code == 400
    assert draft_count(engine_of_app(app)) == 0


# ----------------------------------------------------------------------------- interchange models


@pytest.fixture(scope="module")
def miwg_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    previous = clock_module.set_clock(FakeClock(datetime(2024, 3, 6, 9, 30, tzinfo=UTC)))
    try:
        built, engine = _app(tmp_path_factory.mktemp("miwg"), demo_cases=False)
        yield built
        engine.db.dispose()
    finally:
        clock_module.set_clock(previous)


@pytest.mark.skipif(not MIWG_FILES, reason=MIWG_MISSING)
@pytest.mark.parametrize("path", MIWG_FILES, ids=[p.name for p in MIWG_FILES])
def test_every_interchange_model_uploads_views_checks_and_deploys_or_says_why(
    path: Path, miwg_app: Flask, fake_clock: FakeClock
) -> None:
    client = client_for(miwg_app, "olive.owner")
    content = path.read_bytes()
    uploaded = upload(client, path.name, content)
    assert uploaded.status_code == 302, text_of(uploaded.get_data(as_text=True))[:500]
    edit_path = uploaded.headers["Location"]
    key = edit_path.split("/")[2]
    assert f"{path.name} is now the draft of {key}" in text_of(page(client, edit_path))
    assert client.get(f"/processes/{key}/draft.bpmn").get_data() == content

    checked = post(client, f"/processes/{key}/draft/validate")
    assert checked.status_code == 200
    findings = checked.get_json()["findings"]
    for finding in findings:
        assert finding["message"].strip(), finding
        assert "Traceback" not in finding["message"]

    deployed = post(client, f"/processes/{key}/draft/deploy", revision=str(checked.get_json()["revision"]))
    assert deployed.status_code < 500
    if findings:
        assert deployed.status_code == 400
        shown = words(deployed.get_data(as_text=True))
        assert "Problems to fix before deploying" in shown
        for finding in findings:
            assert words(finding["message"]) in shown
    else:
        assert deployed.status_code == 302, text_of(deployed.get_data(as_text=True))[:500]
        versions = page(client, deployed.headers["Location"])
        assert "Deployed version" in text_of(versions)


# ----------------------------------------------------------------------------- the engine's drafts


def test_drafts_are_saved_against_their_revision_on_each_database(any_engine: Engine) -> None:
    content = FIXTURE.read_bytes()
    first = drafts.upload(any_engine, "home_visit.bpmn", content, "olive.owner")
    assert (first.key, first.revision) == ("home_visit", 1)
    with pytest.raises(Conflict, match="revision 1"):
        drafts.save(any_engine, "home_visit", content, "home_visit.bpmn", "another.owner", None)
    assert drafts.save(any_engine, "home_visit", content, "home_visit.bpmn", "olive.owner", 1).revision == 2
    with pytest.raises(Conflict, match="revision 2"):
        drafts.deploy(any_engine, "home_visit", 1, "olive.owner")
    with pytest.raises(DefinitionError, match="DOCTYPE"):
        drafts.save(any_engine, "home_visit", b"<!DOCTYPE x><x/>", "home_visit.bpmn", "olive.owner", 2)
    assert drafts.get(any_engine, "home_visit").revision == 2  # type: ignore[union-attr]

    [result] = drafts.deploy(any_engine, "home_visit", 2, "olive.owner")
    assert (result.key, result.version, result.created) == ("home_visit", 1, True)
    assert drafts.get(any_engine, "home_visit") is None
    with pytest.raises(NotFound):
        drafts.deploy(any_engine, "home_visit", 2, "olive.owner")
    assert drafts.check(any_engine, content, "home_visit.bpmn") == []
    assert [d.version for d in any_engine.list_processes() if d.key == "home_visit"] == [1]
