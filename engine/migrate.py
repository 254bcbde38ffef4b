"""Moving running instances to another deployed version of their process.

Deploying makes a new version; running instances stay on theirs until a process owner moves
them.  :func:`precheck` says, per instance, whether it can move and what would change (using
SpiffWorkflow's own diff: :mod:`SpiffWorkflow.bpmn.util.diff`); :func:`migrate` moves the ones
that can, each in a transaction of its own (lock, restore, migrate, step, project, save with the
revision check, audit), and leaves the others untouched with the reason.

An instance cannot move when a task it is waiting on, or the completed step its pruned history
still holds (see :mod:`engine.runtime`), has no counterpart in the target version: the state
would name an element the new spec does not have.  The check is done by migrating in memory and
restoring the result against the target spec, so what precheck allows, migrate can do.

SpiffWorkflow's ``migrate_workflow`` resets every ready and waiting task to re-predict what
follows it under the new spec.  That would restart waiting timers from now; a timer whose
definition did not change keeps the moment it was due (its evaluated value is put back).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, migrate_workflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState
from sqlalchemy.orm import Session

from . import audit, clock
from .audit import PendingEvent
from .errors import Conflict, FrontdoorError, InvalidData, NotFound
from .models import ProcessDefinition, ProcessInstance
from .projection import INSTANCE_COLUMNS, CommandContext, InstanceRef, Projector, element_id, element_name
from .runtime import SpecBundle

if TYPE_CHECKING:  # pragma: no cover
    from .core import Engine

OPEN = TaskState.READY | TaskState.WAITING | TaskState.STARTED
STATE_WORDS = {
    TaskState.READY: "ready",
    TaskState.WAITING: "waiting",
    TaskState.STARTED: "in progress",
}


@dataclass(frozen=True)
class TaskChange:
    """One open task of an instance, and where it lands in the target version."""

    element_id: str
    name: str
    state: str  # ready, waiting, in progress
    maps_to: str | None  # the target's element id; None: the target has no such step
    changes: list[str] = field(default_factory=list)  # attributes of the step that differ


def _task_change(task: Any, maps_to: Any, changes: list[str] | None = None) -> TaskChange:
    """An open task, and the step of the target version it lands on (None: there is none)."""
    spec = task.task_spec
    return TaskChange(
        element_id(spec),
        element_name(spec) or element_id(spec),
        STATE_WORDS.get(task.state, "open"),
        element_id(maps_to) if maps_to is not None else None,
        changes or [],
    )


@dataclass(frozen=True)
class Precheck:
    instance_id: int
    case_id: int | None
    from_version: int | None  # of the process being moved (the instance's own, or one it calls)
    to_version: int
    can_move: bool
    reasons: list[str]  # why it cannot move (empty when it can)
    tasks: list[TaskChange] = field(default_factory=list)
    from_definition_id: int | None = None


@dataclass(frozen=True)
class SpecChanges:
    """What differs between two versions, element by element ("Name (id)")."""

    added: list[str]
    removed: list[str]
    changed: dict[str, list[str]]


@dataclass(frozen=True)
class Outcome:
    instance_id: int
    moved: bool
    reasons: list[str]
    from_version: int | None
    to_version: int


class _CannotMove(FrontdoorError):
    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class _ByBaseClass(dict[type, str]):
    """Serializer typenames that also know subclasses of registered classes.

    The cached specs' timer definitions and joins are Frontdoor subclasses (engine.timers,
    engine.joins); SpecDiff compares specs by their serialized form, so each must serialize as
    the SpiffWorkflow class it extends.
    """

    def get(self, cls: Any, default: Any = None) -> Any:
        if cls in self:
            return self[cls]
        for base in getattr(cls, "__mro__", ())[1:]:
            if base in self:
                self[cls] = self[base]
                return self[base]
        return default


_registry_lock = threading.Lock()
_registry: Any = None


def _diff_registry() -> Any:
    global _registry
    with _registry_lock:
        if _registry is None:
            registry = BpmnWorkflowSerializer.configure(dict(SPIFF_CONFIG))
            registry.typenames = _ByBaseClass(registry.typenames)
            _registry = registry
        return _registry


def _label(spec: Any) -> str:
    name = element_name(spec)
    return f"{name} ({element_id(spec)})" if name else element_id(spec)


def _visible(spec: Any) -> bool:
    """A BPMN element a process owner drew (not SpiffWorkflow's own start, end and join specs)."""
    return getattr(spec, "bpmn_id", None) is not None


def spec_changes(old: Any, new: Any) -> SpecChanges:
    """Elements added, removed and changed between two process specs."""
    diff = SpecDiff(_diff_registry(), old, new)
    return SpecChanges(
        added=sorted(_label(s) for s in diff.added if _visible(s)),
        removed=sorted(_label(s) for s in diff.removed if s is not None and _visible(s)),
        changed={_label(s): sorted(attrs) for s, attrs in diff.changed.items() if _visible(s)},
    )


def version_changes(engine: Engine, from_definition_id: int, to_definition_id: int) -> SpecChanges:
    with engine.db.read() as session:
        old = engine.specs.bundle(session, from_definition_id, {})
        new = engine.specs.bundle(session, to_definition_id, {})
        return spec_changes(old.spec, new.spec)


# --------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    definition_id: int  # the instance's own version after the move
    bundle: SpecBundle
    pins: dict[str, int]
    tasks: list[TaskChange]


@dataclass(frozen=True)
class _Move:
    """What moving one instance to ``target`` means: its own version, or a called process's pin."""

    definition_id: int  # the instance's own version afterwards
    from_definition_id: int  # the version of ``target.key`` it runs now
    pins: dict[str, int]


def _target(session: Session, target_definition_id: int) -> ProcessDefinition:
    target = session.get(ProcessDefinition, target_definition_id)
    if target is None:
        raise NotFound(f"there is no deployed process version {target_definition_id}; choose one listed")
    return target


def _move(engine: Engine, session: Session, instance: InstanceRef, target: ProcessDefinition) -> _Move:
    """Where the instance runs ``target.key`` now, and the definition and pins it would have after."""
    current = session.get(ProcessDefinition, instance.definition_id)
    assert current is not None
    old_pins = dict(instance.called_definitions or {})
    if current.key == target.key:
        definition_id, from_id, pins = target.id, current.id, {}
    elif target.key in old_pins:
        # A process this instance calls: the instance keeps its own version, the call is re-pinned.
        definition_id, from_id, pins = current.id, old_pins[target.key], {target.key: target.id}
    else:
        raise _CannotMove([f"it runs the process '{current.key}', which does not call '{target.key}'"])
    if instance.status != "running":
        raise _CannotMove([f"it is {instance.status}: only running cases move"])
    if from_id == target.id:
        raise _CannotMove([f"it is already on version {target.version}"])
    # Every other call keeps the version this instance pinned; what the target calls anew, the newest.
    # (A pin nothing calls any more is harmless: it only makes a spec available.)
    merged = {**engine.specs.resolve_calls(session, target), **old_pins, **pins}
    return _Move(definition_id, from_id, merged)


def _plan(
    engine: Engine,
    session: Session,
    instance: InstanceRef,
    workflow: Any,
    target: ProcessDefinition,
) -> _Plan:
    """Migrate ``workflow`` in memory to ``target``; say what changed and what stops it moving."""
    move = _move(engine, session, instance, target)
    pins = move.pins
    bundle = engine.specs.bundle(session, move.definition_id, pins)
    registry = _diff_registry()
    reasons: list[str] = []
    # (workflow or subprocess, its diffs, the new spec), for each one whose spec changes.
    moves: list[tuple[Any, WorkflowDiff, SpecDiff, Any]] = []
    subprocesses = list(workflow.subprocesses.values())
    for wf, new_spec in [(workflow, bundle.spec)] + [
        (sp, bundle.subprocess_specs.get(sp.spec.name)) for sp in subprocesses
    ]:
        if new_spec is wf.spec:
            continue
        if new_spec is None:
            reasons.append(
                f"it is inside '{wf.spec.description or wf.spec.name}', which version "
                f"{target.version} no longer has"
            )
            continue
        try:
            spec_diff = SpecDiff(registry, wf.spec, new_spec)
            moves.append((wf, WorkflowDiff(wf, spec_diff), spec_diff, new_spec))
        except (KeyError, AttributeError) as exc:  # a shape SpiffWorkflow's diff cannot align
            reasons.append(
                f"its place in '{wf.spec.name}' could not be matched to version {target.version} ({exc})"
            )
    if reasons:
        raise _CannotMove(reasons)

    tasks: list[TaskChange] = []
    diffs = {id(wf): (diff, spec_diff) for wf, diff, spec_diff, _ in moves}
    kept: dict[Any, tuple[dict[str, Any], Any]] = {}
    for task in workflow.get_tasks(state=OPEN):
        spec = task.task_spec
        if not _visible(spec):
            continue
        diff, spec_diff = diffs.get(id(task.workflow), (None, None))
        if diff is None or spec_diff is None:
            continue  # a part of the instance that does not change
        new = diff.alignment.get(task)
        changed: list[str] = []
        if new is not None:
            # Inputs and outputs change whenever a neighbour does: not a change to this step.
            changed = sorted(a for a in spec_diff.comparisons.get(spec, []) if a not in ("inputs", "outputs"))
        change = _task_change(task, new, changed)
        tasks.append(change)
        if new is None:
            reasons.append(
                f"'{change.name}' is {change.state} and "
                f"version {target.version} has no step '{change.element_id}' to move it to"
            )
        elif "typename" in changed or (task.state == TaskState.STARTED and "spec" in changed):
            # SpiffWorkflow's diff matches steps by shape as well as by id: an open task it would
            # land on another kind of element (a called process on a gateway) cannot go on there.
            reasons.append(
                f"'{change.name}' is {change.state} and "
                f"in version {target.version} its place is '{element_name(new) or element_id(new)}', "
                "a different kind of step" + (" or another called process" if "spec" in changed else "")
            )
        elif (
            task.state == TaskState.WAITING and "event_definition" not in changed
        ) or task.state == TaskState.READY:
            kept[task.id] = (dict(task.internal_data), task.data)
    if reasons:
        raise _CannotMove(reasons)

    for wf, diff, _, new_spec in moves:
        migrate_workflow(diff, wf, new_spec)
    workflow.subprocess_specs = bundle.subprocess_specs
    for task_id, (internal, data) in kept.items():
        task = workflow.tasks.get(task_id) or _in_subprocess(workflow, task_id)
        if task is not None and task.has_state(TaskState.READY | TaskState.WAITING):
            task.internal_data = internal
            task.data = data
    # Anything still on an old spec (the completed step the pruned history starts from) would
    # leave a state the target cannot restore.
    for wf, _, _, new_spec in moves:
        for task in wf.tasks.values():
            if new_spec.task_specs.get(task.task_spec.name) is not task.task_spec:
                passed = element_name(task.task_spec) or task.task_spec.name
                reasons.append(
                    f"the step it last passed, '{passed}', is not in version {target.version}, "
                    "so it could not go on from there"
                )
    if reasons:
        raise _CannotMove(sorted(set(reasons)))
    try:
        engine.runtime.load(engine.runtime.dump(workflow), bundle)
    except Exception as exc:  # whatever SpiffWorkflow refuses: the instance stays where it is
        raise _CannotMove([f"its state could not be restored on version {target.version} ({exc})"]) from exc
    return _Plan(move.definition_id, bundle, pins, tasks)


def _in_subprocess(workflow: Any, task_id: Any) -> Any:
    for sp in workflow.subprocesses.values():
        if task_id in sp.tasks:
            return sp.tasks[task_id]
    return None


# --------------------------------------------------------------------------- commands


def _instance(session: Session, instance_id: int) -> InstanceRef | None:
    row = session.execute(sa.select(*INSTANCE_COLUMNS).where(ProcessInstance.id == instance_id)).first()
    return InstanceRef(*row) if row else None


def _version(session: Session, definition_id: int | None) -> int | None:
    if definition_id is None:
        return None
    return session.scalar(sa.select(ProcessDefinition.version).where(ProcessDefinition.id == definition_id))


def _runs_now(session: Session, instance: InstanceRef, target: ProcessDefinition) -> int | None:
    """The version of ``target.key`` the instance runs now: its own, or the one it pinned a call to."""
    own = sa.select(ProcessDefinition.key).where(ProcessDefinition.id == instance.definition_id)
    key = session.scalar(own)
    if key == target.key:
        return instance.definition_id
    return (instance.called_definitions or {}).get(target.key)


def _check_ids(instance_ids: list[int]) -> list[int]:
    if not instance_ids:
        raise InvalidData("choose at least one case to move")
    return list(dict.fromkeys(int(i) for i in instance_ids))


def precheck(engine: Engine, instance_ids: list[int], target_definition_id: int) -> list[Precheck]:
    """For each instance: can it move to the target version, what changes for it, and if not, why.

    Reads only; nothing is written.
    """
    results = []
    with engine.db.read() as session:
        target = _target(session, target_definition_id)
        for instance_id in _check_ids(instance_ids):
            instance = _instance(session, instance_id)
            if instance is None:
                results.append(
                    Precheck(
                        instance_id, None, None, target.version, False, ["there is no such process instance"]
                    )
                )
                continue
            from_id = _runs_now(session, instance, target)
            from_version = _version(session, from_id)
            try:
                workflow = engine.runtime.load(
                    instance.state,
                    engine.specs.bundle(session, instance.definition_id, instance.called_definitions or {}),
                )
                plan = _plan(engine, session, instance, workflow, target)
            except _CannotMove as refusal:
                # Describe the open tasks even when the move is refused: it says what stops it.
                tasks = _describe(engine, session, instance, target)
                results.append(
                    Precheck(
                        instance_id,
                        instance.case_id,
                        from_version,
                        target.version,
                        False,
                        refusal.reasons,
                        tasks,
                        from_id,
                    )
                )
                continue
            results.append(
                Precheck(
                    instance_id, instance.case_id, from_version, target.version, True, [], plan.tasks, from_id
                )
            )
    return results


def _describe(
    engine: Engine, session: Session, instance: InstanceRef, target: ProcessDefinition
) -> list[TaskChange]:
    """The open tasks and where each would land, without deciding anything (for refusals)."""
    if instance.status != "running":
        return []
    try:
        bundle = engine.specs.bundle(session, instance.definition_id, instance.called_definitions or {})
        workflow = engine.runtime.load(instance.state, bundle)
        new = engine.specs.bundle(session, target.id, {}).spec
    except FrontdoorError:
        return []
    out = []
    for task in workflow.get_tasks(state=OPEN):
        spec = task.task_spec
        if not _visible(spec) or task.workflow.spec.name != target.key or task.workflow.spec is new:
            continue
        out.append(_task_change(task, new.task_specs.get(spec.name)))
    return out


def migrate(engine: Engine, instance_ids: list[int], target_definition_id: int, actor: str) -> list[Outcome]:
    """Move each instance that can move, one transaction per instance; the others stay untouched."""
    ids = _check_ids(instance_ids)
    with engine.db.read() as session:
        target_version = _target(session, target_definition_id).version
    return [
        _migrate_one(engine, instance_id, target_definition_id, target_version, actor) for instance_id in ids
    ]


def _migrate_one(
    engine: Engine, instance_id: int, target_id: int, target_version: int, actor: str
) -> Outcome:
    from_version: int | None = None
    try:
        with engine._transaction() as session:
            now = clock.now()
            loaded = engine._load(session, instance_id, None, lock=True, missing_ok=True)
            if loaded is None:
                raise _CannotMove(["there is no such process instance"])
            instance, workflow, _old, before = loaded
            target = _target(session, target_id)
            from_version = _version(session, _runs_now(session, instance, target))
            plan = _plan(engine, session, instance, workflow, target)
            command = CommandContext(actor, now)
            command.events.append(
                PendingEvent(
                    actor,
                    "instance.migrated",
                    instance.case_id,
                    instance.id,
                    data={
                        "process": target.key,
                        "from_version": from_version,
                        "to_version": target.version,
                        "tasks": [
                            {"element": t.element_id, "to": t.maps_to, "changes": t.changes}
                            for t in plan.tasks
                        ],
                    },
                )
            )
            engine._run_engine(workflow, command)
            case = engine._case(session, instance.case_id)
            Projector(session, command, instance, workflow, plan.bundle, case, engine.services, before).run()
            seen = instance.revision
            updated = session.execute(
                sa.update(ProcessInstance)
                .where(ProcessInstance.id == instance.id, ProcessInstance.revision == seen)
                .values(
                    definition_id=plan.definition_id,
                    called_definitions=plan.pins,
                    state=engine.runtime.dump(workflow),
                    revision=seen + 1,
                )
            )
            if getattr(updated, "rowcount", 1) != 1:
                raise Conflict("someone else changed this case at the same moment; check it again")
            instance.revision = seen + 1
            instance.definition_id = plan.definition_id
            engine._complete_if_done(session, command, instance, workflow)
            audit.append(session, command.events, now)
    except _CannotMove as refusal:
        return Outcome(instance_id, False, refusal.reasons, from_version, target_version)
    except FrontdoorError as exc:  # a conflict, or the target version failing as the case moved on
        return Outcome(instance_id, False, [str(exc)], from_version, target_version)
    return Outcome(instance_id, True, [], from_version, target_version)
