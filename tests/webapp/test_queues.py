"""My tasks and the team queues: who sees what, in what order, filtered; claiming, releasing, assigning.

The demo data (processes/demo/cases.json) seeded on the fake clock's Wednesday 6 March 2024, 09:30:
Dan's MASH decision is overdue, Eve's handover was due at 09:00 today, Ben and Cara are siblings
waiting for health and school checks, Sara holds Lola's section 47 enquiry, Max and Nia are
siblings whose outcome letters Sara holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engine import clock as clock_module
from engine.clock import FakeClock
from engine.core import Engine
from engine.models import CaseRecord, Task
from tests.webapp.conftest import _app, csrf_token, engine_of_app, sign_in

WEDNESDAY = datetime(2024, 3, 6, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The demo, seeded once for the tests here that only read (at the fake clock's instant)."""
    previous = clock_module.set_clock(FakeClock(WEDNESDAY))
    try:
        built, engine = _app(Path(tmp_path_factory.mktemp("queues")), demo_cases=True)
    finally:
        clock_module.set_clock(previous)
    yield built
    engine.db.dispose()


def client_for(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = sign_in(client, username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def reader(shared_app: Flask, fake_clock: FakeClock) -> Any:
    return lambda username: client_for(shared_app, username)


@pytest.fixture
def demo_user(demo_app: Flask) -> Any:
    return lambda username: client_for(demo_app, username)


def page(client: FlaskClient, path: str, **headers: str) -> str:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def task_names(html: str) -> list[str]:
    return re.findall(r'<a class="govuk-link" href="/tasks/[0-9a-f-]{36}">([^<]+)</a>', html)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr class="govuk-table__row" id="task-[^"]+">.*?</tr>', html, re.S)


def open_task(engine: Engine, element_id: str, reference: str | None = None) -> Task:
    tasks = [t for t in engine.tasks(case_reference=reference) if t.element_id == element_id]
    assert tasks, f"no open {element_id} task on {reference}"
    return tasks[0]


# ------------------------------------------------------------------ what each person sees


def test_home_goes_to_my_tasks(reader: Any) -> None:
    response = reader("sara.social").get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/tasks/mine")


def test_my_tasks_lists_what_the_person_holds_soonest_first(reader: Any) -> None:
    html = page(reader("sara.social"), "/tasks/mine")
    assert "<title>My tasks – Northshire County Council</title>" in html
    assert '<caption class="govuk-table__caption govuk-table__caption--m">' in html
    names = task_names(html)
    assert "Lead the section 47 enquiry" in names and "Initial assessment" in names
    assert "Decide the response" not in names  # the MASH manager's, not hers
    due = [datetime.fromisoformat(d) for d in re.findall(r'<time datetime="([^"]+)"', html)]
    # Sorted by due date, except that siblings' tasks sit together where the first of them falls.
    assert due[0] == min(due) and due[-1] == max(due)
    assert "Lola Hughes" in html and "DEMO-012" in html
    assert "You" in html and "Release" in html


def test_siblings_tasks_are_grouped_under_a_heading(reader: Any) -> None:
    html = page(reader("sara.social"), "/tasks/mine")
    assert "Siblings: Max Fisher (DEMO-013), Nia Fisher (DEMO-014)" in html
    group = html.split("Siblings: Max Fisher")[1].split("</tbody>")[0]
    assert task_names(group).count("Tell the family the outcome in writing") == 2
    assert "Sibling of Nia Fisher (DEMO-014)" in group


def test_team_queue_of_a_manager_has_the_assign_control(reader: Any) -> None:
    html = page(reader("mo.manager"), "/teams/mash/queue")
    names = task_names(html)
    assert {"Decide the response", "Rate the urgency", "Share what health services know"} <= set(names)
    assert "Siblings: Ben Walker (DEMO-002), Cara Walker (DEMO-003)" in html
    decide = next(r for r in rows(html) if "Decide the response" in r)
    assert "Claim" in decide and "Level 2" in decide and "Escalated to the team manager" in decide
    assert '<tbody class="govuk-table__body">' in html
    # The Assign control asks for the team's members only when used: a button, not 200 filled selects.
    assert 'name="assignee"' not in html
    control = re.search(r'<form method="get" action="([^"]+)" id="(assign-control-([^"]+))"', decide)
    assert control and ">Assign<" in decide
    action, target, task_id = control.groups()
    assert action == f"/teams/mash/queue#task-{task_id}"
    assert f'<input type="hidden" name="assign" value="{task_id}">' in decide
    # With htmx: the form alone, in place of the button, the select focused.
    client = reader("mo.manager")
    fragment = client.get(
        f"/teams/mash/queue?assign={task_id}", headers={"HX-Request": "true", "HX-Target": target}
    ).get_data(as_text=True)
    assert fragment.lstrip().startswith("<form") and "<html" not in fragment
    assert 'name="assignee"' in fragment and "autofocus" in fragment and "Mo Manager" in fragment
    assert f'action="/tasks/{task_id}/assign"' in fragment
    # Without JavaScript: the queue again (the filters kept), with that row's form open.
    again = page(client, f"/teams/mash/queue?due=overdue&assign={task_id}")
    opened = next(r for r in rows(again) if task_id in r)
    assert 'name="assignee"' in opened and "Mo Manager" in opened
    assert sum('name="assignee"' in r for r in rows(again)) == 1
    assert '<input type="hidden" name="due" value="overdue"><input type="hidden" name="assign"' in again


def test_the_assign_control_is_shown_only_where_the_engine_allows_it(reader: Any) -> None:
    """The service manager sees every queue, but assigns only in their own team: no Assign elsewhere."""
    assert 'id="assign-control-' in page(reader("tara.team"), "/teams/assessment/queue")
    service = page(reader("sid.service"), "/teams/assessment/queue")
    assert "Hold supervision" in task_names(service) and 'id="assign-control-' not in service
    client = reader("sid.service")
    found = re.search(r'id="task-([^"]+)"', rows(service)[0])
    assert found
    task_id = found.group(1)
    response = client.get(
        f"/teams/assessment/queue?assign={task_id}",
        headers={"HX-Request": "true", "HX-Target": f"assign-control-{task_id}"},
    )
    assert response.status_code == 403


def test_a_partner_sees_only_the_tasks_offered_to_them(reader: Any) -> None:
    html = page(reader("hana.health"), "/teams/mash/queue")
    assert set(task_names(html)) == {"Share what health services know"}
    assert len(rows(html)) == 2
    assert "Ben Walker" in html and "DEMO-002" in html  # what the check needs
    assert "/cases/" not in html and 'name="assignee"' not in html and "Siblings:" not in html


def test_a_practitioner_sees_the_team_tasks_of_cases_they_may_see(reader: Any) -> None:
    html = page(reader("sara.social"), "/teams/assessment/queue")
    names = task_names(html)
    assert "Authorise the assessment" in names  # Kit's case is the assessment team's
    assert "Hold supervision" not in names  # a manager's task with no case
    assert "Accept the referral and allocate" not in names  # Ivy's case is still the MASH's
    assert 'name="assignee"' not in html


def test_team_queue_needs_a_role_in_the_team(reader: Any) -> None:
    client = reader("sam.screener")
    assert client.get("/teams/assessment/queue").status_code == 403
    assert client.get("/teams/no-such-team/queue").status_code == 404


def test_the_service_manager_may_open_every_team_queue(reader: Any) -> None:
    html = page(reader("sid.service"), "/teams/assessment/queue")
    assert "Hold supervision" in task_names(html)
    assert "Other team queues" in html and "/teams/mash/queue" in html


def test_navigation_items(shared_app: Flask, reader: Any) -> None:
    def nav(username: str) -> str:
        return page(reader(username), "/tasks/mine").split('id="navigation"')[1].split("</ul>")[0]

    manager = nav("mo.manager")
    assert 'href="/tasks/mine" aria-current="page"' in manager and "My tasks" in manager
    assert 'href="/teams/mash/queue"' in manager and "Team queue" in manager
    practitioner = nav("sara.social")
    assert 'href="/teams/assessment/queue"' in practitioner and "Manager pages" not in practitioner
    if "manage.escalations" in shared_app.view_functions:
        assert "Manager pages" in manager


# ------------------------------------------------------------------ due dates in words


def test_due_words_and_classes(reader: Any) -> None:
    html = page(reader("mo.manager"), "/teams/mash/queue")
    by_name = {task_names(r)[0]: r for r in rows(html)}
    decide = by_name["Decide the response"]
    assert "Monday 4 March 2024" in decide and "fd-due--overdue" in decide
    assert "Overdue by 2 working days" in decide
    assert "Due today" in by_name["Rate the urgency"] and "fd-due--today" in by_name["Rate the urgency"]
    health = by_name["Share what health services know"]
    assert "Due in 2 working days" in health and "fd-due--soon" in health
    letter = by_name["Tell the referrer the outcome"]
    assert "Due in 3 working days" in letter and "fd-due--" not in letter.split("Due in")[0][-60:]


def test_due_words_move_with_the_clock(shared_app: Flask, fake_clock: FakeClock) -> None:
    from web.queues import DueClock

    with shared_app.test_request_context():
        fake_clock.set(datetime(2024, 3, 8, 10, 0, tzinfo=UTC))  # a Friday
        due = DueClock()
        assert due(datetime(2024, 3, 8, 9, 0, tzinfo=UTC)).words == "Overdue since 09:00 today"
        assert due(datetime(2024, 3, 8, 17, 0, tzinfo=UTC)).state == "today"
        monday = due(datetime(2024, 3, 11, 17, 0, tzinfo=UTC))
        assert monday.words == "Due in 1 working day" and monday.css == "fd-due--soon"
        assert monday.date_text == "Monday 11 March 2024" and monday.time_text == "17:00"
        assert due(datetime(2024, 3, 6, 17, 0, tzinfo=UTC)).words == "Overdue by 2 working days"
        assert due(datetime(2024, 3, 20, 17, 0, tzinfo=UTC)).css == ""
        assert due(None).words == "No due date"
        fake_clock.set(datetime(2024, 7, 1, 8, 0, tzinfo=UTC))  # summer: London is an hour ahead
        assert due.__class__()(datetime(2024, 7, 1, 16, 0, tzinfo=UTC)).time_text == "17:00"


# ------------------------------------------------------------------ filters


def test_filter_by_due(reader: Any) -> None:
    html = page(reader("mo.manager"), "/teams/mash/queue?due=overdue")
    assert set(task_names(html)) == {"Decide the response", "Hand over to the day service"}
    assert "match the filters" in html and "Clear filters" in html
    today = task_names(page(reader("mo.manager"), "/teams/mash/queue?due=today"))
    assert today == ["Rate the urgency"]


def test_filter_by_step_and_child(reader: Any) -> None:
    client = reader("mo.manager")
    html = page(client, "/teams/mash/queue?step=health_check")
    assert task_names(html) == ["Share what health services know"] * 2
    assert '<option value="health_check" selected>' in html
    walkers = page(client, "/teams/mash/queue?child=walker")
    assert {"Ben Walker", "Cara Walker"} <= set(re.findall(r"(Ben Walker|Cara Walker|Dan Okafor)", walkers))
    assert "Dan Okafor" not in walkers
    by_reference = page(client, "/teams/mash/queue?child=demo-004")
    assert task_names(by_reference) == ["Decide the response"]
    nothing = page(client, "/teams/mash/queue?child=100%25")  # % is matched literally
    assert "No tasks match the filters" in nothing


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_child_filter_finds_a_name_anywhere_in_it_ignoring_case(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, fake_clock: FakeClock
) -> None:
    """On SQLite three letters or more are looked up in the trigram index (migration 0006), which
    follows every change of a case's name; fewer letters, and PostgreSQL, give the same answers."""
    url = request.getfixturevalue("sqlite_url" if store == "sqlite" else "postgres_url")
    built, engine = _app(tmp_path, demo_cases=True, url=url)
    try:
        client = client_for(built, "mo.manager")

        def children(needle: str) -> set[str]:
            html = page(client, f"/teams/mash/queue?child={quote(needle)}")
            return set(re.findall(r"(Ben Walker|Cara Walker|Dan Okafor|Zoë Ångström)", html))

        assert children("WALK") == {"Ben Walker", "Cara Walker"}
        assert children("alk") == children("wa") == {"Ben Walker", "Cara Walker"}
        assert children("kafo") == {"Dan Okafor"}
        with engine.db.transaction() as session:  # a correction made to the record
            session.execute(
                sa.update(CaseRecord)
                .where(CaseRecord.subject_name == "Dan Okafor")
                .values(subject_name="Zoë Ångström")
            )
        assert children("okafor") == set()
        assert children("ÅNGSTRÖM") == children("zoë å") == {"Zoë Ångström"}
        # A practitioner's queue reads each task's case too (their rule: their team's cases, their own).
        practitioner = page(client_for(built, "sara.social"), "/teams/assessment/queue?child=FISH")
        assert set(re.findall(r"for ([A-Z][a-z]+ [A-Z][a-z]+)", practitioner)) == {"Max Fisher", "Nia Fisher"}
        html = page(client, "/teams/mash/queue?child=" + quote('"walker" OR x*'))  # no search syntax: text
        assert "No tasks match the filters" in html
    finally:
        engine.db.dispose()


def test_child_filter_shows_the_soonest_and_counts_them_all(
    reader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.queues

    walkers = [r for r in rows(page(reader("mo.manager"), "/teams/mash/queue")) if "Walker" in r]
    assert len(walkers) == 4  # Ben's and Cara's health and school checks
    monkeypatch.setattr(web.queues, "LIMIT", 1)
    html = page(reader("mo.manager"), "/teams/mash/queue?child=walker")
    assert "Showing 1 to 1 of 4 tasks" in html
    [shown] = rows(html)
    assert shown.split(">", 1)[0] == walkers[0].split(">", 1)[0]  # the soonest due of the four


def test_filters_through_htmx_swap_only_the_table(reader: Any) -> None:
    client = reader("mo.manager")
    response = client.get(
        "/teams/mash/queue?due=overdue", headers={"HX-Request": "true", "HX-Target": "queue-results"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert html.lstrip().startswith('<div id="queue-results"') and "<html" not in html
    assert set(task_names(html)) == {"Decide the response", "Hand over to the day service"}
    full = page(client, "/teams/mash/queue?due=overdue")
    assert 'hx-get="/teams/mash/queue"' in full and 'hx-target="#queue-results"' in full
    assert 'hx-push-url="true"' in full and 'method="get"' in full


def test_the_queue_shows_at_most_the_limit(reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import web.queues

    monkeypatch.setattr(web.queues, "LIMIT", 3)
    html = page(reader("mo.manager"), "/teams/mash/queue")
    assert len(rows(html)) == 3 and "Showing 1 to 3 of 9 tasks" in html


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="govuk-table__row" id="task-([^"]+)">', html)


def test_the_pages_of_a_queue_follow_on_from_each_other(reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import web.queues

    whole = row_ids(page(reader("mo.manager"), "/teams/mash/queue"))
    assert len(whole) == 9
    monkeypatch.setattr(web.queues, "LIMIT", 4)
    client = reader("mo.manager")
    first, second, third = (page(client, f"/teams/mash/queue?page={n}") for n in (1, 2, 3))
    ids = row_ids(first) + row_ids(second) + row_ids(third)
    assert sorted(ids) == sorted(whole)  # each task on one page (siblings are grouped within a page)
    dues = [sorted(re.findall(r'<time datetime="([^"]+)"', html)) for html in (first, second, third)]
    assert dues[0][-1] <= dues[1][0] and dues[1][-1] <= dues[2][0]  # soonest due on the first page
    assert "Showing 1 to 4 of 9 tasks" in first and "Showing 9 to 9 of 9 tasks" in third
    assert 'href="/teams/mash/queue?page=2" rel="next"' in first and 'rel="prev"' not in first
    assert 'href="/teams/mash/queue?page=2" rel="prev"' in third and 'rel="next"' not in third
    assert 'aria-current="page"' in second
    beyond = page(client, "/teams/mash/queue?page=4")
    assert row_ids(beyond) == [] and "There are no tasks on this page now" in beyond
    assert page(client, "/teams/mash/queue?page=nonsense") == page(client, "/teams/mash/queue")
    # The filters go with every page link, and the page with every row's form.
    monkeypatch.setattr(web.queues, "LIMIT", 1)
    overdue = page(client, "/teams/mash/queue?due=overdue&page=2")
    assert 'href="/teams/mash/queue?due=overdue" rel="prev"' in overdue
    assert '<input type="hidden" name="page" value="2">' in overdue  # Assign asks for this page


def test_a_partners_two_reads_page_as_one_queue(reader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import web.queues

    whole = row_ids(page(reader("hana.health"), "/teams/mash/queue"))
    assert len(whole) >= 2
    monkeypatch.setattr(web.queues, "LIMIT", 1)
    client = reader("hana.health")
    paged = [row_ids(page(client, f"/teams/mash/queue?page={n}")) for n in range(1, len(whole) + 1)]
    assert [ids for [ids] in paged] == whole


def test_step_choices_come_from_the_diagrams(reader: Any) -> None:
    html = page(reader("mo.manager"), "/teams/mash/queue")
    step = html.split('<select class="govuk-select" id="step" name="step">')[1].split("</select>")[0]
    assert '<optgroup label="Contact and MASH screening">' in step
    assert '<option value="decide_response">Decide the response</option>' in step
    partner = page(reader("hana.health"), "/teams/mash/queue")
    choices = re.findall(r'<option value="([a-z_0-9]+)"', partner.split('id="step"')[1].split("</select>")[0])
    assert "health_check" in choices and "decide_response" not in choices


def test_counting_stops_at_the_cap_where_the_count_is_not_indexed(
    reader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.queues

    monkeypatch.setattr(web.queues, "LIMIT", 2)
    monkeypatch.setattr(web.queues, "COUNT_CAP", 3)
    html = page(reader("sara.social"), "/teams/assessment/queue")
    assert "Showing 1 to 2 of more than 3 tasks" in html


def test_undated_tasks_come_last(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "rate_urgency", "DEMO-001")
    with engine.db.transaction() as session:
        session.execute(sa.update(Task).where(Task.id == task.id).values(due_at=None))
    names = task_names(page(demo_user("mo.manager"), "/teams/mash/queue"))
    assert names[-1] == "Rate the urgency" and names[0] == "Decide the response"
    assert "No due date" in page(demo_user("mo.manager"), f"/tasks/{task.id}")


# ------------------------------------------------------------------ claim, release, assign


def test_claim_and_release_without_javascript(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "rate_urgency", "DEMO-001")
    client = demo_user("mo.manager")
    token = csrf_token(client, "/teams/mash/queue")
    response = client.post(
        f"/tasks/{task.id}/claim", data={"csrf_token": token, "next": "/teams/mash/queue", "view": "team"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/teams/mash/queue"
    assert engine.get_task(task.id).assignee == "mo.manager"
    html = page(client, "/teams/mash/queue")
    assert "You claimed ‘Rate the urgency’" in html
    assert "Rate the urgency" in task_names(page(client, "/tasks/mine"))

    response = client.post(f"/tasks/{task.id}/unclaim", data={"csrf_token": token, "next": "/tasks/mine"})
    assert response.status_code == 302 and engine.get_task(task.id).assignee is None
    assert "Rate the urgency" not in task_names(page(client, "/tasks/mine"))


def test_claim_with_htmx_swaps_the_row(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "handover_to_day_service", "DEMO-005")
    client = demo_user("sam.screener")
    token = csrf_token(client, "/teams/mash/queue")
    hx = {"HX-Request": "true", "X-CSRFToken": token}
    response = client.post(
        f"/tasks/{task.id}/claim",
        data={"next": "/teams/mash/queue", "view": "team", "team": "mash"},
        headers=hx,
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.strip().startswith("<tr")
    assert f'id="task-{task.id}"' in html and "You claimed" in html and "Release" in html
    assert engine.get_task(task.id).assignee == "sam.screener"

    released = client.post(f"/tasks/{task.id}/unclaim", data={"view": "mine"}, headers=hx).get_data(
        as_text=True
    )
    assert "back in the team queue" in released and f'id="task-{task.id}"' not in released


def test_claiming_someone_elses_task_is_refused_in_words(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "decide_response", "DEMO-004")
    engine.claim(task.id, "mo.manager")
    client = demo_user("sid.service")
    token = csrf_token(client, "/teams/mash/queue")
    response = client.post(
        f"/tasks/{task.id}/claim", data={"view": "team"}, headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'role="alert"' in html
    assert "Could not claim ‘Decide the response’" in html and "already claimed by mo.manager" in html


def test_manager_assigns_and_refusals_are_explained(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    lead = open_task(engine, "lead_section47", "DEMO-012")
    client = demo_user("tara.team")
    queue = page(client, f"/teams/assessment/queue?assign={lead.id}")
    row = next(r for r in rows(queue) if lead.id in r)
    assert "Alex Agency (agency)" in row and "Sara Social" in row and "Ash Assistant" not in row
    token = csrf_token(client, "/teams/assessment/queue")

    def assign(username: str) -> str:
        response = client.post(
            f"/tasks/{lead.id}/assign",
            data={
                "csrf_token": token,
                "assignee": username,
                "next": "/teams/assessment/queue",
                "view": "team",
            },
            follow_redirects=True,
        )
        assert response.status_code == 200
        return response.get_data(as_text=True)

    refused = assign("alex.agency")
    assert "Could not assign ‘Lead the section 47 enquiry’" in refused
    assert "Alex Agency (alex.agency) cannot hold this task" in refused and "permanent" in refused
    refused = assign("ash.assistant")
    assert "Ash Assistant (ash.assistant) cannot hold this task" in refused and "qualified" in refused
    assert engine.get_task(lead.id).assignee == "sara.social"

    done = assign("tara.team")
    assert "‘Lead the section 47 enquiry’ is now assigned to Tara Team-Manager" in done
    assert engine.get_task(lead.id).assignee == "tara.team"


def test_assign_with_htmx_shows_the_refusal_in_the_row(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    lead = open_task(engine, "lead_section47", "DEMO-012")
    client = demo_user("tara.team")
    token = csrf_token(client, "/teams/assessment/queue")
    response = client.post(
        f"/tasks/{lead.id}/assign",
        data={"assignee": "alex.agency", "view": "team", "team": "assessment"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.strip().startswith("<tr")
    assert 'role="alert"' in html and "cannot hold this task" in html and 'name="assignee"' in html


def test_a_practitioner_cannot_assign(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "authorise_assessment", "DEMO-011")
    client = demo_user("sara.social")
    token = csrf_token(client, "/teams/assessment/queue")
    response = client.post(
        f"/tasks/{task.id}/assign",
        data={"csrf_token": token, "assignee": "sara.social", "next": "/tasks/mine"},
        follow_redirects=True,
    )
    assert "only a manager of that team can" in response.get_data(as_text=True)
    assert engine.get_task(task.id).assignee is None


def test_actions_on_a_task_the_person_may_not_see_are_forbidden(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "decide_response", "DEMO-004")
    client = demo_user("pat.police")
    token = csrf_token(client, "/tasks/mine")
    assert client.post(f"/tasks/{task.id}/claim", data={"csrf_token": token}).status_code == 403
    assert client.post("/tasks/no-such-task/claim", data={"csrf_token": token}).status_code == 404
    assert engine.get_task(task.id).assignee is None


def test_claim_without_the_csrf_token_is_refused(demo_app: Flask, demo_user: Any) -> None:
    engine = engine_of_app(demo_app)
    task = open_task(engine, "rate_urgency", "DEMO-001")
    client = demo_user("mo.manager")
    response = client.post(f"/tasks/{task.id}/claim", data={"next": "/tasks/mine"})
    assert response.status_code == 400 and "The form had expired" in response.get_data(as_text=True)
    assert engine.get_task(task.id).assignee is None


def test_queue_reads_are_indexed(shared_app: Flask, fake_clock: FakeClock) -> None:
    """Each queue is read on a partial index of the open tasks, already in due order (only tasks
    due at the same instant are sorted among themselves): the page stops after LIMIT rows however
    many tasks wait.  SQLite as shipped: no ANALYZE."""
    from web.auth import person
    from web.queues import _mine_arms, _team_arms, page_query

    engine = engine_of_app(shared_app)

    def plan(query: Any) -> str:
        compiled = query.compile(engine.db.engine, compile_kwargs={"literal_binds": True})
        with engine.db.read() as session:
            return " ".join(str(r) for r in session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))

    def plans(username: str, team: str | None) -> list[str]:
        with shared_app.test_client() as client:  # the queue rules read the signed-in person
            sign_in(client, username)
            client.get("/tasks/mine")
            arms = _mine_arms(person()) if team is None else _team_arms(person(), team)
            return [plan(page_query(arm)) for arm in arms]

    whole_sort = "TEMP B-TREE FOR ORDER BY"  # (not "... FOR RIGHT PART OF ORDER BY": ties only)
    [mine] = plans("sara.social", None)
    assert "ix_task_assignee_due_open" in mine and whole_sort not in mine
    [manager] = plans("mo.manager", "mash")
    assert "ix_task_team_due_open" in manager and whole_sort not in manager
    [practitioner] = plans("sara.social", "assessment")
    assert "ix_task_team_due_open" in practitioner and whole_sort not in practitioner
    own, offered = plans("pat.police", "mash")
    assert "ix_task_assignee_due_open" in own and "ix_task_offered" in offered
    assert whole_sort not in own + offered


def test_my_tasks_after_time_passes(demo_app: Flask, demo_user: Any, fake_clock: FakeClock) -> None:
    fake_clock.advance(timedelta(days=14))
    html = page(demo_user("sara.social"), "/tasks/mine")
    assert "Overdue by" in html and "fd-due--overdue" in html
