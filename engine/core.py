"""The engine's commands.  Each one is a single transaction (DESIGN.md, "Data flow of one command"):

1. load the instance row and the cached spec of its version;
2. restore the SpiffWorkflow state, act, run engine steps until the instance waits;
3. write the new state with ``UPDATE ... WHERE id = :id AND revision = :seen``;
4. bring the task projection up to date and append the audit events;
5. commit.  Any error on the way rolls all of it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, cast

import jsonschema
import sqlalchemy as sa
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task as SpiffTask
from SpiffWorkflow.util.task import TaskState
from sqlalchemy.orm import Session

from . import audit, clock, definitions, directory, messages, queries
from .audit import PendingEvent
from .calendar import WorkingCalendar, load_calendar
from .db import Database
from .errors import Conflict, InvalidData, NotFound, PermissionDenied, ProcessError
from .joins import adopt_joins
from .models import CaseLink, CaseRecord, ProcessDefinition, ProcessInstance, Task, Timer
from .ports import LetterRenderer, Notifier, OutboxNotifier
from .projection import (
    INSTANCE_COLUMNS,
    OPEN_STATUSES,
    CaseRef,
    CommandContext,
    InstanceRef,
    Live,
    Projector,
    Services,
)
from .registry import Registry
from .runtime import Runtime, SpecBundle, find_task
from .seed import run_seed
from .timers import adopt_timers, time_functions
from .validation import ValidationContext


@dataclass(frozen=True)
class StartResult:
    instance_id: int
    case_reference: str | None
    open_tasks: list[str]


@dataclass(frozen=True)
class MessageDelivery:
    """One instance that caught a message, and the human tasks that opened because of it."""

    instance_id: int
    case_reference: str | None
    open_tasks: list[str]


# The session of an enclosing Engine.atomic() block: commands inside it join its transaction.
_ATOMIC: ContextVar[Session | None] = ContextVar("frontdoor_atomic", default=None)


def check_json(data: Any, what: str = "data") -> dict[str, Any]:
    """Refuse data that cannot be stored as JSON, before anything is written."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidData(f"{what} must be a JSON object (name: value pairs), not {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            raise InvalidData(
                f"{what}: the field name {key!r} cannot be used; use letters, digits and underscores, "
                "starting with a letter"
            )
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"{what} cannot be stored as JSON: {exc}") from None
    _reject_unstorable(data, what)
    return data


def _reject_unstorable(value: Any, what: str) -> None:
    """What JSON allows but a database refuses: non-finite numbers, NUL characters."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidData(f"{what} contains {value}, which JSON cannot hold")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidData(f"{what} contains a NUL character (\\x00); remove it")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_unstorable(k, what)
            _reject_unstorable(v, what)
    elif isinstance(value, list):
        for v in value:
            _reject_unstorable(v, what)


def _process_error(exc: Exception) -> ProcessError:
    task = getattr(exc, "task", None)
    spec = getattr(task, "task_spec", None) or getattr(exc, "task_spec", None)
    element_id = getattr(spec, "bpmn_id", None) or getattr(spec, "name", None)
    element_name = getattr(spec, "bpmn_name", None)
    detail = str(exc)
    # SpiffWorkflow wraps the real failure (a NameError, a ZeroDivisionError...) without keeping it
    # as an attribute; it survives as the exception's context.
    inner = exc.__cause__ or exc.__context__
    if inner is not None and str(inner) not in detail:
        detail += f": {type(inner).__name__}: {inner}"
    for note in getattr(exc, "notes", None) or []:
        if note and note not in detail:
            detail += f" ({note})"
    hint = "; correct it in the diagram and deploy a new version" if element_id else ""
    return ProcessError(f"{detail}{hint}", element_id, element_name)


class Engine:
    def __init__(
        self,
        db: Database,
        registry: Registry | None = None,
        notifier: Notifier | None = None,
        calendar: WorkingCalendar | None = None,
        letters: LetterRenderer | None = None,
    ) -> None:
        self.db = db
        self.registry = registry or Registry()
        self.calendar = calendar or load_calendar(self.registry.root / "calendar.json")
        functions = {**time_functions(self.calendar), **queries.query_functions()}
        functions["subject_key"] = messages.subject_key
        for name, function in functions.items():
            self.registry.register_function(name, function)
        self.runtime = Runtime(self.registry.functions)
        # Service tasks call the adapters registered by name (the same dict: later registrations count).
        self.runtime.script_engine.environment.services = self.registry.service_tasks
        self.specs = definitions.SpecCache(on_parse=self._adopt)
        ladder = self.registry.read_json_optional("escalation.json") or {}
        self.roles = directory.RoleBook()
        self.services = Services(
            roles=self.roles,
            calendar=self.calendar,
            evaluate=self._evaluate,
            ladder=ladder.get("levels", {}),
            notifier=notifier or OutboxNotifier(),
            letters=letters,
        )

    def use_letter_renderer(self, letters: LetterRenderer | None) -> None:
        """Write letter tasks' PDFs with ``letters`` (the web app and the CLI wire adapters/letters.py)."""
        self.services = dataclasses.replace(self.services, letters=letters)

    # ----------------------------------------------------------------- setup

    def init(self, actor: str = "system", demo: bool = True, demo_cases: bool = False) -> dict[str, int]:
        """Create or upgrade the schema, load roles, deploy ``processes/``, add the demo staff
        (and, with ``demo_cases``, the example cases in ``processes/demo/cases.json``).

        Idempotent: a second run changes nothing.
        """
        self.db.upgrade()
        counts = {"roles": 0, "staff": 0, "deployed": 0, "demo_cases": 0}
        with self._transaction() as session:
            counts["roles"] = directory.sync_roles(session, self.registry.roles())
            self.roles.invalidate()
            if demo:
                counts["staff"] = directory.sync_staff(session, self.registry.read_json("demo/staff.json"))
        files = self.registry.bpmn_files()
        if files:
            results = self.deploy(
                [(str(p.relative_to(self.registry.root)), p.read_bytes()) for p in files], actor
            )
            counts["deployed"] = sum(1 for r in results if r.created)
        if demo and demo_cases:
            seed = self.registry.read_json_optional("demo/cases.json")
            if seed is not None:
                counts["demo_cases"] = len(run_seed(self, seed).references)
        return counts

    # ----------------------------------------------------------- definitions

    def deploy(self, files: list[tuple[str, bytes]], actor: str) -> list[definitions.DeployResult]:
        with self._transaction() as session:
            return self.deploy_in(session, files, actor, clock.now())

    def deploy_in(
        self, session: Session, files: list[tuple[str, bytes]], actor: str, now: datetime
    ) -> list[definitions.DeployResult]:
        """:meth:`deploy` inside the caller's transaction (a draft is deployed and removed in one)."""
        results = definitions.deploy(
            session, files, actor, now, context=ValidationContext.from_registry(self.registry)
        )
        events = [
            PendingEvent(actor, "process.deployed", data={"key": r.key, "version": r.version})
            for r in results
            if r.created
        ]
        audit.append(session, events, now)
        return results

    def deploy_paths(self, paths: Iterable[Path], actor: str) -> list[definitions.DeployResult]:
        files = []
        for path in paths:
            try:
                files.append((path.name, path.read_bytes()))
            except OSError as exc:
                raise InvalidData(f"{path}: cannot read the file ({exc.strerror})") from None
        return self.deploy(files, actor)

    def start_form(self, key: str) -> str | None:
        """The form a process's start event asks for (its ``formJsonSchemaFilename``), if any."""
        with self.db.read() as session:
            return self._start_form(session, definitions.require_latest(session, key))

    def _start_form(self, session: Session, definition: ProcessDefinition) -> str | None:
        bundle = self.specs.bundle(session, definition.id, {})
        for task_spec in bundle.spec.task_specs.values():
            if type(task_spec).__name__ == "StartEvent":
                form = ((getattr(task_spec, "extensions", None) or {}).get("properties") or {}).get(
                    "formJsonSchemaFilename"
                )
                if form:
                    return str(form)
        return None

    def list_processes(self) -> list[ProcessDefinition]:
        with self.db.read() as session:
            return list(
                session.scalars(
                    sa.select(ProcessDefinition).order_by(ProcessDefinition.key, ProcessDefinition.version)
                )
            )

    # --------------------------------------------------------------- commands

    def start(
        self,
        key: str,
        actor: str,
        case_reference: str | None = None,
        data: dict[str, Any] | None = None,
        team_key: str | None = None,
        subject_name: str | None = None,
    ) -> StartResult:
        """Start the newest version of ``key``, on the case ``case_reference`` (created if new)."""
        data = check_json(data)
        with self._transaction() as session:
            command = CommandContext(actor, clock.now())
            definition = definitions.require_latest(session, key)
            form = self._start_form(session, definition)
            if form:
                self._validate_form(form, data)
            case = self._case_for_start(session, command, case_reference, team_key, subject_name)
            result = self._start_in(session, command, definition, case, data)
            audit.append(session, command.events, command.now)
            return result

    def start_for_subjects(
        self,
        key: str,
        actor: str,
        subjects: list[dict[str, Any]],
        shared: dict[str, Any] | None = None,
        team_key: str | None = None,
        subject_field: str = "subject",
        subjects_field: str = "subjects",
        link_kind: str = "sibling",
    ) -> list[StartResult]:
        """One case and one instance per subject (a contact about three children: three cases).

        The start form (if the start event names one) sees the whole answer: ``shared`` with the
        list of subjects under ``subjects_field``.  Each instance then gets its own copy of
        ``shared`` plus only its own subject under ``subject_field``; nothing is shared by
        reference.  The cases are linked to each other as ``link_kind``.  All or nothing.
        """
        shared = check_json(shared)
        if not subjects:
            raise InvalidData("name at least one person this is about", {subjects_field: "Add at least one"})
        for index, subject in enumerate(subjects):
            check_json(subject, f"{subject_field} {index + 1}")
        with self._transaction() as session:
            command = CommandContext(actor, clock.now())
            definition = definitions.require_latest(session, key)
            form = self._start_form(session, definition)
            if form:
                self._validate_form(form, {**shared, subjects_field: subjects})
            cases, results = [], []
            for subject in subjects:
                name = subject.get("name") if isinstance(subject.get("name"), str) else None
                case = self._new_case(session, command, subject.get("reference"), team_key, name)
                cases.append(case)
                # A deep copy through JSON: no two instances ever hold the same object.
                data = json.loads(json.dumps({**shared, subject_field: subject}))
                results.append(self._start_in(session, command, definition, case, data))
            now = command.now
            for case in cases if len(cases) > 1 else []:
                for other in cases:
                    if other is not case:
                        session.add(
                            CaseLink(case_id=case.id, linked_case_id=other.id, kind=link_kind, created_at=now)
                        )
                command.events.append(
                    PendingEvent(
                        actor,
                        "case.linked",
                        case.id,
                        data={"kind": link_kind, "cases": [c.reference for c in cases if c is not case]},
                    )
                )
            audit.append(session, command.events, now)
            return results

    def _start_in(
        self,
        session: Session,
        command: CommandContext,
        definition: ProcessDefinition,
        case: CaseRecord | None,
        data: dict[str, Any],
    ) -> StartResult:
        pins = self.specs.resolve_calls(session, definition)
        bundle = self.specs.bundle(session, definition.id, pins)
        workflow = self.runtime.new_workflow(bundle)
        start_task = workflow.get_next_task(state=TaskState.READY)
        if start_task is not None and data:
            start_task.set_data(**data)
        completed_before = len(command.completed)
        self._run_engine(workflow, command)
        instance_id = session.connection().scalar(
            sa.insert(ProcessInstance)
            .values(
                definition_id=definition.id,
                called_definitions=pins,
                case_id=case.id if case else None,
                status="running",
                state="",
                revision=1,
                started_at=command.now,
                started_by=command.actor,
            )
            .returning(ProcessInstance.id)
        )
        assert instance_id is not None
        instance = InstanceRef(instance_id, definition.id, pins, case.id if case else None, "running", 1, "")
        command.events.append(
            PendingEvent(
                command.actor,
                "instance.started",
                case_id=instance.case_id,
                instance_id=instance.id,
                data={"process": definition.key, "version": definition.version, "data": data},
            )
        )
        # Several instances may start in one command: each projects only what it completed.
        own = CommandContext(command.actor, command.now, command.events, command.completed[completed_before:])
        case_ref = _case_ref(case) if case else None
        opened = Projector(
            session, own, instance, workflow, bundle, case_ref, self.services, Live.empty()
        ).run()
        session.connection().execute(
            sa.update(ProcessInstance)
            .where(ProcessInstance.id == instance.id)
            .values(state=self.runtime.dump(workflow))
        )
        self._complete_if_done(session, own, instance, workflow)
        return StartResult(instance.id, case.reference if case else None, opened)

    def claim(self, task_id: str, username: str) -> None:
        with self._transaction() as session:
            now = clock.now()
            task = self._task(session, task_id)
            user = directory.get_user(session, username)
            if task.status == "claimed" and task.assignee == username:
                return
            self._require_open(task)
            if task.status == "claimed":
                raise Conflict(f"'{task.name}' is already claimed by {task.assignee}")
            directory.check_may_hold(session, user, task.role_key, task.team_key, self.roles)
            self._set_assignee(session, task, username, expected_status="ready")
            audit.append(
                session,
                [PendingEvent(username, "task.claimed", task.case_id, task.instance_id, task.id)],
                now,
            )

    def unclaim(self, task_id: str, username: str) -> None:
        with self._transaction() as session:
            now = clock.now()
            task = self._task(session, task_id)
            self._require_open(task)
            if task.assignee != username:
                raise Conflict(
                    f"'{task.name}' is not claimed by {username} (held by {task.assignee or 'nobody'})"
                )
            updated = _rowcount(
                session.execute(
                    sa.update(Task)
                    .where(Task.id == task.id, Task.status == "claimed", Task.assignee == username)
                    .values(status="ready", assignee=None)
                )
            )
            if updated != 1:
                raise Conflict(f"'{task.name}' changed while you were releasing it; reload and try again")
            audit.append(
                session,
                [PendingEvent(username, "task.unclaimed", task.case_id, task.instance_id, task.id)],
                now,
            )

    def assign(self, task_id: str, assignee: str, by: str) -> None:
        """A manager gives the task to ``assignee`` (or reassigns it)."""
        with self._transaction() as session:
            now = clock.now()
            task = self._task(session, task_id)
            self._require_open(task)
            manager = directory.get_user(session, by)
            self._check_may_assign(session, manager, task)
            user = directory.get_user(session, assignee)
            directory.check_may_hold(session, user, task.role_key, task.team_key, self.roles)
            previous = task.assignee
            self._set_assignee(session, task, assignee, expected_status=task.status, expected=previous)
            audit.append(
                session,
                [
                    PendingEvent(
                        by,
                        "task.assigned",
                        task.case_id,
                        task.instance_id,
                        task.id,
                        {"assignee": assignee, "previous": previous},
                    )
                ],
                now,
            )

    def complete(
        self,
        task_id: str,
        username: str,
        data: dict[str, Any] | None = None,
        expected_revision: int | None = None,
    ) -> None:
        """Complete a human task with the form's data and run the process on until it waits."""
        data = check_json(data)
        with self._transaction() as session:
            now = clock.now()
            command = CommandContext(username, now)
            connection = session.connection()
            if self.db.dialect != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises commands
                # Lock the instance first, then read: a command that waited for the lock reads
                # what the command before it committed, not the snapshot it started with.
                connection.execute(_LOCK_INSTANCE_OF_TASK, {"task_id": task_id})
            row: Any = connection.execute(_TASK_FOR_COMPLETION, {"task_id": task_id}).first()
            if row is None:
                raise NotFound(f"there is no task {task_id!r}; list open tasks with `frontdoor tasks`")
            self._require_open(row)
            if row.status == "claimed" and row.assignee != username:
                raise Conflict(f"'{row.name}' is claimed by {row.assignee}; only they can complete it")
            if row.status == "ready":
                directory.check_may_hold(session, username, row.role_key, row.team_key, self.roles)
            else:
                directory.user_ref(session, username)  # an account disabled since claiming cannot complete
            if row.form_key:
                self._validate_form(row.form_key, data)
            instance = InstanceRef(*row[len(_TASK_COLUMNS) : len(_TASK_COLUMNS) + len(INSTANCE_COLUMNS)])
            workflow, bundle, before = self._restore(session, instance, expected_revision)
            spiff_task = find_task(workflow, row.id)
            if (
                spiff_task is None
                or not spiff_task.has_state(TaskState.READY)
                or not spiff_task.task_spec.manual
            ):
                raise Conflict(
                    f"'{row.name}' is no longer waiting to be completed; reload to see where the case is"
                )
            previous = dict(spiff_task.data)
            spiff_task.set_data(**data)
            try:
                spiff_task.run()
            except SpiffWorkflowException as exc:
                raise _process_error(exc) from exc
            command.completed.append(spiff_task)
            command.handled.add(row.id)
            self._run_engine(workflow, command)
            changes = {k: v for k, v in data.items() if previous.get(k, _MISSING) != v}
            updated = _rowcount(
                connection.execute(
                    _COMPLETE_TASK, {"task_id": row.id, "username": username, "now": now, "outcome": data}
                )
            )
            if updated != 1:
                raise Conflict(f"'{row.name}' was completed by someone else a moment ago")
            command.events.append(
                PendingEvent(
                    username, "task.completed", row.case_id, row.instance_id, row.id, {"changes": changes}
                )
            )
            case_columns = row[len(_TASK_COLUMNS) + len(INSTANCE_COLUMNS) :]
            case = CaseRef(*case_columns) if case_columns[0] is not None else None
            Projector(session, command, instance, workflow, bundle, case, self.services, before).run()
            self._save(session, instance, workflow)
            self._finish(session, command, instance, workflow)

    def save_draft(self, task_id: str, username: str, data: dict[str, Any] | None) -> None:
        """Keep unfinished answers on the task, for whoever may complete it, until it is completed.

        A draft is not checked against the form (it may be half done) and does not move the case.
        """
        data = check_json(data)
        with self._transaction() as session:
            now = clock.now()
            task = self._task(session, task_id)
            self._require_open(task)
            if task.status == "claimed" and task.assignee != username:
                raise Conflict(f"'{task.name}' is claimed by {task.assignee}; only they can save answers")
            directory.check_may_hold(session, username, task.role_key, task.team_key, self.roles)
            updated = _rowcount(
                session.connection().execute(
                    sa.update(Task)
                    .where(Task.id == task.id, Task.status.in_(OPEN_STATUSES))
                    .values(draft=data, draft_saved_by=username, draft_saved_at=now)
                )
            )
            if updated != 1:
                raise Conflict(f"'{task.name}' was completed a moment ago; your draft was not saved")
            audit.append(
                session,
                [
                    PendingEvent(
                        username,
                        "task.draft_saved",
                        task.case_id,
                        task.instance_id,
                        task.id,
                        {"fields": sorted(data)},
                    )
                ],
                now,
            )

    def cancel(self, instance_id: int, by: str, reason: str) -> None:
        if not reason.strip():
            raise InvalidData("say why the process is being cancelled")
        with self._transaction() as session:
            now = clock.now()
            command = CommandContext(by, now)
            instance, workflow, bundle, before = self._load(session, instance_id, None, lock=True)
            if instance.status != "running":
                raise Conflict(f"process instance {instance_id} is already {instance.status}")
            workflow.cancel()
            instance.status = "cancelled"
            instance.ended_at = now
            case = self._case(session, instance.case_id)
            Projector(session, command, instance, workflow, bundle, case, self.services, before).run()
            self._save(session, instance, workflow)
            command.events.append(
                PendingEvent(by, "instance.cancelled", instance.case_id, instance.id, data={"reason": reason})
            )
            audit.append(session, command.events, now)

    def correlate_message(
        self, name: str, correlation_key: str, payload: dict[str, Any] | None, actor: str
    ) -> list[MessageDelivery]:
        """Deliver the message ``name`` to every running instance waiting for it with this key.

        One transaction: each instance is locked (in id order), restored, catches the message and
        runs on until it waits; its projections are brought up to date and the delivery is
        audited.  Nobody waiting (or nobody any more, once locked): NotFound, nothing changed.
        """
        payload = check_json(payload, "the message")
        if not name or not correlation_key:
            raise InvalidData("a message needs a name and a correlation key")
        with self._transaction() as session:
            now = clock.now()
            deliveries = []
            for instance_id in messages.waiting_instances(session.connection(), name, correlation_key):
                command = CommandContext(actor, now)
                instance, workflow, bundle, before = self._load(session, instance_id, None, lock=True)
                if instance.status != "running":
                    continue
                try:
                    caught = messages.deliver(workflow, name, json.loads(json.dumps(payload)))
                except _DIAGRAM_FAILURES as exc:
                    raise _process_error(exc) from exc
                if not caught:  # it moved on since the subscription was read; not waiting any more
                    continue
                self._run_engine(workflow, command)
                command.events.append(
                    PendingEvent(
                        actor,
                        "message.correlated",
                        instance.case_id,
                        instance.id,
                        data={"message": name, "correlation_key": correlation_key, "payload": payload},
                    )
                )
                case = self._case(session, instance.case_id)
                services = self.services
                projector = Projector(session, command, instance, workflow, bundle, case, services, before)
                opened = projector.run()
                self._save(session, instance, workflow)
                self._finish(session, command, instance, workflow)
                deliveries.append(MessageDelivery(instance.id, case.reference if case else None, opened))
            if not deliveries:
                raise NotFound(
                    f"no running process is waiting for the message {name!r} with the correlation key "
                    f"{correlation_key!r}"
                )
            return deliveries

    def fire_next_due(self, worker: str = "worker") -> int | None:
        """Fire the earliest due timer that no other worker holds; return its id, or None if none is due.

        The worker claims the timer's *instance* (``FOR UPDATE ... SKIP LOCKED`` on PostgreSQL),
        as every command that changes an instance does first: one instance's timers are fired by
        one worker at a time, and no two commands wait on each other's rows in opposite orders.
        Claiming, firing and marking the row fired are one transaction: a timer fires once
        however many workers run, and a worker that dies mid-fire leaves it for the next one.
        """
        # A claim can find its timer already gone: the instance lock was released by a command
        # that fired or cancelled it while we queued. Then claim again, a bounded number of times.
        for _attempt in range(100):
            outcome = self._fire_one(worker)
            if outcome != "stale":
                return outcome if isinstance(outcome, int) else None
        return None

    def _fire_one(self, worker: str) -> int | str | None:
        failed: tuple[int, str] | None = None
        try:
            with self._transaction() as session:
                now = clock.now()
                claimed = session.connection().execute(_CLAIM_DUE_TIMER, {"now": now}).first()
                if claimed is None:
                    return None
                # Re-read under the instance lock: a command that held it may have fired or cancelled it.
                timer = session.scalar(
                    sa.select(Timer).where(
                        Timer.id == claimed.id, Timer.status == "waiting", Timer.due_at <= now
                    )
                )
                if timer is None:
                    return "stale"
                try:
                    self._fire(session, timer, worker, now)
                except ProcessError as exc:
                    failed = (timer.id, str(exc))
                    raise
                return timer.id
        except ProcessError:
            assert failed is not None
            self._timer_failed(*failed, worker)
            return failed[0]

    def _fire(self, session: Session, timer: Timer, worker: str, now: Any) -> None:
        loaded = self._load(session, timer.instance_id, None, missing_ok=True)
        if loaded is None or loaded[0].status != "running":
            timer.status = "cancelled"
            return
        instance, workflow, bundle, before = loaded
        spiff_task = find_task(workflow, timer.task_id)
        if spiff_task is None or not spiff_task.has_state(TaskState.WAITING):
            timer.status = "cancelled"  # the process moved on without it; nothing to fire
            return
        command = CommandContext(worker, now)
        command.handled.add(timer.task_id)
        try:
            workflow.refresh_timers()
        except _DIAGRAM_FAILURES as exc:
            raise _process_error(exc) from exc
        self._run_engine(workflow, command)
        timer.status, timer.fired_at, timer.fired_by = "fired", now, worker
        timer.attempts += 1
        command.events.append(
            PendingEvent(
                worker,
                "timer.fired",
                instance.case_id,
                instance.id,
                data={"timer": timer.id, "element": timer.element_id, "due": timer.due_at.isoformat()},
            )
        )
        case = self._case(session, instance.case_id)
        Projector(session, command, instance, workflow, bundle, case, self.services, before).run()
        self._save(session, instance, workflow)
        self._finish(session, command, instance, workflow)

    def _timer_failed(self, timer_id: int, error: str, worker: str) -> None:
        """A timer whose firing raised is parked as 'failed' (an incident), not retried for ever."""
        with self._transaction() as session:
            now = clock.now()
            timer = session.get(Timer, timer_id)
            if timer is None or timer.status != "waiting":
                return
            timer.status, timer.last_error = "failed", error
            timer.attempts += 1
            audit.append(
                session,
                [
                    PendingEvent(
                        worker,
                        "timer.failed",
                        timer.case_id,
                        timer.instance_id,
                        data={"timer": timer.id, "element": timer.element_id, "error": error},
                    )
                ],
                now,
            )

    def next_timer_due(self) -> Any:
        """When the earliest waiting timer is due (UTC), or None."""
        with self.db.read() as session:
            return session.scalar(sa.select(sa.func.min(Timer.due_at)).where(Timer.status == "waiting"))

    def timers(self, due_before: Any = None, status: str = "waiting", limit: int = 1000) -> list[Timer]:
        query = sa.select(Timer).where(Timer.status == status)
        if due_before is not None:
            query = query.where(Timer.due_at < due_before)
        with self.db.read() as session:
            return list(session.scalars(query.order_by(Timer.due_at, Timer.id).limit(limit)))

    # ----------------------------------------------------------------- queries

    def get_task(self, task_id: str) -> Task:
        with self.db.read() as session:
            return self._task(session, task_id)

    def tasks(
        self,
        *,
        user: str | None = None,
        team: str | None = None,
        case_reference: str | None = None,
        include_closed: bool = False,
        due: str | None = None,
        limit: int = 500,
    ) -> list[Task]:
        """My tasks, a team queue, or the tasks of a case: read from the projection only.

        ``due`` narrows to ``"overdue"``, ``"today"`` (due before the end of today, London) or
        ``"soon"`` (due within 2 working days, overdue included).
        """
        conditions: list[Any] = []
        if due is not None:
            conditions.extend(self.due_filter(due))
        if user is not None:
            conditions.append(Task.assignee == user)
        if team is not None:
            conditions.append(Task.team_key == team)
        if case_reference is not None:
            case_id = sa.select(CaseRecord.id).where(CaseRecord.reference == case_reference)
            conditions.append(Task.case_id == case_id.scalar_subquery())
        if not include_closed:
            # The values written into the SQL, not bound: the predicate of the partial indexes of the
            # open tasks (migration 0002), which SQLite's planner recognises only when written the same.
            open_statuses: sa.BindParameter[list[str]] = sa.bindparam(
                "open_statuses", list(OPEN_STATUSES), expanding=True, literal_execute=True
            )
            conditions.append(Task.status.in_(open_statuses))
        with self.db.read() as session:
            # The ids first, dated then undated: each one range of a due-ordered index that LIMIT stops
            # (not one sort of the whole queue); then those rows.
            ids = list(
                session.scalars(
                    sa.select(Task.id)
                    .where(*conditions, Task.due_at.is_not(None))
                    .order_by(Task.due_at, Task.created_at, Task.id)
                    .limit(limit)
                )
            )
            if len(ids) < limit and due is None:
                ids += session.scalars(
                    sa.select(Task.id)
                    .where(*conditions, Task.due_at.is_(None))
                    .order_by(Task.created_at, Task.id)
                    .limit(limit - len(ids))
                )
            found = {task.id: task for task in session.scalars(sa.select(Task).where(Task.id.in_(ids)))}
            return [found[i] for i in ids]

    def due_window(self, due: str) -> tuple[datetime | None, datetime]:
        """(from, before) instants for a due-date filter word; see :meth:`tasks`."""
        now = clock.now()
        local_today = now.astimezone(self.calendar.timezone).date()
        end_of_today = datetime.combine(local_today + timedelta(days=1), time(0), self.calendar.timezone)
        if due == "overdue":
            return None, now
        if due == "today":
            return now, end_of_today.astimezone(UTC)
        if due == "soon":
            horizon = self.calendar.add_working_days(local_today, 2) + timedelta(days=1)
            return None, datetime.combine(horizon, time(0), self.calendar.timezone).astimezone(UTC)
        raise InvalidData(f"due must be overdue, today or soon, not {due!r}")

    def due_filter(self, due: str) -> list[Any]:
        start, before = self.due_window(due)
        conditions = [Task.due_at.is_not(None), Task.due_at < before]
        if start is not None:
            conditions.append(Task.due_at >= start)
        return conditions

    def get_case(self, reference: str) -> CaseRecord:
        with self.db.read() as session:
            case = session.scalar(sa.select(CaseRecord).where(CaseRecord.reference == reference))
            if case is None:
                raise NotFound(f"there is no case with the reference {reference!r}")
            return case

    def instance_data(self, instance_id: int) -> dict[str, Any]:
        """The process data as the workflow holds it now (for tests and diagnostics, not for queues)."""
        with self.db.read() as session:
            _, workflow, _, _ = self._load(session, instance_id, None)
            task = workflow.last_task or workflow.task_tree
            return dict(task.data)

    # ----------------------------------------------------------------- helpers

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A command's transaction, with its session bound for the diagram's query functions."""
        outer = _ATOMIC.get()
        if outer is not None:  # inside Engine.atomic(): one transaction for all of it
            yield outer
            return
        with self.db.transaction() as session, queries.bound(session):
            yield session

    @contextmanager
    def atomic(self) -> Iterator[Session]:
        """Run several commands as one transaction: all of them happen, or (on any error) none.

        Commands called inside the block join its transaction; the caller may add rows of its
        own to the session it is given (an idempotency record, say).  Commits when the block ends.
        """
        if _ATOMIC.get() is not None:
            raise RuntimeError("Engine.atomic() blocks do not nest")
        with self.db.transaction() as session, queries.bound(session):
            token = _ATOMIC.set(session)
            try:
                yield session
            finally:
                _ATOMIC.reset(token)

    def _case_for_start(
        self,
        session: Session,
        command: CommandContext,
        reference: str | None,
        team_key: str | None,
        subject_name: str | None,
    ) -> CaseRecord | None:
        if reference is None:
            return None
        case = session.scalar(sa.select(CaseRecord).where(CaseRecord.reference == reference))
        if case is not None:
            if case.status != "open":
                raise Conflict(f"case {reference} is {case.status}; reopen it before starting work on it")
            return case
        return self._new_case(session, command, reference, team_key, subject_name)

    def _new_case(
        self,
        session: Session,
        command: CommandContext,
        reference: str | None,
        team_key: str | None,
        subject_name: str | None,
    ) -> CaseRecord:
        """A new case; without a reference it gets the next ``CH-000123``."""
        if reference is not None and session.scalar(
            sa.select(CaseRecord.id).where(CaseRecord.reference == reference)
        ):
            raise Conflict(f"a case with the reference {reference} already exists")
        case = CaseRecord(
            reference=reference or f"new-{uuid.uuid4().hex}",
            subject_name=subject_name,
            team_key=team_key,
            status="open",
            opened_at=command.now,
        )
        session.add(case)
        session.flush()
        if reference is None:
            case.reference = f"CH-{case.id:06d}"
        command.events.append(
            PendingEvent(
                command.actor, "case.opened", case.id, data={"reference": case.reference, "team": team_key}
            )
        )
        return case

    def _task(self, session: Session, task_id: str) -> Task:
        task = session.get(Task, task_id)
        if task is None:
            raise NotFound(f"there is no task {task_id!r}; list open tasks with `frontdoor tasks`")
        return task

    @staticmethod
    def _require_open(task: Any) -> None:
        if task.status not in OPEN_STATUSES:
            by = f" by {task.completed_by}" if task.completed_by else ""
            raise Conflict(f"'{task.name}' is already {task.status}{by}")

    def _set_assignee(
        self,
        session: Session,
        task: Task,
        username: str,
        expected_status: str,
        expected: str | None = None,
    ) -> None:
        condition = [Task.id == task.id, Task.status == expected_status]
        condition.append(Task.assignee.is_(None) if expected is None else Task.assignee == expected)
        updated = _rowcount(
            session.execute(sa.update(Task).where(*condition).values(status="claimed", assignee=username))
        )
        if updated != 1:
            raise Conflict(f"'{task.name}' was claimed or changed by someone else a moment ago; reload")

    def _check_may_assign(self, session: Session, manager: Any, task: Task) -> None:
        assigning = self.roles.assigning(session)
        held = directory.memberships(session, manager)
        if not any(
            role in assigning and (task.team_key is None or team == task.team_key) for team, role in held
        ):
            raise PermissionDenied(
                f"{manager.username} cannot assign work in the team '{task.team_key}': "
                "only a manager of that team can"
            )

    def _load(
        self,
        session: Session,
        instance_id: int,
        expected_revision: int | None,
        lock: bool = False,
        missing_ok: bool = False,
    ) -> Any:
        """The instance row, its workflow, its spec bundle, and what its projection rows mirror."""
        query = _LOCK_INSTANCE if lock else _SELECT_INSTANCE
        row = session.connection().execute(query, {"instance_id": instance_id}).first()
        if row is None:
            if missing_ok:
                return None
            raise NotFound(f"there is no process instance {instance_id}")
        instance = InstanceRef(*row)
        return (instance, *self._restore(session, instance, expected_revision))

    def _restore(
        self, session: Session, instance: InstanceRef, expected_revision: int | None
    ) -> tuple[BpmnWorkflow, SpecBundle, Live]:
        if expected_revision is not None and instance.revision != expected_revision:
            raise Conflict(
                f"the case changed since you opened it (revision {expected_revision}, now "
                f"{instance.revision}); reload and check before saving"
            )
        bundle = self.specs.bundle(session, instance.definition_id, instance.called_definitions or {})
        workflow = self.runtime.load(instance.state, bundle)
        return workflow, bundle, Live.of(workflow)

    def _case(self, session: Session, case_id: int | None) -> CaseRef | None:
        if case_id is None:
            return None
        row = (
            session.connection()
            .execute(
                sa.select(
                    CaseRecord.id,
                    CaseRecord.reference,
                    CaseRecord.team_key,
                    CaseRecord.worker,
                    CaseRecord.status,
                ).where(CaseRecord.id == case_id)
            )
            .first()
        )
        return CaseRef(*row) if row else None

    def _run_engine(self, workflow: BpmnWorkflow, command: CommandContext) -> None:
        try:
            workflow.do_engine_steps(did_complete_task=command.completed.append)
        except _DIAGRAM_FAILURES as exc:
            raise _process_error(exc) from exc

    def _adopt(self, specs: list[Any]) -> None:
        """Give freshly parsed specs Frontdoor's clock, calendar and branch-preserving joins."""
        adopt_timers(specs, self.calendar)
        adopt_joins(specs)

    def _validate_form(self, form_key: str, data: dict[str, Any]) -> None:
        """The answers must satisfy the task's form schema; every problem is reported, per field."""
        try:
            schema = self.registry.form_schema(form_key)
        except (OSError, ValueError, jsonschema.SchemaError) as exc:
            raise ProcessError(f"the form {form_key} cannot be used: {exc}") from None
        validator = jsonschema.validators.validator_for(schema)(
            schema, format_checker=jsonschema.FormatChecker()
        )
        fields: dict[str, str] = {}
        for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
            path = "/".join(str(p) for p in error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, dict):
                # One error per missing property, but none says which: put each beside its field.
                for name in cast(list[str], error.validator_value):
                    if name not in error.instance:
                        fields.setdefault(f"{path}/{name}" if path else name, "Answer this question")
                continue
            fields.setdefault(path, error.message)
        if fields:
            summary = "; ".join(f"{k or 'the form'}: {v}" for k, v in fields.items())
            raise InvalidData(f"the answers do not fit the form {form_key}: {summary}", fields)

    def _evaluate(self, task: SpiffTask, expression: str) -> Any:
        """Evaluate a property expression (due date, clock target) as the diagram's scripts are."""
        try:
            return self.runtime.script_engine.evaluate(task, expression)
        except Exception as exc:
            raise _process_error(exc) from exc

    def _save(self, session: Session, instance: InstanceRef, workflow: BpmnWorkflow) -> None:
        """Write the new state only if nobody else wrote since we read it."""
        seen = instance.revision
        updated = _rowcount(
            session.connection().execute(
                _SAVE_INSTANCE,
                {
                    "instance_id": instance.id,
                    "seen": seen,
                    "state": self.runtime.dump(workflow),
                    "status": instance.status,
                    "ended_at": instance.ended_at,
                },
            )
        )
        if updated != 1:
            raise Conflict("someone else changed this case at the same moment; reload and try again")
        instance.revision = seen + 1

    def _finish(
        self, session: Session, command: CommandContext, instance: InstanceRef, workflow: BpmnWorkflow
    ) -> None:
        self._complete_if_done(session, command, instance, workflow)
        audit.append(session, command.events, command.now)

    def _complete_if_done(
        self, session: Session, command: CommandContext, instance: InstanceRef, workflow: BpmnWorkflow
    ) -> None:
        if workflow.completed and instance.status == "running":
            instance.status = "completed"
            instance.ended_at = command.now
            session.connection().execute(
                sa.update(ProcessInstance)
                .where(ProcessInstance.id == instance.id)
                .values(status="completed", ended_at=command.now)
            )
            command.events.append(
                PendingEvent(command.actor, "instance.completed", instance.case_id, instance.id)
            )


_MISSING = object()

# What a diagram's own expressions can raise while the engine steps (a timer expression that
# is not a date, a script dividing by zero): the process's fault, reported against its element.
_DIAGRAM_FAILURES = (SpiffWorkflowException, ValueError, TypeError, KeyError, ArithmeticError)


_TASK_COLUMNS = (
    Task.id,
    Task.instance_id,
    Task.case_id,
    Task.name,
    Task.status,
    Task.assignee,
    Task.role_key,
    Task.team_key,
    Task.form_key,
    Task.completed_by,
)
_CASE_COLUMNS = (
    CaseRecord.id,
    CaseRecord.reference,
    CaseRecord.team_key,
    CaseRecord.worker,
    CaseRecord.status,
)
# Everything `complete` needs before it restores the workflow (task, instance, case) in one statement.
_TASK_FOR_COMPLETION = (
    sa.select(*_TASK_COLUMNS, *INSTANCE_COLUMNS, *_CASE_COLUMNS)
    .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
    .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
    .where(Task.id == sa.bindparam("task_id"))
)
# Every command that changes an instance locks its row first, so commands and timer workers
# queue on one lock instead of waiting on each other's task and timer rows.
_LOCK_INSTANCE_OF_TASK = (
    sa.select(ProcessInstance.id)
    .where(
        ProcessInstance.id
        == sa.select(Task.instance_id).where(Task.id == sa.bindparam("task_id")).scalar_subquery()
    )
    .with_for_update()
)


# The next due timer whose instance no other worker (or command) holds; the instance row is locked.
_CLAIM_DUE_TIMER = (
    sa.select(Timer.id, Timer.instance_id)
    .join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
    .where(
        Timer.status == "waiting", Timer.due_at <= sa.bindparam("now", type_=Timer.__table__.c.due_at.type)
    )
    .order_by(Timer.due_at, Timer.id)
    .limit(1)
    .with_for_update(of=ProcessInstance, skip_locked=True)
)
_SELECT_INSTANCE = sa.select(*INSTANCE_COLUMNS).where(ProcessInstance.id == sa.bindparam("instance_id"))
_LOCK_INSTANCE = _SELECT_INSTANCE.with_for_update()
_SELECT_CASE = sa.select(*_CASE_COLUMNS).where(CaseRecord.id == sa.bindparam("case_id"))
_COMPLETE_TASK = (
    sa.update(Task)
    .where(Task.id == sa.bindparam("task_id"), Task.status.in_(OPEN_STATUSES))
    .values(
        draft=None,
        status="completed",
        assignee=sa.bindparam("username"),
        completed_by=sa.bindparam("username"),
        completed_at=sa.bindparam("now"),
        outcome=sa.bindparam("outcome", type_=Task.__table__.c.outcome.type),
    )
)
# The optimistic lock: 0 rows updated means someone else saved first.
_SAVE_INSTANCE = (
    sa.update(ProcessInstance)
    .where(
        ProcessInstance.id == sa.bindparam("instance_id"), ProcessInstance.revision == sa.bindparam("seen")
    )
    .values(
        state=sa.bindparam("state"),
        revision=ProcessInstance.revision + 1,
        status=sa.bindparam("status"),
        ended_at=sa.bindparam("ended_at", type_=ProcessInstance.__table__.c.ended_at.type),
    )
)


def _case_ref(case: CaseRecord) -> CaseRef:
    return CaseRef(case.id, case.reference, case.team_key, case.worker, case.status)


def _rowcount(result: sa.Result[Any]) -> int:
    """Rows an UPDATE matched: how optimistic locking sees whether it won."""
    return cast(sa.CursorResult[Any], result).rowcount


def engine_from_env(
    url: str | None = None,
    registry: Registry | None = None,
    configure: Callable[[Engine], None] | None = None,
) -> Engine:
    engine = Engine(Database(url), registry)
    if configure is not None:
        configure(engine)
    return engine
