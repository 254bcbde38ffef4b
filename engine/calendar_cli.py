"""``frontdoor calendar ...``: ask the working calendar a question from the command line.

Dates are ``YYYY-MM-DD``; times are local to the calendar's time zone (Europe/London), written
``YYYY-MM-DDTHH:MM`` with no offset.  Each command prints its answer as the first word of the line.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.calendar import WorkingCalendar, load_calendar
from engine.registry import default_processes_dir

__all__ = ["calendar_group", "calendar_path", "load_default_calendar"]

if TYPE_CHECKING:  # ParamType is generic from click 8.4; older versions cannot subscript it at runtime
    _DateBase = click.ParamType[date]
    _DateTimeBase = click.ParamType[datetime]
    _TimeBase = click.ParamType[time]
    _HoursBase = click.ParamType[float]
else:
    _DateBase = _DateTimeBase = _TimeBase = _HoursBase = click.ParamType

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def calendar_path() -> Path:
    """``calendar.json`` in the processes folder (``$FRONTDOOR_PROCESSES_DIR`` or the shipped one)."""
    return default_processes_dir() / "calendar.json"


def load_default_calendar() -> WorkingCalendar:
    return load_calendar(calendar_path())


class _DateType(_DateBase):
    name = "date"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value).strip()
        if _DATE_RE.match(text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        self.fail(f"{value!r} is not a date; expected YYYY-MM-DD, e.g. 2023-04-28", param, ctx)


class _LocalDateTimeType(_DateTimeBase):
    name = "datetime"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        match = _DATETIME_RE.match(str(value).strip())
        if match:
            try:
                return datetime.combine(date.fromisoformat(match[1]), _parse_hhmm(match[2]))
            except ValueError:
                pass
        self.fail(
            f"{value!r} is not a local date and time; expected YYYY-MM-DDTHH:MM (Europe/London, "
            "no offset), e.g. 2023-12-22T17:30",
            param,
            ctx,
        )


class _TimeType(_TimeBase):
    name = "time"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> time:
        if isinstance(value, time):
            return value
        try:
            return _parse_hhmm(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a time; expected HH:MM (24-hour), e.g. 09:00", param, ctx)


class _HoursType(_HoursBase):
    name = "hours"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            hours = float(str(value))
        except ValueError:
            hours = math.nan
        if not math.isfinite(hours) or hours < 0:
            self.fail(
                f"{value!r} is not a number of hours; expected a number >= 0, e.g. 4 or 1.5", param, ctx
            )
        return hours


def _parse_hhmm(text: str) -> time:
    match = _TIME_RE.match(text)
    if match is None:
        raise ValueError(text)
    return time(int(match[1]), int(match[2]))


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def _day(d: date) -> str:
    return f"{d:%A} {d.day} {d:%B %Y}"


def _load() -> WorkingCalendar:
    try:
        return load_default_calendar()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _local(calendar: WorkingCalendar, instant: datetime) -> datetime:
    return instant.astimezone(calendar.timezone)


@click.group(name="calendar")
def calendar_group() -> None:
    """Working days and hours: weekends, bank holidays and council closures excluded.

    Dates are YYYY-MM-DD; date-times are YYYY-MM-DDTHH:MM in the calendar's local time
    (Europe/London), without an offset.  The calendar is processes/calendar.json
    (or $FRONTDOOR_PROCESSES_DIR/calendar.json).
    """


@calendar_group.command(name="add", context_settings={"ignore_unknown_options": True})
@click.argument("start", type=_DateType())
@click.argument("n", type=int)
def add_command(start: date, n: int) -> None:
    """Print the Nth working day after START (before it if N is negative)."""
    result = _load().add_working_days(start, n)
    direction = "after" if n >= 0 else "before"
    click.echo(
        f"{result.isoformat()}  ({result:%A}; {_plural(abs(n), 'working day')} {direction} {_day(start)})"
    )


@calendar_group.command(name="between")
@click.argument("start", type=_DateType())
@click.argument("end", type=_DateType())
def between_command(start: date, end: date) -> None:
    """Print the number of working days after START up to and including END."""
    count = _load().working_days_between(start, end)
    if end >= start:
        click.echo(f"{count}  (working days after {_day(start)} up to and including {_day(end)})")
    else:
        click.echo(
            f"{count}  (minus the working days from {_day(end)} up to but not including {_day(start)})"
        )


@calendar_group.command(name="next")
@click.argument("after", type=_LocalDateTimeType())
@click.option("--at", "at", type=_TimeType(), default=None, help="Local time HH:MM [default: opening time].")
def next_command(after: datetime, at: time | None) -> None:
    """Print the first time AT on a working day strictly after AFTER (YYYY-MM-DDTHH:MM, local)."""
    calendar = _load()
    at = calendar.day_start if at is None else at
    result = _local(calendar, calendar.next_working_time(after.replace(tzinfo=calendar.timezone), at))
    click.echo(
        f"{result:%Y-%m-%dT%H:%M}  ({_day(result)}, {calendar.timezone_name}; "
        f"first {at:%H:%M} on a working day after {_day(after)} {after:%H:%M})"
    )


@calendar_group.command(name="add-hours", context_settings={"ignore_unknown_options": True})
@click.argument("start", type=_LocalDateTimeType())
@click.argument("hours", type=_HoursType())
def add_hours_command(start: datetime, hours: float) -> None:
    """Print START plus HOURS of working time (counted only inside working hours)."""
    calendar = _load()
    result = _local(calendar, calendar.add_working_hours(start.replace(tzinfo=calendar.timezone), hours))
    click.echo(
        f"{result:%Y-%m-%dT%H:%M}  ({_day(result)}, {calendar.timezone_name}; "
        f"{_plural(hours, 'working hour')} after {_day(start)} {start:%H:%M}, "
        f"hours {calendar.day_start:%H:%M}-{calendar.day_end:%H:%M})"
    )
