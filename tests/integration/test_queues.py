"""Queues by due date: overdue, due today, due within 2 working days, as a manager would filter them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.clock import FakeClock
from engine.core import Engine
from engine.errors import InvalidData
from tests.conftest import fixture_bpmn

LONDON = ZoneInfo("Europe/London")


def _decision_received(engine: Engine, clock: FakeClock, case: str, received: str) -> None:
    """A decision task due at 17:00 one working day after ``received`` (London)."""
    clock.set(datetime.fromisoformat(received).replace(tzinfo=LONDON))
    engine.start(
        "escalation", "sam.screener", case_reference=case, team_key="mash", data={"received_at": received}
    )


@pytest.fixture
def queue(engine: Engine, fake_clock: FakeClock) -> Engine:
    engine.deploy([fixture_bpmn("escalation.bpmn")], "test")
    # Due Tue 20 Sep 2022 17:00 (Mon 19 Sep was the state funeral).
    _decision_received(engine, fake_clock, "C-FRI", "2022-09-16T10:00")
    # Due Wed 21 Sep 2022 17:00.
    _decision_received(engine, fake_clock, "C-TUE", "2022-09-20T10:00")
    # Due Fri 23 Sep 2022 17:00.
    _decision_received(engine, fake_clock, "C-THU", "2022-09-22T10:00")
    return engine


def _cases(engine: Engine, due: str) -> set[str]:
    cases = {}
    for reference in ("C-FRI", "C-TUE", "C-THU"):
        cases[engine.get_case(reference).id] = reference
    return {cases[t.case_id] for t in engine.tasks(team="mash", due=due) if t.case_id in cases}


def test_due_filters_follow_the_working_calendar(queue: Engine, fake_clock: FakeClock) -> None:
    fake_clock.set(datetime(2022, 9, 20, 12, 0, tzinfo=LONDON))  # Tuesday lunchtime

    assert _cases(queue, "overdue") == set()
    assert _cases(queue, "today") == {"C-FRI"}
    # Within 2 working days of Tuesday: up to the end of Thursday 22nd.
    assert _cases(queue, "soon") == {"C-FRI", "C-TUE"}

    fake_clock.set(datetime(2022, 9, 21, 9, 0, tzinfo=LONDON))  # Wednesday morning
    assert _cases(queue, "overdue") == {"C-FRI"}
    assert _cases(queue, "today") == {"C-TUE"}
    assert _cases(queue, "soon") == {"C-FRI", "C-TUE", "C-THU"}


def test_queue_is_sorted_soonest_due_first(queue: Engine) -> None:
    dues = [t.due_at for t in queue.tasks(team="mash")]
    assert dues == sorted(dues)


def test_an_unknown_due_word_is_refused(queue: Engine) -> None:
    with pytest.raises(InvalidData, match="overdue, today or soon"):
        queue.tasks(team="mash", due="yesterday")


def test_cli_filters_by_due(queue: Engine, fake_clock: FakeClock) -> None:
    fake_clock.set(datetime(2022, 9, 21, 9, 0, tzinfo=LONDON))
    result = CliRunner().invoke(cli, ["tasks", "--team", "mash", "--due", "overdue"], obj={"engine": queue})
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Decide the response" in result.output
    bad = CliRunner().invoke(cli, ["tasks", "--due", "later"], obj={"engine": queue})
    assert bad.exit_code == 2 and "overdue" in bad.output
