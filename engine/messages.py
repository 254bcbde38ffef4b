"""BPMN messages: who is waiting for which message, and delivering one.

An instance waits for a message at a message catch event, a receive task, a message boundary
event (each a WAITING SpiffWorkflow task), or, for as long as it runs, at the message start of
one of its event subprocesses.  Each such place is a row of ``message_subscription``, kept in
step by the projection like the task and timer rows, with the message's name and a correlation
key: the element's ``correlationKey`` property, an expression evaluated in the element's data
(for an event subprocess start, the data the instance started with).  ``Engine.correlate_message``
finds the rows by (name, key), locks each instance and lets SpiffWorkflow catch the message.

Keys are compared as strings.  :func:`subject_key` makes one from identifying values (a name
and a date, say) so that the diagram and a system sending the message compute the same key.

SpiffWorkflow starts event subprocesses of the top process only (not of a called process):
put a message event subprocess in the process an instance is started with.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.task import Task as SpiffTask
from SpiffWorkflow.util.task import TaskState
from sqlalchemy.engine import Connection

from .models import CaseRecord, MessageSubscription, ProcessInstance

CORRELATION_KEY = "correlationKey"  # the element property whose expression gives the key
MAX_KEY = 255


def subject_key(*parts: Any) -> str:
    """A correlation key from identifying values: each part trimmed, case- and accent-folded,
    inner spaces squeezed; parts joined with ``|``.  ``subject_key(" Ella  STONE", "2014-05-01")``
    is ``"ella stone|2014-05-01"``."""
    folded = []
    for part in parts:
        text = unicodedata.normalize("NFKD", "" if part is None else str(part))
        text = "".join(c for c in text if not unicodedata.combining(c))
        folded.append(" ".join(text.casefold().split()))
    return "|".join(folded)


@dataclass(frozen=True)
class Subscription:
    message_name: str
    correlation_key: str | None
    element_id: str
    task_id: str | None  # None: an event subprocess's message start

    @property
    def slot(self) -> str:
        return self.task_id or f"start:{self.element_id}"


def _message(spec: Any) -> MessageEventDefinition | None:
    definition = getattr(spec, "event_definition", None)
    return definition if isinstance(definition, MessageEventDefinition) else None


def _event_subprocess_starts(workflow: BpmnWorkflow) -> list[Any]:
    """Message start events of the top process's event subprocesses."""
    starts = []
    for name in getattr(workflow.spec.start, "trigger_specs", []):
        spec = workflow.subprocess_specs.get(name)
        for start in getattr(spec, "bpmn_start_events", []) if spec is not None else []:
            if _message(start) is not None:
                starts.append(start)
    return starts


_HAS_MESSAGES: dict[int, tuple[Any, bool]] = {}


def may_wait_for_messages(spec: Any, subprocess_specs: dict[str, Any]) -> bool:
    """Whether any element of this version (or what it calls) catches a message; cached per spec."""
    cached = _HAS_MESSAGES.get(id(spec))
    if cached is not None and cached[0] is spec:
        return bool(cached[1])
    found = any(
        isinstance(task_spec, CatchingEvent) and _message(task_spec) is not None
        for process in (spec, *subprocess_specs.values())
        for task_spec in process.task_specs.values()
    )
    _HAS_MESSAGES[id(spec)] = (spec, found)
    return found


def live(
    workflow: BpmnWorkflow, running: bool, evaluate: Callable[[SpiffTask, str], Any]
) -> dict[str, Subscription]:
    """Where the workflow waits for a message now, by slot."""
    if not running or workflow.completed:
        return {}
    found: dict[str, Subscription] = {}
    for task in workflow.get_tasks(state=TaskState.WAITING):
        definition = _message(task.task_spec)
        if definition is None or not isinstance(task.task_spec, CatchingEvent):
            continue
        subscription = Subscription(
            definition.name, _key(task, task.task_spec, evaluate), _element(task.task_spec), str(task.id)
        )
        found[subscription.slot] = subscription
    for start in _event_subprocess_starts(workflow):
        definition = _message(start)
        assert definition is not None
        subscription = Subscription(
            definition.name, _key(workflow.task_tree, start, evaluate), _element(start), None
        )
        found[subscription.slot] = subscription
    return found


def _element(spec: Any) -> str:
    return str(getattr(spec, "bpmn_id", None) or spec.name)


def _key(task: SpiffTask, spec: Any, evaluate: Callable[[SpiffTask, str], Any]) -> str | None:
    properties = (getattr(spec, "extensions", None) or {}).get("properties") or {}
    expression = properties.get(CORRELATION_KEY)
    if not expression:
        return None
    value = evaluate(task, expression)
    return None if value in (None, "") else str(value)[:MAX_KEY]


def sync(
    connection: Connection,
    instance_id: int,
    case_id: int | None,
    now: datetime,
    subscriptions: dict[str, Subscription],
) -> None:
    """Make the instance's rows match ``subscriptions``: insert, re-key and delete what changed."""
    rows = connection.execute(
        sa.select(
            MessageSubscription.id,
            MessageSubscription.task_id,
            MessageSubscription.element_id,
            MessageSubscription.correlation_key,
        ).where(MessageSubscription.instance_id == instance_id)
    ).all()
    seen: set[str] = set()
    stale: list[int] = []
    for row_id, task_id, element, key in rows:
        slot = task_id or f"start:{element}"
        wanted = subscriptions.get(slot)
        if wanted is None or slot in seen:
            stale.append(row_id)
            continue
        seen.add(slot)
        if wanted.correlation_key != key:  # the data it is computed from changed
            connection.execute(
                sa.update(MessageSubscription)
                .where(MessageSubscription.id == row_id)
                .values(correlation_key=wanted.correlation_key)
            )
    if stale:
        connection.execute(sa.delete(MessageSubscription).where(MessageSubscription.id.in_(stale)))
    new = [
        dict(
            instance_id=instance_id,
            case_id=case_id,
            message_name=s.message_name,
            correlation_key=s.correlation_key,
            element_id=s.element_id,
            task_id=s.task_id,
            created_at=now,
        )
        for slot, s in subscriptions.items()
        if slot not in seen
    ]
    if new:
        connection.execute(sa.insert(MessageSubscription), new)


def waiting_instances(connection: Connection, name: str, correlation_key: str) -> list[int]:
    """Running instances subscribed to (name, key), in id order (the order they are locked in)."""
    return list(
        connection.scalars(
            sa.select(MessageSubscription.instance_id)
            .join(ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id)
            .where(
                MessageSubscription.message_name == name,
                MessageSubscription.correlation_key == correlation_key,
                ProcessInstance.status == "running",
            )
            .distinct()
            .order_by(MessageSubscription.instance_id)
        )
    )


def deliver(workflow: BpmnWorkflow, name: str, payload: dict[str, Any]) -> int:
    """Let the workflow catch the message; return how many elements caught it (0: none waits now)."""
    definition = next(
        (
            d
            for d in (
                *(_message(t.task_spec) for t in workflow.get_tasks(state=TaskState.WAITING)),
                *(_message(s) for s in _event_subprocess_starts(workflow)),
            )
            if d is not None and d.name == name
        ),
        None,
    )
    if definition is None:
        return 0
    # The element's own definition (its class is what SpiffWorkflow matches on), with our payload.
    caught: int = workflow.event_manager.catch(BpmnEvent(definition, payload=payload), internal=False)
    return caught


def waiting_cases(connection: Connection, name: str, correlation_key: str) -> list[tuple[str, str | None]]:
    """(case reference, allocated worker) of the open cases whose running instances wait for this."""
    return [
        (reference, worker)
        for reference, worker in connection.execute(
            sa.select(CaseRecord.reference, CaseRecord.worker)
            .join(ProcessInstance, ProcessInstance.case_id == CaseRecord.id)
            .join(MessageSubscription, MessageSubscription.instance_id == ProcessInstance.id)
            .where(
                MessageSubscription.message_name == name,
                MessageSubscription.correlation_key == correlation_key,
                ProcessInstance.status == "running",
                CaseRecord.status == "open",
            )
            .distinct()
            .order_by(CaseRecord.reference)
        )
    ]
