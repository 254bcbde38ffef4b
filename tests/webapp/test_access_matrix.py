"""Who may use which route: every route of the application against every role.

The policy (web/access.py): a practitioner sees the cases of their teams and the cases allocated to
them, and those cases' tasks; a manager as well their teams' dashboards, and assigns work in their
teams; the service level sees every case and every dashboard; a partner (police, health, education)
only the tasks offered to them, never a child's case page; the process owner and the administrator
no child's record.  Anyone not signed in is sent to sign in (the API answers 401).

MATRIX below is that policy for this council's demo staff, one column per role, one row per route
with concrete arguments.  Every route in ``app.url_map`` must appear in it: a new route fails
``test_every_route_is_in_the_matrix`` until someone decides who may use it.

Cells:
  A  allowed: the page or answer (2xx, or a redirect that is not to sign-in; an empty form posted
     reaches validation: 400 / API 422); an action took effect.
  D  denied: the 403 page (anonymous: a redirect to sign-in with ``next``); API: 403 (anonymous 401).
     An action changed nothing.
  R  refused in words: the person may see the task, but the engine will not let them do this; the
     page sends them back with the reason (302), the API answers 409; nothing changed.
  N  not found (404) for anyone signed in.
  P  public: anyone, signed in or not.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engine import clock as clock_module
from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.models import AuditEvent, Task
from tests.webapp.conftest import DEMO_PASSWORD, _app, sign_in
from web import create_app, tokens

# ----------------------------------------------------------------------------------- the people

PARTNER_SENDERS = {"pat.police": "police", "hana.health": "health", "ed.education": "school"}
ROLES = ("CO", "MM", "SW", "SWA", "TM", "SM", "POL", "HEA", "EDU", "EDT", "OWN", "ADM", "ANON")
USERS: dict[str, str | None] = {
    "CO": "sam.screener",  # contact_officer, MASH
    "MM": "mo.manager",  # mash_manager (and team_manager), MASH
    "SW": "sara.social",  # social_worker, Assessment Team
    "SWA": "ash.assistant",  # social_work_assistant, Assessment Team
    "TM": "tara.team",  # team_manager, Assessment Team
    "SM": "sid.service",  # service_manager
    "POL": "pat.police",  # police_partner, MASH
    "HEA": "hana.health",  # health_partner, MASH
    "EDU": "ed.education",  # education_partner, MASH
    "EDT": "eddie.edt",  # edt_worker, Emergency Duty Team
    "OWN": "olive.owner",  # process_owner
    "ADM": "adi.admin",  # administrator
    "ANON": None,  # not signed in / no token
}

# ----------------------------------------------------------------------------------- the places
#
# {mash_case}        DEMO-001, a MASH case nobody is allocated
# {assessment_case}  DEMO-011, an Assessment Team case allocated to Alex Agency
# {edt_case}         DEMO-005, an Emergency Duty Team case (its handover task waits in the MASH)
# {referred_case}    DEMO-009, a MASH case referred to the Assessment Team, not yet accepted
# {referral_task}    its "Accept the referral and allocate": Assessment Team, offered to its team
#                    manager (who may open the task, but not yet the case: it is still the MASH's)
# {decision_task}    Dan's overdue "Decide the response": MASH, offered to the MASH manager
# {police_task}      "Share what the police know" for a new MASH contact: offered to the police
# {held_task}        Jay's "Initial assessment": Assessment Team, held by Sara Social
# {other_team_task}  "Accept or decline the transfer" of Sara's case: the Long-term Team's task
# {team_task}        "Hold supervision": Assessment Team, no child, offered to its team manager
# {teamless_task}    "Audit the case file": no team, no child, held by Lee Longterm
#
# Roles: CO contact officer, MM MASH manager, SW social worker, SWA social work assistant, TM team
# manager, SM service manager, POL / HEA / EDU police, health, education partner, EDT emergency duty
# worker, OWN process owner, ADM administrator, ANON not signed in.

# fmt: off
MATRIX_TEXT = """
endpoint             method path                              CO MM SW SWA TM SM POL HEA EDU EDT OWN ADM ANON
views.health         GET    /healthz                          P  P  P  P   P  P  P   P   P   P   P   P   P
auth.sign_in         GET    /sign-in                          P  P  P  P   P  P  P   P   P   P   P   P   P
auth.sign_in         POST   /sign-in                          P  P  P  P   P  P  P   P   P   P   P   P   P
static               GET    /static/js/app.js                 P  P  P  P   P  P  P   P   P   P   P   P   P
api.openapi_document GET    /api/openapi.json                 P  P  P  P   P  P  P   P   P   P   P   P   P
views.home           GET    /                                 A  A  A  A   A  A  A   A   A   A   A   A   D
auth.sign_out        POST   /sign-out                         A  A  A  A   A  A  A   A   A   A   A   A   D
queues.my_tasks      GET    /tasks/mine                       A  A  A  A   A  A  A   A   A   A   A   A   D
queues.team_queue    GET    /teams/mash/queue                 A  A  D  D   D  A  A   A   A   D   D   D   D
queues.team_queue    GET    /teams/assessment/queue           D  D  A  A   A  A  D   D   D   D   D   D   D
queues.team_queue    GET    /teams/edt/queue                  D  D  D  D   D  A  D   D   D   A   D   D   D
queues.team_queue    GET    /teams/service/queue              D  D  D  D   D  A  D   D   D   D   A   A   D
queues.team_queue    GET    /teams/no-such-team/queue         N  N  N  N   N  N  N   N   N   N   N   N   D
contacts.new         GET    /contacts/new                     A  A  A  A   A  A  D   D   D   A   D   D   D
contacts.new         POST   /contacts/new                     A  A  A  A   A  A  D   D   D   A   D   D   D
cases.show           GET    /cases/{mash_case}                A  A  D  D   D  A  D   D   D   D   D   D   D
cases.show           GET    /cases/{assessment_case}          D  D  A  A   A  A  D   D   D   D   D   D   D
cases.show           GET    /cases/{edt_case}                 D  D  D  D   D  A  D   D   D   A   D   D   D
cases.show           GET    /cases/{referred_case}            A  A  D  D   D  A  D   D   D   D   D   D   D
cases.show           GET    /cases/NO-SUCH-CASE               N  N  N  N   N  N  N   N   N   N   N   N   D
tasks.show           GET    /tasks/{decision_task}            A  A  D  D   D  A  D   D   D   D   D   D   D
tasks.show           GET    /tasks/{police_task}              A  A  D  D   D  A  A   D   D   D   D   D   D
tasks.show           GET    /tasks/{held_task}                D  D  A  A   A  A  D   D   D   D   D   D   D
tasks.show           GET    /tasks/{referral_task}            A  A  D  D   A  A  D   D   D   D   D   D   D
tasks.show           GET    /tasks/{other_team_task}          D  D  A  A   A  A  D   D   D   D   D   D   D
tasks.show           GET    /tasks/{team_task}                D  D  D  D   A  A  D   D   D   D   D   D   D
tasks.show           GET    /tasks/{teamless_task}            D  D  D  D   D  A  D   D   D   D   D   D   D
tasks.show           GET    /tasks/no-such-task               N  N  N  N   N  N  N   N   N   N   N   N   D
tasks.show           POST   /tasks/{decision_task}            D  A  D  D   D  D  D   D   D   D   D   D   D
tasks.show           POST   /tasks/{police_task}              D  D  D  D   D  D  A   D   D   D   D   D   D
tasks.show           POST   /tasks/{held_task}                D  D  A  D   D  D  D   D   D   D   D   D   D
queues.claim         POST   /tasks/{decision_task}/claim      R  A  D  D   D  R  D   D   D   D   D   D   D
queues.claim         POST   /tasks/{police_task}/claim        R  R  D  D   D  R  A   D   D   D   D   D   D
queues.claim         POST   /tasks/{held_task}/claim          D  D  A  R   R  R  D   D   D   D   D   D   D
queues.unclaim       POST   /tasks/{held_task}/unclaim        D  D  A  R   R  R  D   D   D   D   D   D   D
queues.unclaim       POST   /tasks/{decision_task}/unclaim    R  R  D  D   D  R  D   D   D   D   D   D   D
queues.assign        POST   /tasks/{decision_task}/assign     R  A  D  D   D  R  D   D   D   D   D   D   D
queues.assign        POST   /tasks/{held_task}/assign         D  D  R  R   A  R  D   D   D   D   D   D   D
manage.escalations   GET    /manage/escalations               D  A  D  D   A  A  D   D   D   D   D   D   D
manage.caseloads     GET    /manage/caseloads                 D  A  D  D   A  A  D   D   D   D   D   D   D
manage.timeliness    GET    /manage/timeliness                D  A  D  D   A  A  D   D   D   D   D   D   D
manage.feedback      GET    /manage/feedback                  D  A  D  D   A  A  D   D   D   D   D   D   D
api.list_processes   GET    /api/processes                    A  A  A  A   A  A  A   A   A   A   A   A   D
api.record_contact   POST   /api/contacts                     A  A  A  A   A  A  D   D   D   A   D   D   D
api.list_tasks       GET    /api/tasks                        A  A  A  A   A  A  A   A   A   A   A   A   D
api.claim_task       POST   /api/tasks/{police_task}/claim    D  D  D  D   D  D  A   D   D   D   D   D   D
api.claim_task       POST   /api/tasks/{held_task}/claim      D  D  A  R   R  R  D   D   D   D   D   D   D
api.complete_task    POST   /api/tasks/{police_task}/complete D  D  D  D   D  D  A   D   D   D   D   D   D
api.complete_task    POST   /api/tasks/{held_task}/complete   D  D  A  R   R  R  D   D   D   D   D   D   D
api.get_case         GET    /api/cases/{mash_case}            A  A  D  D   D  A  D   D   D   D   D   D   D
api.get_case         GET    /api/cases/{assessment_case}      D  D  A  A   A  A  D   D   D   D   D   D   D
api.get_case         GET    /api/cases/NO-SUCH-CASE           N  N  N  N   N  N  N   N   N   N   N   N   D
api.list_escalations GET    /api/escalations                  D  A  D  D   A  A  D   D   D   D   D   D   D
api.receive_referral POST   /api/referrals                    D  D  D  D   D  D  A   A   A   D   D   D   D
cases.letter_pdf     GET    /cases/{mash_case}/letters/999999.pdf N N D D  D  N  D   D   D   D   D   D   D
cases.letter_pdf     GET    /cases/{assessment_case}/letters/999999.pdf D D N N N N D D D   D   D   D   D
process_views.migration    GET  /processes/referral/migration   D  D  D  D   D  D  D   D   D   D   A   D   D
process_views.migration    POST /processes/referral/migration   D  D  D  D   D  D  D   D   D   D   A   D   D
process_views.heatmap      GET  /processes/contact/heatmap      D  A  D  D   A  A  D   D   D   D   A   D   D
process_views.heatmap      GET  /processes/no-such/heatmap      D  N  D  D   N  N  D   D   D   D   N   D   D
process_views.case_diagram GET  /cases/{mash_case}/diagram      A  A  D  D   D  A  D   D   D   D   D   D   D
process_views.case_diagram GET  /cases/{assessment_case}/diagram D D  A  A   A  A  D   D   D   D   D   D   D
process_views.case_diagram GET  /cases/NO-SUCH-CASE/diagram     N  N  N  N   N  N  N   N   N   N   N   N   D
process_owner.index         GET  /processes                       D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.upload        POST /processes/upload                D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.show          GET  /processes/referral              D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.version       GET  /processes/referral/versions/1   D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.version_xml   GET  /processes/referral/versions/1/diagram.bpmn D D D D D D D D D D A D D
process_owner.edit          GET  /processes/referral/edit         D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.draft_xml     GET  /processes/referral/draft.bpmn   D  D  D  D   D  D  D   D   D   D   N   D   D
process_owner.save_draft    POST /processes/referral/draft        D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.validate_draft POST /processes/referral/draft/validate D D D D  D  D  D   D   D   D   N   D   D
process_owner.deploy_draft  POST /processes/referral/draft/deploy D  D  D  D   D  D  D   D   D   D   A   D   D
process_owner.discard_draft POST /processes/referral/draft/discard D D  D  D   D  D  D   D   D   D   A   D   D
"""
# fmt: on

# Cells where the application's answer contradicts the policy: (method, path, role) -> the bug.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

# What each POST sends. Forms and bodies are empty or incomplete on purpose: an allowed person
# reaches validation (400 / 422) and nothing is saved; only claim, release and assign change a task.
BODIES: dict[str, dict[str, Any]] = {
    "auth.sign_in": {"data": {"username": "{username}", "password": DEMO_PASSWORD}},
    "queues.assign": {"data": {"assignee": "{assignee}"}},
    "api.record_contact": {"json": {}},
    "api.complete_task": {"json": {"data": {}}},
    "api.receive_referral": {"json": {}},
}
ASSIGN_TO = {"decision_task": "mo.manager", "held_task": "alex.agency"}
# What an allowed request answers, where it is not 200.
ALLOWED_STATUS: dict[tuple[str, str], int] = {
    ("views.home", "GET"): 302,  # to My tasks
    ("auth.sign_out", "POST"): 302,  # to sign-in, signed out
    ("contacts.new", "POST"): 400,  # the empty contact form, with its error summary
    ("tasks.show", "POST"): 400,  # the empty task form, with its error summary
    ("queues.claim", "POST"): 302,  # back to the page, claimed
    ("queues.unclaim", "POST"): 302,
    ("queues.assign", "POST"): 302,
    ("api.record_contact", "POST"): 422,  # the empty body, with field errors
    ("api.complete_task", "POST"): 422,
    ("api.receive_referral", "POST"): 400,  # the empty referral, with field errors; nothing created
    ("process_views.migration", "POST"): 400,  # no case chosen: the error summary, nothing moved
    ("process_owner.upload", "POST"): 400,  # no file chosen: the error summary, no draft
    ("process_owner.save_draft", "POST"): 400,  # no diagram sent: nothing saved
    ("process_owner.deploy_draft", "POST"): 400,  # no draft revision named: nothing deployed
    ("process_owner.discard_draft", "POST"): 302,  # back to the processes, saying there is no draft
}
CHANGES = {"queues.claim", "queues.unclaim", "queues.assign", "api.claim_task"}


@dataclass(frozen=True)
class Route:
    endpoint: str
    method: str
    path: str
    expected: dict[str, str] = field(hash=False, compare=False)


def _matrix() -> list[Route]:
    lines = [line.split() for line in MATRIX_TEXT.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert tuple(header[3:]) == ROLES, header
    routes = []
    for row in rows:
        assert len(row) == 3 + len(ROLES), row
        assert set(row[3:]) <= set("ADRNP"), row
        routes.append(Route(row[0], row[1], row[2], dict(zip(ROLES, row[3:], strict=True))))
    return routes


MATRIX = _matrix()
WEDNESDAY = datetime(2024, 3, 6, 9, 30, tzinfo=UTC)
CONFIG = {"WTF_CSRF_ENABLED": False}  # CSRF is tested elsewhere; here it would hide the access checks


# ----------------------------------------------------------------------------------- fixtures


@dataclass
class Council:
    app: Flask
    engine: Engine
    database: Path
    places: dict[str, str]
    cookies: dict[str, str]  # username -> session cookie
    tokens: dict[str, str]  # username -> API token


def _find_task(engine: Engine, step: str, case: str | None = None) -> str:
    with engine.db.read() as session:
        query = sa.select(Task.id).where(Task.element_id == step, Task.status.in_(("ready", "claimed")))
        if case is not None:
            query = query.where(Task.case_id == _case_id(engine, case))
        found = session.scalars(query.order_by(Task.created_at, Task.id)).first()
    assert found, f"no open {step} task"
    return str(found)


def _case_id(engine: Engine, reference: str) -> int:
    return engine.get_case(reference).id


@pytest.fixture(scope="module")
def council(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Council]:
    """The demo council once, plus a new contact whose police check is waiting; signed in once each."""
    previous = clock_module.set_clock(FakeClock(WEDNESDAY))
    try:
        folder = tmp_path_factory.mktemp("matrix")
        app, engine = _app(folder, demo_cases=True, **CONFIG)
        [started] = engine.start_for_subjects(
            "contact",
            "sam.screener",
            [{"name": "Wren Ellis", "date_of_birth": "2016-01-01"}],
            {
                "received_at": "2024-03-06T09:00",
                "referrer": {"name": "Jo Head", "relationship": "Teacher"},
                "source": "2A",
                "concern": "Bruising",
                "consent": {"sought": True, "given": True},
            },
            team_key="mash",
            subject_field="child",
            subjects_field="children",
        )
        reference = str(started.case_reference)
        engine.complete(
            _find_task(engine, "rate_urgency", reference),
            "mo.manager",
            {
                "urgency": "amber",
                "urgency_reason": "Injury",
            },
        )
        places = {
            "mash_case": "DEMO-001",
            "assessment_case": "DEMO-011",
            "edt_case": "DEMO-005",
            "referred_case": "DEMO-009",
            "referral_task": _find_task(engine, "accept_referral", "DEMO-009"),
            "decision_task": _find_task(engine, "decide_response", "DEMO-004"),
            "police_task": _find_task(engine, "police_check", reference),
            "held_task": _find_task(engine, "initial_assessment", "DEMO-010"),
            "other_team_task": _find_task(engine, "decide_transfer", "DEMO-013"),
            "team_task": _find_task(engine, "hold_supervision"),
            "teamless_task": _find_task(engine, "audit_case_file"),
        }
        _check_places(engine, places)
        cookies, api_tokens = {}, {}
        for username in filter(None, USERS.values()):
            client = app.test_client()
            assert sign_in(client, username).status_code == 302
            cookie = client.get_cookie("session")
            assert cookie is not None
            cookies[username] = cookie.value
            # Partners' systems send referrals with a token bound to their agency; everyone else's
            # token is a person's, which /api/referrals refuses.
            sender = PARTNER_SENDERS.get(username)
            api_tokens[username] = tokens.create_token(
                engine.db, f"matrix {username}", username, sender=sender
            )
        engine.db.dispose()
    finally:
        clock_module.set_clock(previous)
    yield Council(app, engine, folder / "web.db", places, cookies, api_tokens)
    engine.db.dispose()


def _check_places(engine: Engine, places: dict[str, str]) -> None:
    """The demo data still holds what the matrix's arguments stand for."""
    tasks = {t.id: t for t in engine.tasks()}
    assert engine.get_case(places["mash_case"]).team_key == "mash"
    assert engine.get_case(places["assessment_case"]).team_key == "assessment"
    assert engine.get_case(places["assessment_case"]).worker not in ("sara.social", "ash.assistant")
    assert engine.get_case(places["edt_case"]).team_key == "edt"
    assert engine.get_case(places["referred_case"]).team_key == "mash"
    referral = tasks[places["referral_task"]]
    assert (referral.team_key, referral.role_key, referral.assignee) == ("assessment", "team_manager", None)
    decision = tasks[places["decision_task"]]
    assert (decision.team_key, decision.role_key, decision.assignee) == ("mash", "mash_manager", None)
    police = tasks[places["police_task"]]
    assert (police.team_key, police.role_key, police.assignee) == ("mash", "police_partner", None)
    assessment = tasks[places["held_task"]]
    assert (assessment.team_key, assessment.assignee) == ("assessment", "sara.social")
    assert tasks[places["other_team_task"]].team_key == "longterm"
    supervision = tasks[places["team_task"]]
    assert (supervision.team_key, supervision.case_id, supervision.assignee) == ("assessment", None, None)
    teamless = tasks[places["teamless_task"]]
    assert (teamless.team_key, teamless.case_id, teamless.assignee) == (None, None, "lee.longterm")


@pytest.fixture
def fresh(council: Council, tmp_path: Path) -> Iterator[Council]:
    """A copy of the council's database of this test's own, for requests that change a task."""
    copy = tmp_path / "copy.db"
    shutil.copy(council.database, copy)
    engine = Engine(Database(f"sqlite:///{copy}"))
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": council.app.config["SECRET_KEY"],
            "RATELIMIT_ENABLED": False,
            "SESSION_COOKIE_SECURE": False,
            **CONFIG,
        },
        engine=engine,
    )
    yield Council(app, engine, copy, council.places, council.cookies, council.tokens)
    engine.db.dispose()


# ----------------------------------------------------------------------------------- the checks


def _cells() -> list[Any]:
    cells = []
    for route in MATRIX:
        for role in ROLES:
            expected = route.expected[role]
            marks = []
            bug = KNOWN_BUGS.get((route.method, route.path, role))
            if bug:
                marks.append(pytest.mark.xfail(strict=True, reason=f"BUG: {bug}"))
            cells.append(
                pytest.param(route, role, id=f"{route.method} {route.path} {role}={expected}", marks=marks)
            )
    return cells


def _request(council: Council, route: Route, role: str) -> tuple[Any, str, FlaskClient]:
    username = USERS[role]
    path = route.path.format(**council.places)
    client: FlaskClient = council.app.test_client()
    headers = {}
    if route.path.startswith("/api/"):
        if username is not None:
            headers["Authorization"] = f"Bearer {council.tokens[username]}"
    elif username is not None:
        client.set_cookie("session", council.cookies[username])
    body: dict[str, Any] = {}
    for kind, value in BODIES.get(route.endpoint, {}).items():
        if kind == "data":
            assignee = ASSIGN_TO.get(_placeholder(route.path), "")
            body[kind] = {
                k: v.format(username=username or "nobody", assignee=assignee) for k, v in value.items()
            }
        else:
            body[kind] = value
    return client.open(path, method=route.method, headers=headers, **body), path, client


def _holder(council: Council, path: str) -> str | None:
    task_id = next((v for k, v in council.places.items() if k.endswith("_task") and v in path), None)
    assert task_id is not None, path
    return council.engine.get_task(task_id).assignee


def _views_recorded(council: Council, username: str | None) -> int:
    """How many views of a child's record the audit trail holds for the person."""
    with council.engine.db.read() as session:
        counted = session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "case.viewed", AuditEvent.actor == (username or ""))
        )
    return int(counted or 0)


def _about_a_child(council: Council, route: Route) -> bool:
    """The route shows a child's record (a case, or a task on a case)."""
    if route.endpoint in ("cases.show", "api.get_case", "process_views.case_diagram"):
        return True
    if route.endpoint == "tasks.show" and route.method == "GET" and "{" in route.path:
        task = council.engine.get_task(council.places[_placeholder(route.path)])
        return task.case_id is not None
    return False


def _is_sign_in_redirect(response: Any) -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response.headers["Location"])
    return location.path == "/sign-in" and "next" in parse_qs(location.query)


@pytest.mark.parametrize(("route", "role"), _cells())
def test_access(route: Route, role: str, council: Council, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("fake_clock")
    changes = route.endpoint in CHANGES
    where = request.getfixturevalue("fresh") if route.method == "POST" else council
    before = _holder(where, route.path.format(**where.places)) if changes else None
    viewed_before = _views_recorded(where, USERS[role])
    response, path, client = _request(where, route, role)
    status = response.status_code
    api = route.path.startswith("/api/")
    username = USERS[role]
    expected = route.expected[role]
    location = response.headers.get("Location", "")
    said = f"{route.method} {path} as {username or 'anonymous'}: {status} {location}"

    if expected == "P":
        assert status not in (401, 403) and not _is_sign_in_redirect(response), said
        assert status < 500, said
    elif expected == "N":
        assert status == 404, said
    elif expected == "D":
        if username is None:
            assert (status == 401) if api else _is_sign_in_redirect(response), said
        else:
            assert status == 403, said
    elif expected == "R":
        assert status == (409 if api else 302), said
        assert not _is_sign_in_redirect(response), said
        if not api:
            # Back to the page, which says why in words.
            shown = client.get(response.headers["Location"]).get_data(as_text=True)
            assert "Could not" in shown, f"{said}: no reason shown"
    else:  # A
        assert status == ALLOWED_STATUS.get((route.endpoint, route.method), 200), said
        assert not _is_sign_in_redirect(response), said

    # Every view of a child's record goes to the audit trail; a refused one shows nothing to record.
    # (A POST refused with 403 by someone who may see the task but not complete it shows them the
    # task again, and that view is recorded.)
    views = _views_recorded(where, username) - viewed_before
    if expected == "A" and _about_a_child(where, route):
        assert views == 1, f"{said}: {views} views recorded"
    elif expected in "DN" and route.method == "GET":
        assert views == 0, f"{said}: {views} views recorded"

    if changes:
        after = _holder(where, path)
        if expected == "A":
            wanted = {
                "queues.claim": username,
                "api.claim_task": username,
                "queues.unclaim": None,
                "queues.assign": ASSIGN_TO.get(_placeholder(route.path), ""),
            }[route.endpoint]
            assert after == wanted, f"{said}: held by {after!r} afterwards, not {wanted!r}"
        else:
            assert after == before, f"{said}: held by {after!r} afterwards, was {before!r}"


def _placeholder(path: str) -> str:
    return path.split("{", 1)[1].split("}", 1)[0] if "{" in path else ""


def test_every_route_is_in_the_matrix(council: Council) -> None:
    """A new route (or a new method on one) must be given its row before it ships."""
    in_app = {
        (rule.endpoint, method)
        for rule in council.app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    in_matrix = {(route.endpoint, route.method) for route in MATRIX}
    assert in_app - in_matrix == set(), "routes the access matrix does not classify"
    assert in_matrix - in_app == set(), "matrix rows for routes that no longer exist"


def test_each_row_is_the_route_it_names(council: Council) -> None:
    adapter = council.app.url_map.bind("localhost")
    for route in MATRIX:
        path = route.path.format(**council.places)
        endpoint, _ = adapter.match(path, method=route.method)
        assert endpoint == route.endpoint, f"{route.method} {path} is {endpoint}, not {route.endpoint}"
