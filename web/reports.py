"""The figures managers watch: SQL over the engine's projections, shared by the pages and the API.

Every function here takes a read session and plain arguments and returns plain dataclasses; the
words and the layout are the pages' business.  Nothing here reads workflow state: only the tables
the engine keeps for reading (task, case_record, case_fact, statutory_clock, app_user, ...).

``teams`` is the set of team keys the reader manages, or ``None`` for every team (the service
level); :func:`teams_scope` turns :func:`web.access.managed_teams` into that.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.calendar import WorkingCalendar
from engine.models import CaseFact, CaseRecord, Membership, Role, StatutoryClock, Task, Team, User
from engine.projection import OPEN_STATUSES

# Who holds the work the inspection worried about (DOMAIN.md, finding 4: "heavy reliance on agency
# social workers"): the share of open section 47 enquiries and of open assessments held by agency
# staff.  An open task at one of these BPMN element ids IS that piece of work.  The ids were read
# from the diagrams, not guessed:
#   section47   lead_section47        "Lead the section 47 enquiry"   processes/section47.bpmn and
#                                                                     processes/variants/referral_2013.bpmn
#   assessment  initial_assessment    "Initial assessment"            processes/referral.bpmn
#               core_assessment       "Core assessment"               processes/section47.bpmn
#               assessment            "Assessment"                    processes/variants/referral_2013.bpmn
#               section47_assessment  "Assessment through the section 47 enquiry"
#                                                                     processes/variants/referral_2013.bpmn
# A diagram that adds or renames such a task must be added here.
AGENCY_SHARE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "section47": ("lead_section47",),
    "assessment": ("initial_assessment", "core_assessment", "assessment", "section47_assessment"),
}

# Roles whose holders carry a caseload: those whose ``access`` in processes/roles.json is one of
# these (not partners, process owners, administrators, or the service level that watches).
CASE_HOLDING_ACCESS = ("practitioner", "manager")


@dataclass(frozen=True)
class TimelinessFigure:
    key: str
    title: str
    clocks: tuple[str, ...]  # statutory_clock names (clock.start.<name> in the diagrams)


# Timeliness this month: each figure is the statutory clocks of these names that stopped in the
# month, and how many of them stopped on or before their target (not breached).
TIMELINESS_FIGURES = (
    TimelinessFigure("decisions", "Decisions within 1 working day", ("mash_decision",)),
    TimelinessFigure(
        "assessments",
        "Assessments within their timescale",
        ("initial_assessment", "core_assessment", "assessment"),
    ),
    TimelinessFigure("conferences", "Conferences within 15 working days", ("icpc",)),
)
# A clock stopped by one of these elements did not end in the event it measures: the section 47
# enquiry found no conference was needed ("no_conference" in section47.bpmn and referral_2013.bpmn
# stops the icpc clock), so no conference was held, on time or late.
CLOCK_STOPS_NOT_COUNTED = ("no_conference",)


def teams_scope(managed: Collection[str]) -> frozenset[str] | None:
    """``web.access.managed_teams`` as a report scope: None (every team) for the service level."""
    return None if "*" in managed else frozenset(managed)


# ----------------------------------------------------------------------------- time


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def working_days_late(calendar: WorkingCalendar, due_at: datetime, now: datetime) -> int:
    """Working days from the due date to today (London dates); negative while it is still to come."""
    tz = calendar.timezone
    return calendar.working_days_between(local_date(due_at, tz), local_date(now, tz))


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The first instant of the local calendar month and of the month after it."""
    start = datetime.combine(date(year, month, 1), time(0), tz)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return start, datetime.combine(following, time(0), tz)


@dataclass(frozen=True)
class ClockPosition:
    """Where a statutory clock stands, in working days (London dates).

    ``state``: running (``days`` left; 0 = the target is today), met, breached (by ``days``;
    0 = missed later on the target day itself), or no_target.
    """

    state: str
    days: int = 0


def clock_position(
    calendar: WorkingCalendar,
    target_at: datetime | None,
    stopped_at: datetime | None,
    breached: bool | None,
    now: datetime,
) -> ClockPosition:
    if target_at is None:
        return ClockPosition("met" if stopped_at is not None else "no_target")
    tz = calendar.timezone
    target = local_date(target_at, tz)
    if stopped_at is not None:
        if breached or stopped_at > target_at:
            return ClockPosition(
                "breached", calendar.working_days_between(target, local_date(stopped_at, tz))
            )
        return ClockPosition("met")
    if now > target_at:
        return ClockPosition("breached", calendar.working_days_between(target, local_date(now, tz)))
    return ClockPosition("running", calendar.working_days_between(local_date(now, tz), target))


# ---------------------------------------------------------------------- escalations


@dataclass(frozen=True)
class EscalatedTask:
    task_id: str
    name: str
    element_id: str
    escalation_level: int
    escalated_at: datetime | None
    due_at: datetime | None
    team_key: str | None
    assignee: str | None
    assignee_name: str | None
    employment: str | None
    case_id: int | None
    case_reference: str | None
    subject_name: str | None
    case_team: str | None
    case_worker: str | None


def escalations(session: Session, teams: frozenset[str] | None) -> list[EscalatedTask]:
    """Open tasks that have reached an escalation level: most escalated, then most late, first."""
    query = (
        sa.select(
            Task.id,
            Task.name,
            Task.element_id,
            Task.escalation_level,
            Task.escalated_at,
            Task.due_at,
            Task.team_key,
            Task.assignee,
            User.display_name,
            User.employment,
            Task.case_id,
            CaseRecord.reference,
            CaseRecord.subject_name,
            CaseRecord.team_key,
            CaseRecord.worker,
        )
        .outerjoin(User, User.username == Task.assignee)
        .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
        .where(Task.status.in_(OPEN_STATUSES), Task.escalation_level > 0)
        .order_by(
            Task.escalation_level.desc(),
            Task.due_at.is_(None),
            Task.due_at,
            Task.escalated_at,
            Task.id,
        )
    )
    if teams is not None:
        query = query.where(Task.team_key.in_(teams))
    return [EscalatedTask(*tuple(row)) for row in session.execute(query)]


# ------------------------------------------------------------------------ caseloads


@dataclass
class WorkerLoad:
    username: str
    display_name: str
    employment: str
    teams: list[str] = field(default_factory=list)  # team names
    open_cases: int = 0
    open_tasks: int = 0


def case_holding_roles(roles: Iterable[dict[str, Any]]) -> list[str]:
    """Role keys (from processes/roles.json) whose holders carry a caseload."""
    return sorted(r["key"] for r in roles if r.get("access", "practitioner") in CASE_HOLDING_ACCESS)


def caseloads(session: Session, teams: frozenset[str] | None, role_keys: Collection[str]) -> list[WorkerLoad]:
    """Per worker: open cases allocated to them and open tasks they hold (in any team).

    The workers are the active users holding a case-holding role in the teams, and anyone
    allocated an open case of those teams.
    """
    members = (
        sa.select(User.username, User.display_name, User.employment, Team.name)
        .join(Membership, Membership.user_id == User.id)
        .join(Role, Role.id == Membership.role_id)
        .join(Team, Team.id == Membership.team_id)
        .where(User.active.is_(True), Role.key.in_(list(role_keys)))
        .order_by(User.display_name, Team.name)
    )
    if teams is not None:
        members = members.where(Team.key.in_(teams))
    workers: dict[str, WorkerLoad] = {}
    for username, display_name, employment, team_name in session.execute(members):
        load = workers.setdefault(username, WorkerLoad(username, display_name, employment))
        if team_name not in load.teams:
            load.teams.append(team_name)
    allocated = (
        sa.select(User.username, User.display_name, User.employment)
        .join(CaseRecord, CaseRecord.worker == User.username)
        .where(CaseRecord.status == "open")
        .distinct()
    )
    if teams is not None:
        allocated = allocated.where(CaseRecord.team_key.in_(teams))
    for username, display_name, employment in session.execute(allocated):
        workers.setdefault(username, WorkerLoad(username, display_name, employment))
    if not workers:
        return []
    names = list(workers)
    cases = session.execute(
        sa.select(CaseRecord.worker, sa.func.count())
        .where(CaseRecord.status == "open", CaseRecord.worker.in_(names))
        .group_by(CaseRecord.worker)
    )
    for worker, count in cases:
        workers[str(worker)].open_cases = count
    tasks = session.execute(
        sa.select(Task.assignee, sa.func.count())
        .where(Task.assignee.in_(names), Task.status.in_(OPEN_STATUSES))
        .group_by(Task.assignee)
    )
    for assignee, count in tasks:
        workers[str(assignee)].open_tasks = count
    return sorted(workers.values(), key=lambda w: (w.display_name.lower(), w.username))


@dataclass
class AgencyShare:
    kind: str  # a key of AGENCY_SHARE_ELEMENTS
    open: int = 0  # open tasks of this kind
    held: int = 0  # of which claimed by someone
    agency: int = 0  # of which held by agency staff

    @property
    def not_claimed(self) -> int:
        return self.open - self.held

    @property
    def percent(self) -> int | None:
        return round(100 * self.agency / self.open) if self.open else None


def agency_share(session: Session, teams: frozenset[str] | None) -> dict[str, AgencyShare]:
    """Open section 47 enquiries and open assessments: how many, and how many agency staff hold."""
    kind_of = {element: kind for kind, elements in AGENCY_SHARE_ELEMENTS.items() for element in elements}
    query = (
        sa.select(
            Task.element_id,
            sa.func.count(),
            sa.func.count(Task.assignee),
            sa.func.coalesce(sa.func.sum(sa.case((User.employment == "agency", 1), else_=0)), 0),
        )
        .outerjoin(User, User.username == Task.assignee)
        .where(Task.status.in_(OPEN_STATUSES), Task.element_id.in_(list(kind_of)))
        .group_by(Task.element_id)
    )
    if teams is not None:
        query = query.where(Task.team_key.in_(teams))
    shares = {kind: AgencyShare(kind) for kind in AGENCY_SHARE_ELEMENTS}
    for element, open_, held, agency in session.execute(query):
        share = shares[kind_of[element]]
        share.open += open_
        share.held += held
        share.agency += int(agency)
    return shares


# ----------------------------------------------------------------------- timeliness


@dataclass
class Timeliness:
    figure: TimelinessFigure
    by_clock: dict[str, tuple[int, int]]  # clock name -> (stopped in the period, of which in time)

    @property
    def stopped(self) -> int:
        return sum(stopped for stopped, _ in self.by_clock.values())

    @property
    def within(self) -> int:
        return sum(within for _, within in self.by_clock.values())

    @property
    def percent(self) -> int | None:
        return round(100 * self.within / self.stopped) if self.stopped else None


def _worked_on_by(case_id: Any, teams: frozenset[str]) -> Any:
    """The case is, or was, worked on by one of the teams: it is theirs, or they had a task on it."""
    return sa.or_(
        sa.exists().where(CaseRecord.id == case_id, CaseRecord.team_key.in_(teams)),
        sa.exists().where(Task.case_id == case_id, Task.team_key.in_(teams)),
    )


def timeliness(
    session: Session,
    figure: TimelinessFigure,
    start: datetime,
    end: datetime,
    teams: frozenset[str] | None,
) -> Timeliness:
    """One query: the figure's clocks stopped in [start, end), and how many met their target.

    A manager's figures cover the cases their teams worked on (a decision the MASH made stays the
    MASH's after the case moves on to the assessment team).
    """
    within = sa.func.coalesce(sa.func.sum(sa.case((StatutoryClock.breached.is_(False), 1), else_=0)), 0)
    query = (
        sa.select(StatutoryClock.name, sa.func.count(), within)
        .where(
            StatutoryClock.name.in_(figure.clocks),
            StatutoryClock.stopped_at >= start,
            StatutoryClock.stopped_at < end,
            sa.or_(
                StatutoryClock.stopped_by_element.is_(None),
                StatutoryClock.stopped_by_element.not_in(CLOCK_STOPS_NOT_COUNTED),
            ),
        )
        .group_by(StatutoryClock.name)
    )
    if teams is not None:
        query = query.where(_worked_on_by(StatutoryClock.case_id, teams))
    counts = {name: (int(stopped), int(met)) for name, stopped, met in session.execute(query)}
    return Timeliness(figure, {name: counts.get(name, (0, 0)) for name in figure.clocks})


# ------------------------------------------------------------------------- feedback

FEEDBACK_FACT = "feedback"  # record.feedback in referral.bpmn: the answers of service-feedback.schema.json
RATINGS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class FeedbackComment:
    recorded_at: datetime
    what_went_well: str | None
    what_could_be_better: str | None
    child_views: str | None


@dataclass
class FeedbackSummary:
    asked: int = 0  # families asked (one feedback record per case)
    responded: int = 0
    felt_listened_to: int = 0
    average_rating: float | None = None
    ratings: dict[int, int] = field(default_factory=lambda: dict.fromkeys(RATINGS, 0))
    comments: list[FeedbackComment] = field(default_factory=list)

    @property
    def response_percent(self) -> int | None:
        return round(100 * self.responded / self.asked) if self.asked else None


def feedback_summary(session: Session, teams: frozenset[str] | None, recent: int = 10) -> FeedbackSummary:
    """How many families were asked for feedback, how many gave it, their ratings and words."""
    value = CaseFact.value
    responded = value["responded"].as_boolean()
    rating = value["rating"].as_integer()
    scope = [CaseFact.name == FEEDBACK_FACT]
    if teams is not None:
        scope.append(_worked_on_by(CaseFact.case_id, teams))
    summary = FeedbackSummary()
    totals = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((responded.is_(True), 1), else_=0)), 0),
            sa.func.coalesce(
                sa.func.sum(
                    sa.case(
                        (sa.and_(responded.is_(True), value["felt_listened_to"].as_boolean()), 1), else_=0
                    )
                ),
                0,
            ),
            sa.func.avg(sa.case((responded.is_(True), rating), else_=None)),
        ).where(*scope)
    ).one()
    summary.asked, summary.responded, summary.felt_listened_to = (int(x) for x in totals[:3])
    summary.average_rating = round(float(totals[3]), 1) if totals[3] is not None else None
    distribution = session.execute(
        sa.select(rating, sa.func.count()).where(*scope, responded.is_(True)).group_by(rating)
    )
    for score, count in distribution:
        if score in summary.ratings:
            summary.ratings[score] = count
    latest = session.execute(
        sa.select(CaseFact.recorded_at, value)
        .where(*scope, responded.is_(True))
        .order_by(CaseFact.recorded_at.desc(), CaseFact.id.desc())
        .limit(recent * 5)
    )
    for recorded_at, answers in latest:
        if not isinstance(answers, dict):
            continue
        words = {k: _text(answers.get(k)) for k in ("what_went_well", "what_could_be_better", "child_views")}
        if any(words.values()):
            summary.comments.append(FeedbackComment(recorded_at, **words))
        if len(summary.comments) >= recent:
            break
    return summary


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
