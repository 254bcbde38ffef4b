"""BPMN timers on Frontdoor's clock and working calendar.

SpiffWorkflow's timer event definitions ask ``datetime.now()`` and know nothing of
working days.  After parsing, each timer definition in a spec is given one of the
subclasses below (:func:`adopt_timers`), which ask :mod:`engine.clock` instead and
accept an instant wherever SpiffWorkflow expects a duration, so a process owner can
write ``working_days(15, since=strategy_discussion_at)`` in a timeDate, a timeDuration
or as the start of a timeCycle.  Timer event definitions belong to the (cached) spec,
never to the stored instance state, so this changes nothing in what is stored.

The functions a diagram may call (:func:`time_functions`) return ISO 8601 instants in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent

from . import clock
from .calendar import WorkingCalendar


def parse_instant(value: Any, calendar: WorkingCalendar) -> datetime:
    """An aware UTC instant from a datetime, a date (its start, local time) or an ISO string."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, date):
        instant = datetime.combine(value, time(0))
    elif isinstance(value, str):
        text = value.strip()
        try:
            instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date or date-time") from None
    else:
        raise ValueError(f"expected a date or date-time, got {type(value).__name__}")
    if instant.tzinfo is None:
        # A naive value in a diagram or a form means council local time.
        instant = instant.replace(tzinfo=calendar.timezone)
    return instant.astimezone(UTC)


def _since(value: Any, calendar: WorkingCalendar) -> datetime:
    return clock.now() if value is None else parse_instant(value, calendar)


def _parse_hhmm(value: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"at={value!r}: give a local time as HH:MM, e.g. '09:00'") from None


def time_functions(calendar: WorkingCalendar) -> dict[str, Callable[..., Any]]:
    """The working-time functions BPMN expressions may call, bound to ``calendar``."""

    def working_days(n: int, since: Any = None, at: str | None = None) -> str:
        """The end of the working day (or ``at``, local time) N working days after ``since``."""
        start = _since(since, calendar)
        local_day = start.astimezone(calendar.timezone).date()
        target = calendar.add_working_days(local_day, int(n))
        moment = _parse_hhmm(at) if at else calendar.day_end
        return datetime.combine(target, moment, calendar.timezone).astimezone(UTC).isoformat()

    def working_hours(n: float, since: Any = None) -> str:
        return calendar.add_working_hours(_since(since, calendar), float(n)).isoformat()

    def next_working_day(at: str = "09:00", since: Any = None) -> str:
        return calendar.next_working_time(_since(since, calendar), _parse_hhmm(at)).isoformat()

    def is_out_of_hours(at: Any = None) -> bool:
        """Outside working hours, at a weekend, on a bank holiday or a closure day."""
        local = _since(at, calendar).astimezone(calendar.timezone)
        if not calendar.is_working_day(local.date()):
            return True
        return not (calendar.day_start <= local.time() < calendar.day_end)

    def local_date(at: Any = None) -> str:
        """The council's calendar date (ISO) of an instant: what a form or a census means by "the date"."""
        return _since(at, calendar).astimezone(calendar.timezone).date().isoformat()

    def today() -> str:
        return clock.now().astimezone(calendar.timezone).date().isoformat()

    def now() -> str:
        return clock.now().isoformat()

    return {
        "working_days": working_days,
        "working_hours": working_hours,
        "next_working_day": next_working_day,
        "is_out_of_hours": is_out_of_hours,
        "local_date": local_date,
        "today": today,
        "now": now,
    }


def _value_to_instant(value: Any, start: datetime, calendar: WorkingCalendar) -> datetime:
    """A timer expression's value: an ISO duration counts from ``start``; anything else is an instant."""
    if isinstance(value, timedelta):
        return start + value
    if isinstance(value, str) and value.strip().upper().startswith("P"):
        parsed = TimerEventDefinition.parse_iso_duration(value.strip())
        delta: timedelta = TimerEventDefinition.get_timedelta_from_start(parsed, start)
        return start + delta
    return parse_instant(value, calendar)


# A plain ISO 8601 date-time, duration or repeating interval, written without quotes.
_ISO_LITERAL = re.compile(r"^[0-9RPTWYMDHSZ:/+.,-]+$")


class _ClockTimer:
    calendar: WorkingCalendar

    def _evaluate(self, my_task: Any) -> Any:
        expression = str(self.expression).strip()  # type: ignore[attr-defined]
        if _ISO_LITERAL.match(expression):
            return expression
        return my_task.workflow.script_engine.evaluate(my_task, expression)


class _ClockMoment(_ClockTimer):
    """A timer that fires once, at a moment worked out when it starts waiting."""

    def has_fired(self, my_task: Any) -> bool:
        """The moment is worked out once (from now), kept on the task, and compared with the clock."""
        value = my_task._get_internal_data("event_value")
        if value is None:
            value = _value_to_instant(self._evaluate(my_task), clock.now(), self.calendar).isoformat()
            my_task._set_internal_data(event_value=value)
        if datetime.fromisoformat(value) <= clock.now():
            my_task._set_internal_data(event_fired=True)
        return bool(my_task._get_internal_data("event_fired", False))


class ClockTimeDate(_ClockMoment, TimeDateEventDefinition):  # type: ignore[misc]
    """A timeDate: an instant (or, leniently, a duration from now)."""


class ClockDuration(_ClockMoment, DurationTimerEventDefinition):  # type: ignore[misc]
    """A timeDuration: a duration from now (or an instant, e.g. working_days(...))."""


class ClockCycle(_ClockTimer, CycleTimerEventDefinition):  # type: ignore[misc]
    """``R[n]/[start/]duration``; the start may be any instant expression."""

    def _parse_cycle(self, my_task: Any) -> dict[str, Any]:
        value = self._evaluate(my_task)
        text = str(value).strip()
        parts = text.upper().replace("--", "/").split("/")
        if not parts[0].startswith("R"):
            raise ValueError(f"{text!r} is not a repeating interval; write R[n]/[start/]duration, e.g. R/P1M")
        cycles = int(parts[0][1:]) if parts[0][1:] else -1
        now = clock.now()
        if len(parts) == 3:
            start = parse_instant(parts[1], self.calendar)
            duration_text = parts[2]
        elif len(parts) == 2:
            duration_text = parts[1]
            start = None
        else:
            raise ValueError(f"{text!r} is not a repeating interval; write R[n]/[start/]duration")
        parsed = TimerEventDefinition.parse_iso_duration(duration_text)
        duration = TimerEventDefinition.get_timedelta_from_start(dict(parsed), start or now)
        first = start if start is not None else now + duration
        return {"cycles": cycles, "next": first.isoformat(), "duration": duration.total_seconds()}

    def cycle_complete(self, my_task: Any) -> bool:
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            event_value = self._parse_cycle(my_task)
        ready = False
        if event_value["cycles"] != 0:
            next_event = datetime.fromisoformat(event_value["next"])
            if next_event <= clock.now():
                event_value["next"] = (next_event + timedelta(seconds=event_value["duration"])).isoformat()
                event_value["cycles"] -= 1
                ready = True
        else:
            my_task.internal_data.pop("event_value", None)
            my_task.internal_data["event_fired"] = True
        my_task._set_internal_data(event_value=event_value)
        return ready


_REPLACEMENTS: dict[type, type] = {
    TimeDateEventDefinition: ClockTimeDate,
    DurationTimerEventDefinition: ClockDuration,
    CycleTimerEventDefinition: ClockCycle,
}


def adopt_timers(specs: list[Any], calendar: WorkingCalendar) -> None:
    """Give every timer definition in these process specs Frontdoor's clock and calendar."""
    for spec in specs:
        for task_spec in spec.task_specs.values():
            definition = getattr(task_spec, "event_definition", None)
            if definition is None:
                continue
            inner = getattr(definition, "event_definitions", None)  # multiple / parallel-multiple events
            for candidate in [definition, *(inner or [])]:
                replacement = _REPLACEMENTS.get(type(candidate))
                if replacement is not None:
                    candidate.__class__ = replacement
                    candidate.calendar = calendar


def timer_due(task: Any) -> datetime | None:
    """When a waiting timer task will fire (UTC), from the value SpiffWorkflow evaluated, or None."""
    if not isinstance(task.task_spec, CatchingEvent):
        return None
    definition = task.task_spec.event_definition
    if not isinstance(definition, TimerEventDefinition):
        return None
    value = task._get_internal_data("event_value")
    if value is None:
        return None
    if isinstance(value, dict):
        return datetime.fromisoformat(value["next"]).astimezone(UTC)
    return datetime.fromisoformat(value).astimezone(UTC)


def timer_kind(task: Any) -> str:
    definition = task.task_spec.event_definition
    if isinstance(definition, CycleTimerEventDefinition):
        return "cycle"
    if isinstance(definition, DurationTimerEventDefinition):
        return "duration"
    return "date"
