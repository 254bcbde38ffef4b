"""Work queues: "My tasks" and each team's queue; claiming, releasing and assigning tasks.

The queues are read with SQL from the task projection joined to case_record (the indexes on
task (assignee, status, due_at) and (team_key, status, due_at) serve them); every change is an
engine command (claim, unclaim, assign), whose refusals are shown to the person in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from engine import clock
from engine.errors import FrontdoorError, NotFound
from engine.models import CaseLink, CaseRecord, Membership, ProcessDefinition, Role, Task, Team, User

from . import access, engine_of
from .auth import Person, person

bp = Blueprint("queues", __name__)

OPEN_STATUSES = ("ready", "claimed")
LIMIT = 200
COUNT_CAP = 1000
DUE_WORDS = {"overdue": "Overdue", "today": "Due today", "soon": "Due soon (within 2 working days)"}


# ------------------------------------------------------------------ due dates in words


@dataclass(frozen=True)
class Due:
    words: str  # "Overdue by 2 working days", "Due today", "Due in 1 working day"
    state: str  # overdue | today | soon | later | none
    date_text: str = ""  # "Wednesday 6 March 2024"
    time_text: str = ""  # "17:00"
    iso: str = ""

    @property
    def css(self) -> str:
        return f"fd-due--{self.state}" if self.state in ("overdue", "today", "soon") else ""


def long_date(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


class DueClock:
    """Says how a due instant stands against now, in the council's working days (one per page)."""

    def __init__(self) -> None:
        engine = engine_of(current_app)
        self.calendar = engine.calendar
        self.now = clock.now()
        self.today = self.now.astimezone(self.calendar.timezone).date()
        self.end_of_today = engine.due_window("today")[1]
        self.soon_before = engine.due_window("soon")[1]
        self._seen: dict[datetime | None, Due] = {}

    def __call__(self, due_at: datetime | None) -> Due:
        known = self._seen.get(due_at)
        if known is None:
            known = self._seen[due_at] = self._words(due_at)
        return known

    def _words(self, due_at: datetime | None) -> Due:
        if due_at is None:
            return Due("No due date", "none")
        local = due_at.astimezone(self.calendar.timezone)
        when = {"date_text": long_date(local), "time_text": f"{local:%H:%M}", "iso": due_at.isoformat()}
        day = local.date()
        if due_at < self.now:
            if day == self.today:
                return Due(f"Overdue since {local:%H:%M} today", "overdue", **when)
            late = self.calendar.working_days_between(day, self.today)
            if late <= 0:
                days = (self.today - day).days
                return Due(f"Overdue by {days} day{'s' if days != 1 else ''}", "overdue", **when)
            return Due(f"Overdue by {late} working day{'s' if late != 1 else ''}", "overdue", **when)
        if due_at < self.end_of_today:
            return Due("Due today", "today", **when)
        ahead = self.calendar.working_days_between(self.today, day)
        state = "soon" if due_at < self.soon_before else "later"
        if ahead <= 0:
            days = (day - self.today).days
            return Due(f"Due in {days} day{'s' if days != 1 else ''}", state, **when)
        return Due(f"Due in {ahead} working day{'s' if ahead != 1 else ''}", state, **when)


# ------------------------------------------------------------------ reading the queues


@dataclass
class Filters:
    step: str = ""
    child: str = ""
    due: str = ""

    @classmethod
    def from_request(cls) -> Filters:
        due = request.args.get("due", "").strip()
        return cls(
            step=request.args.get("step", "").strip()[:255],
            child=request.args.get("child", "").strip()[:100],
            due=due if due in DUE_WORDS else "",
        )

    @property
    def active(self) -> bool:
        return bool(self.step or self.child or self.due)

    def args(self) -> dict[str, str]:
        return {k: v for k, v in (("step", self.step), ("child", self.child), ("due", self.due)) if v}


@dataclass
class Row:
    id: str
    name: str
    element_id: str
    process: str
    role: str
    team_key: str | None
    role_key: str | None
    assignee: str | None
    assignee_name: str | None
    status: str
    escalation_level: int
    escalation_label: str | None
    due: Due
    case_id: int | None
    reference: str | None
    child_name: str | None
    case_url: str | None = None
    can_claim: bool = False
    can_release: bool = False
    assign_options: list[tuple[str, str]] | None = None  # (username, label); None: no Assign control
    siblings: list[str] = field(default_factory=list)
    url: str = ""

    def action_url(self, action: str) -> str:
        """``/tasks/<id>/claim`` and the like (built here: url_for 600 times a page is slow)."""
        return f"{self.url}/{action}"


@dataclass
class Section:
    rows: list[Row]
    heading: str | None = None  # "Siblings: Ben Walker (DEMO-002), Cara Walker (DEMO-003)"


_ROW_COLUMNS = (
    Task.id,
    Task.name,
    Task.element_id,
    Task.process_key,
    Task.role_key,
    Task.team_key,
    Task.assignee,
    Task.status,
    Task.due_at,
    Task.escalation_level,
    Task.case_id,
    Task.created_at,
    CaseRecord.reference,
    CaseRecord.subject_name,
    CaseRecord.team_key.label("case_team"),
    CaseRecord.worker,
    User.display_name.label("assignee_name"),
)


def _select_rows(conditions: list[Any]) -> sa.Select[Any]:
    return (
        sa.select(*_ROW_COLUMNS)
        .select_from(Task)
        .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
        .outerjoin(User, User.username == Task.assignee)
        .where(*conditions)
    )


def _filter_conditions(filters: Filters) -> list[Any]:
    """SQL conditions for the filters (on the task table alone: no join, so the due-date index
    still gives the order)."""
    conditions: list[Any] = []
    if filters.step:
        conditions.append(Task.element_id == filters.step)
    if filters.due:
        conditions.extend(engine_of(current_app).due_filter(filters.due))
    if filters.child:
        needle = filters.child.lower()
        matching = sa.select(CaseRecord.id).where(
            sa.or_(
                sa.func.lower(CaseRecord.reference).contains(needle, autoescape=True),
                sa.func.lower(CaseRecord.subject_name).contains(needle, autoescape=True),
            )
        )
        conditions.append(Task.case_id.in_(matching))
    return conditions


@dataclass
class Queue:
    sections: list[Section]
    shown: int
    total: int
    steps: list[tuple[str, str, str]]  # (process name, element id, task name)
    capped: bool = False  # more than ``total`` (counting stopped there)


def page_query(conditions: list[Any]) -> sa.Select[Any]:
    """The ids of the first LIMIT dated tasks, in the order the (…, status, due_at) index keeps."""
    return sa.select(Task.id).where(*conditions, Task.due_at.is_not(None)).order_by(Task.due_at).limit(LIMIT)


def read_queue(base: list[Any], filters: Filters, view: str, team: str | None, exact: bool) -> Queue:
    """The first LIMIT open tasks matching ``base`` and the filters, soonest due first, grouped.

    Two reads, so that the (…, status, due_at) indexes give the order and LIMIT stops the scan:
    the ids in due order from the task table alone (then the undated ones, if there is room),
    then those few rows with their case and assignee.  ``exact``: the conditions are all on
    indexed columns, so the total is counted; otherwise it is counted up to COUNT_CAP.
    """
    engine = engine_of(current_app)
    conditions = [*base, *_filter_conditions(filters)]
    exact = exact and not (filters.step or filters.child)
    with engine.db.read() as session:
        page = session.execute(page_query(conditions)).all()
        if len(page) < LIMIT:
            page += session.execute(
                sa.select(Task.id)
                .where(*conditions, Task.due_at.is_(None))
                .order_by(Task.created_at)
                .limit(LIMIT - len(page))
            ).all()
        ids = [r.id for r in page]
        found = session.execute(_select_rows([Task.id.in_(ids)])).all() if ids else []
        total, capped = len(ids), False
        if len(ids) == LIMIT:
            counted = sa.select(Task.id).where(*conditions)
            if not exact:
                counted = counted.limit(COUNT_CAP + 1)
            total = session.scalar(sa.select(sa.func.count()).select_from(counted.subquery())) or 0
            capped = total > COUNT_CAP and not exact
        links = _sibling_links(session, {r.case_id for r in found if r.case_id is not None})
        names = _names(session)
        holders = _holders(session, team) if view == "team" and _manages(team) else None
    far = datetime.max.replace(tzinfo=UTC)
    found.sort(key=lambda r: (r.due_at or far, r.created_at, r.id))
    due, case_links = DueClock(), CaseLinks()
    rows = [_row(r, due, names, holders, case_links) for r in found]
    return Queue(_group(rows, links), len(rows), COUNT_CAP if capped else total, [], capped)


def _sibling_links(session: Any, case_ids: set[int]) -> list[tuple[int, int]]:
    if len(case_ids) < 2:
        return []
    return [
        (a, b)
        for a, b in session.execute(
            sa.select(CaseLink.case_id, CaseLink.linked_case_id).where(
                CaseLink.case_id.in_(case_ids), CaseLink.linked_case_id.in_(case_ids)
            )
        )
    ]


@dataclass
class _Names:
    processes: dict[str, str]
    roles: dict[str, str]
    teams: dict[str, str]


def _names(session: Any) -> _Names:
    # Few rows (one a deployed version); the newest version's name wins.
    versions = sa.select(ProcessDefinition.key, ProcessDefinition.name).order_by(
        ProcessDefinition.key, ProcessDefinition.version
    )
    return _Names(
        processes={k: n for k, n in session.execute(versions) if n},
        roles=dict(session.execute(sa.select(Role.key, Role.name)).all()),
        teams=dict(session.execute(sa.select(Team.key, Team.name)).all()),
    )


def _holders(session: Any, team: str | None) -> dict[str, list[tuple[str, str]]]:
    """role -> (username, label) of the team's active members holding it, for the Assign control."""
    rows = session.execute(
        sa.select(Role.key, User.username, User.display_name, User.employment)
        .join(Membership, Membership.role_id == Role.id)
        .join(User, User.id == Membership.user_id)
        .join(Team, Team.id == Membership.team_id)
        .where(Team.key == team, User.active.is_(True))
        .order_by(User.display_name)
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for role, username, display, employment in rows:
        label = display + (" (agency)" if employment == "agency" else "")
        out.setdefault(role, []).append((username, label))
    return out


def _manages(team: str | None) -> bool:
    managed = access.managed_teams(person())
    return team is not None and ("*" in managed or team in managed)


class CaseLinks:
    """Links to the case pages the person may open (access decided once per kind of case, not per row)."""

    def __init__(self) -> None:
        self.enabled = "cases.show" in current_app.view_functions
        self.me = person()
        self.task_url = url_for("tasks.show", task_id="__task__")
        self._allowed: dict[tuple[str | None, str | None], bool] = {}

    def __call__(self, row: Any) -> str | None:
        if row.case_id is None or not self.enabled:
            return None
        key = (row.case_team, row.worker)
        allowed = self._allowed.get(key)
        if allowed is None:
            case = CaseRecord(
                id=row.case_id, reference=row.reference, team_key=row.case_team, worker=row.worker
            )
            allowed = self._allowed[key] = access.can_view_case(self.me, case)
        return url_for("cases.show", reference=row.reference) if allowed else None


def _row(
    r: Any,
    due: DueClock,
    names: _Names,
    holders: dict[str, list[tuple[str, str]]] | None,
    links: CaseLinks,
) -> Row:
    me = links.me
    offered = r.assignee is None and r.status == "ready" and _offered(me, r.team_key, r.role_key)
    return Row(
        id=r.id,
        name=r.name,
        element_id=r.element_id,
        process=names.processes.get(r.process_key, r.process_key.replace("_", " ").capitalize()),
        role=names.roles.get(r.role_key or "", r.role_key or ""),
        team_key=r.team_key,
        role_key=r.role_key,
        assignee=r.assignee,
        assignee_name=r.assignee_name or r.assignee,
        status=r.status,
        escalation_level=r.escalation_level or 0,
        escalation_label=_ladder().get(str(r.escalation_level or 0), {}).get("label"),
        due=due(r.due_at),
        case_id=r.case_id,
        reference=r.reference,
        child_name=r.subject_name,
        case_url=links(r),
        url=links.task_url.replace("__task__", r.id),
        can_claim=offered,
        can_release=r.assignee == me.username,
        assign_options=None if holders is None else holders.get(r.role_key or "", []),
    )


def _ladder() -> dict[str, Any]:
    ladder: dict[str, Any] = engine_of(current_app).services.ladder
    return ladder


def _offered(me: Person, team: str | None, role: str | None) -> bool:
    if role is None:
        return False
    return (team, role) in set(me.memberships) or (team is None and role in me.roles)


def _group(rows: list[Row], links: list[tuple[int, int]]) -> list[Section]:
    """Tasks of linked cases (siblings) together, under a heading, where the first of them falls."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[Row]] = {}
    for row in rows:
        if row.case_id is not None:
            groups.setdefault(find(row.case_id), []).append(row)
    sections: list[Section] = []
    placed: set[int] = set()
    for row in rows:
        root = find(row.case_id) if row.case_id is not None else None
        members = groups.get(root, []) if root is not None else []
        cases = {m.case_id for m in members}
        if root is None or len(cases) < 2:
            sections.append(Section([row]))
            continue
        if root in placed:
            continue
        placed.add(root)
        children: dict[int | None, str] = {}
        for member in sorted(members, key=lambda m: m.reference or ""):
            children.setdefault(
                member.case_id, f"{member.child_name or 'Unnamed child'} ({member.reference})"
            )
        for member in members:
            member.siblings = [text for case_id, text in children.items() if case_id != member.case_id]
        sections.append(Section(members, "Siblings: " + ", ".join(children.values())))
    return sections


_BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


@dataclass(frozen=True)
class Step:
    process: str  # the process's name
    element_id: str
    name: str
    role: str | None  # the role key of its lane


def all_steps() -> list[Step]:
    """Every user task of the newest version of each deployed process (parsed once per deployment)."""
    engine = engine_of(current_app)
    with engine.db.read() as session:
        newest = session.scalar(sa.select(sa.func.max(ProcessDefinition.id)))
        cache = current_app.extensions.get("frontdoor.queue_steps")
        if cache is not None and cache[0] == newest:
            return list(cache[1])
        latest = (
            sa.select(sa.func.max(ProcessDefinition.id)).group_by(ProcessDefinition.key).scalar_subquery()
        )
        definitions = session.execute(
            sa.select(ProcessDefinition.key, ProcessDefinition.name, ProcessDefinition.bpmn_xml).where(
                ProcessDefinition.id.in_(latest)
            )
        ).all()
        steps: dict[str, Step] = {}
        for key, name, xml in definitions:
            for element_id, task_name, lane in _user_tasks(xml):
                role = engine.roles.for_lane(session, lane)
                steps.setdefault(
                    element_id, Step(name or key, element_id, task_name, role.key if role else None)
                )
    found = sorted(steps.values(), key=lambda s: (s.process.lower(), s.name.lower()))
    current_app.extensions["frontdoor.queue_steps"] = (newest, found)
    return list(found)


def _user_tasks(xml: str) -> list[tuple[str, str, str | None]]:
    """(id, name, lane name) of each user task in a deployed diagram."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(xml.encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        return []
    lanes: dict[str, str] = {}
    for lane in root.iter(f"{_BPMN}lane"):
        for ref in lane.iter(f"{_BPMN}flowNodeRef"):
            lanes[(ref.text or "").strip()] = lane.get("name") or ""
    return [
        (task.get("id"), task.get("name") or task.get("id"), lanes.get(task.get("id")))
        for task in root.iter(f"{_BPMN}userTask")
        if task.get("id")
    ]


def step_options(roles: set[str] | None) -> list[tuple[str, str, str]]:
    """(process, element id, name) for the step filter: the steps whose lane is one of ``roles``."""
    return [
        (s.process, s.element_id, s.name)
        for s in all_steps()
        if roles is None or s.role is None or s.role in roles
    ]


def team_roles(team: str) -> set[str]:
    """The roles held by the team's members (the steps its queue can hold)."""
    with engine_of(current_app).db.read() as session:
        return set(
            session.scalars(
                sa.select(Role.key)
                .join(Membership, Membership.role_id == Role.id)
                .join(Team, Team.id == Membership.team_id)
                .where(Team.key == team)
            )
        )


# ------------------------------------------------------------------ who sees which queue


def _mine_conditions(me: Person) -> list[Any]:
    return [Task.assignee == me.username, Task.status.in_(OPEN_STATUSES)]


def _team_conditions(me: Person, team: str) -> tuple[list[Any], bool]:
    """A team's open tasks that the person may see (the same rule as access.can_view_task),
    and whether the conditions are all on indexed columns of the task table."""
    base: list[Any] = [Task.team_key == team, Task.status.in_(OPEN_STATUSES)]
    if _manages(team):
        return base, True
    roles_here = sorted(role for t, role in me.memberships if t == team)
    visible: list[Any] = [Task.assignee == me.username]
    if roles_here:
        visible.append(sa.and_(Task.assignee.is_(None), Task.role_key.in_(roles_here)))
    if not access.is_partner_only(me):
        case_teams = sorted(access.case_teams(me))
        # A correlated EXISTS, not a join: the task table's due-date index keeps the order.
        visible.append(
            sa.exists().where(
                CaseRecord.id == Task.case_id,
                sa.or_(CaseRecord.worker == me.username, CaseRecord.team_key.in_(case_teams)),
            )
        )
    return [*base, sa.or_(*visible)], False


def queue_teams(me: Person) -> list[tuple[str, str]]:
    """(key, name) of the teams whose queue the person may open: their own, or all for the service."""
    with engine_of(current_app).db.read() as session:
        teams = dict(session.execute(sa.select(Team.key, Team.name).order_by(Team.name)).all())
    if "*" in access.managed_teams(me):
        return list(teams.items())
    return [(k, n) for k, n in teams.items() if k in me.teams]


def default_team(me: Person) -> str | None:
    """The team the navigation's "Team queue" opens: the first where the person does casework."""
    for level in ("manager", "practitioner", "partner", "service"):
        teams = sorted(access.levels(me).get(level, set()))
        if teams:
            return teams[0]
    return sorted(me.teams)[0] if me.teams else None


# ------------------------------------------------------------------ pages


def _render_queue(template_args: dict[str, Any]) -> Response:
    partial = (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-Target") == "queue-results"
        and not request.headers.get("HX-History-Restore-Request")
    )
    template = "queues/_results.html" if partial else "queues/queue.html"
    response = make_response(render_template(template, **template_args))
    response.headers["Vary"] = "HX-Request, HX-Target"
    return response


@bp.route("/tasks/mine")
@login_required
def my_tasks() -> Response:
    me = person()
    filters = Filters.from_request()
    queue = read_queue(_mine_conditions(me), filters, "mine", None, exact=True)
    queue.steps = step_options(me.roles)
    return _render_queue(
        {
            "view": "mine",
            "team": None,
            "title": "My tasks",
            "caption": "Tasks you hold, soonest due first",
            "queue": queue,
            "filters": filters,
            "due_words": DUE_WORDS,
            "teams": queue_teams(me),
            "default_team": default_team(me),
            "here": url_for("queues.my_tasks", **filters.args()),
            "partner": access.is_partner_only(me),
        }
    )


@bp.route("/teams/<team>/queue")
@login_required
def team_queue(team: str) -> Response:
    me = person()
    teams = queue_teams(me)
    names = dict(teams)
    if team not in names:
        with engine_of(current_app).db.read() as session:
            exists = session.scalar(sa.select(Team.id).where(Team.key == team))
        abort(403 if exists else 404)
    filters = Filters.from_request()
    base, exact = _team_conditions(me, team)
    queue = read_queue(base, filters, "team", team, exact)
    partner_roles = {role for t, role in me.memberships if t == team} if access.is_partner_only(me) else None
    queue.steps = step_options(partner_roles if partner_roles is not None else team_roles(team))
    return _render_queue(
        {
            "view": "team",
            "team": team,
            "title": f"{names[team]}: team queue",
            "caption": f"Open tasks of the {names[team]}, soonest due first",
            "queue": queue,
            "filters": filters,
            "due_words": DUE_WORDS,
            "teams": teams,
            "default_team": team,
            "here": url_for("queues.team_queue", team=team, **filters.args()),
            "partner": access.is_partner_only(me),
        }
    )


# ------------------------------------------------------------------ claim, release, assign


def _safe_next(default: str) -> str:
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _task_for_action(task_id: str) -> Task:
    """The task, if the person may see it (404 / 403 otherwise, before the engine is asked)."""
    engine = engine_of(current_app)
    try:
        task = engine.get_task(task_id)
    except NotFound:
        abort(404)
    case = None
    if task.case_id is not None:
        with engine.db.read() as session:
            case = session.get(CaseRecord, task.case_id)
    access.require(access.can_view_task(person(), task, case))
    return task


def _after_action(task: Task, ok: str | None, error: str | None, removed: bool = False) -> Any:
    """htmx: the row again (or a message where it was); otherwise back to the page with a banner."""
    if request.headers.get("HX-Request") == "true":
        view = request.form.get("view", "mine")
        team = request.form.get("team") or None
        row = None
        if not removed:
            with engine_of(current_app).db.read() as session:
                found = session.execute(_select_rows([Task.id == task.id])).first()
                names = _names(session)
                holders = _holders(session, team) if view == "team" and _manages(team) else None
            row = _row(found, DueClock(), names, holders, CaseLinks()) if found is not None else None
        return render_template(
            "queues/_row_response.html",
            row=row,
            view=view,
            team=team,
            ok=ok,
            error=error,
            here=_safe_next(url_for("queues.my_tasks")),
            partner=access.is_partner_only(person()),
        )
    if error:
        flash(error, "error")
    elif ok:
        flash(ok, "success")
    return redirect(_safe_next(url_for("tasks.show", task_id=task.id)))


def _refusal(what: str, task: Task, exc: FrontdoorError) -> str:
    return f"Could not {what} ‘{task.name}’: {exc}"


@bp.route("/tasks/<task_id>/claim", methods=["POST"])
@login_required
def claim(task_id: str) -> Any:
    task = _task_for_action(task_id)
    try:
        engine_of(current_app).claim(task_id, person().username)
    except FrontdoorError as exc:
        return _after_action(task, None, _refusal("claim", task, exc))
    return _after_action(task, f"You claimed ‘{task.name}’. It is in your tasks.", None)


@bp.route("/tasks/<task_id>/unclaim", methods=["POST"])
@login_required
def unclaim(task_id: str) -> Any:
    task = _task_for_action(task_id)
    try:
        engine_of(current_app).unclaim(task_id, person().username)
    except FrontdoorError as exc:
        return _after_action(task, None, _refusal("release", task, exc))
    removed = request.form.get("view") == "mine"
    return _after_action(task, f"You released ‘{task.name}’: it is back in the team queue.", None, removed)


@bp.route("/tasks/<task_id>/assign", methods=["POST"])
@login_required
def assign(task_id: str) -> Any:
    task = _task_for_action(task_id)
    assignee = request.form.get("assignee", "").strip()
    if not assignee:
        return _after_action(task, None, f"Choose who should hold ‘{task.name}’, then select Assign.")
    engine = engine_of(current_app)
    try:
        engine.assign(task_id, assignee, by=person().username)
    except FrontdoorError as exc:
        return _after_action(task, None, _refusal("assign", task, exc))
    with engine.db.read() as session:
        name = session.scalar(sa.select(User.display_name).where(User.username == assignee)) or assignee
    return _after_action(task, f"‘{task.name}’ is now assigned to {name}.", None)


# ------------------------------------------------------------------ navigation


@bp.app_context_processor
def navigation() -> dict[str, Any]:
    """The service navigation's items, for templates/_navigation.html."""
    if not current_user.is_authenticated or not isinstance(current_user._get_current_object(), Person):
        return {"fd_nav": []}
    me = person()
    endpoint = request.endpoint or ""
    items = [("My tasks", url_for("queues.my_tasks"), endpoint == "queues.my_tasks")]
    team = default_team(me)
    if team is not None:
        items.append(("Team queue", url_for("queues.team_queue", team=team), endpoint == "queues.team_queue"))
    if "contacts.new" in current_app.view_functions and set(access.levels(me)) & {
        "practitioner",
        "manager",
        "service",
    }:
        items.append(("Record a contact", url_for("contacts.new"), endpoint == "contacts.new"))
    if access.is_manager(me) and "manage.escalations" in current_app.view_functions:
        items.append(("Manager pages", url_for("manage.escalations"), endpoint.startswith("manage.")))
    return {"fd_nav": items}
