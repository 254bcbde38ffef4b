"""The task page: what the task is about, its instructions, and its form.

GET shows the task (404 if unknown, 403 unless the person may see it; every view of a task on a
child's case goes to the audit trail). POST either completes the task (``action=complete``:
Engine.complete with the process revision the page was rendered at, so a case that moved on
meanwhile is a conflict, not an overwrite) or saves the answers as a draft (``action=draft``:
Engine.save_draft, kept on the task row for whoever completes it, on any device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.errors import Conflict, FrontdoorError, InvalidData, NotFound, PermissionDenied, ProcessError
from engine.models import CaseRecord, ProcessInstance, Task, User

from . import access, engine_of, forms
from .auth import person
from .queues import DueClock, long_date

bp = Blueprint("tasks", __name__)

OPEN_STATUSES = ("ready", "claimed")


@dataclass
class Loaded:
    task: Task
    case: CaseRecord | None
    revision: int | None
    names: dict[str, str]  # username -> display name (assignee, completed by, draft saved by)


def _load(task_id: str) -> Loaded:
    engine = engine_of(current_app)
    with engine.db.read() as session:
        task = session.get(Task, task_id)
        if task is None:
            abort(404)
        case = session.get(CaseRecord, task.case_id) if task.case_id is not None else None
        revision = session.scalar(
            sa.select(ProcessInstance.revision).where(ProcessInstance.id == task.instance_id)
        )
        people = {task.assignee, task.completed_by, getattr(task, "draft_saved_by", None)} - {None}
        names = dict(
            session.execute(
                sa.select(User.username, User.display_name).where(User.username.in_(people))
            ).all()
        )
    access.require(access.can_view_task(person(), task, case))
    return Loaded(task, case, revision, names)


def _schema(task: Task) -> tuple[dict[str, Any] | None, dict[str, Any], str | None]:
    """The task's form schema and uiSchema; a form that cannot be read is reported, not a 500."""
    if not task.form_key:
        return None, {}, None
    registry = engine_of(current_app).registry
    try:
        schema = registry.form_schema(task.form_key)
    except (OSError, ValueError) as exc:
        return None, {}, f"The form {task.form_key} cannot be shown: {exc}. Tell the process owner."
    ui: dict[str, Any] = {}
    if task.ui_form_key and "/" not in task.ui_form_key and not task.ui_form_key.startswith("."):
        try:
            found = registry.read_json_optional(f"forms/{task.ui_form_key}")
        except ValueError:
            found = None
        ui = found if isinstance(found, dict) else {}
    return schema, ui, None


def _may_complete(task: Task) -> bool:
    me = person()
    if task.status not in OPEN_STATUSES:
        return False
    if task.assignee is not None:
        return task.assignee == me.username
    return access.task_offered_to(me, task)


def _case_url(case: CaseRecord | None) -> str | None:
    if case is None or "cases.show" not in current_app.view_functions:
        return None
    if not access.can_view_case(person(), case):
        return None
    return url_for("cases.show", reference=case.reference)


def _child(case: CaseRecord | None) -> str:
    if case is None:
        return ""
    return f"{case.subject_name or 'Unnamed child'} ({case.reference})"


def _paragraphs(text: str | None) -> list[list[str]]:
    """Instructions as paragraphs of lines (plain text: the template escapes every line)."""
    if not text:
        return []
    paragraphs: list[list[str]] = [[]]
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def _render(
    loaded: Loaded,
    values: dict[str, list[str]] | None = None,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    revision: int | None = None,
    status: int = 200,
) -> Any:
    task, case = loaded.task, loaded.case
    if case is not None:
        access.record_view(person(), case, "task")
    schema, ui, form_problem = _schema(task)
    fields = forms.build_fields(schema, values, errors, ui) if schema else []
    if errors and not fields:
        problem = problem or "; ".join(errors.values())
    draft = getattr(task, "draft", None)
    draft_at = getattr(task, "draft_saved_at", None)
    draft_by = getattr(task, "draft_saved_by", None)
    due = DueClock()
    tz = engine_of(current_app).calendar.timezone
    completed_at = task.completed_at.astimezone(tz) if task.completed_at else None
    return render_template(
        "tasks/show.html",
        task=task,
        case=case,
        child=_child(case),
        case_url=_case_url(case),
        due=due(task.due_at),
        instructions=_paragraphs(task.instructions),
        fields=fields,
        error_list=forms.error_list(fields) or ([{"text": problem, "href": "#task-form"}] if errors else []),
        problem=problem or form_problem,
        revision=loaded.revision if revision is None else revision,
        may_complete=_may_complete(task),
        offered=task.status == "ready" and task.assignee is None and access.task_offered_to(person(), task),
        names=loaded.names,
        draft_note=(
            f"Draft saved by {loaded.names.get(draft_by, draft_by)} on {long_date(draft_at.astimezone(tz))} "
            f"at {draft_at.astimezone(tz):%H:%M}"
            if draft is not None and draft_at is not None
            else None
        ),
        completed_when=f"{long_date(completed_at)} at {completed_at:%H:%M}" if completed_at else "",
        answers=forms.summary_rows(schema, task.outcome) if schema and task.outcome else [],
        partner=access.is_partner_only(person()),
    ), status


@bp.route("/tasks/<task_id>", methods=["GET", "POST"])
@login_required
def show(task_id: str) -> Any:
    loaded = _load(task_id)
    task = loaded.task
    if request.method == "GET":
        schema, _ui, _ = _schema(task)
        draft = getattr(task, "draft", None)
        values = forms.json_to_form(schema, draft) if schema and draft else None
        return _render(loaded, values)

    if not _may_complete(task):
        return _render(
            loaded, problem=_why_not(loaded), status=409 if task.status not in OPEN_STATUSES else 403
        )
    schema, _ui, form_problem = _schema(task)
    if form_problem:
        return _render(loaded, status=500)
    posted = {key: request.form.getlist(key) for key in request.form if key not in _CONTROL_FIELDS}
    conversion = (
        forms.form_to_json(schema, posted, engine_of(current_app).calendar.timezone) if schema else None
    )
    data = conversion.data if conversion else {}
    revision = _int(request.form.get("revision"))
    if request.form.get("action") == "draft":
        return _save_draft(loaded, posted, conversion, revision)

    problems = conversion.form_errors(forms.validate(schema, data)) if conversion and schema else {}
    if problems:
        return _render(loaded, posted, problems, revision=revision, status=400)
    engine = engine_of(current_app)
    try:
        engine.complete(task.id, person().username, data, expected_revision=revision)
    except InvalidData as exc:
        fields = conversion.form_errors(exc.fields) if conversion else dict(exc.fields)
        problem = None if fields else str(exc)
        return _render(loaded, posted, fields or {"": str(exc)}, problem, revision=revision, status=400)
    except Conflict as exc:
        return _conflict(task_id, posted, exc)
    except PermissionDenied as exc:
        return _render(
            loaded, posted, problem=f"You cannot complete this task: {exc}", revision=revision, status=403
        )
    except NotFound:
        abort(404)
    except ProcessError as exc:
        problem = (
            f"The process could not go on from this task: {exc}. Nothing was saved. Tell the process owner."
        )
        return _render(loaded, posted, problem=problem, revision=revision, status=422)
    flash(
        f"You completed ‘{task.name}’" + (f" for {_child(loaded.case)}." if loaded.case else "."), "success"
    )
    return redirect(url_for("queues.my_tasks"))


_CONTROL_FIELDS = {"csrf_token", "revision", "action"}


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _why_not(loaded: Loaded) -> str:
    task = loaded.task
    if task.status == "completed":
        if task.completed_by == person().username:
            return "You have already completed this task. Nothing more was saved."
        by = loaded.names.get(task.completed_by or "", task.completed_by or "someone else")
        return f"Someone else completed this task a moment ago ({by}). Your answers were not saved."
    if task.status not in OPEN_STATUSES:
        return f"This task is {task.status}: the process moved on without it. Nothing was saved."
    if task.assignee:
        holder = loaded.names.get(task.assignee, task.assignee)
        return f"{holder} holds this task: only they can complete it. Nothing was saved."
    return "Your roles do not let you complete this task. Nothing was saved."


def _conflict(task_id: str, posted: dict[str, list[str]], exc: Conflict) -> Any:
    """Someone else got there first: say who or what, keep the person's answers, save nothing."""
    fresh = _load(task_id)
    if fresh.task.status == "completed":
        by = fresh.names.get(fresh.task.completed_by or "", fresh.task.completed_by or "someone else")
        message = f"Someone else completed this task a moment ago ({by}). Your answers were not saved."
        return _render(fresh, status=409, problem=message)
    if "changed since" in str(exc) or "same moment" in str(exc):
        message = (
            "The case changed since you opened this page: reload it to see what changed. "
            "Your answers are below and were not saved; check them, then complete the task again."
        )
    else:
        message = f"{exc}. Your answers were not saved."
    # The answers stay on the page with the revision as it is now: submitting again is a choice.
    return _render(fresh, posted, problem=message, status=409)


def _save_draft(
    loaded: Loaded, posted: dict[str, list[str]], conversion: forms.Conversion | None, revision: int | None
) -> Any:
    task = loaded.task
    if conversion and conversion.errors:
        problem = "Correct these answers before saving the draft. Nothing was saved."
        return _render(loaded, posted, conversion.errors, problem, revision=revision, status=400)
    try:
        data = forms.without_empty(conversion.data) if conversion else {}
        engine_of(current_app).save_draft(task.id, person().username, data)
    except FrontdoorError as exc:
        return _render(
            loaded, posted, problem=f"Your draft was not saved: {exc}", revision=revision, status=409
        )
    flash(
        f"Your answers to ‘{task.name}’ are saved as a draft. Complete the task when they are ready.",
        "success",
    )
    return redirect(url_for("tasks.show", task_id=task.id))
