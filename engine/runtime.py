"""SpiffWorkflow, as Frontdoor keeps it.

Two things differ from SpiffWorkflow's defaults, both so that a step costs the
same on a case's first day as on its hundredth:

* instance state is serialized without the spec: the parsed spec of each
  deployed version is cached in memory and handed back in on restore;
* completed history is pruned after every command (:func:`prune`).  The audit
  trail and the task table keep the history; the workflow keeps only what it
  needs to go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task as SpiffTask
from SpiffWorkflow.util.task import TaskState

from .expressions import RestrictedEnvironment


@dataclass(frozen=True)
class SpecBundle:
    """A deployed version, parsed: its process spec and the specs it may call."""

    definition_id: int
    key: str
    spec: Any
    subprocess_specs: dict[str, Any]


class _WorkflowWithoutSpec(BpmnWorkflowConverter):  # type: ignore[misc]
    """Leaves the spec out of the serialization; :meth:`Runtime.load` puts the cached one back."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct


class Runtime:
    def __init__(self, functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        config = dict(SPIFF_CONFIG)
        config[BpmnWorkflow] = _WorkflowWithoutSpec
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))
        self.script_engine = PythonScriptEngine(environment=RestrictedEnvironment(functions))

    def new_workflow(self, bundle: SpecBundle) -> BpmnWorkflow:
        return BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=self.script_engine)

    def dump(self, workflow: BpmnWorkflow) -> str:
        prune(workflow)
        return str(self.serializer.serialize_json(workflow))

    def load(self, state: str, bundle: SpecBundle) -> BpmnWorkflow:
        dct = json.loads(state)
        self.serializer.migrate(dct)
        # The registry restores anything that is not a dict as it is: the cached spec objects.
        dct["spec"] = bundle.spec
        dct["subprocess_specs"] = bundle.subprocess_specs
        workflow: BpmnWorkflow = self.serializer.from_dict(dct)
        workflow.script_engine = self.script_engine
        return workflow


def find_task(workflow: BpmnWorkflow, task_id: str) -> SpiffTask | None:
    """The task with this id, or None: gone (pruned, or never there) is an answer, not an error."""
    try:
        task: SpiffTask | None = workflow.get_task_from_id(UUID(task_id))
    except TaskNotFoundException:
        return None
    return task


def _subtree_is_finished(task: SpiffTask) -> bool:
    return all(t.has_state(TaskState.FINISHED_MASK) for t in _walk(task))


def _walk(task: SpiffTask) -> list[SpiffTask]:
    out, stack = [], [task]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(current.children)
    return out


def prune(workflow: BpmnWorkflow) -> int:
    """Drop completed history that nothing can reach again; return how many tasks went.

    Finds the deepest completed task that every unfinished task descends from and
    hangs it directly under the root, dropping what lay between and every finished
    branch beside it.  Joins only look at unfinished branches, boundary events at
    their own split (always unfinished while the activity runs), and data flows
    from parent to child, so the remaining tree behaves as the whole one did.
    """
    removed = _prune_one(workflow, workflow)
    for subprocess in list(workflow.subprocesses.values()):
        removed += _prune_one(workflow, subprocess)
    return removed


def _prune_one(top: BpmnWorkflow, wf: Any) -> int:
    root = wf.task_tree
    anchor = root
    while True:
        unfinished = [c for c in anchor.children if not _subtree_is_finished(c)]
        if len(unfinished) != 1 or not unfinished[0].has_state(TaskState.COMPLETED):
            break
        anchor = unfinished[0]
    # Keep root -> start: the tree must keep its own first step for SpiffWorkflow's bookkeeping.
    if anchor is root or anchor.parent is root:
        return 0
    keep = {t.id for t in _walk(anchor)}
    keep.add(root.id)
    dropped = [task_id for task_id in wf.tasks if task_id not in keep]
    # The anchor carries its full data; it becomes the data its subtree's deltas are taken from.
    anchor_data = anchor.data
    for task_id in dropped:
        del wf.tasks[task_id]
        _drop_subprocess(top, task_id)
    root._children = [anchor.id]
    anchor._parent = root.id
    anchor.data = anchor_data
    if wf.last_task is not None and wf.last_task.id not in keep:
        wf.last_task = anchor
    return len(dropped)


def _drop_subprocess(top: BpmnWorkflow, task_id: UUID) -> None:
    subprocess = top.subprocesses.pop(task_id, None)
    if subprocess is None:
        return
    for inner_id in list(subprocess.tasks):
        _drop_subprocess(top, inner_id)
