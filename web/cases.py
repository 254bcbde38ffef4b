"""The case page: one child's record, from contact to closure.

Who may see it is decided by :func:`web.access.can_view_case`; every view is written to the audit
trail.  The page reads the engine's projections (case_record, statutory_clock, task, case_fact,
case_link, audit_event) and changes nothing.  Linked cases (siblings) are shown as links only:
never their data.  The timeline is told in sentences from the audit trail: what happened, when and
by whom, never the answers given (they belong on the task, not in a list anyone scrolls past).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, render_template, url_for
from flask_login import login_required
from sqlalchemy.orm import Session, aliased
from werkzeug.routing import BuildError

from engine import clock
from engine.calendar import WorkingCalendar
from engine.models import (
    AuditEvent,
    CaseFact,
    CaseLink,
    CaseRecord,
    Letter,
    ProcessDefinition,
    ProcessInstance,
    Role,
    StatutoryClock,
    Task,
    Team,
    User,
)
from engine.projection import OPEN_STATUSES

from . import engine_of, reports
from .access import can_view_case, record_view, viewable_case
from .auth import Person, person

bp = Blueprint("cases", __name__)

# Plain names for the statutory clocks the diagrams start (clock.start.<name>).
CLOCK_NAMES = {
    "mash_decision": "MASH decision (1 working day)",
    "initial_assessment": "Initial assessment",
    "core_assessment": "Core assessment",
    "assessment": "Assessment",
    "icpc": "Initial child protection conference",
}
TASK_STATUS = {
    "ready": "Waiting to be claimed",
    "claimed": "In progress",
    "completed": "Completed",
    "cancelled": "No longer needed",
}
LINK_KINDS = {"sibling": "Sibling"}
# Who a letter is to (the letter task's ``letter.recipient``), in words.
RECIPIENTS = {"family": "The family", "referrer": "The referrer"}
# Facts the diagrams record when a letter goes (record.<name>), and who the letter is to.
LETTER_FACTS = (
    ("referrer_letter_sent_date", "Letter to the referrer"),
    ("family_letter_sent_date", "Letter to the family"),
)
# Audit actions that are not part of the story of the case (views, data recorded, timers ticking).
TIMELINE_HIDDEN = ("case.viewed", "case.fact_recorded", "timer.fired")
TIMELINE_LIMIT = 500
# Actors that are the system itself: their events read without "by ...".
SYSTEM_ACTORS = {"system", "worker", "scheduler", "timer"}


# ------------------------------------------------------------------------- words


def calendar() -> WorkingCalendar:
    return engine_of(current_app).calendar


def _tz() -> ZoneInfo:
    return calendar().timezone


def long_date(value: datetime | date | str | None) -> str:
    """'Wednesday 6 March 2024' (instants in London time); '' for nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            return long_date(date.fromisoformat(value[:10]))
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.astimezone(_tz()).date()
    return f"{value:%A} {value.day} {value:%B %Y}"


def date_time(value: datetime | None) -> str:
    """'Wednesday 6 March 2024 at 09:30' (London time)."""
    if value is None:
        return ""
    local = value.astimezone(_tz())
    return f"{long_date(local.date())} at {local:%H:%M}"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def clock_name(name: str) -> str:
    return CLOCK_NAMES.get(name, name.replace("_", " ").capitalize())


def clock_words(position: reports.ClockPosition) -> tuple[str, str, str]:
    """(words, tag text, tag class) for where a statutory clock stands."""
    days = position.days
    if position.state == "met":
        return "Met: stopped within its target", "Met", "govuk-tag--green"
    if position.state == "breached":
        words = f"Breached by {plural(days, 'working day')}" if days > 0 else "Breached on the target day"
        return words, "Breached", "govuk-tag--red"
    if position.state == "no_target":
        return "Running, with no target set", "Running", "govuk-tag--blue"
    if days == 0:
        return "Target is today", "Due today", "govuk-tag--yellow"
    return f"{plural(days, 'working day')} left", "Running", "govuk-tag--blue"


def due_words(due_at: datetime | None, now: datetime) -> tuple[str, str]:
    """('2 working days overdue', 'fd-due--overdue') and the like, for an open task."""
    if due_at is None:
        return "No due date", ""
    late = reports.working_days_late(calendar(), due_at, now)
    if due_at < now:
        if late > 0:
            return f"{plural(late, 'working day')} overdue", "fd-due--overdue"
        return "Overdue today", "fd-due--overdue"
    if late == 0:
        return "Due today", "fd-due--today"
    if late == -1:
        return "Due tomorrow", "fd-due--soon"
    return f"Due in {plural(-late, 'working day')}", "fd-due--soon" if late >= -2 else ""


def employment_words(employment: str | None) -> str:
    return {"agency": "Agency", "permanent": "Permanent"}.get(employment or "", employment or "")


def task_url(task_id: str) -> str | None:
    """The task's own page, once the tasks blueprint provides one."""
    try:
        return url_for("tasks.show", task_id=task_id)
    except BuildError:
        return None


def case_url(reference: str) -> str:
    return url_for("cases.show", reference=reference)


# ------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class Names:
    """Display names for the usernames, teams and roles a page mentions."""

    users: dict[str, tuple[str, str]]  # username -> (display name, employment)
    teams: dict[str, str]
    roles: dict[str, str]

    def user(self, username: str | None) -> str:
        if not username:
            return ""
        return self.users.get(username, (username, ""))[0]

    def employment(self, username: str | None) -> str:
        return self.users.get(username or "", ("", ""))[1]

    def team(self, key: str | None) -> str:
        return self.teams.get(key or "", key or "")

    def role(self, key: str | None) -> str:
        return self.roles.get(key or "", key or "")


def load_names(session: Session, usernames: set[str]) -> Names:
    users = {}
    wanted = sorted(u for u in usernames if u)
    if wanted:
        rows = session.execute(
            sa.select(User.username, User.display_name, User.employment).where(User.username.in_(wanted))
        )
        users = {username: (name, employment) for username, name, employment in rows}
    teams = {k: v for k, v in session.execute(sa.select(Team.key, Team.name))}
    roles = {k: v for k, v in session.execute(sa.select(Role.key, Role.name))}
    return Names(users, teams, roles)


def _clocks(session: Session, case_id: int, now: datetime) -> list[dict[str, Any]]:
    rows = session.scalars(
        sa.select(StatutoryClock)
        .where(StatutoryClock.case_id == case_id)
        .order_by(StatutoryClock.started_at, StatutoryClock.id)
    )
    clocks = []
    for row in rows:
        position = reports.clock_position(calendar(), row.target_at, row.stopped_at, row.breached, now)
        words, tag, tag_class = clock_words(position)
        clocks.append(
            {
                "name": clock_name(row.name),
                "started": long_date(row.started_at),
                "target": date_time(row.target_at) if row.target_at else "No target",
                "stopped": long_date(row.stopped_at) if row.stopped_at else "",
                "words": words,
                "tag": tag,
                "tag_class": tag_class,
            }
        )
    return clocks


def _tasks(session: Session, case_id: int) -> list[Task]:
    return list(
        session.scalars(
            sa.select(Task)
            .where(Task.case_id == case_id)
            .order_by(Task.due_at.is_(None), Task.due_at, Task.created_at, Task.id)
        )
    )


def _facts(session: Session, case_id: int, names: tuple[str, ...]) -> dict[str, Any]:
    rows = session.execute(
        sa.select(CaseFact.name, CaseFact.value).where(CaseFact.case_id == case_id, CaseFact.name.in_(names))
    )
    return {name: value for name, value in rows}


def _links(session: Session, case_id: int) -> list[tuple[str, CaseRecord]]:
    other = aliased(CaseRecord)
    rows = session.execute(
        sa.select(CaseLink.kind, other)
        .join(other, other.id == CaseLink.linked_case_id)
        .where(CaseLink.case_id == case_id)
        .order_by(other.reference)
    )
    return [(kind, linked) for kind, linked in rows]


def _events(session: Session, case_id: int) -> list[Any]:
    return list(
        session.execute(
            sa.select(
                AuditEvent.seq,
                AuditEvent.occurred_at,
                AuditEvent.actor,
                AuditEvent.action,
                AuditEvent.instance_id,
                AuditEvent.data,
                Task.name.label("task_name"),
            )
            .outerjoin(Task, Task.id == AuditEvent.task_id)
            .where(AuditEvent.case_id == case_id, AuditEvent.action.not_in(TIMELINE_HIDDEN))
            .order_by(AuditEvent.seq.desc())
            .limit(TIMELINE_LIMIT)
        )
    )


def _process_names(session: Session, case_id: int) -> tuple[dict[int, str], dict[str, str]]:
    """Process names by instance id (this case's instances) and by process key."""
    instances = session.execute(
        sa.select(ProcessInstance.id, ProcessDefinition.name)
        .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
        .where(ProcessInstance.case_id == case_id)
    )
    by_instance = {instance_id: name for instance_id, name in instances}
    # The newest version's name for each key.
    definitions = session.execute(
        sa.select(ProcessDefinition.key, ProcessDefinition.name).order_by(ProcessDefinition.version)
    )
    by_key = {key: name for key, name in definitions}
    return {k: v or "" for k, v in by_instance.items()}, {k: v or k for k, v in by_key.items()}


# ---------------------------------------------------------------------- timeline


def _quoted(name: str | None) -> str:
    return f"'{name}'" if name else "a task"


def event_sentence(
    event: Any,
    names: Names,
    processes: tuple[dict[int, str], dict[str, str]],
    ladder: dict[str, dict[str, Any]],
    closure_reasons: dict[str, str],
) -> str | None:
    """One audit event as a sentence for the timeline; None for events that tell nothing new.

    Only names, dates and codes are used: never the answers a form was completed with.
    """
    data = event.data if isinstance(event.data, dict) else {}
    action = str(event.action)
    actor = None if event.actor in SYSTEM_ACTORS else names.user(event.actor)
    by = f" by {actor}" if actor else ""
    task = _quoted(data.get("name") or event.task_name)
    by_instance, by_key = processes
    process = by_instance.get(event.instance_id or -1) or by_key.get(str(data.get("process", "")), "")
    if action == "case.opened":
        team = names.team(data.get("team"))
        return f"Case opened{by}" + (f" in the {team}" if team else "")
    if action == "case.linked":
        linked = [str(r) for r in data.get("cases") or []]
        if not linked:
            return None
        kind = str(data.get("kind", "linked")).replace("_", " ")
        return f"Linked to {', '.join(linked)} ({kind})"
    if action == "case.closed":
        reason = str(data.get("reason", ""))
        return "Case closed" + (f": {closure_reasons.get(reason, reason)}" if reason else "")
    if action == "case.team_changed":
        team = names.team(data.get("to"))
        return f"Moved to the {team}" if team else "No longer held by a team"
    if action == "case.worker_changed":
        worker = names.user(data.get("to"))
        return f"Allocated to {worker}" if worker else "No longer allocated to a worker"
    if action == "instance.started":
        return f"{process or 'A process'} started{by}"
    if action == "instance.completed":
        return f"{process or 'A process'} finished"
    if action == "instance.cancelled":
        reason = str(data.get("reason", "")).strip()
        return f"{process or 'A process'} cancelled{by}" + (f": {reason}" if reason else "")
    if action == "task.created":
        due = data.get("due")
        when = f", due {date_time(datetime.fromisoformat(due))}" if isinstance(due, str) and due else ""
        return f"Task {task} opened{when}"
    if action == "task.claimed":
        return f"Task {task} claimed{by}"
    if action == "task.unclaimed":
        return f"Task {task} released{by}"
    if action == "task.assigned":
        assignee = names.user(data.get("assignee"))
        giver = f" by {actor}" if actor and event.actor != data.get("assignee") else ""
        return f"Task {task} given to {assignee}{giver}"
    if action == "task.assignment_refused":
        return f"Task {task} could not be given to {names.user(data.get('assignee'))}: left in the team queue"
    if action == "task.completed":
        return f"Task {task} completed{by}"
    if action == "task.draft_saved":
        return f"Draft answers to {task} saved{by}"
    if action == "task.cancelled":
        return f"Task {task} no longer needed"
    if action == "task.escalated":
        level = data.get("level")
        label = escalation_label(level, ladder, names)
        return f"Task {task} escalated to level {level}" + (f": {label}" if label else "")
    if action == "clock.started":
        target = data.get("target")
        when = f", target {long_date(datetime.fromisoformat(target))}" if isinstance(target, str) else ""
        return f"Clock started: {clock_name(str(data.get('clock', '')))}{when}"
    if action == "clock.stopped":
        outcome = "target missed" if data.get("breached") else "target met"
        return f"Clock stopped: {clock_name(str(data.get('clock', '')))}, {outcome}"
    if action == "letter.written":
        to = RECIPIENTS.get(str(data.get("recipient", "")), "").lower() or "someone"
        title = f": '{data['title']}'" if data.get("title") else ""
        return f"Letter to {to} written{by}{title}"
    if action == "timer.failed":
        return "A deadline timer could not run; it has been reported"
    # Anything newer than this page: its name in words, and nothing of its data.
    return action.replace(".", " ").replace("_", " ").capitalize() + by


def escalation_label(level: Any, ladder: dict[str, dict[str, Any]], names: Names) -> str:
    """'team manager' for level 2: who the rung of processes/escalation.json brings in."""
    rule = ladder.get(str(level), {})
    role = rule.get("role")
    text = names.role(role) if rule.get("notify") == "role" and role else str(rule.get("label", ""))
    return text[:1].lower() + text[1:] if text else ""


# ------------------------------------------------------------------------- page


@bp.route("/cases/<reference>")
@login_required
def show(reference: str) -> Any:
    engine = engine_of(current_app)
    viewer = person()
    case = viewable_case(viewer, reference)
    record_view(viewer, case, "case")
    now = clock.now()
    with engine.db.read() as session:
        clocks = _clocks(session, case.id, now)
        tasks = _tasks(session, case.id)
        facts = _facts(session, case.id, tuple(name for name, _ in LETTER_FACTS))
        links = _links(session, case.id)
        stored_letters = _stored_letters(session, case.id)
        events = _events(session, case.id)
        processes = _process_names(session, case.id)
        usernames = {case.worker or ""}
        usernames |= {t.assignee or "" for t in tasks} | {t.completed_by or "" for t in tasks}
        usernames |= {row.sent_by or "" for row in stored_letters}
        for event in events:
            usernames.add(event.actor)
            if isinstance(event.data, dict):
                usernames |= {str(event.data.get(k) or "") for k in ("assignee", "to", "from")}
        names = load_names(session, usernames)
    closure_reasons = _code_titles("closure_reason")
    ladder = engine.services.ladder
    timeline = []
    for event in events:
        sentence = event_sentence(event, names, processes, ladder, closure_reasons)
        if sentence:
            timeline.append({"when": date_time(event.occurred_at), "what": sentence})
    return render_template(
        "cases/show.html",
        case=case,
        team=names.team(case.team_key),
        worker=names.user(case.worker),
        worker_employment=employment_words(names.employment(case.worker)),
        opened=date_time(case.opened_at),
        closed=date_time(case.closed_at),
        closed_reason=closure_reasons.get(case.closed_reason or "", case.closed_reason or ""),
        clocks=clocks,
        open_tasks=[_task_row(t, names, now) for t in tasks if t.status in OPEN_STATUSES],
        closed_tasks=sorted(
            (_task_row(t, names, now) for t in tasks if t.status not in OPEN_STATUSES),
            key=lambda row: row["sort"],
            reverse=True,
        ),
        letters=_letters(facts, tasks, names, now),
        written_letters=[_letter_row(case, row, names) for row in stored_letters],
        links=[_link_row(kind, linked, viewer) for kind, linked in links],
        timeline=timeline,
        timeline_cut=len(events) >= TIMELINE_LIMIT,
    )


def _code_titles(name: str) -> dict[str, str]:
    try:
        codes = engine_of(current_app).registry.code_list(name)
    except (OSError, ValueError):
        return {}
    return {str(c.get("const")): str(c.get("title", c.get("const"))) for c in codes.get("oneOf", [])}


def _task_row(task: Task, names: Names, now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": task.id,
        "name": task.name,
        "url": task_url(task.id),
        "status": TASK_STATUS.get(task.status, task.status.capitalize()),
        "escalation_level": task.escalation_level,
    }
    if task.status in OPEN_STATUSES:
        if task.assignee:
            who = names.user(task.assignee)
            employment = names.employment(task.assignee)
            row["who"] = who + (" (agency)" if employment == "agency" else "")
        else:
            offered = names.role(task.role_key)
            team = names.team(task.team_key)
            row["who"] = (
                "Not claimed" + (f": offered to {offered}" if offered else "") + (f", {team}" if team else "")
            )
        row["due_words"], row["due_class"] = due_words(task.due_at, now)
        row["due"] = date_time(task.due_at) if task.due_at else ""
    else:
        row["who"] = names.user(task.completed_by) if task.status == "completed" else ""
        row["when"] = date_time(task.completed_at) if task.completed_at else ""
        row["sort"] = (task.completed_at or task.created_at).isoformat()
    return row


def _letters(facts: dict[str, Any], tasks: list[Task], names: Names, now: datetime) -> dict[str, Any]:
    """The letters the inspection asked for (outcome to the family and the referrer), and the letter tasks."""
    summary = []
    for fact, label in LETTER_FACTS:
        sent = facts.get(fact)
        summary.append({"label": label, "words": f"Sent on {long_date(sent)}" if sent else "Not sent yet"})
    rows = []
    for task in tasks:
        if not (task.form_key and "letter" in task.form_key):
            continue
        if task.status == "completed":
            words, css = f"Sent on {long_date(task.completed_at)}", ""
            who = names.user(task.completed_by)
        elif task.status in OPEN_STATUSES:
            due, css = due_words(task.due_at, now)
            if task.due_at is not None and css != "fd-due--overdue":
                due = f"due {date_time(task.due_at)}"
            words = f"Not sent yet: {due[:1].lower() + due[1:]}"
            who = names.user(task.assignee) if task.assignee else "Not claimed"
        else:
            words, css, who = "No longer needed", "", ""
        rows.append({"name": task.name, "url": task_url(task.id), "words": words, "css": css, "who": who})
    return {"summary": summary, "tasks": rows}


def _stored_letters(session: Session, case_id: int) -> list[Any]:
    """The case's letters, newest first (not their PDFs: those are read only when downloaded)."""
    return list(
        session.execute(
            sa.select(
                Letter.id,
                Letter.title,
                Letter.recipient,
                Letter.sent_at,
                Letter.sent_by,
                Letter.created_at,
                sa.func.length(Letter.pdf).label("size"),
            )
            .where(Letter.case_id == case_id)
            .order_by(Letter.created_at.desc(), Letter.id.desc())
        )
    )


def _letter_row(case: CaseRecord, row: Any, names: Names) -> dict[str, Any]:
    size_kb = max(1, round((row.size or 0) / 1024))
    return {
        "title": row.title,
        "to": RECIPIENTS.get(row.recipient, row.recipient.replace("_", " ").capitalize()),
        "sent": long_date(row.sent_at) if row.sent_at else "Not sent yet",
        "who": names.user(row.sent_by),
        "url": url_for("cases.letter_pdf", reference=case.reference, letter_id=row.id),
        "size": f"PDF, {size_kb} KB",
    }


@bp.route("/cases/<reference>/letters/<int:letter_id>.pdf")
@login_required
def letter_pdf(reference: str, letter_id: int) -> Any:
    """One letter's PDF, to whoever may see the case; the download is a view of the child's record."""
    engine = engine_of(current_app)
    viewer = person()
    case = viewable_case(viewer, reference)
    with engine.db.read() as session:
        letter = session.scalar(sa.select(Letter).where(Letter.id == letter_id, Letter.case_id == case.id))
        if letter is None:
            abort(404)
        pdf, template = bytes(letter.pdf), letter.template
    record_view(viewer, case, "letter", letter=letter_id)
    response = Response(pdf, mimetype="application/pdf")
    filename = re.sub(r"[^A-Za-z0-9._-]", "-", f"{reference}-{template}-{letter_id}.pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    # A child's record: never kept by a browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _link_row(kind: str, linked: CaseRecord, viewer: Person) -> dict[str, Any]:
    """A linked case: its reference and name, a link only if the viewer may open it; nothing else."""
    return {
        "kind": LINK_KINDS.get(kind, kind.replace("_", " ").capitalize()),
        "reference": linked.reference,
        "name": linked.subject_name or "",
        "url": case_url(linked.reference) if can_view_case(viewer, linked) else None,
    }
