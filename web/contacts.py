"""Record a contact: the start of the front door, one form about one or more children.

The form is the contact process's start form (its start event's formJsonSchemaFilename),
rendered with the same GOV.UK components as task pages. Submitting it opens one case per
child, linked as siblings (Engine.start_for_subjects), each with only its own child's answers.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.errors import FrontdoorError, InvalidData

from . import access, engine_of, forms
from .auth import person

bp = Blueprint("contacts", __name__)

PROCESS = os.environ.get("FRONTDOOR_CONTACT_PROCESS", "contact")
TEAM = os.environ.get("FRONTDOOR_CONTACT_TEAM", "mash")
# Records a contact: the front door's own staff and the social workers, managers and EDT who take one.
MAY_RECORD = {"practitioner", "manager", "service"}


def _may_record() -> bool:
    return bool(set(access.levels(person())) & MAY_RECORD)


def _schema() -> dict[str, Any]:
    engine = engine_of(current_app)
    form = engine.start_form(PROCESS)
    if form is None:
        raise RuntimeError(f"the {PROCESS} process has no start form")
    return engine.registry.form_schema(form)


# When the contact was received: the process keeps it as London wall-clock text ("2024-03-28T14:30",
# the schema's pattern); the page asks for it with the GOV.UK date input and a time field.
RECEIVED = "received_at"
_ISO_LOCAL = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}:\d{2})(?::\d{2})?\s*$")


def _asked(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the page asks it: received_at as a date and a time (format date-time)."""
    node = (schema.get("properties") or {}).get(RECEIVED)
    if not isinstance(node, dict) or node.get("format"):
        return schema
    asked = {k: v for k, v in node.items() if k not in ("pattern", "description")}
    asked.update(format="date-time", description="London time: deadlines count from this moment.")
    return {**schema, "properties": {**schema["properties"], RECEIVED: asked}}


def _received_parts(values: dict[str, list[str]]) -> None:
    """A received_at posted as one text in the process's own form (as the API takes it) fills the
    date and time fields, so that both arrive by the same path."""
    whole = values.pop(RECEIVED, [""])[0]
    found = _ISO_LOCAL.match(whole)
    if found and not any(values.get(f"{RECEIVED}-{part}") for part in ("day", "month", "year", "time")):
        year, month, day, at = found.groups()
        for part, value in (("day", day), ("month", month), ("year", year), ("time", at)):
            values[f"{RECEIVED}-{part}"] = [value]


def _as_process_keeps_it(data: dict[str, Any]) -> None:
    """The converted date and time (an ISO instant with London's offset) as London wall-clock text."""
    value = data.get(RECEIVED)
    if isinstance(value, str):
        data[RECEIVED] = datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M")


@bp.route("/contacts/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    access.require(_may_record())
    schema = _schema()
    asked = _asked(schema)
    values: dict[str, list[str]] | None = None
    errors: dict[str, str] = {}
    problem = None
    if request.method == "POST":
        values = {key: request.form.getlist(key) for key in request.form if key != "csrf_token"}
        _received_parts(values)
        engine = engine_of(current_app)
        conversion = forms.form_to_json(asked, values, engine.calendar.timezone)
        _as_process_keeps_it(conversion.data)
        errors = conversion.form_errors(forms.validate(schema, conversion.data))
        if not errors:
            data = dict(conversion.data)
            children = data.pop("children", [])
            try:
                started = engine.start_for_subjects(
                    PROCESS,
                    person().username,
                    children,
                    data,
                    team_key=TEAM,
                    subject_field="child",
                    subjects_field="children",
                )
            except InvalidData as exc:
                errors = conversion.form_errors(exc.fields) or {"": str(exc)}
            except FrontdoorError as exc:
                problem = f"The contact could not be recorded: {exc}. Nothing was saved."
            else:
                references = ", ".join(r.case_reference or "" for r in started)
                plural = "cases" if len(started) > 1 else "case"
                flash(f"Contact recorded: {len(started)} {plural} opened ({references}).", "success")
                return redirect(url_for("queues.my_tasks"))
    fields = forms.build_fields(asked, values, errors)
    error_list = forms.error_list(fields) or (
        [{"text": errors[""], "href": "#contact-form"}] if "" in errors else []
    )
    status = 400 if errors else 422 if problem else 200
    return (
        render_template(
            "contacts/new.html",
            fields=fields,
            error_list=error_list,
            problem=problem,
            title=schema.get("title"),
        ),
        status,
    )
