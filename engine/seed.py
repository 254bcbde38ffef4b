"""Example work, from data: a seed is a list of steps, each one engine command.

A seed fills a new database with work at different stages, so that queues are not empty
the first time someone looks.  It knows nothing of what the processes are about: each step
names a process key or a task's element id, and carries the data a person would enter.

Steps (JSON objects; keys starting with ``_`` and a ``note`` are ignored)::

    {"start": KEY, "as": USER, "case": LABEL, "team": TEAM, "name": NAME, "data": {...}}
    {"start_for_subjects": KEY, "as": USER, "subjects": [{...}, ...], "shared": {...},
     "cases": [LABEL, ...], "team": TEAM, "subject_field": "subject", "subjects_field": "subjects",
     "link_kind": "sibling"}
    {"claim": ELEMENT, "case": LABEL, "as": USER}
    {"complete": ELEMENT, "case": LABEL, "as": USER, "answers": {...}}
    {"complete": ELEMENT, "process": KEY, "as": USER, "answers": {...}}

``case`` is a label the seed gives a case: the first step that names a new label creates the
case (``start``) or the cases (``start_for_subjects``, one label per subject, in order); later
steps refer to it.  A number instead of a label is the index (from 0) of a case the seed has
created.  ``start`` without ``case`` starts a process on no case; a task without a case is found
by its process key instead (the first open one, soonest due).  Every case the seed creates gets
the reference ``<prefix>001``, ``<prefix>002``... (unless a subject brings its own), which is how
a second run knows the seed has been applied: if any case's reference starts with the prefix,
:func:`run_seed` does nothing.

Strings in the data may hold placeholders, replaced when the step runs:
``{today}`` (a date), ``{now}`` (a local date-time to the minute, as forms take it), each with
an optional offset: ``{today-3}`` calendar days, ``{today-2wd}`` working days, ``{now-4h}``
hours, ``{now-1wd}`` the same time one working day earlier; and ``{case:LABEL}``, that
case's reference.  Local time is the engine calendar's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import clock
from .errors import FrontdoorError, InvalidData
from .models import CaseRecord, Task
from .projection import OPEN_STATUSES

if TYPE_CHECKING:
    from .core import Engine

DEFAULT_PREFIX = "DEMO-"
_PLACEHOLDER = re.compile(r"\{(today|now)(?:([+-])(\d+)(wd|d|h)?)?\}|\{case:([A-Za-z0-9_.-]+)\}")


class SeedError(FrontdoorError):
    """A step of a seed could not be run; says which step and why."""


@dataclass
class SeedSummary:
    skipped: bool = False
    cases: dict[str, str] = field(default_factory=dict)  # label -> case reference
    references: list[str] = field(default_factory=list)  # every case the seed created, in order
    started: int = 0
    completed: int = 0
    claimed: int = 0


def run_seed(
    engine: Engine,
    steps: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    reference_prefix: str | None = None,
) -> SeedSummary:
    """Run ``steps`` in order, unless a case with the seed's reference prefix already exists.

    ``steps`` is a list of steps or a seed document ``{"reference_prefix": ..., "steps": [...]}``.
    Each step is its own engine command (its own transaction); a step that fails raises
    :class:`SeedError` naming the step, leaving the steps before it done.
    """
    if isinstance(steps, Mapping):
        reference_prefix = reference_prefix or steps.get("reference_prefix")
        steps = steps.get("steps", [])
    prefix = reference_prefix or DEFAULT_PREFIX
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise InvalidData("a seed's steps must be a list of objects")
    runner = _Runner(engine, prefix)
    if runner.already_seeded():
        return SeedSummary(skipped=True)
    for index, step in enumerate(steps, start=1):
        if not isinstance(step, Mapping):
            raise SeedError(f"seed step {index} is not an object")
        try:
            runner.run(step)
        except FrontdoorError as exc:
            raise SeedError(f"seed step {index} ({_describe(step)}) failed: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise SeedError(f"seed step {index} ({_describe(step)}) is malformed: {exc}") from exc
    return runner.summary


def _describe(step: Mapping[str, Any]) -> str:
    for verb in ("start_for_subjects", "start", "claim", "complete"):
        if verb in step:
            where = f" on {step['case']}" if "case" in step else ""
            return f"{verb} {step[verb]}{where}"
    return "unknown step"


class _Runner:
    def __init__(self, engine: Engine, prefix: str) -> None:
        self.engine = engine
        self.prefix = prefix
        self.summary = SeedSummary()
        self.next_number = 1

    def already_seeded(self) -> bool:
        with self.engine.db.read() as session:
            pattern = self.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            found = session.scalar(
                sa.select(CaseRecord.id).where(CaseRecord.reference.like(pattern, escape="\\")).limit(1)
            )
            return found is not None

    # ------------------------------------------------------------------ steps

    def run(self, step: Mapping[str, Any]) -> None:
        actor = str(step["as"]) if "as" in step else None
        if "start_for_subjects" in step:
            self._start_for_subjects(step, _require(actor, "as"))
        elif "start" in step:
            self._start(step, _require(actor, "as"))
        elif "claim" in step:
            task = self._find_task(step, str(step["claim"]))
            self.engine.claim(task.id, _require(actor, "as"))
            self.summary.claimed += 1
        elif "complete" in step:
            task = self._find_task(step, str(step["complete"]))
            self.engine.complete(task.id, _require(actor, "as"), self._values(step.get("answers", {})))
            self.summary.completed += 1
        elif any(not k.startswith("_") and k != "note" for k in step):
            raise SeedError(f"unknown step {sorted(step)}: use start, start_for_subjects, claim or complete")

    def _start(self, step: Mapping[str, Any], actor: str) -> None:
        label = step.get("case")
        reference = None
        if isinstance(label, int):
            reference = self._by_index(label)
        elif label is not None:
            reference = self.summary.cases.get(str(label))
            if reference is None:
                reference = self._new_reference()
                self.summary.cases[str(label)] = reference
        self.engine.start(
            str(step["start"]),
            actor,
            case_reference=reference,
            data=self._values(step.get("data", {})),
            team_key=step.get("team"),
            subject_name=step.get("name"),
        )
        self.summary.started += 1

    def _start_for_subjects(self, step: Mapping[str, Any], actor: str) -> None:
        subjects = [dict(self._values(s)) for s in step["subjects"]]
        labels = [str(label) for label in step.get("cases", [])]
        if len(labels) > len(subjects):
            raise SeedError("more case labels than subjects")
        for index, subject in enumerate(subjects):
            if index < len(labels) and labels[index] in self.summary.cases:
                raise SeedError(f"the case label {labels[index]!r} is already used")
            if "reference" in subject:
                self.summary.references.append(str(subject["reference"]))
            else:
                subject["reference"] = self._new_reference()
            if index < len(labels):
                self.summary.cases[labels[index]] = str(subject["reference"])
        options = {k: str(step[k]) for k in ("subject_field", "subjects_field", "link_kind") if k in step}
        results = self.engine.start_for_subjects(
            str(step["start_for_subjects"]),
            actor,
            subjects,
            self._values(step.get("shared", {})),
            team_key=step.get("team"),
            **options,
        )
        self.summary.started += len(results)

    def _find_task(self, step: Mapping[str, Any], element: str) -> Task:
        if "case" in step:
            label = str(step["case"])
            if isinstance(step["case"], int):
                reference = self._by_index(step["case"])
            elif (found := self.summary.cases.get(label)) is not None:
                reference = found
            else:
                raise SeedError(f"no case has the label {label!r} yet")
            tasks = self.engine.tasks(case_reference=reference)
            where = f"case {label} ({reference})"
        elif "process" in step:
            with self.engine.db.read() as session:
                tasks = list(
                    session.scalars(
                        sa.select(Task)
                        .where(Task.process_key == str(step["process"]), Task.status.in_(OPEN_STATUSES))
                        .order_by(Task.due_at, Task.created_at, Task.id)
                    )
                )
            where = f"process {step['process']}"
        else:
            raise SeedError("say which task: give 'case' (a label) or 'process' (a process key)")
        matches = [t for t in tasks if t.element_id == element]
        if not matches:
            open_ = sorted({t.element_id for t in tasks})
            raise SeedError(f"{where} has no open task '{element}'; open: {', '.join(open_) or 'none'}")
        return matches[0]

    # ----------------------------------------------------------------- values

    def _new_reference(self) -> str:
        reference = f"{self.prefix}{self.next_number:03d}"
        self.next_number += 1
        self.summary.references.append(reference)
        return reference

    def _by_index(self, index: int) -> str:
        if not 0 <= index < len(self.summary.references):
            raise SeedError(f"case {index}: the seed has created {len(self.summary.references)} cases so far")
        return self.summary.references[index]

    def _values(self, value: Any) -> Any:
        """A deep copy of ``value`` with every placeholder in its strings replaced."""
        if isinstance(value, str):
            return _PLACEHOLDER.sub(self._placeholder, value)
        if isinstance(value, Mapping):
            return {str(k): self._values(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._values(v) for v in value]
        return value

    def _placeholder(self, match: re.Match[str]) -> str:
        what, sign, amount, unit, label = match.groups()
        if label is not None:
            reference = self.summary.cases.get(label)
            if reference is None:
                raise SeedError(f"{{case:{label}}}: no case has that label yet")
            return reference
        calendar = self.engine.calendar
        local = clock.now().astimezone(calendar.timezone)
        n = int(amount or 0) * (-1 if sign == "-" else 1)
        unit = unit or ("d" if what == "today" else "h")
        moment: datetime
        if unit == "wd":
            moment = datetime.combine(calendar.add_working_days(local.date(), n), local.time(), local.tzinfo)
        elif unit == "h":
            if what == "today":
                raise SeedError("{today} takes days (d) or working days (wd), not hours")
            moment = local + timedelta(hours=n)
        else:
            moment = local + timedelta(days=n)
        if what == "today":
            return moment.date().isoformat()
        return moment.strftime("%Y-%m-%dT%H:%M")


def _require(value: str | None, name: str) -> str:
    if not value:
        raise SeedError(f"the step needs '{name}'")
    return value
