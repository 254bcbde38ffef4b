"""Deploying BPMN: versions, call activities across files, and every kind of bad file refused
with a finding that says where, leaving nothing deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core import Engine
from engine.errors import DefinitionError, ProcessError
from engine.models import ProcessDefinition

from .helpers import (
    audit_count,
    bpmn,
    deploy_triage,
    do_checks,
    instance_row,
    open_task,
    snapshot,
    start_triage,
    task_statuses,
)

BPMN_NS = 'xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"'
TRIAGE = bpmn("triage.bpmn")[1]


def definitions(engine: Engine) -> list[ProcessDefinition]:
    return engine.list_processes()


# ------------------------------------------------------------------------------------------ versions


def test_first_deploy_creates_version_1(engine: Engine) -> None:
    [result] = engine.deploy([bpmn("triage.bpmn")], "olive.owner")

    assert (result.key, result.version, result.created) == ("triage", 1, True)
    [row] = definitions(engine)
    assert (row.key, row.version, row.deployed_by, row.filename) == (
        "triage",
        1,
        "olive.owner",
        "triage.bpmn",
    )


def test_the_same_bytes_again_are_not_a_new_version(engine: Engine) -> None:
    engine.deploy([bpmn("triage.bpmn")], "olive.owner")
    events = audit_count(engine)

    [result] = engine.deploy([bpmn("triage.bpmn")], "olive.owner")

    assert (result.version, result.created) == (1, False)
    assert [(d.key, d.version) for d in definitions(engine)] == [("triage", 1)]
    assert audit_count(engine) == events  # nothing deployed, nothing to record


def test_a_changed_file_is_version_2_and_running_cases_stay_on_version_1(engine: Engine) -> None:
    deploy_triage(engine)
    old = start_triage(engine, "C-OLD")
    changed = TRIAGE.replace(b'name="Record the contact"', b'name="Record the contact and who made it"')

    [result] = engine.deploy([("triage.bpmn", changed)], "olive.owner")
    new = start_triage(engine, "C-NEW")

    assert (result.version, result.created) == (2, True)
    assert [(d.key, d.version) for d in definitions(engine)] == [("triage", 1), ("triage", 2)]
    version_ids = {d.version: d.id for d in definitions(engine)}
    assert instance_row(engine, old.instance_id).definition_id == version_ids[1]
    assert instance_row(engine, new.instance_id).definition_id == version_ids[2]
    assert open_task(engine, "C-NEW", "record_contact").name == "Record the contact and who made it"
    # The old case loops back to the start and still meets version 1's task there.
    engine.complete(open_task(engine, "C-OLD", "record_contact").id, "sam.screener", {})
    do_checks(engine, "C-OLD")
    engine.complete(open_task(engine, "C-OLD", "decide").id, "mo.manager", {"decision": "more_information"})
    assert open_task(engine, "C-OLD", "record_contact").name == "Record the contact"
    assert instance_row(engine, old.instance_id).definition_id == version_ids[1]


def test_rolling_back_to_an_earlier_file_makes_new_cases_run_it(engine: Engine) -> None:
    broken = TRIAGE.replace(b'name="Record the contact"', b'name="Record the contact (broken)"')
    engine.deploy([("triage.bpmn", TRIAGE)], "olive.owner")
    engine.deploy([("triage.bpmn", broken)], "olive.owner")

    engine.deploy([("triage.bpmn", TRIAGE)], "olive.owner")
    start_triage(engine, "C-AFTER-ROLLBACK")

    assert open_task(engine, "C-AFTER-ROLLBACK", "record_contact").name == "Record the contact"


# ----------------------------------------------------------------------------------- call activities


def test_a_parent_whose_child_is_not_deployed_is_refused_naming_the_call(engine: Engine) -> None:
    with pytest.raises(DefinitionError) as caught:
        engine.deploy([bpmn("parent_calls_child.bpmn")], "olive.owner")

    [finding] = caught.value.findings
    assert finding.file == "parent_calls_child.bpmn"
    assert "child_process" in finding.message
    assert definitions(engine) == []


def test_the_missing_call_finding_names_the_call_activity_element(engine: Engine) -> None:
    with pytest.raises(DefinitionError) as caught:
        engine.deploy([bpmn("parent_calls_child.bpmn")], "olive.owner")

    [finding] = caught.value.findings
    assert (finding.element_id, finding.element_name) == ("call_visit", "Home visit")


def test_parent_and_child_deployed_together_run_through_the_call(engine: Engine) -> None:
    results = engine.deploy([bpmn("parent_calls_child.bpmn"), bpmn("child_process.bpmn")], "olive.owner")
    assert sorted((r.key, r.version, r.created) for r in results) == [
        ("child_process", 1, True),
        ("parent_process", 1, True),
    ]

    started = engine.start(
        "parent_process", "tara.team", case_reference="A-1", team_key="assessment", data={"child": "J"}
    )

    visit = open_task(engine, "A-1", "visit_child")
    assert (visit.role_key, visit.team_key, visit.form_key) == (
        "social_worker",
        "assessment",
        "home-visit.schema.json",
    )
    assert visit.instance_id == started.instance_id
    engine.complete(visit.id, "sara.social", {"seen_alone": True})

    sign_off = open_task(engine, "A-1", "sign_off")
    assert (sign_off.role_key, sign_off.team_key) == ("team_manager", "assessment")
    assert instance_row(engine, started.instance_id).status == "running"
    engine.complete(sign_off.id, "tara.team", {"signed_off": True})

    assert instance_row(engine, started.instance_id).status == "completed"
    assert engine.tasks(case_reference="A-1") == []
    data = engine.instance_data(started.instance_id)
    assert (data["child"], data["seen_alone"], data["signed_off"]) == ("J", True, True)


def test_a_parent_may_call_a_child_deployed_earlier(engine: Engine) -> None:
    engine.deploy([bpmn("child_process.bpmn")], "olive.owner")
    [result] = engine.deploy([bpmn("parent_calls_child.bpmn")], "olive.owner")
    assert (result.key, result.version) == ("parent_process", 1)

    engine.start("parent_process", "tara.team", case_reference="A-2", team_key="assessment")
    assert open_task(engine, "A-2", "visit_child").name == "Visit the child at home"


def test_a_new_child_version_reaches_new_cases_only(engine: Engine) -> None:
    engine.deploy([bpmn("parent_calls_child.bpmn"), bpmn("child_process.bpmn")], "olive.owner")
    old = engine.start("parent_process", "tara.team", case_reference="A-OLD", team_key="assessment")
    name, content = bpmn("child_process.bpmn")
    changed = content.replace(b'name="Visit the child at home"', b'name="Visit the child at home (v2)"')

    [result] = engine.deploy([(name, changed)], "olive.owner")
    new = engine.start("parent_process", "tara.team", case_reference="A-NEW", team_key="assessment")

    assert (result.key, result.version) == ("child_process", 2)
    assert open_task(engine, "A-NEW", "visit_child").name == "Visit the child at home (v2)"
    assert open_task(engine, "A-OLD", "visit_child").name == "Visit the child at home"
    # The old case still finishes on the versions it started with.
    engine.complete(open_task(engine, "A-OLD", "visit_child").id, "sara.social", {})
    engine.complete(open_task(engine, "A-OLD", "sign_off").id, "tara.team", {})
    assert instance_row(engine, old.instance_id).status == "completed"
    assert instance_row(engine, new.instance_id).status == "running"


# --------------------------------------------------------------------------------------- bad input


def _minimal(process_id: str, body: str, doctype: str = "", encoding: str = "UTF-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n{doctype}'
        f'<bpmn:definitions {BPMN_NS} id="Definitions_{process_id}" targetNamespace="http://example.org">'
        f'<bpmn:process id="{process_id}" isExecutable="true">{body}</bpmn:process></bpmn:definitions>\n'
    )


def _rename(content: bytes, key: str) -> bytes:
    return content.replace(b'id="triage"', f'id="{key}"'.encode()).replace(
        b'processRef="triage"', f'processRef="{key}"'.encode()
    )


LAUGHS = "".join(
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' if i else '<!ENTITY lol0 "lol">' for i in range(10)
)
BILLION_LAUGHS = _minimal(
    "laughs",
    '<bpmn:startEvent id="s" name="&lol9;"/>',
    doctype=f"<!DOCTYPE bpmn:definitions [{LAUGHS}]>\n",
).encode()
XXE_BODY = (
    '<bpmn:startEvent id="s"><bpmn:outgoing>f</bpmn:outgoing></bpmn:startEvent>'
    '<bpmn:userTask id="leak" name="&xxe;"><bpmn:incoming>f</bpmn:incoming></bpmn:userTask>'
    '<bpmn:sequenceFlow id="f" sourceRef="s" targetRef="leak"/>'
)
XXE_DOCTYPE = '<!DOCTYPE bpmn:definitions [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
XXE = _minimal("xxe", XXE_BODY, doctype=XXE_DOCTYPE).encode()
XXE_UTF16 = _minimal("xxe16", XXE_BODY, doctype=XXE_DOCTYPE, encoding="UTF-16").encode("utf-16")
XXE_PARAMETER = _minimal(
    "xxe_param",
    XXE_BODY.replace("&xxe;", "x"),
    doctype='<!DOCTYPE bpmn:definitions [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>\n',
).encode()
XINCLUDE = _minimal(
    "xinclude",
    '<bpmn:startEvent id="s"><bpmn:extensionElements>'
    '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
    "</bpmn:extensionElements></bpmn:startEvent>",
).encode()
NO_START_EVENT = _minimal(
    "no_start",
    '<bpmn:userTask id="lonely" name="Lonely task"><bpmn:outgoing>f</bpmn:outgoing></bpmn:userTask>'
    '<bpmn:endEvent id="e"><bpmn:incoming>f</bpmn:incoming></bpmn:endEvent>'
    '<bpmn:sequenceFlow id="f" sourceRef="lonely" targetRef="e"/>',
).encode()
TOO_BIG = TRIAGE + b"<!-- " + b"x" * (5 * 1024 * 1024) + b" -->\n"

# (file name, content, words the finding's message must contain, element ids any of which it may name)
BAD_FILES: dict[str, tuple[str, bytes, tuple[str, ...], set[str | None]]] = {
    "malformed XML": (
        "broken.bpmn",
        TRIAGE.replace(b"</bpmn:process>", b"</bpmn:proces>"),
        ("well-formed",),
        {None},
    ),
    "not BPMN": (
        "note.xml",
        b'<?xml version="1.0"?><note><to>Ann</to><body>Not a diagram</body></note>',
        ("not a BPMN",),
        {None},
    ),
    "billion laughs": ("laughs.bpmn", BILLION_LAUGHS, ("DOCTYPE",), {None}),
    "external entity": ("xxe.bpmn", XXE, ("DOCTYPE",), {None}),
    "external entity, UTF-16": ("xxe16.bpmn", XXE_UTF16, (), {None}),
    "external parameter entity": ("xxe_param.bpmn", XXE_PARAMETER, ("DOCTYPE",), {None}),
    "over 5 MiB": ("huge.bpmn", TOO_BIG, ("limit",), {None}),
    "condition syntax error": (
        "syntax.bpmn",
        _rename(TRIAGE.replace(b"decision == 'refer'", b"decision == = 'refer'"), "triage_syntax"),
        ("decision == = 'refer'", "syntax"),
        {"which_response", "f_refer"},
    ),
    "no start event": ("no_start.bpmn", NO_START_EVENT, ("start event",), {"no_start", "lonely"}),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_bad_file_is_refused_with_a_finding_and_nothing_is_deployed(engine: Engine, case: str) -> None:
    filename, content, words, elements = BAD_FILES[case]

    with pytest.raises(DefinitionError) as caught:
        engine.deploy([(filename, content)], "olive.owner")

    findings = caught.value.findings
    assert findings, "a DefinitionError must say what is wrong"
    assert all(f.file == filename for f in findings), findings
    assert any(all(w.lower() in f.message.lower() for w in words) for f in findings), findings
    assert any(f.element_id in elements for f in findings), findings
    assert filename in str(caught.value)
    assert definitions(engine) == []
    assert audit_count(engine) == 0


def test_a_good_file_deployed_with_a_bad_one_is_not_deployed_either(engine: Engine) -> None:
    with pytest.raises(DefinitionError) as caught:
        engine.deploy([bpmn("triage.bpmn"), ("note.xml", b"<note/>")], "olive.owner")

    assert [f.file for f in caught.value.findings] == ["note.xml"]
    assert definitions(engine) == []


def _passwd_lines() -> list[str]:
    lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]
    assert lines, "the XXE tests need a non-empty /etc/passwd to look for"
    return lines


@pytest.mark.parametrize(
    "filename, content",
    [
        ("xxe.bpmn", XXE),
        ("xxe16.bpmn", XXE_UTF16),
        ("xxe_param.bpmn", XXE_PARAMETER),
        ("xinclude.bpmn", XINCLUDE),
    ],
    ids=["entity", "utf16", "parameter-entity", "xinclude"],
)
def test_an_external_file_never_gets_into_the_engine(
    engine: Engine, sqlite_url: str, filename: str, content: bytes
) -> None:
    seen: list[str] = []
    try:
        results = engine.deploy([(filename, content)], "olive.owner")
        seen.append(repr(results))
    except DefinitionError as exc:
        seen.append(str(exc))
        seen.extend(repr(f) for f in exc.findings)
    seen.append(repr(snapshot(engine)))
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))

    for line in _passwd_lines():
        assert all(line not in text for text in seen), f"{line!r} leaked"
        assert line.encode() not in raw, f"{line!r} was written to the database"
    if filename != "xinclude.bpmn":
        assert definitions(engine) == []


def test_a_condition_the_restricted_evaluator_refuses_is_not_deployed(engine: Engine) -> None:
    content = _rename(TRIAGE.replace(b"decision == 'refer'", b"decision.__class__ == 'refer'"), "dunder")

    with pytest.raises(DefinitionError) as caught:
        engine.deploy([("dunder.bpmn", content)], "olive.owner")

    assert any(f.element_id in {"which_response", "f_refer"} for f in caught.value.findings)
    assert definitions(engine) == []


# ------------------------------------------------------------------------------ failing at run time


def _reach_the_failing_gateway(engine: Engine, content: bytes | None = None) -> tuple[int, str]:
    """Deploy the diagram whose gateway fails at run time; return (instance id, task before it)."""
    name, shipped = bpmn("condition_fails_at_run_time.bpmn")
    engine.deploy([(name, content or shipped)], "olive.owner")
    started = engine.start("runtime_condition", "sam.screener", case_reference="R-1", team_key="mash")
    return started.instance_id, open_task(engine, "R-1", "rc_record").id


def test_a_condition_failing_at_run_time_names_the_element_and_changes_nothing(engine: Engine) -> None:
    instance_id, task_id = _reach_the_failing_gateway(engine)
    engine.claim(task_id, "sam.screener")
    before = snapshot(engine)
    revision = instance_row(engine, instance_id).revision
    statuses = task_statuses(engine, instance_id)
    events = audit_count(engine)

    with pytest.raises(ProcessError) as caught:
        engine.complete(task_id, "sam.screener", {"contact_note": "a neighbour called"})

    assert caught.value.element_id == "rc_route"
    assert "rc_route" in str(caught.value)
    assert "Urgent?" in str(caught.value)
    assert "urgency_rating" in str(caught.value)
    assert instance_row(engine, instance_id).revision == revision
    assert task_statuses(engine, instance_id) == statuses
    assert audit_count(engine) == events
    assert snapshot(engine) == before
    # The task is still there; with the data the condition needs it goes through.
    engine.complete(task_id, "sam.screener", {"urgency_rating": "red"})
    assert instance_row(engine, instance_id).status == "completed"


def test_a_condition_failing_at_run_time_says_why(engine: Engine) -> None:
    content = bpmn("condition_fails_at_run_time.bpmn")[1].replace(
        b"urgency_rating == 'red'", b"int(referral_count) == 3"
    )
    _, task_id = _reach_the_failing_gateway(engine, content)

    with pytest.raises(ProcessError) as caught:
        engine.complete(task_id, "sam.screener", {"referral_count": "three"})

    assert "invalid literal" in str(caught.value)


def test_a_task_naming_a_form_that_does_not_exist_is_not_deployed(engine: Engine) -> None:
    missing = TRIAGE.replace(b"triage-decide.schema.json", b"no-such-form.schema.json")
    content = _rename(missing, "missing_form")

    with pytest.raises(DefinitionError) as caught:
        engine.deploy([("missing_form.bpmn", content)], "olive.owner")

    assert any(f.element_id == "decide" for f in caught.value.findings), caught.value.findings
    assert definitions(engine) == []
