"""Two people acting on one task at the same moment, each through their own engine and connection
pool, on one PostgreSQL database: exactly one wins, the other is told, nothing is lost or doubled.

The race is not left to timing.  Claims are held at a barrier once both have read the task.  A
completion locks its instance first, so the second completion is shown to be *waiting on that
lock* (PostgreSQL's own view of its backends) while the first still holds it, before the first
is let go.  Nothing inside the engine is replaced; the holds only wait and then call through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import make_engine

from engine import directory
from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.errors import Conflict

from .helpers import (
    audit_actions,
    chain_break,
    deploy_triage,
    instance_row,
    open_task,
    start_triage,
    task_statuses,
)

pytestmark = pytest.mark.postgres

BARRIER_TIMEOUT = 20


@pytest.fixture
def engines(postgres_url: str, fake_clock: FakeClock) -> Iterator[tuple[Engine, Engine]]:
    first = make_engine(postgres_url)
    second = Engine(Database(postgres_url))
    yield first, second
    first.db.dispose()
    second.db.dispose()


def race(*calls: Callable[[], None]) -> list[BaseException | None]:
    """Run each call in its own thread, released together; return what each raised (None: success)."""
    outcomes: list[BaseException | None] = [None] * len(calls)
    start = threading.Barrier(len(calls), timeout=BARRIER_TIMEOUT)

    def run(index: int, call: Callable[[], None]) -> None:
        try:
            start.wait()
            call()
        except BaseException as exc:  # recorded and examined by the test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT * 3)
        assert not thread.is_alive(), "a racing command never finished (a deadlock?)"
    return outcomes


def hold_after(
    target: Any, name: str, barrier: threading.Barrier, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Make ``target.name`` wait at ``barrier`` after doing its work (both racers have read).

    Returns the names of the threads that passed the barrier, to show the race really happened.
    """
    original = getattr(target, name)
    passed: list[str] = []

    def held(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        barrier.wait()
        passed.append(threading.current_thread().name)
        return result

    monkeypatch.setattr(target, name, held)
    return passed


def wait_for_lock_waiter(engine: Engine, seconds: float = BARRIER_TIMEOUT) -> bool:
    """Poll PostgreSQL until some backend of this database is waiting on a lock."""
    deadline = threading.Event()
    timer = threading.Timer(seconds, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            with engine.db.engine.connect() as connection:
                waiting = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar()
            if waiting:
                return True
            deadline.wait(0.05)
        return False
    finally:
        timer.cancel()


def exactly_one_conflict(outcomes: list[BaseException | None]) -> None:
    winners = [o for o in outcomes if o is None]
    losers = [o for o in outcomes if o is not None]
    assert len(winners) == 1, outcomes
    assert len(losers) == 1 and isinstance(losers[0], Conflict), repr(losers)


def test_two_concurrent_completions_of_one_task_exactly_one_succeeds(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = engines
    deploy_triage(first)
    started = start_triage(first)
    task = open_task(first, "C-1", "record_contact")
    revision = instance_row(first, started.instance_id).revision
    first_loaded, release = threading.Event(), threading.Event()
    original_load = first.runtime.load

    def load_then_hold(*args: Any, **kwargs: Any) -> Any:
        result = original_load(*args, **kwargs)
        first_loaded.set()
        release.wait(BARRIER_TIMEOUT)
        return result

    monkeypatch.setattr(first.runtime, "load", load_then_hold)
    outcomes: list[BaseException | None] = [None, None]

    def run(index: int, engine: Engine, note: str) -> None:
        try:
            engine.complete(task.id, "sam.screener", {"note": note})
        except BaseException as exc:  # recorded and examined below
            outcomes[index] = exc

    racers = [
        threading.Thread(target=run, args=(0, first, "from the first screen")),
        threading.Thread(target=run, args=(1, second, "from the second screen")),
    ]
    racers[0].start()
    assert first_loaded.wait(BARRIER_TIMEOUT), "the first completion never loaded the instance"
    racers[1].start()
    # The second completion has started and is queued behind the first's lock on the instance.
    assert wait_for_lock_waiter(first), "the second completion never waited on the first's lock"
    release.set()
    for racer in racers:
        racer.join(BARRIER_TIMEOUT * 3)
        assert not racer.is_alive(), "a racing command never finished (a deadlock?)"

    exactly_one_conflict(outcomes)
    monkeypatch.undo()
    note = "from the first screen" if outcomes[0] is None else "from the second screen"
    row = first.get_task(task.id)
    assert (row.status, row.outcome) == ("completed", {"note": note})
    assert instance_row(first, started.instance_id).revision == revision + 1
    assert first.instance_data(started.instance_id)["note"] == note
    # The process moved on once: one police check, one health check, no duplicates.
    assert sorted(element for element, _, _ in task_statuses(first, started.instance_id).values()) == [
        "health_check",
        "police_check",
        "record_contact",
    ]
    actions = audit_actions(first)
    assert actions.count("task.completed") == 1
    assert actions.count("task.created") == 3
    assert chain_break(first) is None


def test_two_concurrent_claims_exactly_one_wins(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = engines
    deploy_triage(first)
    with first.db.transaction() as session:
        directory.sync_staff(
            session,
            {
                "users": [
                    {
                        "username": "cam.colleague",
                        "display_name": "Cam Colleague",
                        "memberships": [["mash", "contact_officer"]],
                    }
                ]
            },
        )
    start_triage(first)
    task = open_task(first, "C-1", "record_contact")
    checked = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    # Both have read the task as 'ready' and found the claimant may hold it before either writes.
    passed = hold_after(directory, "check_may_hold", checked, monkeypatch)

    outcomes = race(
        lambda: first.claim(task.id, "sam.screener"),
        lambda: second.claim(task.id, "cam.colleague"),
    )

    assert len(passed) == 2, "both claims must have checked before either wrote"
    exactly_one_conflict(outcomes)
    monkeypatch.undo()
    winner = "sam.screener" if outcomes[0] is None else "cam.colleague"
    row = first.get_task(task.id)
    assert (row.status, row.assignee) == ("claimed", winner)
    assert audit_actions(first).count("task.claimed") == 1
    assert chain_break(first) is None


def test_many_completions_of_different_tasks_at_once_keep_the_audit_chain_whole(
    engines: tuple[Engine, Engine],
) -> None:
    """Commands on different cases do not conflict, and their audit events still form one chain."""
    first, second = engines
    deploy_triage(first)
    cases = [f"C-{n}" for n in range(6)]
    tasks = {}
    for case in cases:
        start_triage(first, case)
        tasks[case] = open_task(first, case, "record_contact").id

    outcomes = race(
        *[
            (lambda case=case, engine=engine: engine.complete(tasks[case], "sam.screener", {"note": case}))
            for case, engine in zip(cases, [first, second] * 3, strict=True)
        ]
    )

    assert outcomes == [None] * len(cases)
    assert audit_actions(first).count("task.completed") == len(cases)
    assert chain_break(first) is None
