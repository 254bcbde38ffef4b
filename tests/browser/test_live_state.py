"""A case's diagram and a process heatmap, drawn by bpmn-js in a real browser (web/process_views.py,
web/static/js/state_diagram.js): the steps are marked, waiting timers show when they are due, the
page breaks no Content-Security-Policy rule and passes axe."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, axe_violations, sign_in


@pytest.fixture(autouse=True)
def _fail_fast(page: Any) -> None:
    page.set_default_timeout(10_000)


def _watch_csp(page: Any, path: str) -> list[str]:
    """What the browser refuses under the Content-Security-Policy on pages under ``path``, from the
    diagram's own scripts (htmx's indicator <style> is the whole site's matter, not the diagram's)."""
    refused: list[str] = []

    def seen(message: Any) -> None:
        source = str((message.location or {}).get("url", ""))
        if "Content Security Policy" in message.text and path in page.url and "htmx" not in source:
            refused.append(f"{message.text} at {source}")

    page.on("console", seen)
    return refused


def test_case_diagram_marks_where_the_case_is(page: Any, live: LiveServer) -> None:
    refused = _watch_csp(page, "/diagram")
    sign_in(page, "sam.screener")
    page.goto("/cases/DEMO-001")
    page.get_by_role("link", name="See where the case is on the process diagram").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Where the case is in the process")
    diagram = page.locator("[data-state-diagram]").first
    expect(diagram).to_have_attribute("data-diagram-ready", "true")
    # The steps the table calls "In progress" carry the active marker on the drawing.
    expect(diagram.locator(".djs-element.fd-marker--active").first).to_be_visible()
    expect(diagram.locator(".djs-element.fd-marker--completed").first).to_be_attached()
    timers = page.locator("#timers tbody tr")
    if timers.count():
        expect(diagram.locator(".fd-overlay--timer").first).to_contain_text("Due ")
    assert refused == []
    violations = axe_violations(page)
    assert violations == [], "; ".join(f"{v['id']}: {v['help']}" for v in violations)


def test_heatmap_draws_open_work_per_step(page: Any, live: LiveServer) -> None:
    refused = _watch_csp(page, "/heatmap")
    sign_in(page, "mo.manager")
    page.goto("/processes/contact/heatmap")
    diagram = page.locator("[data-state-diagram]")
    expect(diagram).to_have_attribute("data-diagram-ready", "true")
    rows = page.locator("#heatmap-table tbody tr[data-element]")
    assert rows.count() > 0
    first = rows.first.get_attribute("data-element")
    expect(diagram.locator(f'.djs-element[data-element-id="{first}"]')).to_have_class(
        re.compile(r"fd-marker--heat-\d")
    )
    expect(diagram.locator(".fd-overlay").first).to_contain_text("open")
    assert refused == []
    violations = axe_violations(page)
    assert violations == [], "; ".join(f"{v['id']}: {v['help']}" for v in violations)
