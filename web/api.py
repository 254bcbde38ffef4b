"""The JSON API, for other systems: processes, contacts, tasks, cases, escalations.

Every call but ``/api/openapi.json`` needs ``Authorization: Bearer <token>`` (see
:mod:`web.tokens`).  A token acts as its user, under the same access rules as the pages
(:mod:`web.access`).  Reads go to the engine's projection tables; every change is an engine
command.  Errors are problem details (RFC 9457) with, for invalid data, each problem beside
its field; an error never leaves a change behind.  What the routes take and give is declared
once, in :mod:`web.openapi`, and validated from there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import jsonschema
import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from engine import clock
from engine.core import Engine
from engine.errors import Conflict, FrontdoorError, InvalidData, NotFound, PermissionDenied, ProcessError
from engine.models import (
    AuditEvent,
    CaseFact,
    CaseLink,
    CaseRecord,
    ProcessInstance,
    StatutoryClock,
    Task,
    User,
)
from engine.projection import OPEN_STATUSES

from . import access, openapi, tokens
from .auth import Person, load_person
from .queues import open_tasks

bp = Blueprint("api", __name__, url_prefix=openapi.PREFIX)

F = TypeVar("F", bound=Callable[..., Any])

# The contact process, the team its cases start in, and where the child's details go.
CONTACT_PROCESS = "contact"
CONTACT_TEAM = "mash"
CONTACT_SUBJECT = "child"
CONTACT_SUBJECTS = "children"


class Problem(Exception):
    """An error answer: raised anywhere in a handler, sent as application/problem+json."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    status: int,
    detail: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    kind, title = openapi.PROBLEMS.get(status, ("about:blank", "Error"))
    body: dict[str, Any] = {"type": kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for name, value in headers.items() if headers else ():
        response.headers[name] = value
    return response


def _engine() -> Engine:
    from . import engine_of

    return engine_of(current_app)


def _config(name: str, default: str) -> str:
    return str(current_app.config.get(f"FRONTDOOR_{name}", default))


# ------------------------------------------------------------------------------------ errors


@bp.errorhandler(Problem)
def _problem(exc: Problem) -> Response:
    return problem_response(exc.status, exc.detail, exc.errors, exc.headers)


def _field_errors(exc: InvalidData, prefix: str = "") -> list[dict[str, str]]:
    def where(path: str) -> str:
        return "/".join(p for p in (prefix, path) if p)

    if not exc.fields:
        return [{"field": where(""), "message": str(exc)}]
    return [{"field": where(path), "message": message} for path, message in exc.fields.items()]


@bp.errorhandler(FrontdoorError)
def _engine_error(exc: FrontdoorError) -> Response:
    if isinstance(exc, InvalidData):
        return problem_response(422, str(exc), _field_errors(exc))
    if isinstance(exc, NotFound):
        return problem_response(404, str(exc))
    if isinstance(exc, Conflict):
        return problem_response(409, str(exc))
    if isinstance(exc, PermissionDenied):
        return problem_response(403, str(exc))
    if isinstance(exc, ProcessError):
        current_app.logger.error("process error in %s: %s", request.path, exc)
        return problem_response(500, f"The process could not go on: {exc}")
    return problem_response(500, str(exc))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return problem_response(exc.code or 500, exc.description, headers=headers)


@bp.before_app_request
def _unrouted_api_paths() -> Response | None:
    """A path under /api that matches no route (or not with this method) gets a problem, not a page."""
    exc = request.routing_exception
    if exc is None or request.url_rule is not None:
        return None
    if request.path != openapi.PREFIX and not request.path.startswith(openapi.PREFIX + "/"):
        return None
    if isinstance(exc, HTTPException) and exc.code in (404, 405):
        return _http_error(exc)
    return None


# -------------------------------------------------------------------------------- authentication

_CHALLENGE = 'Bearer realm="frontdoor"'


def token_required(view: F) -> F:
    """The token's user as ``g.person``; 401 without a valid token."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "Send an API token as 'Authorization: Bearer <token>'.",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        found = tokens.verify(_engine().db, token.strip())
        person = load_person(found.user_id) if found else None
        if person is None:
            raise Problem(
                401,
                "The token is not known, has been revoked, or its user is no longer active.",
                headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
            )
        g.person = person
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _person() -> Person:
    person: Person = g.person
    return person


def _allow(allowed: bool, detail: str) -> None:
    if not allowed:
        raise Problem(403, detail)


# ---------------------------------------------------------------------------------------- input


def _query(path: str, method: str = "get") -> dict[str, Any]:
    """The operation's query parameters, typed and checked against their schemas in web.openapi."""
    declared = [
        openapi.PARAMETERS[p["$ref"].rsplit("/", 1)[-1]]
        for p in openapi.operation(path, method).get("parameters", [])
    ]
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for param in declared:
        if param["in"] != "query":
            continue
        name, schema = param["name"], param["schema"]
        raw = request.args.get(name)
        if raw is None:
            values[name] = schema.get("default")
            continue
        value: Any = raw
        if schema.get("type") == "integer":
            try:
                value = int(raw)
            except ValueError:
                errors.append({"field": name, "message": f"{name} must be a whole number, not {raw!r}"})
                continue
        problems = list(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if problems:
            errors.append({"field": name, "message": f"{name}: {problems[0].message}"})
            continue
        values[name] = value
    if errors:
        raise Problem(400, "; ".join(e["message"] for e in errors), errors)
    return values


def _json_body() -> Any:
    if not request.is_json:
        raise Problem(415, "Send the body as JSON, with 'Content-Type: application/json'.")
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"The body is not valid JSON: {exc}") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _validate(schema_name: str, body: Any) -> None:
    errors = []
    for error in sorted(
        openapi.validator(schema_name).iter_errors(body), key=lambda e: list(map(str, e.absolute_path))
    ):
        path = "/".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            # Beside the missing field itself, as the engine reports a form's missing answers.
            for name in error.validator_value:
                if name not in error.instance:
                    field = f"{path}/{name}" if path else name
                    errors.append({"field": field, "message": "This is required"})
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for name in sorted(set(error.instance) - known):
                field = f"{path}/{name}" if path else name
                errors.append({"field": field, "message": "This is not something this request takes"})
            continue
        errors.append({"field": path, "message": error.message})
    if errors:
        raise Problem(422, "; ".join(f"{e['field'] or 'the body'}: {e['message']}" for e in errors), errors)


# ------------------------------------------------------------------------------------- output


def _instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _DueWords:
    """overdue / today / soon / later for a due date, as the queues say it (engine.due_window)."""

    def __init__(self, engine: Engine) -> None:
        self.now = clock.now()
        self.end_of_today = engine.due_window("today")[1]
        self.soon = engine.due_window("soon")[1]

    def __call__(self, due_at: datetime | None) -> str | None:
        if due_at is None:
            return None
        if due_at < self.now:
            return "overdue"
        if due_at < self.end_of_today:
            return "today"
        return "soon" if due_at < self.soon else "later"


def _task_json(task: Task, case: CaseRecord | None, revision: int, due: _DueWords) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "process": task.process_key,
        "element_id": task.element_id,
        "status": task.status,
        "case_reference": case.reference if case else None,
        "child_name": case.subject_name if case else None,
        "team": task.team_key,
        "role": task.role_key,
        "assignee": task.assignee,
        "created_at": _instant(task.created_at),
        "due_at": _instant(task.due_at),
        "due": due(task.due_at),
        "escalation_level": task.escalation_level,
        "form": task.form_key,
        "instructions": task.instructions,
        "revision": revision,
        "completed_by": task.completed_by,
        "completed_at": _instant(task.completed_at),
    }


def _ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# ---------------------------------------------------------------------------------------- reads

_TASK_ROWS = (
    sa.select(Task, CaseRecord, ProcessInstance.revision)
    .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
    .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
)
_TASK_ORDER = (Task.due_at.is_(None), Task.due_at, Task.created_at, Task.id)


def _visible(person: Person) -> Any:
    """SQL for web.access.can_view_task, so a page of tasks is a page of visible ones.

    web.access stays the judge: every row is checked with can_view_task as well.
    """
    conditions: list[Any] = [Task.assignee == person.username]
    offered = [sa.and_(Task.team_key == team, Task.role_key == role) for team, role in person.memberships]
    if person.roles:
        offered.append(sa.and_(Task.team_key.is_(None), Task.role_key.in_(sorted(person.roles))))
    if offered:
        conditions.append(sa.and_(Task.assignee.is_(None), sa.or_(*offered)))
    if not access.is_partner_only(person):
        managed = access.managed_teams(person)
        if "*" in managed:
            return sa.true()
        if managed:
            conditions.append(Task.team_key.in_(sorted(managed)))
        conditions.append(CaseRecord.worker == person.username)
        teams = access.case_teams(person)
        if teams:
            conditions.append(CaseRecord.team_key.in_(sorted(teams)))
    return sa.or_(*conditions)


def _task_rows(query: Any) -> list[tuple[Task, CaseRecord | None, int]]:
    with _engine().db.read() as session:
        return [(task, case, revision) for task, case, revision in session.execute(query)]


def _one_task(task_id: str) -> tuple[Task, CaseRecord | None, int]:
    rows = _task_rows(_TASK_ROWS.where(Task.id == task_id))
    if not rows:
        raise Problem(404, f"There is no task {task_id!r}.")
    return rows[0]


def _visible_task(task_id: str) -> tuple[Task, CaseRecord | None, int]:
    task, case, revision = _one_task(task_id)
    _allow(access.can_view_task(_person(), task, case), "This task is not offered to you or your teams.")
    return task, case, revision


def _open_tasks_of_case(case_id: int, person: Person, due: _DueWords) -> list[dict[str, Any]]:
    rows = _task_rows(
        _TASK_ROWS.where(Task.case_id == case_id, Task.status.in_(OPEN_STATUSES)).order_by(*_TASK_ORDER)
    )
    return [_task_json(t, c, r, due) for t, c, r in rows if access.can_view_task(person, t, c)]


def _page(items: list[Any], limit: int, offset: int, more: bool) -> dict[str, Any]:
    return {"items": items, "limit": limit, "offset": offset, "next_offset": offset + limit if more else None}


# --------------------------------------------------------------------------------------- routes


@bp.get("/openapi.json")
def openapi_document() -> Response:
    document = openapi.build_document(_engine(), _config("CONTACT_PROCESS", CONTACT_PROCESS))
    return _ok(document)


@bp.get("/processes")
@token_required
def list_processes() -> Response:
    engine = _engine()
    newest: dict[str, Any] = {}
    for definition in engine.list_processes():
        if definition.status == "active":
            newest[definition.key] = definition  # ordered by version: the last one wins
    items = [
        {
            "key": d.key,
            "version": d.version,
            "name": d.name,
            "start_form": engine.start_form(d.key),
            "deployed_at": _instant(d.deployed_at),
        }
        for d in newest.values()
    ]
    return _ok({"items": items})


@bp.post("/contacts")
@token_required
def record_contact() -> Response:
    person = _person()
    _allow(
        bool(access.case_teams(person)) and not access.is_partner_only(person),
        "Only practitioners and managers can record a contact.",
    )
    body = _json_body()
    if not isinstance(body, dict):
        raise Problem(
            422,
            "The body must be a JSON object: the contact's answers.",
            [{"field": "", "message": "Send a JSON object"}],
        )
    children = body.get(CONTACT_SUBJECTS)
    errors = []
    if not isinstance(children, list) or not children or not all(isinstance(c, dict) for c in children):
        errors.append({"field": CONTACT_SUBJECTS, "message": "Name at least one child, each as an object"})
    else:
        errors += [
            {
                "field": f"{CONTACT_SUBJECTS}/{i}/reference",
                "message": "Frontdoor gives each case its reference",
            }
            for i, child in enumerate(children)
            if "reference" in child
        ]
    if errors:
        raise Problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    shared = {k: v for k, v in body.items() if k != CONTACT_SUBJECTS}
    engine = _engine()
    results = engine.start_for_subjects(
        _config("CONTACT_PROCESS", CONTACT_PROCESS),
        person.username,
        children,
        shared,
        team_key=_config("CONTACT_TEAM", CONTACT_TEAM),
        subject_field=CONTACT_SUBJECT,
        subjects_field=CONTACT_SUBJECTS,
    )
    due = _DueWords(engine)
    references = [str(result.case_reference) for result in results]
    with engine.db.read() as session:
        names = dict(
            session.execute(
                sa.select(CaseRecord.reference, CaseRecord.subject_name).where(
                    CaseRecord.reference.in_(references)
                )
            ).all()
        )
    cases = []
    for result, reference in zip(results, references, strict=True):
        rows = _task_rows(_TASK_ROWS.where(Task.id.in_(result.open_tasks)).order_by(*_TASK_ORDER))
        cases.append(
            {
                "reference": reference,
                "child_name": names.get(reference),
                "url": url_for("api.get_case", reference=reference),
                "open_tasks": [
                    _task_json(t, c, r, due) for t, c, r in rows if access.can_view_task(person, t, c)
                ],
            }
        )
    return _ok({"cases": cases}, 201, {"Location": cases[0]["url"]})


@bp.get("/tasks")
@token_required
def list_tasks() -> Response:
    person = _person()
    args = _query(f"{openapi.PREFIX}/tasks")
    engine = _engine()
    conditions: list[Any] = [open_tasks()]
    if args["user"] is not None:
        conditions.append(Task.assignee == args["user"])
    if args["team"] is not None:
        conditions.append(Task.team_key == args["team"])
    if args["case"] is not None:
        case_id = sa.select(CaseRecord.id).where(CaseRecord.reference == args["case"]).scalar_subquery()
        conditions.append(Task.case_id == case_id)
    if args["due"] is not None:
        conditions.extend(engine.due_filter(args["due"]))
    managed = access.managed_teams(person)
    if "*" not in managed and (args["team"] is None or args["team"] not in managed):
        conditions.append(_visible(person))  # a team's manager sees all of it: no condition to check
    limit, offset = args["limit"], args["offset"]
    with engine.db.read() as session:
        ids = _ordered_ids(session, conditions, offset + limit + 1, undated=args["due"] is None)
        window = ids[offset:]
        found = {
            task.id: (task, case, revision)
            for task, case, revision in session.execute(_TASK_ROWS.where(Task.id.in_(window)))
        }
    rows = [found[i] for i in window if i in found]
    due = _DueWords(engine)
    items = [_task_json(t, c, r, due) for t, c, r in rows[:limit] if access.can_view_task(person, t, c)]
    return _ok(_page(items, limit, offset, len(rows) > limit))


def _ordered_ids(session: Any, conditions: list[Any], count: int, undated: bool = True) -> list[str]:
    """The first ``count`` task ids matching ``conditions`` in the queues' order: dated by due date,
    then undated by creation.  Ids alone, from ranges of the due-ordered partial indexes of the open
    tasks that LIMIT stops (the case LEFT JOINed for the access conditions); the rows after, by id."""
    base = sa.select(Task.id).select_from(Task).outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
    ids = list(
        session.scalars(
            base.where(*conditions, Task.due_at.is_not(None))
            .order_by(Task.due_at, Task.created_at, Task.id)
            .limit(count)
        )
    )
    if len(ids) < count and undated:
        ids += session.scalars(
            base.where(*conditions, Task.due_at.is_(None))
            .order_by(Task.created_at, Task.id)
            .limit(count - len(ids))
        )
    return ids


@bp.post("/tasks/<task_id>/claim")
@token_required
def claim_task(task_id: str) -> Response:
    person = _person()
    _visible_task(task_id)
    engine = _engine()
    engine.claim(task_id, person.username)
    task, case, revision = _one_task(task_id)
    return _ok(_task_json(task, case, revision, _DueWords(engine)))


@bp.post("/tasks/<task_id>/complete")
@token_required
def complete_task(task_id: str) -> Response:
    person = _person()
    body = _json_body()
    _validate("CompleteTaskRequest", body)
    _visible_task(task_id)
    engine = _engine()
    try:
        engine.complete(task_id, person.username, body["data"], body.get("expected_revision"))
    except InvalidData as exc:
        # The form's field paths, as paths in this request's body.
        raise Problem(422, str(exc), _field_errors(exc, "data")) from None
    task, case, revision = _one_task(task_id)
    due = _DueWords(engine)
    return _ok(
        {
            "task": _task_json(task, case, revision, due),
            "case_reference": case.reference if case else None,
            "open_tasks": _open_tasks_of_case(case.id, person, due) if case else [],
        }
    )


@bp.get("/cases/<reference>")
@token_required
def get_case(reference: str) -> Response:
    person = _person()
    engine = _engine()
    with engine.db.read() as session:
        case = session.scalar(sa.select(CaseRecord).where(CaseRecord.reference == reference))
    if case is None:
        raise Problem(404, f"There is no case with the reference {reference!r}.")
    _allow(access.can_view_case(person, case), "This case is not held by you or your teams.")
    access.record_view(person, case, "api")
    return _ok(_case_summary(engine, case, person))


def _case_summary(engine: Engine, case: CaseRecord, person: Person) -> dict[str, Any]:
    calendar = engine.calendar
    today = clock.now().astimezone(calendar.timezone).date()
    with engine.db.read() as session:
        facts = dict(
            session.execute(sa.select(CaseFact.name, CaseFact.value).where(CaseFact.case_id == case.id)).all()
        )
        clocks = session.scalars(
            sa.select(StatutoryClock)
            .where(StatutoryClock.case_id == case.id)
            .order_by(StatutoryClock.started_at, StatutoryClock.id)
        ).all()
        links = session.execute(
            sa.select(CaseRecord.reference, CaseLink.kind)
            .join(CaseLink, CaseLink.linked_case_id == CaseRecord.id)
            .where(CaseLink.case_id == case.id)
            .order_by(CaseRecord.reference)
        ).all()
        started = session.scalar(
            sa.select(AuditEvent.data)
            .where(AuditEvent.case_id == case.id, AuditEvent.action == "instance.started")
            .order_by(AuditEvent.seq)
            .limit(1)
        )
    child = ((started or {}).get("data") or {}).get(CONTACT_SUBJECT)

    def clock_json(c: StatutoryClock) -> dict[str, Any]:
        left = None
        if c.stopped_at is None and c.target_at is not None:
            left = calendar.working_days_between(today, c.target_at.astimezone(calendar.timezone).date())
        return {
            "name": c.name,
            "started_at": _instant(c.started_at),
            "target_at": _instant(c.target_at),
            "stopped_at": _instant(c.stopped_at),
            "breached": c.breached,
            "working_days_left": left,
        }

    return {
        "reference": case.reference,
        "child_name": case.subject_name,
        "status": case.status,
        "team": case.team_key,
        "worker": case.worker,
        "opened_at": _instant(case.opened_at),
        "closed_at": _instant(case.closed_at),
        "closed_reason": case.closed_reason,
        "child": child if isinstance(child, dict) else None,
        "facts": facts,
        "clocks": [clock_json(c) for c in clocks],
        "open_tasks": _open_tasks_of_case(case.id, person, _DueWords(engine)),
        "linked_cases": [{"reference": ref, "kind": kind} for ref, kind in links],
    }


@bp.get("/escalations")
@token_required
def list_escalations() -> Response:
    person = _person()
    _allow(access.is_manager(person), "Escalations are for managers.")
    args = _query(f"{openapi.PREFIX}/escalations")
    limit, offset = args["limit"], args["offset"]
    engine = _engine()
    managed = access.managed_teams(person)
    # The escalated open tasks, highest level first, then as the queues order them: per level, ids
    # from ix_task_escalated (its predicate written literally, as the planner needs it), rows by id.
    escalated = [open_tasks(), Task.escalation_level > sa.literal(0, literal_execute=True)]
    conditions = [*escalated] if "*" in managed else [*escalated, Task.team_key.in_(sorted(managed))]
    count = offset + limit + 1
    with engine.db.read() as session:
        highest = sa.select(sa.func.max(Task.escalation_level)).where(*escalated)
        level = session.scalar(highest)
        ids: list[str] = []
        while level and len(ids) < count:  # each level present: one seek, then one range
            ids += _ordered_ids(session, [*conditions, Task.escalation_level == level], count - len(ids))
            level = session.scalar(highest.where(Task.escalation_level < level))
        window = ids[offset:]
        query = (
            sa.select(
                Task, CaseRecord, ProcessInstance.revision, User.username, User.display_name, User.employment
            )
            .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
            .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
            .outerjoin(User, User.username == Task.assignee)
            .where(Task.id.in_(window))
        )
        found = {row[0].id: row for row in session.execute(query)}
    rows = [found[i] for i in window if i in found]
    due = _DueWords(engine)
    calendar = engine.calendar
    ladder = engine.services.ladder
    today = due.now.astimezone(calendar.timezone).date()
    items = []
    for task, case, revision, username, display_name, employment in rows[:limit]:
        late_hours = late_days = None
        if task.due_at is not None:
            late = max((due.now - task.due_at).total_seconds(), 0.0)
            late_hours = round(late / 3600, 1)
            due_day = task.due_at.astimezone(calendar.timezone).date()
            late_days = max(calendar.working_days_between(due_day, today), 0) if late else 0
        items.append(
            {
                "task": _task_json(task, case, revision, due),
                "level": task.escalation_level,
                "label": str(
                    ladder.get(str(task.escalation_level), {}).get("label", f"Level {task.escalation_level}")
                ),
                "escalated_at": _instant(task.escalated_at),
                "late_by_hours": late_hours,
                "working_days_late": late_days,
                "holder": (
                    {"username": username, "display_name": display_name, "employment": employment}
                    if username
                    else None
                ),
            }
        )
    return _ok(_page(items, limit, offset, len(rows) > limit))


# POST /api/referrals (partner agencies' systems) is defined in web.referrals, on this blueprint.
from . import referrals as _referrals  # noqa: E402, F401
