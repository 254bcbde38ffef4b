"""Manager pages: escalations, caseloads, timeliness this month, service-user feedback.

Only for managers (:func:`web.access.is_manager`); a manager sees their managed teams, the service
level every team.  The figures come from :mod:`web.reports` (the same SQL the API can use); this
module puts them into words, tables and charts.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template, request, url_for
from flask_login import login_required

from engine import clock
from engine.models import CaseRecord, Team

from . import charts, engine_of, reports
from .access import can_view_case, is_manager, managed_teams, require
from .auth import Person, person
from .cases import (
    case_url,
    clock_name,
    date_time,
    employment_words,
    escalation_label,
    load_names,
    long_date,
    plural,
    task_url,
)

bp = Blueprint("manage", __name__, url_prefix="/manage")

PAGES = (
    ("manage.escalations", "Escalations"),
    ("manage.caseloads", "Caseloads"),
    ("manage.timeliness", "Timeliness"),
    ("manage.feedback", "Feedback"),
)
LEVEL_TAGS = {1: "govuk-tag--yellow", 2: "govuk-tag--orange", 3: "govuk-tag--red"}
SHARE_TITLES = {"section47": "Section 47 enquiries", "assessment": "Assessments"}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _scope() -> tuple[Person, frozenset[str] | None]:
    """The signed-in manager and the teams their pages cover (None: every team)."""
    viewer = person()
    require(is_manager(viewer))
    return viewer, reports.teams_scope(managed_teams(viewer))


def _scope_words(teams: frozenset[str] | None) -> str:
    if teams is None:
        return "All teams"
    with engine_of(current_app).db.read() as session:
        names = {k: v for k, v in session.execute(sa.select(Team.key, Team.name))}
    listed = sorted(names.get(key, key) for key in teams)
    return listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]


def _render(
    template: str, endpoint: str, teams: frozenset[str] | None, status: int = 200, **values: Any
) -> Any:
    pages = [{"href": url_for(e), "text": text, "current": e == endpoint} for e, text in PAGES]
    return render_template(template, pages=pages, scope=_scope_words(teams), **values), status


# ---------------------------------------------------------------------- escalations


def lateness_words(due_at: datetime | None, now: datetime) -> str:
    """'3 working days late', 'Late today', or when it is due if that is still to come."""
    if due_at is None:
        return "No due date"
    late = reports.working_days_late(engine_of(current_app).calendar, due_at, now)
    if due_at <= now:
        return f"{plural(late, 'working day')} late" if late > 0 else "Late today"
    if late == 0:
        return (
            f"Not late yet: due today at {due_at.astimezone(engine_of(current_app).calendar.timezone):%H:%M}"
        )
    return f"Not late yet: due {long_date(due_at)}"


@bp.route("/escalations")
@login_required
def escalations() -> Any:
    viewer, teams = _scope()
    engine = engine_of(current_app)
    now = clock.now()
    with engine.db.read() as session:
        tasks = reports.escalations(session, teams)
        names = load_names(session, {t.assignee or "" for t in tasks})
    rows = []
    for task in tasks:
        level = task.escalation_level
        label = escalation_label(level, engine.services.ladder, names)
        child = None
        if task.case_reference:
            record = CaseRecord(team_key=task.case_team, worker=task.case_worker)
            child = {
                "reference": task.case_reference,
                "name": task.subject_name or "",
                "url": case_url(task.case_reference) if can_view_case(viewer, record) else None,
            }
        rows.append(
            {
                "child": child,
                "task": task.name,
                "task_url": task_url(task.task_id),
                "level": f"Level {level}: {label}" if label else f"Level {level}",
                "level_class": LEVEL_TAGS.get(level, "govuk-tag--red"),
                "late": lateness_words(task.due_at, now),
                "held_by": task.assignee_name or task.assignee or "Not claimed",
                "employment": employment_words(task.employment) if task.assignee else "",
                "team": names.team(task.team_key),
                "reached": date_time(task.escalated_at),
            }
        )
    return _render("manage/escalations.html", "manage.escalations", teams, rows=rows)


# ------------------------------------------------------------------------ caseloads


@bp.route("/caseloads")
@login_required
def caseloads() -> Any:
    _, teams = _scope()
    engine = engine_of(current_app)
    role_keys = reports.case_holding_roles(engine.registry.roles())
    with engine.db.read() as session:
        loads = reports.caseloads(session, teams, role_keys)
        shares = reports.agency_share(session, teams)
    workers = [
        {
            "name": load.display_name,
            "employment": employment_words(load.employment),
            "agency": load.employment == "agency",
            "teams": ", ".join(load.teams) or "Not a member of these teams",
            "open_cases": load.open_cases,
            "open_tasks": load.open_tasks,
        }
        for load in loads
    ]
    share_rows = []
    for kind, share in shares.items():
        share_rows.append(
            {
                "title": SHARE_TITLES.get(kind, kind.replace("_", " ").capitalize()),
                "open": share.open,
                "agency": f"{share.agency} of {share.open}" if share.open else "None open",
                "percent": f"{share.percent}%" if share.percent is not None else "–",
                "not_claimed": share.not_claimed,
            }
        )
    total_cases = sum(load.open_cases for load in loads)
    agency_cases = sum(load.open_cases for load in loads if load.employment == "agency")
    return _render(
        "manage/caseloads.html",
        "manage.caseloads",
        teams,
        workers=workers,
        shares=share_rows,
        total_cases=total_cases,
        agency_cases=agency_cases,
        agency_workers=sum(1 for load in loads if load.employment == "agency"),
    )


# ----------------------------------------------------------------------- timeliness


def _month(value: str | None, today: date) -> tuple[int, int, str | None]:
    """(year, month, error) from ?month=YYYY-MM; this month when absent or wrong."""
    if not value:
        return today.year, today.month, None
    found = _MONTH.match(value.strip())
    if found and 1 <= int(found.group(2)) <= 12 and 2000 <= int(found.group(1)) <= 2999:
        return int(found.group(1)), int(found.group(2)), None
    return today.year, today.month, "Enter a month as a year and a month number, for example 2024-03"


def _shift(year: int, month: int, by: int) -> str:
    index = year * 12 + (month - 1) + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@bp.route("/timeliness")
@login_required
def timeliness() -> Any:
    _, teams = _scope()
    engine = engine_of(current_app)
    tz = engine.calendar.timezone
    today = clock.now().astimezone(tz).date()
    year, month, error = _month(request.args.get("month"), today)
    start, end = reports.month_bounds(year, month, tz)
    with engine.db.read() as session:
        figures = [reports.timeliness(session, f, start, end, teams) for f in reports.TIMELINESS_FIGURES]
    month_name = f"{start:%B %Y}"
    rows = []
    bars = []
    for figure in figures:
        stopped, within, percent = figure.stopped, figure.within, figure.percent
        words = f"{within} of {stopped} ({percent}%)" if stopped else "None completed"
        bars.append(charts.Bar(figure.figure.title, percent, words))
        parts = []
        if len(figure.by_clock) > 1:
            for name, (clock_stopped, clock_within) in figure.by_clock.items():
                if clock_stopped:
                    parts.append(
                        {
                            "title": clock_name(name),
                            "within": clock_within,
                            "stopped": clock_stopped,
                            "percent": f"{round(100 * clock_within / clock_stopped)}%",
                        }
                    )
        rows.append(
            {
                "key": figure.figure.key,
                "title": figure.figure.title,
                "within": within,
                "stopped": stopped,
                "percent": f"{percent}%" if percent is not None else "–",
                "parts": parts,
            }
        )
    chart = charts.bar_chart(
        "timeliness-chart",
        f"Timeliness in {month_name}: percentage within timescale",
        bars,
        maximum=100,
        target=100,
    )
    this_month = f"{today.year:04d}-{today.month:02d}"
    shown = f"{year:04d}-{month:02d}"
    return _render(
        "manage/timeliness.html",
        "manage.timeliness",
        teams,
        status=400 if error else 200,
        error=error,
        month_value=request.args.get("month", "") if error else shown,
        month_name=month_name,
        rows=rows,
        chart=chart,
        nothing=all(r["stopped"] == 0 for r in rows),
        previous_month=_shift(year, month, -1),
        next_month=_shift(year, month, 1) if shown < this_month else None,
        is_this_month=shown == this_month,
    )


# ------------------------------------------------------------------------- feedback


@bp.route("/feedback")
@login_required
def feedback() -> Any:
    _, teams = _scope()
    engine = engine_of(current_app)
    with engine.db.read() as session:
        summary = reports.feedback_summary(session, teams)
    ratings = [{"rating": score, "count": count} for score, count in sorted(summary.ratings.items())]
    chart = None
    if summary.responded:
        chart = charts.bar_chart(
            "ratings-chart",
            "How helpful families found our involvement: number of responses by rating",
            [
                charts.Bar(
                    f"{score}: {RATING_WORDS.get(score, '')}".rstrip(": "), count, plural(count, "response")
                )
                for score, count in sorted(summary.ratings.items())
            ],
            maximum=max(summary.ratings.values()) or 1,
        )
    comments = [
        {
            "when": long_date(c.recorded_at),
            "well": c.what_went_well or "",
            "better": c.what_could_be_better or "",
            "child": c.child_views or "",
        }
        for c in summary.comments
    ]
    return _render(
        "manage/feedback.html",
        "manage.feedback",
        teams,
        summary=summary,
        response_percent=f"{summary.response_percent}%" if summary.response_percent is not None else "–",
        listened_percent=(
            f"{round(100 * summary.felt_listened_to / summary.responded)}%" if summary.responded else "–"
        ),
        ratings=[{**r, "words": RATING_WORDS.get(r["rating"], "")} for r in ratings],
        chart=chart,
        comments=comments,
    )


# The rating question (service-feedback.schema.json): "1 not at all, 5 very" helpful.
RATING_WORDS = {1: "not at all helpful", 5: "very helpful"}
