"""Work queues: "My tasks" and each team's queue; claiming, releasing and assigning tasks.

The queues are read with SQL from the task projection alone, on the partial indexes of the open
tasks (migration 0002: (team_key, due_at), (assignee, due_at), and the unclaimed ones by
(team_key, role_key, due_at)), so that a page is one index range in due order that stops after
LIMIT rows, then those rows with their case and holder.  Everything a page reads is read in one
read transaction.  Every change is an engine command (claim, unclaim, assign), whose refusals are
shown to the person in words.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy.dialects import postgresql

from engine import clock
from engine.errors import FrontdoorError, NotFound
from engine.models import CaseLink, CaseRecord, Membership, ProcessDefinition, Role, Task, Team, User

from . import access, engine_of
from .auth import Person, person
from .queue_rows import Escaped, assign_form, queue_row, queue_sections

bp = Blueprint("queues", __name__)
bp.add_app_template_global(queue_row, "queue_row")
bp.add_app_template_global(assign_form, "assign_form")
bp.add_app_template_global(queue_sections, "queue_sections")

OPEN_STATUSES = ("ready", "claimed")
LIMIT = 50  # tasks a page: a screenful or two, as GOV.UK paginates long lists
COUNT_CAP = 1000  # counted up to this many; the pages go as far as the count (20 pages)
# The child filter reads the matching cases' tasks by ix_task_case; past this many matching cases (a
# filter of a letter or two) it walks the queue's own index range instead, checking each task's case.
CHILD_CASES_MAX = 5000
DUE_WORDS = {"overdue": "Overdue", "today": "Due today", "soon": "Due soon (within 2 working days)"}
_FAR = datetime.max.replace(tzinfo=UTC)


def open_tasks() -> Any:
    """``status IN ('ready', 'claimed')`` with the values in the SQL text, not bound: the partial
    indexes' own predicate, which SQLite's planner recognises only when it is written the same."""
    return Task.status.in_(
        sa.bindparam("open_statuses", list(OPEN_STATUSES), expanding=True, literal_execute=True)
    )


def waiting_tasks() -> list[Any]:
    """Unclaimed open tasks, written as ix_task_offered's predicate (literal, as for open_tasks)."""
    return [Task.status == sa.literal("ready", literal_execute=True), Task.assignee.is_(None)]


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


def long_date(moment: datetime | date) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


class DueClock:
    """Says how a due instant stands against now, in the council's working days (one per page).

    The working days between two dates and each date's words are worked out once per date: a page
    of 200 tasks has 200 due instants but only a few dozen dates.
    """

    def __init__(self) -> None:
        engine = engine_of(current_app)
        self.calendar = engine.calendar
        self.tz = self.calendar.timezone
        self.now = clock.now()
        self.today = self.now.astimezone(self.tz).date()
        self.end_of_today = engine.due_window("today")[1]
        self.soon_before = engine.due_window("soon")[1]
        self._seen: dict[datetime | None, Due] = {}
        self._dates: dict[date, str] = {}
        self._between: dict[tuple[date, date], int] = {}

    def __call__(self, due_at: datetime | None) -> Due:
        known = self._seen.get(due_at)
        if known is None:
            known = self._seen[due_at] = self._words(due_at)
        return known

    def _long_date(self, day: date) -> str:
        text = self._dates.get(day)
        if text is None:
            text = self._dates[day] = long_date(day)
        return text

    def _working_days(self, start: date, end: date) -> int:
        key = (start, end)
        days = self._between.get(key)
        if days is None:
            days = self._between[key] = self.calendar.working_days_between(start, end)
        return days

    def _words(self, due_at: datetime | None) -> Due:
        if due_at is None:
            return Due("No due date", "none")
        local = due_at.astimezone(self.tz)
        day = local.date()
        when = {"date_text": self._long_date(day), "time_text": f"{local:%H:%M}", "iso": due_at.isoformat()}
        if due_at < self.now:
            if day == self.today:
                return Due(f"Overdue since {local:%H:%M} today", "overdue", **when)
            late = self._working_days(day, self.today)
            if late <= 0:
                days = (self.today - day).days
                return Due(f"Overdue by {days} day{'s' if days != 1 else ''}", "overdue", **when)
            return Due(f"Overdue by {late} working day{'s' if late != 1 else ''}", "overdue", **when)
        if due_at < self.end_of_today:
            return Due("Due today", "today", **when)
        ahead = self._working_days(self.today, day)
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
    page: int = 1  # which page of the queue: not a filter, but kept with them in every link

    @classmethod
    def from_request(cls) -> Filters:
        due = request.args.get("due", "").strip()
        number = request.args.get("page", "").strip()
        return cls(
            step=request.args.get("step", "").strip()[:255],
            child=request.args.get("child", "").strip()[:100],
            due=due if due in DUE_WORDS else "",
            page=min(int(number), last_page()) if number.isdigit() and int(number) >= 1 else 1,
        )

    @property
    def active(self) -> bool:
        return bool(self.step or self.child or self.due)

    @property
    def offset(self) -> int:
        return (self.page - 1) * LIMIT

    def args(self, page: int | None = None) -> dict[str, str]:
        """The filters (and the page, past the first) as query arguments."""
        number = self.page if page is None else page
        pairs = (("step", self.step), ("child", self.child), ("due", self.due))
        return {k: v for k, v in pairs if v} | ({"page": str(number)} if number > 1 else {})


def last_page() -> int:
    """The last page anyone can open: as far as the count goes (past that, the filters narrow)."""
    return -(-COUNT_CAP // LIMIT)


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
    can_assign: bool = False  # the engine would let this person assign it: an Assign control
    assign_options: list[tuple[str, str]] | None = None  # (username, label), once asked for
    siblings: list[str] = field(default_factory=list)
    url: str = ""
    about: str = ""  # "Rate the urgency for Amy Walker": what each action's button is about

    def action_url(self, action: str) -> str:
        """``/tasks/<id>/claim`` and the like (built here: url_for 600 times a page is slow)."""
        return f"{self.url}/{action}"


@dataclass
class Section:
    rows: list[Row]
    heading: str | None = None  # "Siblings: Ben Walker (DEMO-002), Cara Walker (DEMO-003)"


@dataclass
class Page:
    """What every row's forms share: built once a page."""

    view: str
    team: str | None
    here: str
    partner: bool
    username: str
    token: str = ""
    path: str = ""  # the page's path, without the filters
    filters: dict[str, str] = field(default_factory=dict)  # the filters in force, as query arguments
    escaped: Escaped = field(default_factory=Escaped)  # the page's repeated text, escaped once

    @cached_property
    def filter_fields(self) -> Markup:
        """The filters in force as hidden fields: a row's Assign control asks for the same page again."""
        return Markup("").join(
            Markup('<input type="hidden" name="{}" value="{}">').format(name, value)
            for name, value in self.filters.items()
        )

    @cached_property
    def hidden(self) -> Markup:
        """The hidden fields of every row's forms (read once the token is set)."""
        fields = [("csrf_token", self.token), ("next", self.here), ("view", self.view)]
        if self.team:
            fields.append(("team", self.team))
        return Markup("").join(
            Markup('<input type="hidden" name="{}" value="{}">').format(name, value) for name, value in fields
        )


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


ROW_WIDTH = len(_ROW_COLUMNS)  # a page row may have more columns after these (a total)


def _select_rows(conditions: list[Any]) -> sa.Select[Any]:
    return (
        sa.select(*_ROW_COLUMNS)
        .select_from(Task)
        .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
        .outerjoin(User, User.username == Task.assignee)
        .where(*conditions)
    )


@dataclass
class Arm:
    """One indexed read of a queue: the tasks matching ``conditions`` (on the task table, and on its
    case, LEFT JOINed, if ``case``).  A queue is one arm, or two (a partner's: offered and own); the
    arms of a queue never share a task, so their counts add up."""

    conditions: list[Any]
    case: bool = False
    case_on: list[Any] = field(default_factory=list)  # more conditions on the case's join (of_cases)

    def _from(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """``query`` from the task table, with its case LEFT JOINed where the arm's rule reads it."""
        if not self.case:
            return query
        return query.select_from(Task).outerjoin(
            CaseRecord, sa.and_(CaseRecord.id == Task.case_id, *self.case_on)
        )

    def rows(self, *conditions: Any) -> sa.Select[Any]:
        """The arm's tasks as page rows (with their case and holder: no second read by id)."""
        return _select_rows([*self.conditions, *conditions])

    def count(self, *conditions: Any) -> sa.Select[Any]:
        """How many tasks the arm holds, counted up to COUNT_CAP + 1."""
        # SELECT 1, not the id (which no index holds): the index alone answers, no row is read.
        query = self._from(sa.select(sa.literal_column("1")))
        counted = query.where(*self.conditions, *conditions).limit(COUNT_CAP + 1).subquery()
        return sa.select(sa.func.count()).select_from(counted)

    def of_cases(self, among: Callable[[Any], Any], *conditions: Any) -> Arm:
        """The arm narrowed to the open tasks of some cases (``among``: a condition on task.case_id
        that names a few thousand cases at most), read by ix_task_case: the arm's own conditions are
        wrapped in coalesce() so that no planner (SQLite's has no statistics; PostgreSQL's, asked to
        sort, chose to AND in the team's whole range) walks the arm's index instead, whose range may
        be tens of thousands of rows."""
        hidden = sa.func.coalesce(sa.and_(*self.conditions, *conditions), sa.false(), type_=sa.Boolean)
        # Where the arm reads the case (the practitioner's rule), the same cases are named on the join:
        # PostgreSQL otherwise hashed every case of the service to join a few thousand.
        return Arm(
            [among(Task.case_id), open_tasks(), hidden], case=self.case, case_on=[among(CaseRecord.id)]
        )

    def all_rows(self, limit: int) -> sa.Select[Any]:
        """All the arm's tasks (a few thousand at most), soonest due first, undated last: the first
        ``limit`` of them as page rows, each with the number of them all in a last column, ``total``.
        One statement: the tasks are sorted and counted by id first, and only the page's rows are
        then joined to their case and holder."""
        query = self._from(sa.select(Task.id, sa.func.count().over().label("total")))
        first = (
            query.where(*self.conditions)
            .order_by(Task.due_at.is_(None), Task.due_at, Task.created_at, Task.id)
            .limit(limit)
            .subquery("first")
        )
        return (
            sa.select(*_ROW_COLUMNS, first.c.total)
            .select_from(first)
            .join(Task, Task.id == first.c.id)
            .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
            .outerjoin(User, User.username == Task.assignee)
        )


def page_query(arm: Arm | list[Any], *conditions: Any, limit: int | None = None) -> sa.Select[Any]:
    """The first ``limit`` (LIMIT) dated tasks of an arm, soonest due first: one range of a
    due-ordered index."""
    arm = arm if isinstance(arm, Arm) else Arm(arm)
    # created_at and id after due_at: tasks are often due at the same instant (17:00 on a working day),
    # and the pages must follow on from each other.  The index gives due_at's order; the database
    # sorts only each run of equal due_at (SQLite "RIGHT PART OF ORDER BY", PostgreSQL Incremental Sort).
    dated = arm.rows(*conditions, Task.due_at.is_not(None))
    return dated.order_by(Task.due_at, Task.created_at, Task.id).limit(limit or LIMIT)


def _filter_conditions(engine: Any, filters: Filters) -> list[Any]:
    """SQL conditions for the step and due filters (on the task table alone: the index keeps the order)."""
    conditions: list[Any] = []
    if filters.step:
        conditions.append(Task.element_id == filters.step)
    if filters.due:
        conditions.extend(engine.due_filter(filters.due))
    return conditions


def _cases_matching(session: Any, needle: str) -> tuple[int, Callable[[Any], Any]]:
    """How many cases the child filter matches (counted up to CHILD_CASES_MAX + 1), and a function
    that gives the condition "is one of them" on a column of case ids (task.case_id, case_record.id):
    the cases whose child's name or reference contains ``needle``, ignoring case."""
    if session.get_bind().dialect.name == "postgresql":
        # Served by the pg_trgm indexes, where there are.  The ids are read once and sent back as one
        # array: planned inside the task query, the match was a parallel scan of every case.
        needle = needle.lower()
        reference, name = sa.func.lower(CaseRecord.reference), sa.func.lower(CaseRecord.subject_name)
        match = sa.select(CaseRecord.id).where(
            sa.or_(reference.contains(needle, autoescape=True), name.contains(needle, autoescape=True))
        )
        ids = list(session.scalars(match.limit(CHILD_CASES_MAX + 1)))
        if len(ids) > CHILD_CASES_MAX:
            return len(ids), lambda column: column.in_(match)
        return len(ids), lambda column: in_list(session, column, ids)
    if len(needle) >= 3 and has_case_search(session):
        # The trigram index of migration 0006: a quoted phrase is a match anywhere in the name or the
        # reference, ignoring case, as the LIKE below (which reads every case) is.
        phrase = '"' + needle.replace('"', '""') + '"'
        match = sa.select(CASE_SEARCH.c.rowid).where(CASE_SEARCH.c.case_search.op("MATCH")(phrase))
    else:  # SQLite's LIKE ignores ASCII case already (and its lower() folds only ASCII: the same answer)
        match = sa.select(CaseRecord.id).where(
            sa.or_(
                CaseRecord.reference.contains(needle, autoescape=True),
                CaseRecord.subject_name.contains(needle, autoescape=True),
            )
        )
    counted = sa.select(sa.func.count()).select_from(match.limit(CHILD_CASES_MAX + 1).subquery())
    return session.scalar(counted) or 0, lambda column: column.in_(match)


@dataclass
class Queue:
    sections: list[Section]
    shown: int
    total: int
    steps: list[tuple[str, str, str]]  # (process name, element id, task name)
    capped: bool = False  # more than ``total`` (counting stopped there)
    first: int = 1  # the number of the page's first task, counting from 1

    @property
    def last(self) -> int:
        return self.first + self.shown - 1

    @property
    def pages(self) -> int:
        """How many pages there are (as far as the count goes)."""
        return min(max(1, -(-self.total // LIMIT)), last_page())

    @property
    def page(self) -> int:
        return (self.first - 1) // LIMIT + 1

    @property
    def whole(self) -> bool:
        """Every task is on this one page."""
        return self.first == 1 and self.shown == self.total


def _sort_key(r: Any) -> tuple[Any, ...]:
    """The queues' order, the same as their SQL's ORDER BY: soonest due, undated last, then the
    longest waiting; the id decides the rest, so that every read agrees where a page ends."""
    return (r.due_at is None, r.due_at or _FAR, r.created_at, r.id)


def page_rows(session: Any, arms: list[Arm], filters: Filters) -> tuple[list[Any], int, bool]:
    """The tasks of the arms on the filters' page (soonest due first, undated last) as rows of
    _ROW_COLUMNS, the total and whether it is capped (counted only up to COUNT_CAP).

    The arms are read up to the end of the page (a queue of two arms is merged here), so the later
    pages read more: as far as COUNT_CAP at most."""
    engine = engine_of(current_app)
    extra = _filter_conditions(engine, filters)
    start, need = filters.offset, filters.offset + LIMIT
    if filters.child:
        matched, among = _cases_matching(session, filters.child)
        if matched == 0:
            return [], 0, False
        if matched <= CHILD_CASES_MAX:  # a few tasks a case: read those, not the queue's range
            return _child_rows(session, [arm.of_cases(among, *extra) for arm in arms], start, need)
        # Too many to read case by case (a filter of a letter or two): the queue's range, row by row.
        extra.append(among(Task.case_id))
    found: list[Any] = []
    for arm in arms:
        found += session.execute(page_query(arm, *extra, limit=need)).all()
    found = sorted(found, key=_sort_key)[:need]
    if len(found) < need and not filters.due:  # room for the undated ones (a due filter has none)
        room = need - len(found)
        undated: list[Any] = []
        for arm in arms:
            undated += session.execute(
                arm.rows(*extra, Task.due_at.is_(None)).order_by(Task.created_at, Task.id).limit(room)
            ).all()
        found += sorted(undated, key=_sort_key)[:room]
    if len(found) < need:  # every arm was read to its end: this is the whole queue
        return found[start:], len(found), False
    # Counted up to COUNT_CAP: "more than 1,000" is all a person needs to know.
    total = sum(session.scalar(arm.count(*extra)) or 0 for arm in arms)
    return found[start:], min(total, COUNT_CAP), total > COUNT_CAP


def _child_rows(session: Any, arms: list[Arm], start: int, need: int) -> tuple[list[Any], int, bool]:
    """The page's tasks of arms narrowed to a few cases, and how many there are."""
    found: list[Any] = []
    total = 0
    for arm in arms:
        rows = session.execute(arm.all_rows(need)).all()
        total += rows[0].total if rows else 0
        found += rows
    return sorted(found, key=_sort_key)[start:need], min(total, COUNT_CAP), total > COUNT_CAP


def read_queue(session: Any, arms: list[Arm], filters: Filters, page: Page) -> Queue:
    """A page of the open tasks of the arms, matching the filters, soonest due first, grouped."""
    found, total, capped = page_rows(session, arms, filters)
    # A partner sees the tasks offered to them, never that two children are siblings: no grouping.
    cases = set() if page.partner else {r.case_id for r in found if r.case_id is not None}
    links = _sibling_links(session, cases)
    build = RowBuilder(_names(session), page)
    rows = [build(r) for r in found]
    return Queue(_group(rows, links), len(rows), total, [], capped, first=filters.offset + 1)


def _sibling_links(session: Any, case_ids: set[int]) -> list[tuple[int, int]]:
    if len(case_ids) < 2:
        return []
    # One IN list, the other end kept in Python: two make SQLite probe every pair (40,000 for a page).
    links = session.execute(
        sa.select(CaseLink.case_id, CaseLink.linked_case_id).where(
            in_list(session, CaseLink.case_id, case_ids)
        )
    )
    return [(a, b) for a, b in links if b in case_ids]


@dataclass
class _Names:
    processes: dict[str, str]
    roles: dict[str, str]


def _names(session: Any) -> _Names:
    engine = engine_of(current_app)
    return _Names(processes=_deployed(session)[1], roles=engine.roles.names(session))


def in_list(session: Any, column: Any, values: Any) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one parameter whatever the
    number of values, so that the statement's text is the same every time and psycopg can cache and
    prepare it (a list of 200 placeholders is parsed afresh on each request)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


# SQLite's full-text index of the children's names and references (migration 0006), where it exists.
CASE_SEARCH = sa.table("case_search", sa.column("rowid"), sa.column("case_search"))
_CASE_SEARCH_IN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def has_case_search(session: Any) -> bool:
    """Whether this SQLite database has case_search (asked once a database: only an upgrade, and a
    restart with it, adds the table)."""
    bind = session.get_bind()
    known = _CASE_SEARCH_IN.get(bind)
    if known is None:
        found = session.execute(
            sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'case_search'")
        ).first()
        known = _CASE_SEARCH_IN[bind] = found is not None
    return known


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


class RowBuilder:
    """Rows of a queue: what is the same for every row (the person, their rights, the URL shapes,
    the due-date words of each date) is worked out once a page, not once a row."""

    def __init__(self, names: _Names, page: Page | None) -> None:
        self.names = names
        self.me = person()
        self.page = page
        self.due = DueClock()
        self.offered = set(self.me.memberships)
        self.my_roles = self.me.roles
        ladder = engine_of(current_app).services.ladder
        self.ladder = {str(level): (step or {}).get("label") for level, step in ladder.items()}
        self.task_url = url_for("tasks.show", task_id="__task__")
        self.case_url = (
            url_for("cases.show", reference="__ref__") if "cases.show" in current_app.view_functions else None
        )
        self._case_allowed: dict[tuple[str | None, bool], bool] = {}
        self._assign_allowed: dict[str | None, bool] = {}
        # The team view's Assign control asks the queue page again for one row's form.
        self.team_view = page is not None and page.view == "team"  # Assign is offered in team queues

    def may_view_case(
        self, case_id: int, reference: str | None, team: str | None, worker: str | None
    ) -> bool:
        # can_view_case reads the case's team and whether it is allocated to this person: one answer
        # per (team, theirs or not), not one a row.
        mine = worker == self.me.username
        key = (team, mine)
        allowed = self._case_allowed.get(key)
        if allowed is None:
            case = CaseRecord(id=case_id, reference=reference, team_key=team, worker=worker)
            allowed = self._case_allowed[key] = access.can_view_case(self.me, case)
        return allowed

    def may_assign(self, team: str | None) -> bool:
        allowed = self._assign_allowed.get(team)
        if allowed is None:
            allowed = self._assign_allowed[team] = access.can_assign(self.me, team)
        return allowed

    def __call__(self, r: Any) -> Row:
        (
            task_id,
            name,
            element_id,
            process_key,
            role_key,
            team_key,
            assignee,
            status,
            due_at,
            level,
            case_id,
            _created_at,
            reference,
            child_name,
            case_team,
            worker,
            assignee_name,
        ) = r[:ROW_WIDTH]  # one unpacking of the row: faster than 20 lookups by name, 200 times a page
        offered = (
            assignee is None
            and status == "ready"
            and role_key is not None
            and ((team_key, role_key) in self.offered or (team_key is None and role_key in self.my_roles))
        )
        case_url = None
        if (
            case_id is not None
            and self.case_url is not None
            and self.may_view_case(case_id, reference, case_team, worker)
        ):
            case_url = self.case_url.replace("__ref__", quote(reference or "", safe=""))
        level = level or 0
        can_assign = self.team_view and self.may_assign(team_key)
        return Row(
            id=task_id,
            name=name,
            element_id=element_id,
            process=self.names.processes.get(process_key) or process_key.replace("_", " ").capitalize(),
            role=self.names.roles.get(role_key or "", role_key or ""),
            team_key=team_key,
            role_key=role_key,
            assignee=assignee,
            assignee_name=assignee_name or assignee,
            status=status,
            escalation_level=level,
            escalation_label=self.ladder.get(str(level)),
            due=self.due(due_at),
            case_id=case_id,
            reference=reference,
            child_name=child_name,
            case_url=case_url,
            url=self.task_url.replace("__task__", task_id),
            can_claim=offered,
            can_release=assignee == self.me.username,
            can_assign=can_assign,
            about=name + (" for " + child_name if child_name else ""),
        )


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


def all_steps(session: Any) -> list[Step]:
    """Every user task of the newest version of each deployed process (parsed once per deployment)."""
    return list(_deployed(session)[0])


def _deployed(session: Any) -> tuple[list[Step], dict[str, str]]:
    """The steps of the deployed processes and each process's name, worked out again only when a
    new version is deployed (one cheap read a request says whether one was)."""
    asked: tuple[list[Step], dict[str, str]] | None = g.get("fd_deployed")
    if asked is not None:  # asked already in this request (the step filter and the row names)
        return asked
    newest = session.scalar(sa.select(sa.func.max(ProcessDefinition.id)))
    cache = current_app.extensions.get("frontdoor.queue_steps")
    if cache is None or cache[0] != newest:
        cache = (newest, _read_steps(session), _process_names(session))
        current_app.extensions["frontdoor.queue_steps"] = cache
    g.fd_deployed = (cache[1], cache[2])
    return cache[1], cache[2]


def _process_names(session: Any) -> dict[str, str]:
    # Few rows (one a deployed version); the newest version's name wins.
    versions = sa.select(ProcessDefinition.key, ProcessDefinition.name).order_by(
        ProcessDefinition.key, ProcessDefinition.version
    )
    return {k: n for k, n in session.execute(versions) if n}


def _read_steps(session: Any) -> list[Step]:
    engine = engine_of(current_app)
    latest = sa.select(sa.func.max(ProcessDefinition.id)).group_by(ProcessDefinition.key).scalar_subquery()
    definitions = session.execute(
        sa.select(ProcessDefinition.key, ProcessDefinition.name, ProcessDefinition.bpmn_xml).where(
            ProcessDefinition.id.in_(latest)
        )
    ).all()
    steps: dict[str, Step] = {}
    for key, name, xml in definitions:
        for element_id, task_name, lane in _user_tasks(xml):
            role = engine.roles.for_lane(session, lane)
            steps.setdefault(element_id, Step(name or key, element_id, task_name, role.key if role else None))
    return sorted(steps.values(), key=lambda s: (s.process.lower(), s.name.lower()))


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


def step_options(session: Any, roles: set[str] | None) -> list[tuple[str, str, str]]:
    """(process, element id, name) for the step filter: the steps whose lane is one of ``roles``."""
    return [
        (s.process, s.element_id, s.name)
        for s in all_steps(session)
        if roles is None or s.role is None or s.role in roles
    ]


def team_roles(session: Any, team: str) -> set[str]:
    """The roles held by the team's members (the steps its queue can hold)."""
    return set(
        session.scalars(
            sa.select(Role.key)
            .join(Membership, Membership.role_id == Role.id)
            .join(Team, Team.id == Membership.team_id)
            .where(Team.key == team)
        )
    )


# ------------------------------------------------------------------ who sees which queue


def _mine_arms(me: Person) -> list[Arm]:
    return [Arm([Task.assignee == me.username, open_tasks()])]


def _team_arms(me: Person, team: str) -> list[Arm]:
    """A team's open tasks that the person may see: the same rule as access.can_view_task."""
    base: list[Any] = [Task.team_key == team, open_tasks()]
    if _manages(team):
        return [Arm(base)]
    roles_here = sorted(role for t, role in me.memberships if t == team)
    if access.is_partner_only(me):
        # Two ranges, each in due order: the tasks waiting for their role here, and their own.
        arms = [Arm([Task.assignee == me.username, open_tasks(), Task.team_key == team])]
        if roles_here:
            arms.append(Arm([Task.team_key == team, Task.role_key.in_(roles_here), *waiting_tasks()]))
        return arms
    visible: list[Any] = [Task.assignee == me.username, CaseRecord.worker == me.username]
    if roles_here:
        visible.append(sa.and_(Task.assignee.is_(None), Task.role_key.in_(roles_here)))
    case_teams = sorted(access.case_teams(me))
    if case_teams:
        visible.append(CaseRecord.team_key.in_(case_teams))
    # The case LEFT JOINed (a task has at most one), not an EXISTS: the team index keeps the order.
    return [Arm([*base, sa.or_(*visible)], case=True)]


def queue_teams(session: Any, me: Person) -> list[tuple[str, str]]:
    """(key, name) of the teams whose queue the person may open: their own, or all for the service."""
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


def _htmx_target() -> str | None:
    if request.headers.get("HX-Request") != "true" or request.headers.get("HX-History-Restore-Request"):
        return None
    return request.headers.get("HX-Target")


def pagination(queue: Queue, filters: Filters, path: str) -> dict[str, Any] | None:
    """govukPagination's parameters for the queue: Previous and Next, and the page numbers (the
    first, the last and those beside this one, with ellipses between); None for a single page."""
    if queue.pages <= 1 and queue.page == 1:
        return None

    def href(number: int) -> str:
        query = urlencode(filters.args(number))
        return f"{path}?{query}" if query else path

    here, last = queue.page, queue.pages
    wanted = sorted({1, last, here - 1, here, here + 1} & set(range(1, last + 1)))
    items: list[dict[str, Any]] = []
    for number in wanted:
        if items and number > items[-1]["number"] + 1:
            items.append({"ellipsis": True, "number": number - 1})
        items.append({"number": number, "href": href(number), "current": number == here})
    params: dict[str, Any] = {"items": items, "landmarkLabel": "Pages of the queue"}
    if here > 1:
        params["previous"] = {"href": href(here - 1)}
    if here < last:
        params["next"] = {"href": href(here + 1)}
    return params


def _render_queue(template_args: dict[str, Any]) -> Response:
    template_args["pagination"] = pagination(template_args["queue"], template_args["filters"], request.path)
    partial = _htmx_target() == "queue-results"
    template = "queues/_results.html" if partial else "queues/queue.html"
    response = make_response(render_template(template, **template_args))
    response.headers["Vary"] = "HX-Request, HX-Target"
    return response


@bp.route("/tasks/mine")
@login_required
def my_tasks() -> Response:
    me = person()
    filters = Filters.from_request()
    page = Page(
        "mine", None, url_for("queues.my_tasks", **filters.args()), access.is_partner_only(me), me.username
    )
    with engine_of(current_app).db.read() as session:
        queue = read_queue(session, _mine_arms(me), filters, page)
        queue.steps = step_options(session, me.roles)
        teams = queue_teams(session, me)
    page.token = generate_csrf()
    return _render_queue(
        {
            "view": "mine",
            "team": None,
            "title": "My tasks",
            "caption": "Tasks you hold, soonest due first",
            "queue": queue,
            "filters": filters,
            "due_words": DUE_WORDS,
            "teams": teams,
            "default_team": default_team(me),
            "here": page.here,
            "partner": page.partner,
            "page": page,
        }
    )


@bp.route("/teams/<team>/queue")
@login_required
def team_queue(team: str) -> Response:
    me = person()
    filters = Filters.from_request()
    path = url_for("queues.team_queue", team=team)
    here = url_for("queues.team_queue", team=team, **filters.args())
    page = Page(
        "team", team, here, access.is_partner_only(me), me.username, path=path, filters=filters.args()
    )
    assign = request.args.get("assign", "")[:36]
    with engine_of(current_app).db.read() as session:
        teams = queue_teams(session, me)
        names = dict(teams)
        if team not in names:
            exists = session.scalar(sa.select(Team.id).where(Team.key == team))
            abort(403 if exists else 404)
        arms = _team_arms(me, team)
        if assign and _htmx_target() == f"assign-control-{assign}":
            return _assign_form(session, arms, assign, page)
        queue = read_queue(session, arms, filters, page)
        partner_roles = {role for t, role in me.memberships if t == team} if page.partner else None
        queue.steps = step_options(
            session, partner_roles if partner_roles is not None else team_roles(session, team)
        )
        if assign:  # without JavaScript, the Assign link asks for the page with that row's form open
            row = next((r for s in queue.sections for r in s.rows if r.id == assign and r.can_assign), None)
            if row is not None:
                row.assign_options = _holders(session, row.team_key).get(row.role_key or "", [])
    page.token = generate_csrf()
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
            "here": page.here,
            "partner": page.partner,
            "page": page,
        }
    )


def _assign_form(session: Any, arms: list[Arm], task_id: str, page: Page) -> Response:
    """htmx: one row's Assign form, in place of its Assign link (the team's members are read only
    when a manager asks, not for each of the 200 rows)."""
    found = None
    for arm in arms:  # the row, if it is in this person's view of the queue
        found = found or session.execute(arm.rows(Task.id == task_id)).first()
    if found is None:
        abort(404)
    row = RowBuilder(_names(session), page)(found)
    if not row.can_assign:
        abort(403)
    row.assign_options = _holders(session, row.team_key).get(row.role_key or "", [])
    page.token = generate_csrf()
    return make_response(render_template("queues/_assign.html", row=row, page=page))


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
        me = person()
        here = _safe_next(url_for("queues.my_tasks"))
        page = Page(view, team, here, access.is_partner_only(me), me.username, generate_csrf())
        row = None
        if not removed:
            with engine_of(current_app).db.read() as session:
                found = session.execute(_select_rows([Task.id == task.id])).first()
                if found is not None:
                    row = RowBuilder(_names(session), page)(found)
                    if row.can_assign:  # one row: its Assign form open, as it was when it was used
                        row.assign_options = _holders(session, row.team_key).get(row.role_key or "", [])
        return render_template("queues/_row_response.html", row=row, page=page, ok=ok, error=error)
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
