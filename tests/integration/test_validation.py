"""Validating diagrams: the three stages, the council's rules, deploy and `frontdoor validate`.

Each broken diagram here is a shipped one with one realistic change, so a finding shows the
check works on the real processes, not on a toy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import cli
from engine.core import Engine
from engine.errors import DefinitionError, ProcessError
from engine.registry import Registry, default_processes_dir
from engine.validation import ValidationContext, format_finding, validate, validate_files

from .helpers import FIXTURES, open_task, snapshot

PROCESSES = Path(__file__).resolve().parents[2] / "processes"


@pytest.fixture
def context() -> ValidationContext:
    return ValidationContext.from_registry(Registry())


def shipped(name: str) -> str:
    return (PROCESSES / name).read_text(encoding="utf-8")


def changed(name: str, old: str, new: str, count: int = 1) -> bytes:
    text = shipped(name)
    assert text.count(old) == count, f"{name} no longer holds {old!r}: update this test"
    return text.replace(old, new).encode("utf-8")


def ids(findings: list) -> list[str | None]:
    return [f.element_id for f in findings]


# ------------------------------------------------------------------------------ what ships is clean


def test_every_shipped_process_validates_clean_together(context: ValidationContext) -> None:
    files = [(p.name, p.read_bytes()) for p in sorted(PROCESSES.glob("*.bpmn"))]
    assert files
    assert [format_finding(f) for f in validate_files(files, context)] == []


@pytest.mark.parametrize("path", sorted((PROCESSES / "variants").glob("*.bpmn")), ids=lambda p: p.name)
def test_every_variant_validates_clean(context: ValidationContext, path: Path) -> None:
    assert [format_finding(f) for f in validate(path.read_bytes(), path.name, context)] == []


# ------------------------------------------------------------------------------ stage 1


def test_an_unreadable_file_stops_at_stage_one(context: ValidationContext) -> None:
    content = changed("section47.bpmn", "</bpmn:definitions>", "</bpmn:definition>")
    [finding] = validate(content, "section47.bpmn", context)
    assert "not well-formed XML" in finding.message and finding.line


def test_a_non_executable_process_is_named_with_how_to_fix_it(context: ValidationContext) -> None:
    content = changed("supervision.bpmn", 'isExecutable="true"', 'isExecutable="false"')
    [finding] = validate(content, "supervision.bpmn", context)
    assert finding.element_id == "supervision"
    assert 'set isExecutable="true"' in finding.message


def test_a_bad_file_beside_a_good_one_does_not_hide_the_good_ones_findings(
    context: ValidationContext,
) -> None:
    lane = changed("section47.bpmn", 'name="Social worker"', 'name="Social workers"')
    findings = validate_files([("bad.bpmn", b"\x00\xff garbage"), ("section47.bpmn", lane)], context)
    assert {f.file for f in findings} == {"bad.bpmn", "section47.bpmn"}


# ------------------------------------------------------------------------------ stage 2


def test_a_user_task_whose_lane_is_not_a_role_is_refused(context: ValidationContext) -> None:
    content = changed("section47.bpmn", 'name="Social worker"', 'name="Social workers"')
    findings = validate(content, "section47.bpmn", context)
    assert ids(findings) == ["core_assessment"]
    assert "lane 'Social workers' is not a role" in findings[0].message
    assert "Social worker" in findings[0].message  # the roles it could be


def test_a_form_that_is_not_there_is_named(context: ValidationContext) -> None:
    content = changed(
        "section47.bpmn", 'value="core-assessment.schema.json"', 'value="core-assesment.schema.json"'
    )
    [finding] = validate(content, "section47.bpmn", context)
    assert finding.element_id == "core_assessment"
    assert "core-assesment.schema.json" in finding.message and "processes/forms/" in finding.message


@pytest.mark.parametrize(
    "old, new, element, words",
    [
        (
            "<bpmn:timeDate>working_days(4)</bpmn:timeDate>",
            "<bpmn:timeDate>().__class__.__base__.__subclasses__()</bpmn:timeDate>",
            "authorise_core_assessment_late",
            "timer expression",
        ),
        (
            '<spiffworkflow:property name="dueDate" value="working_days(2)" />',
            '<spiffworkflow:property name="dueDate" value="open(\'x\').read().__len__()" />',
            "authorise_core_assessment",
            "property dueDate",
        ),
        ("<bpmn:conditionExpression>icpc_required</bpmn:conditionExpression>",
         "<bpmn:conditionExpression>__import__('os')</bpmn:conditionExpression>",
         "conference_needed_gw",
         "condition"),
        ("core_assessment_done = True\n", "while True:\n    core_assessment_done = True\n",
         "note_core_assessment_authorised", "while loops are not allowed"),
    ],
    ids=["timer", "property", "condition", "script"],
)  # fmt: skip
def test_what_the_evaluator_would_refuse_is_refused_at_validation(
    context: ValidationContext, old: str, new: str, element: str, words: str
) -> None:
    content = changed("section47.bpmn", old, new)
    findings = validate(content, "section47.bpmn", context)
    assert ids(findings) == [element], [format_finding(f) for f in findings]
    assert words in findings[0].message


def test_an_escalation_level_must_be_one_two_or_three(context: ValidationContext) -> None:
    content = changed(
        "section47.bpmn", '<spiffworkflow:property name="escalationLevel" value="3" />',
        '<spiffworkflow:property name="escalationLevel" value="4" />', count=3,
    )  # fmt: skip
    findings = validate(content, "section47.bpmn", context)
    assert findings and all("must be 1, 2 or 3" in f.message for f in findings)


SERVICE_TASK = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="x">
  <bpmn:process id="lookup" name="Look someone up" isExecutable="true">
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="ask_directory" name="Ask the directory">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="staff_directory" resultVariable="person">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="username" type="str" value="PARAM" />
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:endEvent id="e"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="ask_directory" />
    <bpmn:sequenceFlow id="f2" sourceRef="ask_directory" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_service_task_must_name_an_adapter_the_engine_has(context: ValidationContext) -> None:
    content = SERVICE_TASK.replace(b"PARAM", b"'sara.social'")
    [finding] = validate(content, "lookup.bpmn", context)
    assert finding.element_id == "ask_directory"
    assert "'staff_directory', which Frontdoor does not have" in finding.message

    registry = Registry()
    registry.register_service_task("staff_directory", lambda username: {"username": username})
    assert validate(content, "lookup.bpmn", ValidationContext.from_registry(registry)) == []

    escaping = SERVICE_TASK.replace(b"PARAM", b"().__class__")
    [finding] = validate(escaping, "lookup.bpmn", ValidationContext.from_registry(registry))
    assert "parameter username" in finding.message


# ------------------------------------------------------------------------------ stage 3: the rules


START_ASSESSMENT = (
    '<spiffworkflow:property name="clock.start.core_assessment" value="core_assessment_target_at" />'
)
ASSESSMENT_FORM = (
    '<spiffworkflow:property name="formJsonSchemaFilename" value="core-assessment.schema.json" />'
)


def test_an_enquiry_that_starts_without_its_assessment_is_refused(context: ValidationContext) -> None:
    text = shipped("section47.bpmn")
    assert text.count(START_ASSESSMENT) == 1
    text = text.replace(START_ASSESSMENT, "")
    findings = validate(text.encode(), "section47.bpmn", context)
    assert ids(findings) == ["begin_enquiry_and_assessment"]
    assert findings[0].message.startswith("Starting a section 47 enquiry starts the assessment:")
    assert "'Enquiry and core assessment ended'" in findings[0].message  # where the process can end


def test_starting_the_assessment_on_a_parallel_branch_still_counts(context: ValidationContext) -> None:
    """The assessment's clock on the assessment task itself, opened beside the enquiry by the split."""
    text = shipped("section47.bpmn").replace(START_ASSESSMENT, "")
    assert text.count(ASSESSMENT_FORM) == 1
    text = text.replace(ASSESSMENT_FORM, ASSESSMENT_FORM + START_ASSESSMENT)
    assert validate(text.encode(), "section47.bpmn", context) == []


def test_closing_a_case_without_the_family_letter_is_refused(context: ValidationContext) -> None:
    content = changed(
        "referral.bpmn",
        '<spiffworkflow:property name="record.family_letter_sent_date" value="today()" />',
        "",
    )
    findings = validate(content, "referral.bpmn", context)
    assert ids(findings) == ["case_closed"]
    assert "the outcome letter to the family" in findings[0].message
    assert "closesWithoutLetters" in findings[0].message  # the explicit way out, named


def test_a_shortcut_past_both_letters_is_refused(context: ValidationContext) -> None:
    # "Tell the outcome in writing" now goes straight on to "Does the case close?".
    content = changed(
        "referral.bpmn",
        'sourceRef="letters_merge" targetRef="split_outcome_letters"',
        'sourceRef="letters_merge" targetRef="plan_or_close_gw"',
    )
    findings = validate(content, "referral.bpmn", context)
    assert ids(findings) == ["case_closed", "case_closed"]
    assert "the outcome letter to the family" in findings[0].message
    assert "the outcome letter to the referrer" in findings[1].message
    assert "'Tell the outcome in writing' -> 'Does the case close?'" in findings[0].message


def test_a_user_task_with_no_deadline_must_say_so(context: ValidationContext) -> None:
    content = changed("case_transfer.bpmn", 'name="noDeadline"', 'name="noDeadlineReason"', count=2)
    findings = validate(content, "case_transfer.bpmn", context)
    assert sorted(ids(findings)) == ["agree_sibling_separation", "respond_to_declined_transfer"]
    assert all("has no deadline" in f.message for f in findings)


def test_the_conference_clock_and_timer_must_be_15_working_days(context: ValidationContext) -> None:
    content = changed("section47.bpmn", "icpc_days = 15", "icpc_days = 10")
    findings = validate(content, "section47.bpmn", context)
    assert sorted(ids(findings)) == ["begin_enquiry_and_assessment", "lead_section47_very_late"]
    for finding in findings:
        assert "working_days(10, since=strategy_discussion_date)" in finding.message
        assert "not working_days(15, since=strategy_discussion_date)" in finding.message


def test_removing_the_conference_timer_mark_does_not_dodge_the_rule(context: ValidationContext) -> None:
    content = changed(
        "section47.bpmn", '<spiffworkflow:property name="statutoryDeadline" value="icpc" />', ""
    )
    [finding] = validate(content, "section47.bpmn", context)
    assert finding.element_id == "begin_enquiry_and_assessment"
    assert "conference timer" in finding.message


def test_a_malformed_rules_file_is_reported_as_such(tmp_path: Path) -> None:
    copy = tmp_path / "processes"
    shutil.copytree(default_processes_dir(), copy)
    rules = json.loads((copy / "rules.json").read_text())
    rules["rules"][0]["kind"] = "every_path_eventually"
    (copy / "rules.json").write_text(json.dumps(rules))
    with pytest.raises(ValueError, match=r"rules\.json: rule 'section47-starts-assessment'"):
        ValidationContext.from_registry(Registry(copy))


# ------------------------------------------------------------------------------ deploy


def test_deploy_refuses_with_the_same_findings_and_deploys_nothing(
    engine: Engine, context: ValidationContext
) -> None:
    content = changed("section47.bpmn", "icpc_days = 15", "icpc_days = 10")
    before = snapshot(engine)
    with pytest.raises(DefinitionError) as caught:
        engine.deploy([("section47.bpmn", content)], "olive.owner")
    assert caught.value.findings == validate(content, "section47.bpmn", context)
    assert snapshot(engine) == before


def test_a_script_that_runs_too_long_is_stopped_and_the_case_is_left_as_it_was(engine: Engine) -> None:
    path = FIXTURES / "script_runs_long.bpmn"
    engine.deploy([(path.name, path.read_bytes())], "olive.owner")
    engine.start("runs_long", "sam.screener", case_reference="C-1", team_key="mash")
    ask = open_task(engine, "C-1", "rl_ask")
    before = snapshot(engine)

    with pytest.raises(ProcessError) as caught:
        engine.complete(ask.id, "sam.screener", {"size": 1000})

    assert caught.value.element_id == "rl_count"
    assert "steps and was stopped" in str(caught.value)
    assert snapshot(engine) == before
    engine.complete(ask.id, "sam.screener", {"size": 3})
    open_task(engine, "C-1", "rl_look")


# ------------------------------------------------------------------------------ frontdoor validate

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
  <bpmn:process id="p" isExecutable="true"><bpmn:documentation>&xxe;</bpmn:documentation></bpmn:process>
</bpmn:definitions>
"""


def frontdoor_validate(*paths: Path | str) -> Result:
    result = CliRunner().invoke(cli, ["validate", *map(str, paths)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_validate_exits_0_for_files_that_can_be_deployed() -> None:
    files = sorted(PROCESSES.glob("*.bpmn"))
    result = frontdoor_validate(*files)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"{path}: ok" for path in files]


def test_validate_prints_each_finding_as_file_element_name_message(tmp_path: Path) -> None:
    broken = tmp_path / "section47.bpmn"
    broken.write_bytes(changed("section47.bpmn", "icpc_days = 15", "icpc_days = 10"))
    result = frontdoor_validate(broken)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        f"{broken}: begin_enquiry_and_assessment (Start the enquiry and the core assessment together): "
        "The initial child protection conference is due 15 working days after the strategy discussion: "
    )
    assert lines[1].startswith(f"{broken}: lead_section47_very_late (Conference deadline reached): ")


def test_validate_never_tracebacks_on_garbage_an_xxe_file_a_missing_file_or_a_folder(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bpmn"
    garbage.write_bytes(bytes(range(256)) * 4)
    xxe = tmp_path / "xxe.bpmn"
    xxe.write_bytes(XXE)
    empty = tmp_path / "empty.bpmn"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.bpmn"

    result = frontdoor_validate(garbage, xxe, empty, missing, tmp_path)

    assert result.exit_code == 1
    output = result.output
    assert f"{garbage}: -: not well-formed XML" in output
    assert f"{xxe}: -: DOCTYPE and ENTITY declarations are not allowed" in output
    assert f"{empty}: -: " in output
    assert f"{missing}: -: cannot read the file (there is no such file)" in output
    assert f"{tmp_path}: -: cannot read the file" in output
    assert "root:" not in output  # nothing of /etc/passwd


def test_validate_says_when_the_rules_file_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "processes"
    shutil.copytree(default_processes_dir(), copy)
    (copy / "rules.json").write_text("{ not json")
    monkeypatch.setenv("FRONTDOOR_PROCESSES_DIR", str(copy))
    result = frontdoor_validate(PROCESSES / "section47.bpmn")
    assert result.exit_code == 1
    assert "rules.json: not valid JSON" in result.output


def test_a_service_task_runs_the_adapter_registered_under_its_name(engine: Engine) -> None:
    content = SERVICE_TASK.replace(b"PARAM", b"asked_for")
    with pytest.raises(DefinitionError, match="staff_directory"):
        engine.deploy([("lookup.bpmn", content)], "olive.owner")

    calls: list[str] = []

    def staff_directory(username: str) -> dict[str, str]:
        calls.append(username)
        return {"username": username, "team": "mash"}

    engine.registry.register_service_task("staff_directory", staff_directory)
    engine.deploy([("lookup.bpmn", content)], "olive.owner")
    result = engine.start("lookup", "sam.screener", data={"asked_for": "sara.social"})

    assert calls == ["sara.social"]
    assert result.open_tasks == []


def test_whatever_the_bytes_validation_answers_with_findings(context: ValidationContext) -> None:
    whole = (PROCESSES / "section47.bpmn").read_bytes()
    samples = [whole[:cut] for cut in range(0, len(whole), max(len(whole) // 60, 1))]
    samples += [
        b"\xef\xbb\xbf" + whole,  # a byte-order mark is fine
        whole.decode().encode("utf-16"),
        b"<a>" * 5000 + b"</a>" * 5000,  # nesting deeper than the parser allows
        whole.replace(b"icpc_days = 15", b"icpc_days = " + b"(" * 5000 + b"15" + b")" * 5000),
        whole.replace(b'isExecutable="true"', b""),
    ]
    for sample in samples:
        findings = validate(sample, "sample.bpmn", context)
        assert all(f.message and "could not be checked" not in f.message for f in findings), findings
    assert validate(b"\xef\xbb\xbf" + whole, "bom.bpmn", context) == []
    assert validate(whole.replace(b'isExecutable="true"', b""), "default.bpmn", context) == []
