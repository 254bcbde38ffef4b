"""Keeping the tables that queues, dashboards and reports read in step with the workflow.

Runs inside each command's transaction, after the engine has stepped and before the
state is saved: the task table (work queues, due dates), the timer table (what the
worker fires), statutory clocks, and escalations.  Nothing here is read back by the
engine to decide what the process does; it is all derived from the workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.task import Task as SpiffTask
from SpiffWorkflow.util.task import TaskState
from sqlalchemy.orm import Session

from . import directory, messages
from .audit import PendingEvent
from .calendar import WorkingCalendar
from .errors import PermissionDenied
from .letters import write_letters
from .models import (
    CaseFact,
    CaseRecord,
    ProcessInstance,
    StatutoryClock,
    Task,
    Team,
    Timer,
    User,
)
from .ports import LetterRenderer, Notifier
from .runtime import SpecBundle, find_task
from .timers import parse_instant, timer_due, timer_kind

OPEN_STATUSES = ("ready", "claimed")

# Built once: composing SQL expressions costs more than running these statements.
_INSERT_TASK = sa.insert(Task)
_INSERT_TIMER = sa.insert(Timer)
_CANCEL_TASKS = (
    sa.update(Task)
    .where(Task.id.in_(sa.bindparam("ids", expanding=True)), Task.status.in_(OPEN_STATUSES))
    .values(status="cancelled", completed_at=sa.bindparam("now"))
)
CLOCK_START = "clock.start."
CLOCK_STARTED_AT = "clock.startedAt."
CLOCK_STOP = "clock.stop."
CLOCK_STOPPED_AT = "clock.stoppedAt."
RECORD = "record."
SYSTEM = "frontdoor"  # the actor of what the process does by itself (escalations)


@dataclass(frozen=True)
class Services:
    """What the projection needs from the engine."""

    calendar: WorkingCalendar
    evaluate: Callable[[SpiffTask, str], Any]
    ladder: dict[str, dict[str, Any]]
    notifier: Notifier
    roles: directory.RoleBook
    # Writes the PDF of a task marked ``letter`` (adapters/letters.py); None: no letters written.
    letters: LetterRenderer | None = None


@dataclass
class CommandContext:
    """What one command is doing, shared by the engine and the projection."""

    actor: str
    now: datetime
    events: list[PendingEvent] = field(default_factory=list)
    # Every SpiffWorkflow task completed during the command, in order.
    completed: list[SpiffTask] = field(default_factory=list)
    # Projection rows the command closed itself (the task it completed, the timer it fired).
    handled: set[str] = field(default_factory=set)


@dataclass
class InstanceRef:
    """The instance row as a command sees it (plain values: no ORM bookkeeping on the hot path)."""

    id: int
    definition_id: int
    called_definitions: dict[str, int]
    case_id: int | None
    status: str
    revision: int
    state: str
    ended_at: datetime | None = None


# The columns of process_instance that make an InstanceRef, in its field order.
INSTANCE_COLUMNS = (
    ProcessInstance.id,
    ProcessInstance.definition_id,
    ProcessInstance.called_definitions,
    ProcessInstance.case_id,
    ProcessInstance.status,
    ProcessInstance.revision,
    ProcessInstance.state,
    ProcessInstance.ended_at,
)


@dataclass
class CaseRef:
    id: int
    reference: str
    team_key: str | None
    worker: str | None
    status: str


@dataclass
class Live:
    """What the projection rows mirror: ready human tasks and waiting timers, by SpiffWorkflow task id."""

    ready: dict[str, SpiffTask]
    waiting: dict[str, tuple[SpiffTask, datetime]]

    @classmethod
    def of(cls, workflow: BpmnWorkflow) -> Live:
        """One walk over the workflow's tasks (subprocesses included)."""
        ready: dict[str, SpiffTask] = {}
        waiting: dict[str, tuple[SpiffTask, datetime]] = {}
        for task in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING):
            if task.state == TaskState.READY:
                if task.task_spec.manual:
                    ready[str(task.id)] = task
            else:
                due = timer_due(task)
                if due is not None:
                    waiting[str(task.id)] = (task, due)
        return cls(ready, waiting)

    @classmethod
    def empty(cls) -> Live:
        return cls({}, {})


def properties(spec: Any) -> dict[str, str]:
    extensions = getattr(spec, "extensions", None) or {}
    props: dict[str, str] = extensions.get("properties", {}) or {}
    return props


def element_id(spec: Any) -> str:
    return str(getattr(spec, "bpmn_id", None) or spec.name)


def element_name(spec: Any) -> str | None:
    return getattr(spec, "bpmn_name", None)


class Projector:
    def __init__(
        self,
        session: Session,
        ctx: CommandContext,
        instance: InstanceRef,
        workflow: BpmnWorkflow,
        bundle: SpecBundle,
        case: CaseRef | None,
        services: Services,
        before: Live | None,
    ) -> None:
        """``before`` is what the rows mirrored when the command loaded the workflow (None: read them)."""
        self.session = session
        self.connection = session.connection()
        self.cancelled_now: set[str] = set()
        self.ctx = ctx
        self.instance = instance
        self.workflow = workflow
        self.bundle = bundle
        self.case = case
        self.services = services
        self.before = before

    def event(
        self,
        action: str,
        task_id: str | None = None,
        data: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        self.ctx.events.append(
            PendingEvent(
                actor or self.ctx.actor, action, self.instance.case_id, self.instance.id, task_id, data or {}
            )
        )

    def run(self) -> list[str]:
        self.apply_case_properties()
        self.apply_clocks()
        write_letters(self)
        self.after = Live.of(self.workflow)
        self.sync_timers()
        self.sync_messages()
        opened = self.sync_tasks()
        self.apply_escalations()
        return opened

    # -------------------------------------------------------------------- case

    def apply_case_properties(self) -> None:
        """What completed elements declare about the case: facts, team, worker, closure."""
        for spiff_task in self.ctx.completed:
            props = properties(spiff_task.task_spec)
            if not props:
                continue
            for name, expression in props.items():
                if name.startswith(RECORD):
                    self._record_fact(
                        name[len(RECORD) :], self.services.evaluate(spiff_task, expression), spiff_task
                    )
            if self.case is None:
                continue
            for attribute, prop in (("team_key", "case.team"), ("worker", "case.worker")):
                if props.get(prop):
                    value = self.services.evaluate(spiff_task, props[prop])
                    value = None if value in ("", None) else str(value)
                    if getattr(self.case, attribute) != value:
                        previous = getattr(self.case, attribute)
                        setattr(self.case, attribute, value)
                        self._update_case(**{attribute: value})
                        self.event(f"case.{prop.split('.')[1]}_changed", data={"from": previous, "to": value})
            if props.get("case.close"):
                reason = str(self.services.evaluate(spiff_task, props["case.close"]))
                if self.case.status == "open":
                    self.case.status = "closed"
                    self._update_case(status="closed", closed_at=self.ctx.now, closed_reason=reason)
                    self.event("case.closed", data={"reason": reason})

    def _update_case(self, **values: Any) -> None:
        assert self.case is not None
        self.connection.execute(sa.update(CaseRecord).where(CaseRecord.id == self.case.id).values(**values))

    def _record_fact(self, name: str, value: Any, spiff_task: SpiffTask) -> None:
        if self.instance.case_id is None:
            return
        fact = self.session.scalar(
            sa.select(CaseFact).where(CaseFact.case_id == self.instance.case_id, CaseFact.name == name)
        )
        if fact is None:
            fact = CaseFact(case_id=self.instance.case_id, name=name)
            self.session.add(fact)
        elif fact.value == value:
            return
        fact.value = value
        fact.recorded_at = self.ctx.now
        fact.instance_id = self.instance.id
        fact.element_id = element_id(spiff_task.task_spec)
        self.event("case.fact_recorded", data={"fact": name, "value": value})

    # ------------------------------------------------------------------- tasks

    def sync_tasks(self) -> list[str]:
        """Make the task table match the workflow's ready human tasks; return the ids opened."""
        live = self.after.ready
        if self.before is not None:
            open_ids = self.before.ready.keys() - self.ctx.handled
        else:
            open_ids = set(
                self.connection.scalars(
                    sa.select(Task.id).where(
                        Task.instance_id == self.instance.id, Task.status.in_(OPEN_STATUSES)
                    )
                )
            )
        gone = sorted(open_ids - live.keys())
        self.cancelled_now = set(gone)
        if gone:
            self.connection.execute(_CANCEL_TASKS, {"ids": gone, "now": self.ctx.now})
            for task_id in gone:
                self.event("task.cancelled", task_id)
        rows = []
        for task_id, spiff_task in live.items():
            if task_id in open_ids:
                continue
            row = self._task_row(spiff_task)
            rows.append(row)
            self.event(
                "task.created",
                task_id,
                {
                    "element": row["element_id"],
                    "name": row["name"],
                    "role": row["role_key"],
                    "team": row["team_key"],
                    "due": row["due_at"].isoformat() if row["due_at"] else None,
                },
            )
            self._preassign(row, spiff_task)
        if rows:
            self.connection.execute(_INSERT_TASK, rows)
        return [row["id"] for row in rows]

    def _task_row(self, spiff_task: SpiffTask) -> dict[str, Any]:
        spec = spiff_task.task_spec
        extensions: dict[str, Any] = getattr(spec, "extensions", None) or {}
        props = properties(spec)
        lane = getattr(spec, "lane", None)
        role = self.services.roles.for_lane(self.session, lane)
        return dict(
            id=str(spiff_task.id),
            instance_id=self.instance.id,
            case_id=self.instance.case_id,
            # The process the task belongs to: a called process's own key, not its caller's.
            process_key=spiff_task.workflow.spec.name,
            element_id=element_id(spec),
            name=self._title(spiff_task, props) or element_name(spec) or spec.name,
            lane=lane,
            role_key=role.key if role else None,
            team_key=self._team(spiff_task, props.get("team")),
            assignee=None,
            status="ready",
            created_at=self.ctx.now,
            due_at=self._due(spiff_task, props),
            form_key=props.get("formJsonSchemaFilename"),
            ui_form_key=props.get("formUiSchemaFilename"),
            instructions=self._instructions(spiff_task, extensions.get("instructionsForEndUser"), props),
            escalation_level=0,
        )

    def _title(self, spiff_task: SpiffTask, props: dict[str, str]) -> str | None:
        """A ``title`` property expression names the task for the queue ("Supervision with Sara")."""
        expression = props.get("title")
        if not expression:
            return None
        return str(self.services.evaluate(spiff_task, expression))[:255]

    def _instructions(self, spiff_task: SpiffTask, fixed: str | None, props: dict[str, str]) -> str | None:
        """The element's instructions, then what an ``instructions`` property expression gives for this
        task (a message's content, say): the person doing the task reads both on its page."""
        expression = props.get("instructions")
        extra = str(self.services.evaluate(spiff_task, expression) or "").strip() if expression else ""
        return "\n\n".join(part for part in (fixed, extra) if part) or None

    def _team(self, spiff_task: SpiffTask, team: str | None) -> str | None:
        """The task's team: a ``team`` property (a team key, or an expression giving one), else the case's."""
        if team:
            if self.session.scalar(sa.select(Team.id).where(Team.key == team)) is not None:
                return team
            value = self.services.evaluate(spiff_task, team)
            return str(value) if value else None
        return self.case.team_key if self.case else None

    def _preassign(self, row: dict[str, Any], spiff_task: SpiffTask) -> None:
        """An ``assignee`` property gives the task straight to that person, if they may hold it."""
        expression = properties(spiff_task.task_spec).get("assignee")
        if not expression:
            return
        username = self.services.evaluate(spiff_task, expression)
        if not username:
            return
        user = self.session.scalar(sa.select(User).where(User.username == str(username)))
        try:
            if user is None or not user.active:
                raise PermissionDenied(f"there is no active user called {username!r}")
            directory.check_may_hold(
                self.session, user, row["role_key"], row["team_key"], self.services.roles
            )
        except PermissionDenied as refusal:
            # Left in the team queue for a manager; the refusal is on the record.
            self.event(
                "task.assignment_refused", row["id"], {"assignee": str(username), "reason": str(refusal)}
            )
            return
        row["status"], row["assignee"] = "claimed", user.username
        self.event("task.assigned", row["id"], {"assignee": user.username, "previous": None})

    def _due(self, spiff_task: SpiffTask, props: dict[str, str]) -> datetime | None:
        """A ``dueDate`` property expression, else the earliest boundary timer on the task."""
        expression = props.get("dueDate")
        if expression:
            return self._instant(spiff_task, expression)
        dues = [due for boundary in _boundary_timers(spiff_task) if (due := timer_due(boundary)) is not None]
        return min(dues) if dues else None

    # ------------------------------------------------------------------ timers

    def sync_timers(self) -> None:
        live = self.after.waiting
        if self.before is not None:
            waiting = {k: v[1] for k, v in self.before.waiting.items() if k not in self.ctx.handled}
        else:
            waiting = dict(
                self.connection.execute(
                    sa.select(Timer.task_id, Timer.due_at).where(
                        Timer.instance_id == self.instance.id, Timer.status == "waiting"
                    )
                ).all()
            )
        gone = [task_id for task_id in waiting if task_id not in live]
        moved = [task_id for task_id in waiting if task_id in live and live[task_id][1] != waiting[task_id]]
        for task_id in moved:
            self.connection.execute(
                sa.update(Timer)
                .where(
                    Timer.instance_id == self.instance.id, Timer.task_id == task_id, Timer.status == "waiting"
                )
                .values(due_at=live[task_id][1])
            )
        if gone:
            rows = self.session.scalars(
                sa.select(Timer).where(
                    Timer.instance_id == self.instance.id, Timer.task_id.in_(gone), Timer.status == "waiting"
                )
            ).all()
            for row in rows:
                spiff_task = find_task(self.workflow, row.task_id)
                if spiff_task is not None and spiff_task.has_state(TaskState.COMPLETED):
                    # It fired inside this command (its moment had passed when the engine stepped).
                    row.status, row.fired_at, row.fired_by = "fired", self.ctx.now, self.ctx.actor
                    self.event("timer.fired", data={"timer": row.id, "element": row.element_id})
                else:
                    row.status = "cancelled"
        new = []
        for task_id, (task, due) in live.items():
            if task_id in waiting:
                continue
            attached, level = _escalation_target(task)
            new.append(
                dict(
                    instance_id=self.instance.id,
                    case_id=self.instance.case_id,
                    task_id=task_id,
                    element_id=element_id(task.task_spec),
                    name=element_name(task.task_spec),
                    kind=timer_kind(task),
                    due_at=due,
                    status="waiting",
                    attached_task_id=attached,
                    escalation_level=level,
                    created_at=self.ctx.now,
                    attempts=0,
                )
            )
        if new:
            self.connection.execute(_INSERT_TIMER, new)

    # ---------------------------------------------------------------- messages

    def sync_messages(self) -> None:
        """The message_subscription rows: where the instance waits for a message (engine.messages)."""
        if not messages.may_wait_for_messages(self.bundle.spec, self.bundle.subprocess_specs):
            return
        running = self.instance.status == "running"
        live = messages.live(self.workflow, running, self.services.evaluate)
        messages.sync(self.connection, self.instance.id, self.instance.case_id, self.ctx.now, live)

    # -------------------------------------------------------------- escalation

    def apply_escalations(self) -> None:
        """Every escalation timer that fired in this command raises its task, however it came to fire.

        A boundary timer whose moment had already passed when its task opened fires in the same
        command and never has a row of its own: it is found here, among the completed elements.
        """
        for spiff_task in self.ctx.completed:
            level = properties(spiff_task.task_spec).get("escalationLevel")
            if not level or not level.isdigit():
                continue
            attached, _ = _escalation_target(spiff_task)
            if attached is not None:
                self._escalate(attached, int(level), element_id(spiff_task.task_spec))

    def _escalate(self, task_id: str, level: int, element: str) -> None:
        """Raise the task to ``level`` and tell the people the ladder names (once per level)."""
        self.session.flush()
        task = self.session.get(Task, task_id, populate_existing=True)
        # A task interrupted in this same command (a deadline that fell due with its reminders)
        # still carries the levels it reached: the escalation report must show them.
        still_counts = task is not None and (task.status in OPEN_STATUSES or task.id in self.cancelled_now)
        if task is None or not still_counts or task.escalation_level >= level:
            return
        task.escalation_level = level
        task.escalated_at = self.ctx.now
        rule = self.services.ladder.get(str(level), {})
        recipients = escalation_recipients(self.session, task, rule)
        label = rule.get("label", f"Escalation level {level}")
        case = f" on case {self.case.reference}" if self.case else ""
        self.services.notifier.notify(
            self.session,
            recipients=recipients,
            subject=f"{label}: {task.name}{case}",
            body=(
                f"'{task.name}'{case} is overdue and has reached escalation level {level} ({label}). "
                f"It is held by {task.assignee or 'nobody yet'} in the team {task.team_key or '-'}."
            ),
            context={"kind": "escalation", "task_id": task.id, "level": level, "case_id": task.case_id},
        )
        # The process escalated it, not whoever's command happened to let the timer fire.
        self.event(
            "task.escalated",
            task.id,
            {"level": level, "timer": element, "notified": recipients},
            actor=SYSTEM,
        )

    # ------------------------------------------------------------------ clocks

    def apply_clocks(self) -> None:
        """Start and stop the statutory clocks that completed elements declare."""
        for spiff_task in self.ctx.completed:
            props = properties(spiff_task.task_spec)
            for name in props:
                if name.startswith(CLOCK_STOP):
                    clock_name = name[len(CLOCK_STOP) :]
                    stopped = props.get(CLOCK_STOPPED_AT + clock_name)
                    self._stop_clock(clock_name, stopped, spiff_task)
            for name, value in props.items():
                if name.startswith(CLOCK_START):
                    clock_name = name[len(CLOCK_START) :]
                    started = props.get(CLOCK_STARTED_AT + clock_name)
                    self._start_clock(clock_name, value, started, spiff_task)

    def _instant(self, spiff_task: SpiffTask, expression: str) -> datetime:
        return parse_instant(self.services.evaluate(spiff_task, expression), self.services.calendar)

    def _start_clock(self, name: str, target: str, started: str | None, spiff_task: SpiffTask) -> None:
        started_at = self._instant(spiff_task, started) if started else self.ctx.now
        target_at = self._instant(spiff_task, target) if target.strip() else None
        existing = self.session.scalar(
            sa.select(StatutoryClock).where(
                StatutoryClock.instance_id == self.instance.id,
                StatutoryClock.name == name,
                StatutoryClock.stopped_at.is_(None),
            )
        )
        if existing is not None:
            return  # a loop back over the start does not restart a running clock
        self.session.add(
            StatutoryClock(
                case_id=self.instance.case_id,
                instance_id=self.instance.id,
                name=name,
                started_at=started_at,
                target_at=target_at,
                started_by_element=element_id(spiff_task.task_spec),
            )
        )
        self.session.flush()
        self.event(
            "clock.started",
            data={"clock": name, "target": target_at.isoformat() if target_at else None},
        )

    def _stop_clock(self, name: str, stopped: str | None, spiff_task: SpiffTask) -> None:
        """Stop the running clock; ``stopped`` (an expression) says when, if not now (recorded late)."""
        stopped_at = self._instant(spiff_task, stopped) if stopped else self.ctx.now
        query = sa.select(StatutoryClock).where(
            StatutoryClock.name == name,
            StatutoryClock.stopped_at.is_(None),
        )
        # A clock belongs to the case: a sub-process may stop what its caller started.
        if self.instance.case_id is not None:
            query = query.where(StatutoryClock.case_id == self.instance.case_id)
        else:
            query = query.where(StatutoryClock.instance_id == self.instance.id)
        for running in self.session.scalars(query):
            running.stopped_at = stopped_at
            running.stopped_by_element = element_id(spiff_task.task_spec)
            running.breached = running.target_at is not None and stopped_at > running.target_at
            self.event("clock.stopped", data={"clock": name, "breached": running.breached})


def _boundary_timers(spiff_task: SpiffTask) -> list[SpiffTask]:
    parent = spiff_task.parent
    if parent is None or not isinstance(parent.task_spec, BoundaryEventSplit):
        return []
    return [
        sibling
        for sibling in parent.children
        if sibling is not spiff_task and isinstance(sibling.task_spec, CatchingEvent)
    ]


def _escalation_target(timer_task: SpiffTask) -> tuple[str | None, int | None]:
    """For a boundary timer on a human task: (that task's id, the escalation level it reaches)."""
    parent = timer_task.parent
    if parent is None or not isinstance(parent.task_spec, BoundaryEventSplit):
        return None, None
    main = next((c for c in parent.children if c.task_spec.manual), None)
    if main is None:
        return None, None
    level = properties(timer_task.task_spec).get("escalationLevel")
    return str(main.id), int(level) if level and level.isdigit() else None


def escalation_recipients(session: Session, task: Task, rule: dict[str, Any]) -> list[str]:
    """Usernames a ladder rung names for this task."""
    if rule.get("notify") == "assignee" and task.assignee:
        return [task.assignee]
    role_key = task.role_key if rule.get("notify") == "assignee" else rule.get("role")
    if not role_key:
        return []
    return directory.holders(session, role_key, task.team_key) or directory.holders(session, role_key)
