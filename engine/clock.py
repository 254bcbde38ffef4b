"""The one way Frontdoor asks for "now".

Every instant is an aware ``datetime`` in UTC.  Tests and simulations swap the
process-wide clock for a :class:`FakeClock` and move time explicitly; nothing
else in the code base calls ``datetime.now()``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to.  Thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = _require_aware(instant).astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now = self._now + delta
            return self._now


def _require_aware(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{instant.isoformat()} has no time zone; Frontdoor only handles aware instants")
    return instant


_clock: Clock = SystemClock()


def now() -> datetime:
    """The current instant (UTC) from the process-wide clock."""
    return _clock.now()


def get_clock() -> Clock:
    return _clock


def set_clock(clock: Clock) -> Clock:
    """Install ``clock`` process-wide and return the previous one (for tests to restore)."""
    global _clock
    previous, _clock = _clock, clock
    return previous
