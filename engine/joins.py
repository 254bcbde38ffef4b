"""Parallel and inclusive joins that keep every branch's answers.

SpiffWorkflow 3.2 merges the branches at a join by laying each finished branch's whole
data over the next and then the last branch's whole data over everything.  A value the
last branch merely carried from before the split therefore overwrites what another
branch answered: two partners completing their checks in parallel, in a loop, lose one
answer (see sartography/SpiffWorkflow#440).  Here the join starts from the data at the
split and applies, in the order the branches finished, only what each branch changed.

Like the timer definitions, this is given to the parsed (cached) spec; stored state is
untouched.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.util.task import TaskState

_MISSING = object()


def _ancestors(task: Any) -> list[Any]:
    chain = []
    while task is not None:
        chain.append(task)
        task = task.parent
    return chain


def _common_ancestor(a: Any, b: Any) -> tuple[Any, int]:
    """The deepest task both descend from, and its depth (root = 0)."""
    seen = {t.id for t in _ancestors(a)}
    chain = _ancestors(b)
    for task in chain:
        if task.id in seen:
            return task, len(_ancestors(task)) - 1
    return chain[-1], 0


class MergingJoin:
    def _run_hook(self, my_task: Any) -> bool:
        # Finished arrivals at this join that my_task does not descend from: the other branches.
        candidates = [
            t
            for t in my_task.workflow.tasks.values()
            if t.task_spec == my_task.task_spec
            and t is not my_task
            and t.has_state(TaskState.FINISHED_MASK)
            and not my_task.is_descendant_of(t)
            and t.parent is not None
        ]
        # Keep this round's: they share the deepest split with my_task (earlier rounds of a loop
        # meet my_task only above their own join).
        scored = [(t, *_common_ancestor(my_task, t)) for t in candidates]
        deepest = max((depth for _, _, depth in scored), default=None)
        branches = [t for t, _, depth in scored if depth == deepest]
        split = scored[[t for t, _, _ in scored].index(branches[0])][1] if branches else my_task.parent
        base = split.data
        merged = deepcopy(base)
        ends = sorted((t.parent for t in branches), key=lambda t: t.last_state_change or 0)
        ends.append(my_task.parent)
        for end in ends:
            for key, value in end.data.items():
                if base.get(key, _MISSING) != value:
                    merged[key] = deepcopy(value)
            for key in base:
                if key not in end.data:
                    merged.pop(key, None)
        for task in branches:
            if task.has_state(TaskState.COMPLETED):
                task._drop_children(force=True)
        my_task.data = merged
        return True


_MERGING: dict[type, type] = {}


def adopt_joins(specs: list[Any]) -> None:
    for spec in specs:
        for task_spec in spec.task_specs.values():
            cls = type(task_spec)
            if isinstance(task_spec, UnstructuredJoin) and not issubclass(cls, MergingJoin):
                if cls.__name__ == "_EndJoin":
                    continue  # the end join has its own run hook (it publishes the data)
                merging = _MERGING.get(cls)
                if merging is None:
                    merging = _MERGING[cls] = type(f"Merging{cls.__name__}", (MergingJoin, cls), {})
                task_spec.__class__ = merging
