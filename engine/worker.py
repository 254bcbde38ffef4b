"""The timer worker: a separate process that fires due timers.

APScheduler drives the loop.  A tick every second looks for due timers and fires them
(each in its own transaction, see :meth:`Engine.fire_next_due`); when the next timer
is due before the following tick, a one-off job is set for that exact moment, so a
timer fires within moments of falling due rather than at the next poll.  On start-up
the first tick fires everything that fell due while no worker ran, oldest first.
The web process never runs this.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import DBAPIError

from . import clock
from .core import Engine
from .errors import Conflict

log = logging.getLogger("frontdoor.worker")

TICK = timedelta(seconds=1)


def _retryable(exc: DBAPIError) -> bool:
    """Deadlock or serialization failure: the transaction was rolled back and may simply run again."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")


@dataclass(frozen=True)
class PeriodicJob:
    """Work the worker runs beside the timers, every ``every``: the command line passes these in
    (adapters' jobs, such as sending the outbox's e-mail), so the engine imports no adapter."""

    name: str
    run: Callable[[], object]
    every: timedelta = timedelta(seconds=5)


class TimerWorker:
    def __init__(self, engine: Engine, name: str | None = None, jobs: Sequence[PeriodicJob] = ()) -> None:
        self.engine = engine
        self.jobs = list(jobs)
        self.name = name or f"worker@{socket.gethostname()}:{os.getpid()}"
        self.fired = 0
        self._lock = threading.Lock()  # one drain at a time within this process
        self._scheduler: BlockingScheduler | None = None

    def drain(self, limit: int | None = None) -> int:
        """Fire every timer that is due now; return how many fired."""
        count = 0
        with self._lock:
            while limit is None or count < limit:
                try:
                    fired = self.engine.fire_next_due(self.name)
                except Conflict:
                    # Another command changed the same case first; the timer is still waiting.
                    continue
                except DBAPIError as exc:
                    if not _retryable(exc):
                        raise
                    log.info("database asked to retry (%s); trying again", type(exc.orig).__name__)
                    continue
                if fired is None:
                    break
                count += 1
        self.fired += count
        return count

    def tick(self) -> None:
        try:
            fired = self.drain()
            if fired:
                log.info("fired %d timer(s)", fired)
            self._schedule_precise()
        except Exception:  # the loop must outlive a bad moment (database restart, ...)
            log.exception("timer tick failed; retrying at the next tick")

    def run_jobs(self) -> None:
        """Run every extra job once (``worker --once``)."""
        for job in self.jobs:
            self._guarded(job)()

    @staticmethod
    def _guarded(job: PeriodicJob) -> Callable[[], None]:
        def run() -> None:
            try:
                job.run()
            except Exception:  # like the tick: one bad moment must not stop the worker
                log.exception("%s failed; trying again in %s", job.name, job.every)

        return run

    def _schedule_precise(self) -> None:
        if self._scheduler is None:
            return
        due = self.engine.next_timer_due()
        if due is None:
            return
        wait = due - clock.now()
        # Due already but not fired: another worker holds it; the next tick will look again.
        if timedelta(0) < wait < TICK:
            run_at = datetime.now(UTC) + wait
            self._scheduler.add_job(
                self.tick, DateTrigger(run_date=run_at), id="precise", replace_existing=True
            )

    def run_forever(self) -> None:
        scheduler = BlockingScheduler(timezone=UTC)
        self._scheduler = scheduler
        scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=TICK.total_seconds()),
            id="tick",
            next_run_time=datetime.now(UTC),  # start-up: fire what fell due while we were down
            max_instances=1,
            coalesce=True,
        )

        for job in self.jobs:
            scheduler.add_job(
                self._guarded(job),
                IntervalTrigger(seconds=job.every.total_seconds()),
                id=f"job:{job.name}",
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
            )

        def stop(_signum: int, _frame: Any) -> None:
            log.info("stopping after the timer in hand")
            scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("%s watching timers", self.name)
        scheduler.start()
