"""Several timer workers on one PostgreSQL database, as separate processes: every timer fires exactly
once, including when a worker is SIGKILLed in the middle of firing one.

The fake clock is process-local, so the workers (child processes) run on the real clock: the
instances are started here on a fake clock set in 2022, which makes every timer they wait on long
overdue for the workers.  Nothing here asserts a duration.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from apscheduler.triggers.date import DateTrigger

from engine import audit
from engine.clock import FakeClock
from engine.core import Engine
from engine.models import AuditEvent, Task, Timer
from engine.worker import TICK, TimerWorker
from tests.conftest import fixture_bpmn, make_engine

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FRONTDOOR = ROOT / ".venv" / "bin" / "frontdoor"
PYTHON = sys.executable
LONDON = ZoneInfo("Europe/London")
INSTANCES = 60
WAIT_LIMIT = 120.0  # seconds: a safety net for a hung child, never a measured figure


@pytest.fixture
def pg_engine(postgres_url: str, fake_clock: FakeClock) -> Iterator[Engine]:
    built = make_engine(postgres_url)
    built.deploy([fixture_bpmn("timer_at.bpmn"), fixture_bpmn("escalation.bpmn")], "olive.owner")
    yield built
    built.db.dispose()


def start_single_timers(engine: Engine, clock: FakeClock, count: int) -> None:
    """``count`` instances, each waiting on one timer, due a minute apart in September 2022."""
    base = datetime(2022, 9, 16, 10, 0, tzinfo=LONDON)
    clock.set(base - timedelta(days=1))
    for i in range(count):
        due = base + timedelta(minutes=i)
        engine.start("timer_at", "sam.screener", data={"due_at": due.isoformat()})


def start_escalations(engine: Engine, clock: FakeClock, count: int) -> None:
    """``count`` contacts from 16 September 2022, each with three boundary timers on its decision."""
    received = datetime(2022, 9, 16, 10, 0, tzinfo=LONDON)
    clock.set(received)
    for i in range(count):
        engine.start(
            "escalation",
            "sam.screener",
            case_reference=f"C-{i}",
            team_key="mash",
            data={"received_at": received.isoformat()},
        )


def worker_command(url: str) -> list[str]:
    return [str(FRONTDOOR), "--database-url", url, "worker", "--once"]


def child_command(url: str, marker: Path, mode: str, release: Path | None = None) -> list[str]:
    """A worker process whose first fire stops half-way, after writing ``marker``.

    mode "hang": Engine._save (the end of the first fire, the timer row and the instance locked)
    sleeps until the process is killed.  mode "pause": Runtime.load (the instance just locked)
    waits until ``release`` exists, then carries on.
    """
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from engine.core import Engine
        from engine.db import Database
        from engine.runtime import Runtime
        from engine.worker import TimerWorker

        marker, mode, release = Path({str(marker)!r}), {mode!r}, {str(release)!r}

        if mode == "hang":
            def hang(self, session, instance, workflow):
                marker.write_text(str(instance.id))
                while True:
                    time.sleep(1)
            Engine._save = hang
        else:
            original = Runtime.load
            def pause(self, state, bundle):
                if not marker.exists():
                    marker.write_text(str(os.getpid()))
                    deadline = time.monotonic() + {WAIT_LIMIT}
                    while not Path(release).exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
                return original(self, state, bundle)
            Runtime.load = pause

        fired = TimerWorker(Engine(Database({url!r})), name="held-worker").drain()
        print(f"fired {{fired}} timer(s)")
        """
    )
    return [PYTHON, "-c", script]


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def wait_all(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    return [p.wait(timeout=WAIT_LIMIT) for p in processes]


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def timer_statuses(engine: Engine) -> Counter[str]:
    with engine.db.read() as session:
        return Counter(session.scalars(sa.select(Timer.status)))


def fired_per_timer(engine: Engine) -> Counter[int]:
    with engine.db.read() as session:
        data = session.scalars(sa.select(AuditEvent.data).where(AuditEvent.action == "timer.fired"))
        return Counter(int(d["timer"]) for d in data)


def assert_each_fired_once(engine: Engine, expected: int) -> None:
    with engine.db.read() as session:
        ids = list(session.scalars(sa.select(Timer.id)))
        assert audit.verify(session) is None
    assert len(ids) == expected
    assert timer_statuses(engine) == Counter({"fired": expected})
    assert fired_per_timer(engine) == Counter(dict.fromkeys(ids, 1))


def fired_reported(log: Path) -> int:
    """N from the worker's last line, "fired N timer(s)"."""
    [count] = re.findall(r"^fired (\d+) timer\(s\)$", log.read_text(errors="replace"), re.MULTILINE)
    return int(count)


def logs(paths: list[Path]) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in paths)


def test_three_worker_processes_fire_every_timer_exactly_once(
    pg_engine: Engine, fake_clock: FakeClock, postgres_url: str, tmp_path: Path
) -> None:
    start_single_timers(pg_engine, fake_clock, INSTANCES)
    assert timer_statuses(pg_engine) == Counter({"waiting": INSTANCES})

    log_files = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [spawn(worker_command(postgres_url), log) for log in log_files]
    assert wait_all(workers) == [0, 0, 0], logs(log_files)

    assert_each_fired_once(pg_engine, INSTANCES)
    reported = sum(fired_reported(log) for log in log_files)
    assert reported == INSTANCES  # every fire counted by exactly one worker
    with pg_engine.db.read() as session:
        fired_by = Counter(session.scalars(sa.select(Timer.fired_by)))
    assert sum(fired_by.values()) == INSTANCES
    assert len(fired_by) >= 1


def test_three_workers_with_several_due_timers_per_instance_fire_each_once(
    pg_engine: Engine, fake_clock: FakeClock, postgres_url: str, tmp_path: Path
) -> None:
    # Each decision has three overdue boundary timers: the first to fire fires the other two in the
    # same command.  Whatever happens to the workers, each timer fires exactly once; a last worker
    # afterwards picks up anything a worker that stopped early left behind.
    start_escalations(pg_engine, fake_clock, INSTANCES)
    assert timer_statuses(pg_engine) == Counter({"waiting": 3 * INSTANCES})

    log_files = [tmp_path / f"worker{i}.log" for i in range(3)]
    wait_all([spawn(worker_command(postgres_url), log) for log in log_files])
    last = tmp_path / "last.log"
    assert wait_all([spawn(worker_command(postgres_url), last)]) == [0], logs([last])

    assert_each_fired_once(pg_engine, 3 * INSTANCES)
    # Each deadline routed its decision to the service manager exactly once.
    with pg_engine.db.read() as session:
        tasks = Counter(
            (row.element_id, row.status) for row in session.execute(sa.select(Task.element_id, Task.status))
        )
    assert tasks == Counter({("decide", "cancelled"): INSTANCES, ("overdue_decision", "ready"): INSTANCES})


def test_two_workers_on_one_instance_with_several_due_timers_both_finish(
    pg_engine: Engine, fake_clock: FakeClock, postgres_url: str, tmp_path: Path
) -> None:
    start_escalations(pg_engine, fake_clock, 1)
    marker, release = tmp_path / "holding", tmp_path / "release"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    first = spawn(child_command(postgres_url, marker, "pause", release), first_log)
    wait_for(marker.exists, "the first worker to lock the instance")
    second = spawn(worker_command(postgres_url), second_log)

    def second_blocked_or_done() -> bool:
        if second.poll() is not None:
            return True
        with pg_engine.db.read() as session:
            waiting = session.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    wait_for(second_blocked_or_done, "the second worker to claim a timer")
    release.write_text("go")
    codes = wait_all([first, second])

    assert_each_fired_once(pg_engine, 3)
    assert codes == [0, 0], logs([first_log, second_log])


class RecordingScheduler:
    """Stands in for APScheduler: records the one-off runs the worker asks for."""

    def __init__(self) -> None:
        self.runs: list[datetime] = []

    def add_job(self, _func: object, trigger: DateTrigger, **_kwargs: object) -> None:
        self.runs.append(trigger.run_date)


def test_a_worker_does_not_spin_while_another_holds_the_due_timer(
    pg_engine: Engine, fake_clock: FakeClock
) -> None:
    start_single_timers(pg_engine, fake_clock, 1)
    fake_clock.set(datetime(2022, 10, 1, tzinfo=LONDON))  # the timer is due
    worker = TimerWorker(pg_engine, name="patient-worker")
    scheduler = RecordingScheduler()
    worker._scheduler = scheduler  # type: ignore[assignment]

    with pg_engine.db.engine.connect() as other_worker, other_worker.begin():
        # Another worker is in the middle of firing it: it holds the timer's instance.
        other_worker.execute(sa.text("SELECT id FROM process_instance FOR UPDATE")).all()
        ticked_at = datetime.now(UTC)
        worker.tick()
        assert worker.fired == 0

    # Nothing could be claimed: the worker must wait for its regular tick (at least), not run again
    # at once, or it spins for as long as the other worker holds the row.
    assert all(run - ticked_at >= TICK for run in scheduler.runs), scheduler.runs


def test_a_worker_killed_mid_fire_leaves_its_timer_to_fire_later_once(
    pg_engine: Engine, fake_clock: FakeClock, postgres_url: str, tmp_path: Path
) -> None:
    start_single_timers(pg_engine, fake_clock, INSTANCES)
    marker = tmp_path / "holding"
    log_files = [tmp_path / "doomed.log", tmp_path / "worker1.log", tmp_path / "worker2.log"]

    doomed = spawn(child_command(postgres_url, marker, "hang"), log_files[0])
    others = [spawn(worker_command(postgres_url), log) for log in log_files[1:]]
    try:
        wait_for(lambda: marker.exists() and marker.read_text() != "", "the doomed worker's first fire")
        held_instance = int(marker.read_text())
        os.kill(doomed.pid, signal.SIGKILL)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert doomed.wait(timeout=WAIT_LIMIT) == -signal.SIGKILL
    assert wait_all(others) == [0, 0], logs(log_files[1:])

    # The killed worker's transaction died with it: its timer is waiting again (or the others,
    # still running when it died, have fired it); a fresh worker fires whatever is left.
    fresh = tmp_path / "fresh.log"
    assert wait_all([spawn(worker_command(postgres_url), fresh)]) == [0], logs([fresh])

    assert_each_fired_once(pg_engine, INSTANCES)
    with pg_engine.db.read() as session:
        held = session.scalars(sa.select(Timer).where(Timer.instance_id == held_instance)).one()
        states = session.execute(
            sa.text("SELECT count(*) FROM process_instance WHERE status = 'completed'")
        ).scalar_one()
    assert held.status == "fired" and held.attempts == 1
    assert held.fired_by is not None and "held-worker" not in held.fired_by
    assert states == INSTANCES
