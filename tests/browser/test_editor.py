"""The process owner changes a process in the diagram editor, in a real browser.

Olive (the process owner) opens the editor on a small deployed process, adds a user task on its
only path, saves, checks (a problem appears in the list and on the diagram), fixes it, deploys;
a case started afterwards runs the new version while the case started before stays on the old
one.  The diagram pages pass axe.  The editor keeps SpiffWorkflow's extension elements on save,
and every model of the BPMN interchange test suite opens in the viewer and the editor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engine import drafts
from engine.models import ProcessDefinition, ProcessInstance
from tests.browser.conftest import LiveServer, axe_violations, sign_in

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "process_owner" / "home_visit.bpmn"
# The BPMN Model Interchange reference models, beside the project (as tests/integration/test_miwg_corpus.py).
MIWG = Path(
    os.environ.get("FRONTDOOR_MIWG_CORPUS", Path(__file__).resolve().parents[1] / "fixtures" / "miwg")
)
MIWG_FILES = sorted(MIWG.glob("*.bpmn")) if MIWG.is_dir() else []
MIWG_MISSING = f"the MIWG corpus is not at {MIWG} (set FRONTDOOR_MIWG_CORPUS to its folder)"


@pytest.fixture(autouse=True)
def _fail_fast(page: Any) -> None:
    page.set_default_timeout(10_000)


@pytest.fixture(autouse=True)
def _csp_violations(page: Any) -> Any:
    """Record what the Content-Security-Policy refuses (added through DevTools, before any script)."""
    page.add_init_script(
        "window.fdRefused = [];"
        "document.addEventListener('securitypolicyviolation', (e) => window.fdRefused.push("
        "{directive: e.violatedDirective, source: e.sourceFile || '', sample: e.sample || ''}));"
    )


def _refused_by_csp(page: Any) -> list[dict[str, str]]:
    """What the page's CSP refused, leaving out htmx's own indicator style (every page has it)."""
    refused: list[dict[str, str]] = page.evaluate("window.fdRefused || []")
    return [r for r in refused if not r["source"].endswith("htmx.min.js")]


def _owner(page: Any) -> None:
    sign_in(page, "olive.owner")
    expect(page.get_by_role("link", name="Processes")).to_be_visible()


def _diagram_ready(page: Any, selector: str = ".fd-diagram") -> None:
    expect(page.locator(selector)).to_have_attribute("data-diagram-ready", "true")


def _version_of(live: LiveServer, reference: str) -> int:
    """The version of home_visit the case's instance runs."""
    case_id = live.engine.get_case(reference).id
    with live.engine.db.read() as session:
        version = session.scalar(
            sa.select(ProcessDefinition.version)
            .join(ProcessInstance, ProcessInstance.definition_id == ProcessDefinition.id)
            .where(ProcessDefinition.key == "home_visit", ProcessInstance.case_id == case_id)
        )
    assert version is not None
    return int(version)


def _no_serious_axe(page: Any, what: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"{what}: " + "; ".join(f"{v['id']}: {v['help']}" for v in violations)


def test_add_a_task_check_fix_and_deploy_while_older_cases_stay(page: Any, live: LiveServer) -> None:
    engine = live.engine
    engine.deploy([(FIXTURE.name, FIXTURE.read_bytes())], "olive.owner")
    engine.start("home_visit", "sara.social", case_reference="HV-OLD", team_key="assessment")

    _owner(page)
    page.get_by_role("link", name="Processes").click()
    page.get_by_role("link", name="Home visit").click()
    expect(page.get_by_role("heading", name="Home visit")).to_be_visible()
    _no_serious_axe(page, "process page")
    page.get_by_role("link", name="Version 1").click()
    _diagram_ready(page)
    expect(page.locator('[data-element-id="visit_family"]')).to_be_visible()
    _no_serious_axe(page, "version page")
    assert _refused_by_csp(page) == []
    page.go_back()
    page.get_by_role("button", name="Edit this process").click()
    _diagram_ready(page, "#editor")

    # Add a task on the path from 'Visit the family' to the end, and make it a user task.
    page.locator('.djs-palette [data-action="create.task"]').click()
    flow = page.locator('.djs-connection[data-element-id="flow_to_done"]').bounding_box()
    assert flow is not None
    page.mouse.move(flow["x"] + flow["width"] / 2, flow["y"] + flow["height"] / 2)
    page.mouse.click(flow["x"] + flow["width"] / 2, flow["y"] + flow["height"] / 2)
    page.locator('.djs-context-pad [data-action="replace"]').click()
    page.locator('.djs-popup [data-id="replace-with-user-task"]').click()
    panel = page.locator("#element-panel")
    expect(panel).to_contain_text("User Task")
    new_id = panel.locator("[data-element-what]").inner_text().split()[-1]
    panel.get_by_label("Name", exact=True).fill("Write up the visit")
    added = (("dueDate", "working_days(2)"), ("formJsonSchemaFilename", "visit-notes.schema.json"))
    for name, value in added:
        panel.get_by_role("button", name="Add a property").click()
        panel.locator(".fd-property input[data-part=name]").last.fill(name)
        panel.locator(".fd-property input[data-part=value]").last.fill(value)
    panel.get_by_role("button", name="Apply to the element").click()

    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#editor-status")).to_contain_text("Saved as revision 1")

    page.get_by_role("button", name="Check for problems").click()
    findings = page.locator("#findings")
    expect(findings.get_by_role("heading", name="Problems to fix before deploying")).to_be_visible()
    problem = findings.locator(f'li[data-element-id="{new_id}"]')
    expect(problem).to_contain_text("Write up the visit")
    expect(problem).to_contain_text("visit-notes.schema.json")
    expect(page.locator(".fd-overlay--finding")).to_contain_text("visit-notes.schema.json")
    _no_serious_axe(page, "editor with findings")
    assert _refused_by_csp(page) == []

    # Fix it: the form the task names must exist.
    problem.get_by_role("button", name="Show on the diagram").click()
    expect(panel.get_by_label("Name", exact=True)).to_have_value("Write up the visit")
    panel.locator(".fd-property input[data-part=value]").last.fill("handover-visit.schema.json")
    panel.get_by_role("button", name="Apply to the element").click()
    page.get_by_role("button", name="Check for problems").click()
    expect(findings.get_by_role("heading", name="No problems found")).to_be_visible()
    expect(page.locator("#editor-status")).to_contain_text("Checked: no problems")
    expect(page.locator(".fd-overlay--finding")).to_have_count(0)

    page.get_by_role("button", name="Deploy as a new version").click()
    banner = page.locator(".govuk-notification-banner--success")
    expect(banner).to_contain_text("Deployed version 2 of home_visit")
    versions = page.get_by_role("table", name="Versions")
    expect(versions.locator("tbody tr").first).to_contain_text("Version 2")
    expect(versions.locator("tbody tr").nth(1)).to_contain_text("Version 1")
    expect(versions.locator("tbody tr").nth(1).locator("td").last).to_have_text("1")
    assert drafts.get(engine, "home_visit") is None  # deploying used the draft up

    # A case started now runs version 2; the case started before stays on version 1.
    engine.start("home_visit", "sara.social", case_reference="HV-NEW", team_key="assessment")
    assert (_version_of(live, "HV-OLD"), _version_of(live, "HV-NEW")) == (1, 2)
    for reference in ("HV-OLD", "HV-NEW"):
        [visit] = engine.tasks(case_reference=reference)
        engine.claim(visit.id, "sara.social")
        engine.complete(visit.id, "sara.social", {})
    assert [t.name for t in engine.tasks(case_reference="HV-OLD")] == []
    assert [t.name for t in engine.tasks(case_reference="HV-NEW")] == ["Write up the visit"]
    page.reload()
    expect(versions.locator("tbody tr").first.locator("td").last).to_have_text("1")


def test_saving_keeps_spiffworkflow_extension_elements(page: Any, live: LiveServer) -> None:
    _owner(page)
    page.goto("/processes/case_file_audit/edit")
    _diagram_ready(page, "#editor")
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#editor-status")).to_contain_text("Saved as revision 1")
    draft = drafts.get(live.engine, "case_file_audit")
    assert draft is not None
    [deployed] = [d for d in live.engine.list_processes() if d.key == "case_file_audit"]

    def spiff(xml: str) -> list[str]:
        found = re.findall(r"<spiffworkflow:\w+(?:\s+name=\"[^\"]*\")?|spiffworkflow:\w+=\"[^\"]*\"", xml)
        return sorted(found)

    assert spiff(draft.bpmn_xml) == spiff(deployed.bpmn_xml)
    assert "closed_cases_sample(days=31, share=0.1, minimum=1)" in draft.bpmn_xml


@pytest.mark.skipif(not MIWG_FILES, reason=MIWG_MISSING)
def test_every_interchange_model_opens_in_the_viewer_and_the_editor(page: Any, live: LiveServer) -> None:
    _owner(page)
    for path in MIWG_FILES:
        page.goto("/processes")
        page.get_by_label("BPMN file").set_input_files(str(path))
        page.get_by_role("button", name="Upload").click()
        expect(page.locator(".govuk-notification-banner--success")).to_contain_text(path.name)
        _diagram_ready(page, "#editor")
        assert page.locator(".djs-element").count() > 1, path.name
        page.get_by_role("button", name="Check for problems").click()
        expect(page.locator("#findings")).to_be_visible()
