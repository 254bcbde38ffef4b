"""Timers on a fake clock: due dates on task rows, timers as rows, firing each once and in due order,
escalation ladders, interrupting deadlines, statutory clocks, cycles, working-time expressions,
downtime, parked failures and the command line.

Nothing here measures time: the clock only moves when a test moves it (``fake_clock``).
Shapes: tests/fixtures/bpmn/escalation.bpmn and tests/fixtures/bpmn/timer_*.bpmn.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from engine import audit, directory
from engine.cli import cli
from engine.clock import FakeClock
from engine.core import Engine
from engine.models import AuditEvent, Base, Outbox, ProcessInstance, StatutoryClock, Task, Timer
from engine.worker import TimerWorker
from tests.conftest import fixture_bpmn

LONDON = ZoneInfo("Europe/London")
# The worked date in DOMAIN.md: a contact on Friday 16 September 2022 must be decided by Tuesday
# 20 September (Monday the 19th was the Queen's state funeral, a one-off bank holiday).
CONTACT = datetime(2022, 9, 16, 10, 0, tzinfo=LONDON)
DECISION_DUE = datetime(2022, 9, 20, 17, 0, tzinfo=LONDON)
TEAM_MANAGER_DUE = datetime(2022, 9, 21, 17, 0, tzinfo=LONDON)  # working_days(2)
DEADLINE_DUE = datetime(2022, 9, 27, 17, 0, tzinfo=LONDON)  # working_days(6): 20,21,22,23,26,27

TIMER_FIXTURES = (
    "escalation.bpmn",
    "timer_due_date.bpmn",
    "timer_cycle.bpmn",
    "timer_handover.bpmn",
    "timer_script_error.bpmn",
    "timer_bad_value.bpmn",
    "timer_at.bpmn",
)


def london(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


@pytest.fixture
def timers_engine(any_engine: Engine) -> Engine:
    """An engine (SQLite and PostgreSQL) with every timer fixture deployed."""
    any_engine.deploy([fixture_bpmn(name) for name in TIMER_FIXTURES], "olive.owner")
    return any_engine


def add_mash_manager(engine: Engine, username: str = "mia.manager") -> None:
    """A second MASH manager, so 'holders of the role' and 'the assignee' are different people."""
    staff = {
        "users": [
            {
                "username": username,
                "display_name": "Mia Manager",
                "qualified": True,
                "memberships": [["mash", "mash_manager"]],
            }
        ]
    }
    with engine.db.transaction() as session:
        directory.sync_staff(session, staff)


def start_contact(engine: Engine, clock: FakeClock, reference: str = "C-1", at: datetime = CONTACT) -> int:
    """Start the escalation shape for a contact received at ``at`` (the clock is set to that moment)."""
    clock.set(at)
    result = engine.start(
        "escalation",
        "sam.screener",
        case_reference=reference,
        team_key="mash",
        data={"received_at": at.isoformat()},
    )
    return result.instance_id


def timer_rows(engine: Engine, instance_id: int | None = None) -> list[Timer]:
    query = sa.select(Timer).order_by(Timer.id)
    if instance_id is not None:
        query = query.where(Timer.instance_id == instance_id)
    with engine.db.read() as session:
        return list(session.scalars(query))


def timers_by_element(engine: Engine, instance_id: int) -> dict[str, list[Timer]]:
    found: dict[str, list[Timer]] = {}
    for row in timer_rows(engine, instance_id):
        found.setdefault(row.element_id, []).append(row)
    return found


def only_timer(engine: Engine, instance_id: int, element: str) -> Timer:
    rows = timers_by_element(engine, instance_id).get(element, [])
    assert len(rows) == 1, f"{element}: {[(r.id, r.status) for r in rows]}"
    return rows[0]


def task_rows(engine: Engine, instance_id: int) -> dict[str, Task]:
    """The instance's task rows by element id (one of each element in these shapes)."""
    with engine.db.read() as session:
        rows = list(session.scalars(sa.select(Task).where(Task.instance_id == instance_id)))
    by_element = {row.element_id: row for row in rows}
    assert len(by_element) == len(rows)
    return by_element


def events(engine: Engine, action: str) -> list[AuditEvent]:
    with engine.db.read() as session:
        return list(
            session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
        )


def fired_counts(engine: Engine) -> Counter[int]:
    """timer id -> how many timer.fired audit events name it."""
    return Counter(int(event.data["timer"]) for event in events(engine, "timer.fired"))


def notifications(engine: Engine) -> list[dict[str, Any]]:
    with engine.db.read() as session:
        return [row.payload for row in session.scalars(sa.select(Outbox).order_by(Outbox.id))]


def instance_row(engine: Engine, instance_id: int) -> ProcessInstance:
    with engine.db.read() as session:
        row = session.get(ProcessInstance, instance_id)
        assert row is not None
        return row


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.db.read() as session:
        return {
            table.name: [
                tuple(row)
                for row in session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            ]
            for table in Base.metadata.sorted_tables
        }


def fire_all(engine: Engine) -> list[int]:
    """Fire due timers one command at a time, as the worker does; the ids in the order fired."""
    fired = []
    while (timer_id := engine.fire_next_due("test-worker")) is not None:
        fired.append(timer_id)
        assert len(fired) < 1000, "fire_next_due never ran dry"
    return fired


def chain_intact(engine: Engine) -> bool:
    with engine.db.read() as session:
        return audit.verify(session) is None


# -- due dates on the task row ---------------------------------------------------------------------


def test_due_date_is_the_earliest_boundary_timer(timers_engine: Engine, fake_clock: FakeClock) -> None:
    instance_id = start_contact(timers_engine, fake_clock)

    decide = task_rows(timers_engine, instance_id)["decide"]
    # Friday 16 September 2022, 10:00: due 17:00 on Tuesday the 20th (the 19th was the state funeral).
    assert decide.due_at == DECISION_DUE
    assert decide.due_at == datetime(2022, 9, 20, 16, 0, tzinfo=UTC)  # stored in UTC (BST is +1)
    boundary = [row for row in timer_rows(timers_engine, instance_id) if row.attached_task_id == decide.id]
    assert decide.due_at == min(row.due_at for row in boundary)
    created = events(timers_engine, "task.created")
    assert created[0].data["due"] == DECISION_DUE.astimezone(UTC).isoformat()


def test_due_date_property_expression_overrides_the_boundary_timers(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    received = london(2024, 3, 6, 9, 30)  # a Wednesday
    fake_clock.set(received)
    result = timers_engine.start(
        "due_date_override",
        "sam.screener",
        case_reference="C-DD",
        team_key="mash",
        data={"received_at": received.isoformat()},
    )

    task = task_rows(timers_engine, result.instance_id)["dd_assess"]
    # dueDate = working_days(3, since=received_at, at='12:00'): Monday 11 March at noon ...
    assert task.due_at == london(2024, 3, 11, 12, 0)
    # ... although the boundary timer on the task falls earlier (Thursday 17:00).
    nudge = only_timer(timers_engine, result.instance_id, "dd_nudge")
    assert nudge.due_at == london(2024, 3, 7, 17, 0)
    assert nudge.due_at < task.due_at
    assert nudge.attached_task_id == task.id


# -- timers as rows --------------------------------------------------------------------------------


def test_start_writes_a_row_for_each_waiting_timer(timers_engine: Engine, fake_clock: FakeClock) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    decide = task_rows(timers_engine, instance_id)["decide"]

    rows = {row.element_id: row for row in timer_rows(timers_engine, instance_id)}
    assert set(rows) == {"remind", "to_team_manager", "deadline"}
    assert {e: r.status for e, r in rows.items()} == dict.fromkeys(rows, "waiting")
    assert rows["remind"].due_at == DECISION_DUE
    assert rows["to_team_manager"].due_at == TEAM_MANAGER_DUE
    assert rows["deadline"].due_at == DEADLINE_DUE
    assert (rows["remind"].kind, rows["to_team_manager"].kind, rows["deadline"].kind) == (
        "date",
        "duration",
        "date",
    )
    assert {e: r.attached_task_id for e, r in rows.items()} == dict.fromkeys(rows, decide.id)
    assert {e: r.escalation_level for e, r in rows.items()} == {
        "remind": 1,
        "to_team_manager": 2,
        "deadline": None,
    }
    assert all(row.instance_id == instance_id and row.case_id is not None for row in rows.values())


def test_completing_the_task_cancels_its_boundary_timers_in_the_same_transaction(
    timers_engine: Engine, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    decide = task_rows(timers_engine, instance_id)["decide"]
    fake_clock.set(london(2022, 9, 20, 11, 0))

    # A command that fails after the projection (here: while writing the audit trail) leaves the
    # timer rows exactly as they were: they are written in the command's own transaction.
    before = snapshot(timers_engine)

    def broken_finish(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the database went away at the last moment")

    with monkeypatch.context() as patch:
        patch.setattr(timers_engine, "_finish", broken_finish)
        with pytest.raises(RuntimeError):
            timers_engine.complete(decide.id, "mo.manager", {"decision": "refer"})
    assert snapshot(timers_engine) == before
    assert {row.status for row in timer_rows(timers_engine, instance_id)} == {"waiting"}

    timers_engine.complete(decide.id, "mo.manager", {"decision": "refer"})

    rows = timers_by_element(timers_engine, instance_id)
    for element in ("remind", "to_team_manager", "deadline"):
        assert [row.status for row in rows[element]] == ["cancelled"], element
    # The process moved on to the intermediate "PT1H" timer, written in that same command.
    wait = only_timer(timers_engine, instance_id, "wait_hour")
    assert (wait.status, wait.kind, wait.due_at) == ("waiting", "duration", london(2022, 9, 20, 12, 0))
    # Long after every deadline, only the intermediate timer fires: cancelled rows never do.
    fake_clock.set(london(2022, 10, 3, 12, 0))
    assert fire_all(timers_engine) == [wait.id]
    assert fired_counts(timers_engine) == Counter({wait.id: 1})


# -- firing ------------------------------------------------------------------------------------------


def test_fire_next_due_fires_in_due_order_exactly_once(timers_engine: Engine, fake_clock: FakeClock) -> None:
    base = london(2024, 3, 6, 10, 0)
    fake_clock.set(base)
    offsets = [40, 10, 30, 20, 50]  # minutes; started in this order, due in another
    instances = {}
    for minutes in offsets:
        due = base + timedelta(minutes=minutes)
        result = timers_engine.start("timer_at", "sam.screener", data={"due_at": due.isoformat()})
        instances[result.instance_id] = due
    assert timers_engine.fire_next_due() is None  # nothing is due yet

    fake_clock.set(base + timedelta(minutes=35))
    fired = fire_all(timers_engine)
    assert timers_engine.fire_next_due() is None
    rows = {row.id: row for row in timer_rows(timers_engine)}
    assert [rows[i].due_at for i in fired] == [base + timedelta(minutes=m) for m in (10, 20, 30)]

    fake_clock.set(base + timedelta(hours=1))
    fired += fire_all(timers_engine)
    assert timers_engine.fire_next_due() is None

    rows = {row.id: row for row in timer_rows(timers_engine)}
    assert [rows[i].due_at for i in fired] == sorted(instances.values())
    assert {row.status for row in rows.values()} == {"fired"}
    assert all(row.fired_by == "test-worker" and row.attempts == 1 for row in rows.values())
    assert fired_counts(timers_engine) == Counter({timer_id: 1 for timer_id in rows})
    assert all(instance_row(timers_engine, i).status == "completed" for i in instances)
    assert chain_intact(timers_engine)


def test_a_timer_not_yet_due_does_not_fire(timers_engine: Engine, fake_clock: FakeClock) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    fake_clock.set(DECISION_DUE - timedelta(seconds=1))
    assert timers_engine.fire_next_due() is None
    fake_clock.set(DECISION_DUE)
    remind = only_timer(timers_engine, instance_id, "remind")
    assert timers_engine.fire_next_due() == remind.id
    assert timers_engine.fire_next_due() is None
    assert fired_counts(timers_engine) == Counter({remind.id: 1})


# -- escalation ladder -------------------------------------------------------------------------------


def test_escalation_level_one_then_two_unclaimed(timers_engine: Engine, fake_clock: FakeClock) -> None:
    add_mash_manager(timers_engine)
    instance_id = start_contact(timers_engine, fake_clock)
    decide_id = task_rows(timers_engine, instance_id)["decide"].id

    # Level 1, nobody has claimed the task: everyone offered it (the MASH managers of the team).
    level_one_at = DECISION_DUE + timedelta(minutes=5)
    fake_clock.set(level_one_at)
    assert fire_all(timers_engine) == [only_timer(timers_engine, instance_id, "remind").id]
    decide = task_rows(timers_engine, instance_id)["decide"]
    assert (decide.status, decide.escalation_level, decide.escalated_at) == ("ready", 1, level_one_at)
    [escalated] = events(timers_engine, "task.escalated")
    assert escalated.task_id == decide_id
    assert escalated.data["level"] == 1
    assert escalated.data["notified"] == ["mia.manager", "mo.manager"]
    [message] = notifications(timers_engine)
    assert message["to"] == ["mia.manager", "mo.manager"]
    assert (message["kind"], message["level"], message["task_id"]) == ("escalation", 1, decide_id)
    assert "C-1" in message["subject"]

    # Level 2: the team manager of the task's team.
    level_two_at = TEAM_MANAGER_DUE + timedelta(minutes=5)
    fake_clock.set(level_two_at)
    assert fire_all(timers_engine) == [only_timer(timers_engine, instance_id, "to_team_manager").id]
    decide = task_rows(timers_engine, instance_id)["decide"]
    assert (decide.status, decide.escalation_level, decide.escalated_at) == ("ready", 2, level_two_at)
    assert [e.data["level"] for e in events(timers_engine, "task.escalated")] == [1, 2]
    assert [m["to"] for m in notifications(timers_engine)] == [["mia.manager", "mo.manager"], ["mo.manager"]]
    assert notifications(timers_engine)[1]["level"] == 2
    assert fired_counts(timers_engine) == Counter(
        {only_timer(timers_engine, instance_id, e).id: 1 for e in ("remind", "to_team_manager")}
    )

    # A dashboard lists escalations from the task table alone.
    with timers_engine.db.read() as session:
        escalated_tasks = session.execute(
            sa.select(Task.id, Task.escalation_level).where(
                Task.escalation_level >= 1, Task.status == "ready"
            )
        ).all()
    assert escalated_tasks == [(decide_id, 2)]


def test_escalation_level_one_goes_to_the_assignee_once_claimed(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    add_mash_manager(timers_engine)
    instance_id = start_contact(timers_engine, fake_clock)
    decide_id = task_rows(timers_engine, instance_id)["decide"].id
    timers_engine.claim(decide_id, "mia.manager")

    fake_clock.set(DECISION_DUE + timedelta(hours=1))
    fire_all(timers_engine)
    assert [m["to"] for m in notifications(timers_engine)] == [["mia.manager"]]
    assert events(timers_engine, "task.escalated")[0].data["notified"] == ["mia.manager"]
    decide = task_rows(timers_engine, instance_id)["decide"]
    assert (decide.status, decide.assignee, decide.escalation_level) == ("claimed", "mia.manager", 1)

    # Level 2 does not go to the assignee but to the team manager.
    fake_clock.set(TEAM_MANAGER_DUE + timedelta(hours=1))
    fire_all(timers_engine)
    assert [m["to"] for m in notifications(timers_engine)] == [["mia.manager"], ["mo.manager"]]


def test_interrupting_deadline_cancels_the_task_and_routes_to_the_service_manager(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    decide_id = task_rows(timers_engine, instance_id)["decide"].id
    fake_clock.set(TEAM_MANAGER_DUE + timedelta(hours=1))
    fire_all(timers_engine)
    assert task_rows(timers_engine, instance_id)["decide"].escalation_level == 2

    fake_clock.set(DEADLINE_DUE - timedelta(minutes=1))
    assert timers_engine.fire_next_due() is None
    fake_clock.set(DEADLINE_DUE + timedelta(minutes=1))
    deadline = only_timer(timers_engine, instance_id, "deadline")
    assert fire_all(timers_engine) == [deadline.id]

    tasks = task_rows(timers_engine, instance_id)
    assert tasks["decide"].status == "cancelled"
    overdue = tasks["overdue_decision"]
    assert (overdue.status, overdue.role_key, overdue.name) == (
        "ready",
        "service_manager",
        "Decide the overdue contact",
    )
    assert [e.task_id for e in events(timers_engine, "task.cancelled")] == [decide_id]
    assert only_timer(timers_engine, instance_id, "deadline").status == "fired"
    assert {r.status for r in timer_rows(timers_engine, instance_id)} == {"fired"}
    assert instance_row(timers_engine, instance_id).status == "running"
    # The decision was never made: its statutory clock is still running.
    with timers_engine.db.read() as session:
        [running] = session.scalars(sa.select(StatutoryClock)).all()
    assert running.stopped_at is None and running.breached is None
    assert chain_intact(timers_engine)


# -- statutory clocks --------------------------------------------------------------------------------


def decide_at(engine: Engine, clock: FakeClock, instance_id: int, when: datetime) -> None:
    clock.set(when)
    engine.complete(task_rows(engine, instance_id)["decide"].id, "mo.manager", {"decision": "refer"})


def clock_row(engine: Engine, instance_id: int) -> StatutoryClock:
    with engine.db.read() as session:
        [row] = session.scalars(
            sa.select(StatutoryClock).where(StatutoryClock.instance_id == instance_id)
        ).all()
        return row


def test_statutory_clock_started_and_stopped_in_time(timers_engine: Engine, fake_clock: FakeClock) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    running = clock_row(timers_engine, instance_id)
    assert (running.name, running.started_at, running.target_at) == ("decision", CONTACT, DECISION_DUE)
    assert (running.stopped_at, running.breached, running.started_by_element) == (None, None, "start")
    assert [e.data for e in events(timers_engine, "clock.started")] == [
        {"clock": "decision", "target": DECISION_DUE.astimezone(UTC).isoformat()}
    ]

    decided = london(2022, 9, 20, 16, 59)
    decide_at(timers_engine, fake_clock, instance_id, decided)
    stopped = clock_row(timers_engine, instance_id)
    assert (stopped.stopped_at, stopped.breached, stopped.stopped_by_element) == (decided, False, "decide")
    assert [e.data for e in events(timers_engine, "clock.stopped")] == [
        {"clock": "decision", "breached": False}
    ]


def test_statutory_clock_breached_when_decided_late(timers_engine: Engine, fake_clock: FakeClock) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    decide_at(timers_engine, fake_clock, instance_id, london(2022, 9, 21, 9, 30))
    stopped = clock_row(timers_engine, instance_id)
    assert (stopped.target_at, stopped.breached) == (DECISION_DUE, True)


def test_one_query_answers_decisions_within_one_working_day_this_month(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    in_time = start_contact(timers_engine, fake_clock, "C-A")
    late = start_contact(timers_engine, fake_clock, "C-B")
    start_contact(timers_engine, fake_clock, "C-C")  # still undecided
    october = start_contact(timers_engine, fake_clock, "C-D", at=london(2022, 9, 30, 10, 0))
    decide_at(timers_engine, fake_clock, in_time, london(2022, 9, 20, 12, 0))
    decide_at(timers_engine, fake_clock, late, london(2022, 9, 22, 12, 0))
    decide_at(timers_engine, fake_clock, october, london(2022, 10, 3, 12, 0))  # in time, next month

    month_start, next_month = london(2022, 9, 1, 0, 0), london(2022, 10, 1, 0, 0)
    in_time_flag = sa.case((StatutoryClock.breached.is_(False), 1), else_=0)
    query = sa.select(sa.func.count(), sa.func.sum(in_time_flag)).where(
        StatutoryClock.name == "decision",
        StatutoryClock.stopped_at >= month_start,
        StatutoryClock.stopped_at < next_month,
    )
    with timers_engine.db.read() as session:
        decided, within = session.execute(query).one()
    assert (decided, within) == (2, 1)


# -- the intermediate and cycle timers ----------------------------------------------------------------


def test_intermediate_pt1h_timer(timers_engine: Engine, fake_clock: FakeClock) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    decided = london(2022, 9, 20, 14, 0)
    decide_at(timers_engine, fake_clock, instance_id, decided)
    wait = only_timer(timers_engine, instance_id, "wait_hour")
    assert (wait.kind, wait.due_at, wait.attached_task_id) == ("duration", decided + timedelta(hours=1), None)

    fake_clock.set(decided + timedelta(minutes=59))
    assert timers_engine.fire_next_due() is None
    assert "follow_up" not in task_rows(timers_engine, instance_id)

    fake_clock.set(decided + timedelta(hours=1))
    assert timers_engine.fire_next_due() == wait.id
    assert timers_engine.fire_next_due() is None
    assert only_timer(timers_engine, instance_id, "wait_hour").status == "fired"
    follow_up = task_rows(timers_engine, instance_id)["follow_up"]
    assert (follow_up.status, follow_up.due_at) == ("ready", None)


def test_cycle_timer_fires_three_times(timers_engine: Engine, fake_clock: FakeClock) -> None:
    started = london(2024, 3, 6, 10, 0)
    fake_clock.set(started)
    result = timers_engine.start("cycle_reminders", "sam.screener", case_reference="C-CY", team_key="mash")
    instance_id = result.instance_id
    gather = task_rows(timers_engine, instance_id)["cy_gather"]
    assert gather.due_at == started + timedelta(hours=1)  # the cycle's next occurrence

    def cycle_rows() -> list[tuple[str, datetime]]:
        return [
            (row.status, row.due_at) for row in timers_by_element(timers_engine, instance_id)["cy_remind"]
        ]

    assert cycle_rows() == [("waiting", started + timedelta(hours=1))]
    for hour in (1, 2, 3):
        fake_clock.set(started + timedelta(hours=hour, seconds=-1))
        assert timers_engine.fire_next_due() is None
        fake_clock.set(started + timedelta(hours=hour))
        assert timers_engine.fire_next_due() is not None
        assert timers_engine.fire_next_due() is None
        expected = [("fired", started + timedelta(hours=h)) for h in range(1, hour + 1)]
        if hour < 3:
            expected.append(("waiting", started + timedelta(hours=hour + 1)))
        assert cycle_rows() == expected, hour

    # R3: three occurrences, then no more.
    fake_clock.set(started + timedelta(days=2))
    assert timers_engine.fire_next_due() is None
    rows = timers_by_element(timers_engine, instance_id)["cy_remind"]
    assert fired_counts(timers_engine) == Counter({row.id: 1 for row in rows})
    assert len(rows) == 3
    assert task_rows(timers_engine, instance_id)["cy_gather"].status == "ready"  # non-interrupting

    timers_engine.complete(gather.id, "sam.screener", {})
    assert instance_row(timers_engine, instance_id).status == "completed"
    assert {row.status for row in timer_rows(timers_engine, instance_id)} == {"fired"}


def test_cycle_timer_stops_when_its_task_completes(timers_engine: Engine, fake_clock: FakeClock) -> None:
    started = london(2024, 3, 6, 10, 0)
    fake_clock.set(started)
    result = timers_engine.start("cycle_reminders", "sam.screener", case_reference="C-CY", team_key="mash")
    fake_clock.set(started + timedelta(hours=1, minutes=30))
    assert len(fire_all(timers_engine)) == 1
    gather = task_rows(timers_engine, result.instance_id)["cy_gather"]
    timers_engine.complete(gather.id, "sam.screener", {})

    statuses = [row.status for row in timers_by_element(timers_engine, result.instance_id)["cy_remind"]]
    assert statuses == ["fired", "cancelled"]
    fake_clock.set(started + timedelta(days=1))
    assert timers_engine.fire_next_due() is None


# -- working time in timer expressions ------------------------------------------------------------------


def test_working_hours_and_next_working_day_in_timer_expressions(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    # Friday 22 December 2023, 17:30: out of hours before Christmas; Monday 25 and Tuesday 26 are
    # bank holidays, so the handover is due at 09:00 on Wednesday 27 December.
    received = london(2023, 12, 22, 17, 30)
    fake_clock.set(received)
    result = timers_engine.start(
        "edt_handover",
        "eddie.edt",
        case_reference="C-EDT",
        team_key="edt",
        data={"received_at": "2023-12-22T17:30:00"},  # local time, as a form records it
    )
    instance_id = result.instance_id

    handover = task_rows(timers_engine, instance_id)["ho_handover"]
    assert handover.due_at == london(2023, 12, 27, 9, 0)
    assert only_timer(timers_engine, instance_id, "ho_remind").due_at == london(2023, 12, 27, 9, 0)
    # working_hours(4) from 17:30 on the Friday: 09:00-13:00 on the 27th.
    assert only_timer(timers_engine, instance_id, "ho_late").due_at == london(2023, 12, 27, 13, 0)

    # Completed at 16:00 on the 27th: working_hours(2) from now ends at 10:00 on the 28th.
    fake_clock.set(london(2023, 12, 27, 8, 59))
    assert timers_engine.fire_next_due() is None
    fake_clock.set(london(2023, 12, 27, 9, 0))
    assert fire_all(timers_engine) == [only_timer(timers_engine, instance_id, "ho_remind").id]
    fake_clock.set(london(2023, 12, 27, 13, 0))
    assert fire_all(timers_engine) == [only_timer(timers_engine, instance_id, "ho_late").id]
    assert task_rows(timers_engine, instance_id)["ho_handover"].escalation_level == 2
    fake_clock.set(london(2023, 12, 27, 16, 0))
    timers_engine.complete(handover.id, "eddie.edt", {})
    wait = only_timer(timers_engine, instance_id, "ho_wait")
    assert (wait.status, wait.due_at) == ("waiting", london(2023, 12, 28, 10, 0))

    fake_clock.set(london(2023, 12, 28, 10, 0))
    assert fire_all(timers_engine) == [wait.id]
    assert task_rows(timers_engine, instance_id)["ho_check"].status == "ready"


# -- downtime -----------------------------------------------------------------------------------------


def test_after_downtime_every_overdue_timer_fires_on_the_next_drain_in_due_order(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    first = start_contact(timers_engine, fake_clock, "C-1")
    fake_clock.set(london(2022, 9, 20, 9, 0))
    single = []
    for due in (london(2022, 9, 23, 8, 0), london(2022, 9, 21, 8, 0), london(2022, 10, 3, 8, 0)):
        result = timers_engine.start("timer_at", "sam.screener", data={"due_at": due.isoformat()})
        single.append(result.instance_id)
    second = start_contact(timers_engine, fake_clock, "C-2", at=london(2022, 9, 22, 10, 0))
    waiting = timer_rows(timers_engine)
    assert len(waiting) == 3 + 3 + 3
    assert {row.status for row in waiting} == {"waiting"}

    # The worker was down for a month.
    fake_clock.set(london(2022, 11, 1, 9, 0))
    worker = TimerWorker(timers_engine, name="worker-after-downtime")
    fired = worker.drain()

    rows = timer_rows(timers_engine)
    assert {row.status for row in rows} == {"fired"}
    assert fired_counts(timers_engine) == Counter({row.id: 1 for row in rows})
    # Each command the worker ran took the earliest waiting timer: the timers it claimed (their
    # timer.fired events carry the due date) come in due order.  Timers of the same instance that
    # were due at that moment fire in the same command.
    claimed = [e.data for e in events(timers_engine, "timer.fired") if "due" in e.data]
    assert len(claimed) == fired
    dues = [datetime.fromisoformat(d["due"]) for d in claimed]
    assert dues == sorted(dues)
    by_id = {row.id: row for row in rows}
    all_fired = [int(e.data["timer"]) for e in events(timers_engine, "timer.fired")]
    singles = [i for i in all_fired if by_id[i].instance_id in single]
    assert [by_id[i].due_at for i in singles] == sorted(by_id[i].due_at for i in singles)
    assert all(task_rows(timers_engine, i)["overdue_decision"].status == "ready" for i in (first, second))
    assert worker.drain() == 0
    assert chain_intact(timers_engine)


# -- failures -------------------------------------------------------------------------------------------


def test_a_timer_whose_path_raises_is_parked_as_failed(timers_engine: Engine, fake_clock: FakeClock) -> None:
    started = london(2024, 3, 6, 10, 0)
    fake_clock.set(started)
    broken = timers_engine.start("timer_script_error", "sam.screener", data={"divisor": 0})
    healthy = timers_engine.start("timer_at", "sam.screener", data={"due_at": "2024-03-06T11:30:00+00:00"})
    timer = only_timer(timers_engine, broken.instance_id, "se_wait")
    before = instance_row(timers_engine, broken.instance_id)

    fake_clock.set(started + timedelta(hours=2))
    assert fire_all(timers_engine) == [timer.id, only_timer(timers_engine, healthy.instance_id, "at_wait").id]

    parked = only_timer(timers_engine, broken.instance_id, "se_wait")
    assert parked.status == "failed"
    assert parked.attempts == 1
    assert parked.fired_at is None
    assert parked.last_error is not None
    assert "se_compute" in parked.last_error and "ZeroDivisionError" in parked.last_error
    [failed] = events(timers_engine, "timer.failed")
    assert failed.instance_id == broken.instance_id
    assert failed.data["timer"] == timer.id and failed.data["error"] == parked.last_error
    assert fired_counts(timers_engine)[timer.id] == 0
    # The instance is as it was: same revision, same state, no task opened.
    after = instance_row(timers_engine, broken.instance_id)
    assert (after.revision, after.state, after.status) == (before.revision, before.state, "running")
    assert task_rows(timers_engine, broken.instance_id) == {}
    # Parked, not retried: the next drain leaves it alone.
    fake_clock.advance(timedelta(hours=1))
    assert timers_engine.fire_next_due() is None
    assert only_timer(timers_engine, broken.instance_id, "se_wait").status == "failed"
    assert chain_intact(timers_engine)


def test_a_timer_whose_path_reaches_a_bad_timer_expression_is_parked(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    started = london(2024, 3, 6, 10, 0)
    fake_clock.set(started)
    broken = timers_engine.start("timer_bad_value", "sam.screener", data={"when": "soon"})
    healthy = timers_engine.start("timer_at", "sam.screener", data={"due_at": "2024-03-06T12:00:00+00:00"})

    fake_clock.set(started + timedelta(hours=3))
    fired = TimerWorker(timers_engine, name="w").drain()

    assert fired == 2
    parked = only_timer(timers_engine, broken.instance_id, "bv_wait")
    assert parked.status == "failed" and parked.last_error
    assert "soon" in parked.last_error
    assert only_timer(timers_engine, healthy.instance_id, "at_wait").status == "fired"
    assert len(events(timers_engine, "timer.failed")) == 1


# -- command line ---------------------------------------------------------------------------------------


def test_cli_timers_due_before_lists_what_is_due_in_london_time(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    rows = {row.element_id: row for row in timer_rows(timers_engine, instance_id)}
    runner = CliRunner()

    def lines(*args: str) -> list[str]:
        result = runner.invoke(cli, ["timers", *args], obj={"engine": timers_engine})
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    everything = lines()
    assert [line.split()[0] for line in everything] == [
        "2022-09-20T17:00",
        "2022-09-21T17:00",
        "2022-09-27T17:00",
    ]
    assert f"\t{rows['remind'].id}\t" in everything[0] and "remind" in everything[0]
    assert "escalation 1" in everything[0] and "escalation 2" in everything[1]
    # --due-before is strict and, without an offset, London time: 17:00 BST is 16:00 UTC.
    assert lines("--due-before", "2022-09-20T17:00") == ["no waiting timers"]
    [line] = lines("--due-before", "2022-09-20T17:01")
    assert line.startswith("2022-09-20T17:00\t") and "remind" in line
    assert len(lines("--due-before", "2022-09-21T16:30:00+00:00")) == 2
    bad = runner.invoke(cli, ["timers", "--due-before", "next tuesday"], obj={"engine": timers_engine})
    assert bad.exit_code == 2 and "ISO 8601" in bad.output

    fake_clock.set(TEAM_MANAGER_DUE + timedelta(minutes=1))
    fired = runner.invoke(cli, ["worker", "--once"], obj={"engine": timers_engine})
    assert fired.exit_code == 0, fired.output
    # One command fires "remind"; "to_team_manager", due by then too, fires inside it.
    assert "fired 1 timer(s)" in fired.output
    assert {row.element_id: row.status for row in timer_rows(timers_engine, instance_id)} == {
        "remind": "fired",
        "to_team_manager": "fired",
        "deadline": "waiting",
    }
    assert fired_counts(timers_engine) == Counter({rows["remind"].id: 1, rows["to_team_manager"].id: 1})
    [line] = lines("--status", "fired", "--due-before", "2022-09-21T00:00")
    assert "remind" in line
    again = runner.invoke(cli, ["worker", "--once"], obj={"engine": timers_engine})
    assert "fired 0 timer(s)" in again.output


def test_escalations_passed_during_downtime_are_recorded(
    timers_engine: Engine, fake_clock: FakeClock
) -> None:
    instance_id = start_contact(timers_engine, fake_clock)
    decide_id = task_rows(timers_engine, instance_id)["decide"].id
    fake_clock.set(DEADLINE_DUE + timedelta(days=7))  # the worker was down past every rung

    fire_all(timers_engine)

    assert {row.status for row in timer_rows(timers_engine, instance_id)} == {"fired"}
    assert [e.data["level"] for e in events(timers_engine, "task.escalated")] == [1, 2]
    assert all(e.task_id == decide_id for e in events(timers_engine, "task.escalated"))
    assert task_rows(timers_engine, instance_id)["decide"].escalation_level == 2
    assert [m["level"] for m in notifications(timers_engine)] == [1, 2]
