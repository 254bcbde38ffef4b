"""Working days and working hours.

A working day is Monday to Friday, not a bank holiday (the ``holidays`` package, by default
GB subdivision ENG) and not one of the configured closure days.  Working hours are a daily
window (default 09:00-17:00) in a named time zone (default Europe/London).  Instants go in
as aware datetimes and come out as aware datetimes in UTC.

"N working days after D" is the Nth working day strictly after D: D itself never counts.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

__all__ = ["WorkingCalendar", "calendar_from_dict", "load_calendar"]

DEFAULT_TIMEZONE = "Europe/London"
DEFAULT_DAY_START = time(9, 0)
DEFAULT_DAY_END = time(17, 0)
DEFAULT_COUNTRY = "GB"
DEFAULT_SUBDIVISION = "ENG"

_ONE_DAY = timedelta(days=1)
# Guard against a configuration that closes every day (the searches would never end).
_MAX_CONSECUTIVE_CLOSED_DAYS = 5 * 366
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class WorkingCalendar:
    """Weekends, bank holidays and council closures, plus daily working hours."""

    def __init__(
        self,
        *,
        timezone: str = DEFAULT_TIMEZONE,
        day_start: time = DEFAULT_DAY_START,
        day_end: time = DEFAULT_DAY_END,
        country: str = DEFAULT_COUNTRY,
        subdivision: str | None = DEFAULT_SUBDIVISION,
        closures: Mapping[date, str] | Iterable[date] = (),
        recurring_closures: Mapping[tuple[int, int], str] | Iterable[tuple[int, int]] = (),
    ) -> None:
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        for name, value in (("day_start", day_start), ("day_end", day_end)):
            if value.tzinfo is not None:
                raise ValueError(f"{name} must be a local time without tzinfo, got {value.isoformat()}")
        if not day_start < day_end:
            raise ValueError(
                f"working hours must start before they end, got {day_start:%H:%M}-{day_end:%H:%M}"
            )
        self._timezone_name = timezone
        self._day_start = day_start
        self._day_end = day_end
        self._country = country
        self._subdivision = subdivision
        self._closures: dict[date, str] = _with_reasons(closures)
        self._recurring: dict[tuple[int, int], str] = _with_reasons(recurring_closures)
        for month, day in self._recurring:
            _check_month_day(month, day)
        try:  # fail now, not in the middle of a process, on a bad country/subdivision
            holidays.country_holidays(country, subdiv=subdivision)
        except NotImplementedError as exc:
            raise ValueError(f"no bank holidays known for {country}/{subdivision}: {exc}") from exc
        self._holiday_years: dict[int, dict[date, str]] = {}
        self._lock = threading.Lock()

    # -- configuration -------------------------------------------------------------------------

    @property
    def timezone(self) -> ZoneInfo:
        return self._tz

    @property
    def timezone_name(self) -> str:
        return self._timezone_name

    @property
    def day_start(self) -> time:
        return self._day_start

    @property
    def day_end(self) -> time:
        return self._day_end

    def __repr__(self) -> str:
        return (
            f"WorkingCalendar(timezone={self._timezone_name!r}, hours={self._day_start:%H:%M}-"
            f"{self._day_end:%H:%M}, holidays={self._country}/{self._subdivision}, "
            f"closures={len(self._closures)}, recurring_closures={len(self._recurring)})"
        )

    # -- days ----------------------------------------------------------------------------------

    def _holidays_for(self, year: int) -> dict[date, str]:
        cached = self._holiday_years.get(year)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._holiday_years.get(year)
            if cached is None:
                found = holidays.country_holidays(self._country, subdiv=self._subdivision, years=year)
                cached = {d: str(name) for d, name in found.items() if d.year == year}
                self._holiday_years[year] = cached
            return cached

    def bank_holidays(self, year: int) -> dict[date, str]:
        """Bank holidays in ``year`` that fall Monday to Friday: the days off, as GOV.UK lists them."""
        return {d: n for d, n in sorted(self._holidays_for(year).items()) if d.weekday() < 5}

    def non_working_reason(self, d: date) -> str | None:
        """Why ``d`` is not a working day ("Saturday", "Good Friday", a closure reason), or None."""
        if d.weekday() >= 5:
            return f"{d:%A}"
        holiday = self._holidays_for(d.year).get(d)
        if holiday is not None:
            return holiday
        closure = self._closures.get(d)
        if closure is not None:
            return closure
        return self._recurring.get((d.month, d.day))

    def is_working_day(self, d: date) -> bool:
        return self.non_working_reason(d) is None

    def _step_to_working_day(self, d: date, step: timedelta) -> date:
        """The first working day strictly after (step +1 day) or before (-1 day) ``d``."""
        for _ in range(_MAX_CONSECUTIVE_CLOSED_DAYS):
            d += step
            if self.is_working_day(d):
                return d
        raise ValueError(f"no working day within {_MAX_CONSECUTIVE_CLOSED_DAYS} days of {d}")

    def add_working_days(self, d: date, n: int) -> date:
        """The nth working day strictly after ``d`` (strictly before if n < 0); ``d`` if n == 0."""
        step = _ONE_DAY if n >= 0 else -_ONE_DAY
        for _ in range(abs(n)):
            d = self._step_to_working_day(d, step)
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end; if end < start, minus those with end <= d < start.

        This makes it the inverse of :meth:`add_working_days`:
        ``working_days_between(d, add_working_days(d, n)) == n`` for every n.
        """
        if end >= start:
            first, last, sign = start + _ONE_DAY, end, 1
        else:
            first, last, sign = end, start - _ONE_DAY, -1
        count = 0
        d = first
        while d <= last:
            count += self.is_working_day(d)
            d += _ONE_DAY
        return sign * count

    # -- instants ------------------------------------------------------------------------------

    def _local(self, d: date, t: time) -> datetime:
        # fold=0: a time repeated when clocks go back means its first occurrence; a time skipped when
        # they go forward is read with the offset before the change (01:30 GMT == 02:30 BST).
        return datetime.combine(d, t, tzinfo=self._tz).astimezone(UTC)

    def _window(self, d: date) -> tuple[datetime, datetime]:
        return self._local(d, self._day_start), self._local(d, self._day_end)

    def next_working_time(self, after: datetime, at: time | None = None) -> datetime:
        """The first instant strictly after ``after`` that is local time ``at`` on a working day.

        ``at`` defaults to the opening time.  Returns an aware datetime in UTC.
        """
        after_utc = _require_aware(after, "after")
        at = self._day_start if at is None else at
        if at.tzinfo is not None:
            raise ValueError(f"at must be a local time without tzinfo, got {at.isoformat()}")
        d = after_utc.astimezone(self._tz).date()
        if not self.is_working_day(d):
            d = self._step_to_working_day(d, _ONE_DAY)
        while True:
            candidate = self._local(d, at)
            if candidate > after_utc:
                return candidate
            d = self._step_to_working_day(d, _ONE_DAY)

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """``start`` plus ``hours`` of working time, counted only inside working hours on working days.

        Counting begins at ``start`` if that is inside working hours, otherwise at the next opening.
        A deadline falling exactly at closing time stays at closing time.  Returns an aware UTC datetime.
        """
        cursor = _require_aware(start, "start")
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours):
            raise ValueError(f"hours must be a finite number, got {hours!r}")
        if hours < 0:
            raise ValueError(f"hours must not be negative, got {hours}")
        remaining = timedelta(hours=hours)
        d = cursor.astimezone(self._tz).date()
        if not self.is_working_day(d):
            d = self._step_to_working_day(d, _ONE_DAY)
        while True:
            opens, closes = self._window(d)
            if cursor < closes:
                cursor = max(cursor, opens)
                if cursor + remaining <= closes:
                    return cursor + remaining
                remaining -= closes - cursor
            d = self._step_to_working_day(d, _ONE_DAY)


def _require_aware(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name}={instant.isoformat()} has no time zone; pass an aware datetime")
    return instant.astimezone(UTC)


_K = TypeVar("_K")


def _with_reasons(items: Mapping[_K, str] | Iterable[_K]) -> dict[_K, str]:
    if isinstance(items, Mapping):
        return {key: str(reason) for key, reason in items.items()}
    return {key: "Closure" for key in items}


def _check_month_day(month: int, day: int) -> None:
    try:
        date(2000, month, day)  # a leap year, so 29 February is allowed
    except (TypeError, ValueError) as exc:
        raise ValueError(f"month={month!r}, day={day!r} is not a day of the year") from exc


# -- configuration files ---------------------------------------------------------------------------

_TOP_LEVEL_KEYS = {"timezone", "working_hours", "holidays", "closures", "recurring_closures"}


class _Fields:
    """Reads one JSON object, reporting problems as ``<source>: field '<path>': ...``."""

    def __init__(self, source: str, path: str, data: object, allowed: set[str]) -> None:
        self.source, self.path = source, path
        if not isinstance(data, dict):
            raise self.error(f"expected a JSON object, got {_describe(data)}")
        self.data: dict[str, object] = {str(k): v for k, v in data.items()}
        unknown = sorted(k for k in self.data if k not in allowed and not k.startswith("_"))
        if unknown:
            raise self.error(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {sorted(allowed)}")

    def error(self, message: str, key: str | None = None) -> ValueError:
        where = ".".join(p for p in (self.path, key) if p)
        prefix = f"{self.source}: field '{where}'" if where else self.source
        return ValueError(f"{prefix}: {message}")

    def string(self, key: str, default: str | None, *, nullable: bool = False) -> str | None:
        if key not in self.data:
            return default
        value = self.data[key]
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(f"expected a non-empty string, got {_describe(value)}", key)
        return value

    def integer(self, key: str) -> int:
        if key not in self.data:
            raise self.error("is required", key)
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected a whole number, got {_describe(value)}", key)
        return value

    def hhmm(self, key: str, default: time) -> time:
        value = self.data.get(key, f"{default:%H:%M}")
        match = _HHMM.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.error(f'expected a time as "HH:MM" (24-hour), got {_describe(value)}', key)
        return time(int(match[1]), int(match[2]))

    def iso_date(self, key: str) -> date:
        if key not in self.data:
            raise self.error("is required", key)
        value = self.data[key]
        try:
            if not isinstance(value, str) or not _ISO_DATE.match(value):
                raise ValueError
            return date.fromisoformat(value)
        except ValueError:
            raise self.error(f'expected a date as "YYYY-MM-DD", got {_describe(value)}', key) from None

    def objects(self, key: str, allowed: set[str]) -> list[_Fields]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"expected a list, got {_describe(value)}", key)
        base = f"{self.path}.{key}" if self.path else key
        return [_Fields(self.source, f"{base}[{i}]", item, allowed) for i, item in enumerate(value)]

    def sub(self, key: str, allowed: set[str]) -> _Fields:
        base = f"{self.path}.{key}" if self.path else key
        return _Fields(self.source, base, self.data.get(key, {}), allowed)


def _describe(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def calendar_from_dict(data: object, source: str = "calendar config") -> WorkingCalendar:
    """Build a calendar from parsed JSON (the format of ``processes/calendar.json``)."""
    top = _Fields(source, "", data, _TOP_LEVEL_KEYS)
    timezone = top.string("timezone", DEFAULT_TIMEZONE)
    assert timezone is not None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        message = f'unknown time zone {timezone!r} (expected an IANA name such as "Europe/London")'
        raise top.error(message, "timezone") from None

    hours = top.sub("working_hours", {"start", "end"})
    day_start = hours.hhmm("start", DEFAULT_DAY_START)
    day_end = hours.hhmm("end", DEFAULT_DAY_END)
    if not day_start < day_end:
        raise hours.error(f"start {day_start:%H:%M} must be before end {day_end:%H:%M}")

    hol = top.sub("holidays", {"country", "subdivision"})
    country = hol.string("country", DEFAULT_COUNTRY)
    assert country is not None
    subdivision = hol.string("subdivision", DEFAULT_SUBDIVISION, nullable=True)
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError as exc:
        raise hol.error(f"not supported by the holidays package: {exc}") from None

    closures: dict[date, str] = {}
    for item in top.objects("closures", {"date", "reason"}):
        closures[item.iso_date("date")] = item.string("reason", "Closure") or "Closure"

    recurring: dict[tuple[int, int], str] = {}
    for item in top.objects("recurring_closures", {"month", "day", "reason"}):
        month, day = item.integer("month"), item.integer("day")
        try:
            _check_month_day(month, day)
        except ValueError as exc:
            raise item.error(str(exc)) from None
        recurring[(month, day)] = item.string("reason", "Closure") or "Closure"

    return WorkingCalendar(
        timezone=timezone,
        day_start=day_start,
        day_end=day_end,
        country=country,
        subdivision=subdivision,
        closures=closures,
        recurring_closures=recurring,
    )


def load_calendar(path: Path | None) -> WorkingCalendar:
    """Read a calendar JSON file; ``None`` gives the defaults (Europe/London, 09:00-17:00, GB/ENG).

    Raises ValueError naming the file (and the field) when it is missing or invalid.
    """
    if path is None:
        return WorkingCalendar()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"calendar file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"calendar file {path} could not be read: {exc}") from None
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ValueError(f"{path}: not valid JSON ({where}): {exc.msg}") from None
    return calendar_from_dict(data, source=str(path))
