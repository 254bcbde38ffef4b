"""Versions and live state pages (web/process_views.py): moving running cases to a new version, a case's
diagram with its steps marked, and the heatmap of open and overdue work per step."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from engine.core import Engine
from engine.models import AuditEvent, CaseRecord, ProcessInstance
from tests.webapp.conftest import client_for, csrf_token, engine_of_app, page, text_of

KEY = "screening"

# Screen -> Decide, with a reminder two hours after screening opens; the due date is the start data's.
VERSION_1_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
    xmlns:di="http://www.omg.org/spec/DD/20100524/DI"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="Definitions_screening" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="screening" name="Screening (test shape)" isExecutable="true">
    <bpmn:laneSet id="LaneSet_s">
      <bpmn:lane id="Lane_s" name="Contact officer">
        <bpmn:flowNodeRef>s_start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>screen</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>decide</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>s_end</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>reminder</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>reminder_end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="s_start" name="Contact"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="screen" name="Screen the contact">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="dueDate" value="due" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="reminder" name="Reminder" attachedToRef="screen" cancelActivity="false">
      <bpmn:outgoing>fr</bpmn:outgoing>
      <bpmn:timerEventDefinition id="reminder_t">
        <bpmn:timeDuration>PT2H</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="reminder_end"><bpmn:incoming>fr</bpmn:incoming></bpmn:endEvent>
    <bpmn:userTask id="decide" name="Decide">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="noDeadline" value="a test shape" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="s_end" name="Done"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s_start" targetRef="screen" />
    <bpmn:sequenceFlow id="f2" sourceRef="screen" targetRef="decide" />
    <bpmn:sequenceFlow id="f3" sourceRef="decide" targetRef="s_end" />
    <bpmn:sequenceFlow id="fr" sourceRef="reminder" targetRef="reminder_end" />
  </bpmn:process>
{diagram}
</bpmn:definitions>
"""


# Where bpmn-js draws each element: shapes (x, y, width, height) and edges (waypoints).
SHAPES = {
    "s_start": (80, 100, 36, 36),
    "screen": (160, 78, 100, 80),
    "reminder": (192, 140, 36, 36),
    "reminder_end": (192, 220, 36, 36),
    "decide": (320, 78, 100, 80),
    "s_end": (480, 100, 36, 36),
}
EDGES = {
    "f1": ((116, 118), (160, 118)),
    "f2": ((260, 118), (320, 118)),
    "f3": ((420, 118), (480, 118)),
    "fr": ((210, 176), (210, 220)),
}


def _diagram() -> str:
    parts = [
        '  <bpmndi:BPMNDiagram id="Diagram_s">',
        '    <bpmndi:BPMNPlane id="Plane_s" bpmnElement="screening">',
    ]
    for element, (x, y, w, h) in SHAPES.items():
        parts.append(
            f'      <bpmndi:BPMNShape id="{element}_di" bpmnElement="{element}">'
            f'<dc:Bounds x="{x}" y="{y}" width="{w}" height="{h}" /></bpmndi:BPMNShape>'
        )
    for flow, points in EDGES.items():
        waypoints = "".join(f'<di:waypoint x="{x}" y="{y}" />' for x, y in points)
        parts.append(
            f'      <bpmndi:BPMNEdge id="{flow}_di" bpmnElement="{flow}">{waypoints}</bpmndi:BPMNEdge>'
        )
    parts += ["    </bpmndi:BPMNPlane>", "  </bpmndi:BPMNDiagram>"]
    return "\n".join(parts)


VERSION_1 = VERSION_1_TEMPLATE.replace("{diagram}", _diagram())


def version_2() -> str:
    """Version 1 without 'Decide': screening goes straight to the end."""
    xml = re.sub(r'\s*<bpmn:userTask id="decide".*?</bpmn:userTask>', "", VERSION_1, flags=re.S)
    xml = xml.replace("<bpmn:flowNodeRef>decide</bpmn:flowNodeRef>", "")
    xml = xml.replace('<bpmn:sequenceFlow id="f2" sourceRef="screen" targetRef="decide" />', "")
    xml = xml.replace('sourceRef="decide" targetRef="s_end"', 'sourceRef="screen" targetRef="s_end"')
    xml = xml.replace("<bpmn:outgoing>f2</bpmn:outgoing>", "<bpmn:outgoing>f3</bpmn:outgoing>")
    xml = re.sub(r"\s*<bpmndi:BPMN(Shape|Edge) id=\"(decide|f2)_di\".*?</bpmndi:BPMN\1>", "", xml)
    return xml


OVERDUE = "2024-03-05T12:00:00+00:00"  # the fake clock stands at Wednesday 6 March 2024, 09:30 UTC
LATER = "2024-03-20T12:00:00+00:00"


def deploy(engine: Engine, xml: str) -> int:
    [result] = engine.deploy([("screening.bpmn", xml.encode())], "olive.owner")
    return result.definition_id


def screening_cases(engine: Engine) -> dict[str, int]:
    """Version 1 with three MASH cases: two screening (one overdue), one at 'Decide'."""
    deploy(engine, VERSION_1)
    ids = {}
    for reference, due in (("S-1", OVERDUE), ("S-2", LATER), ("S-3", LATER)):
        started = engine.start(
            KEY, "sam.screener", case_reference=reference, team_key="mash", data={"due": due}
        )
        ids[reference] = started.instance_id
    [task] = engine.tasks(case_reference="S-3")
    engine.complete(task.id, "sam.screener", {})
    return ids


def diagram_data(html: str, diagram_id: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="{diagram_id}-data">(.*?)</script>', html, re.S)
    assert found, f"no data block for {diagram_id}"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def table_rows(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table class="govuk-table" id="{table_id}">(.*?)</table>', html, re.S)
    assert table, f"no table {table_id}"
    body = table.group(1).split("<tbody", 1)[1]
    return [
        [text_of(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


Screening = tuple[Flask, Engine, dict[str, int]]  # the app, its engine, instance ids by case


@pytest.fixture
def screening(app: Flask) -> Screening:
    engine = engine_of_app(app)
    return app, engine, screening_cases(engine)


# ------------------------------------------------------------------------ heatmap


def test_heatmap_counts_open_and_overdue_tasks_per_step(screening: Screening) -> None:
    app, _, _ = screening
    html = page(client_for(app, "mo.manager"), f"/processes/{KEY}/heatmap")
    assert table_rows(html, "heatmap-table") == [["Screen the contact", "2", "1"], ["Decide", "1", "0"]]
    assert "3 open tasks, 1 overdue" in text_of(html)
    data = diagram_data(html, "heatmap")
    assert data["xml"].startswith("<?xml")
    assert {m["element_id"]: m["class"] for m in data["markers"]} == {
        "screen": "fd-marker--heat-4",
        "decide": "fd-marker--heat-2",
    }
    assert {o["element_id"]: o["text"] for o in data["overlays"]} == {
        "screen": "2 open, 1 overdue",
        "decide": "1 open",
    }


def test_heatmap_is_for_owners_and_managers(screening: Screening) -> None:
    app, _, _ = screening
    page(client_for(app, "olive.owner"), f"/processes/{KEY}/heatmap")
    page(client_for(app, "sid.service"), f"/processes/{KEY}/heatmap")
    page(client_for(app, "sam.screener"), f"/processes/{KEY}/heatmap", 403)
    page(client_for(app, "pat.police"), f"/processes/{KEY}/heatmap", 403)
    page(client_for(app, "mo.manager"), "/processes/no-such-process/heatmap", 404)


# ------------------------------------------------------------------------ case diagram


def test_case_diagram_marks_the_steps_and_shows_when_timers_are_due(
    screening: Screening,
) -> None:
    app, _, _ = screening
    html = page(client_for(app, "sam.screener"), "/cases/S-1/diagram")
    [definition_id] = re.findall(r'data-state-diagram="(d\d+)-data"', html)
    data = diagram_data(html, definition_id)
    markers = {m["element_id"]: m["class"] for m in data["markers"]}
    assert markers == {
        "s_start": "fd-marker--completed",
        "screen": "fd-marker--active",
        "reminder": "fd-marker--waiting",
    }
    due = "Due Wednesday 6 March 2024 at 11:30"  # PT2H after 09:30 UTC (GMT in March)
    assert data["overlays"] == [{"element_id": "reminder", "text": due, "class": "fd-overlay--timer"}]
    assert ["Screen the contact", "In progress"] in table_rows(html, f"{definition_id}-steps")
    assert table_rows(html, "timers") == [["Reminder", "Wednesday 6 March 2024 at 11:30"]]
    # The diagram page relaxes style-src for bpmn-js only; scripts stay 'self'.
    later = client_for(app, "sam.screener").get("/cases/S-3/diagram")
    assert "script-src 'self';" in later.headers["Content-Security-Policy"]
    data = diagram_data(later.get_data(as_text=True), definition_id)
    markers = {m["element_id"]: m["class"] for m in data["markers"]}
    assert markers["screen"] == "fd-marker--completed" and markers["decide"] == "fd-marker--active"
    assert "reminder" not in markers and data["overlays"] == []  # cancelled with its task


def test_case_diagram_follows_the_case_access_rules_and_is_audited(
    screening: Screening,
) -> None:
    app, engine, _ = screening
    page(client_for(app, "sara.social"), "/cases/S-1/diagram", 403)  # another team's case
    page(client_for(app, "olive.owner"), "/cases/S-1/diagram", 403)  # the owner sees no child's record
    page(client_for(app, "sam.screener"), "/cases/S-1/diagram")
    page(client_for(app, "sam.screener"), "/cases/NO-SUCH/diagram", 404)
    with engine.db.read() as session:
        views = session.execute(
            sa.select(AuditEvent.actor, AuditEvent.data)
            .join(CaseRecord, CaseRecord.id == AuditEvent.case_id)
            .where(AuditEvent.action == "case.viewed", CaseRecord.reference == "S-1")
        ).all()
    assert [(v.actor, v.data) for v in views] == [("sam.screener", {"page": "diagram"})]


def test_the_case_page_links_to_its_diagram(screening: Screening) -> None:
    app, _, _ = screening
    html = page(client_for(app, "sam.screener"), "/cases/S-1")
    assert 'href="/cases/S-1/diagram"' in html


# ------------------------------------------------------------------------ migration


def post_form(client: Any, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_token(client, path)})


def test_migration_page_checks_then_moves_what_can_move(screening: Screening) -> None:
    app, engine, ids = screening
    target = deploy(engine, version_2())
    owner = client_for(app, "olive.owner")
    path = f"/processes/{KEY}/migration"
    html = page(owner, path)
    candidates = table_rows(html, "candidates")
    assert [row[1:3] for row in candidates] == [["S-1", "1"], ["S-2", "1"], ["S-3", "1"]]
    assert candidates[2][4] == "Decide"

    chosen = [ids["S-1"], ids["S-3"]]
    response = post_form(owner, path, {"action": "precheck", "target": target, "instance": chosen})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    words = text_of(html)
    assert "Removed: Decide (decide)" in words
    checks = {row[1]: row for row in table_rows(html, "checks")}
    assert checks["S-1"][3] == "Yes"
    assert checks["S-3"][3].startswith("No 'Decide' is ready and version 2 has no step 'decide'")
    assert "Screen the contact (ready): stays at screen" in checks["S-1"][4]
    assert f'value="{ids["S-1"]}" checked' in html and f'id="move-{ids["S-3"]}"' not in html
    # Nothing has moved yet.
    assert instance_versions(engine, ids) == {"S-1": 1, "S-2": 1, "S-3": 1}

    response = post_form(owner, path, {"action": "migrate", "target": target, "instance": chosen})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    outcomes = {row[0]: row for row in table_rows(html, "outcomes")}
    assert outcomes["S-1"][2] == "Moved"
    assert outcomes["S-3"][2].startswith("Not moved")
    assert instance_versions(engine, ids) == {"S-1": 2, "S-2": 1, "S-3": 1}
    with engine.db.read() as session:
        migrated = session.execute(
            sa.select(AuditEvent.actor, AuditEvent.instance_id).where(
                AuditEvent.action == "instance.migrated"
            )
        ).all()
    assert [(m.actor, m.instance_id) for m in migrated] == [("olive.owner", ids["S-1"])]
    # S-1 is no longer offered: it is on the target version now.
    assert [row[1] for row in table_rows(html, "candidates")] == ["S-2", "S-3"]


def test_migration_refuses_an_empty_choice_and_changes_nothing(
    screening: Screening,
) -> None:
    app, engine, ids = screening
    target = deploy(engine, version_2())
    owner = client_for(app, "olive.owner")
    response = post_form(owner, f"/processes/{KEY}/migration", {"action": "migrate", "target": target})
    assert response.status_code == 400
    assert "Choose at least one case to move" in response.get_data(as_text=True)
    assert instance_versions(engine, ids) == {"S-1": 1, "S-2": 1, "S-3": 1}


def test_migration_is_for_the_process_owner_only(screening: Screening) -> None:
    app, engine, ids = screening
    target = deploy(engine, version_2())
    for username in ("mo.manager", "sid.service", "sam.screener"):
        client = client_for(app, username)
        page(client, f"/processes/{KEY}/migration", 403)
        token = csrf_token(client, "/tasks/mine")
        response = client.post(
            f"/processes/{KEY}/migration",
            data={"action": "migrate", "target": target, "instance": [ids["S-1"]], "csrf_token": token},
        )
        assert response.status_code == 403
    assert instance_versions(engine, ids) == {"S-1": 1, "S-2": 1, "S-3": 1}


def instance_versions(engine: Engine, ids: dict[str, int]) -> dict[str, int]:
    from engine.models import ProcessDefinition

    with engine.db.read() as session:
        rows = dict(
            session.execute(
                sa.select(ProcessInstance.id, ProcessDefinition.version)
                .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                .where(ProcessInstance.id.in_(ids.values()))
            ).all()
        )
    return {reference: rows[instance_id] for reference, instance_id in ids.items()}
