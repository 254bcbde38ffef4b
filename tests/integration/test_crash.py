"""A worker killed with SIGKILL in the middle of a completion leaves the instance, its tasks and
its audit trail exactly as before, or (killed after the commit) exactly as after; never between.

The completion runs in a child process with its own engine on the same database.  In the child,
``engine.audit.append`` (the last step before the commit) is wrapped: it writes everything,
flushes it to the database inside the still-open transaction, drops a marker file and sleeps.
The parent waits for the marker and kills the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core import Engine

from .helpers import (
    audit_actions,
    chain_break,
    deploy_triage,
    instance_row,
    open_task,
    snapshot,
    start_triage,
    task_statuses,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, time
from pathlib import Path

from engine import audit
from engine.core import Engine
from engine.db import Database

url, task_id, marker, when = sys.argv[1:5]
original = audit.append


def append(session, events, occurred_at):
    original(session, events, occurred_at)
    if when == "before-commit":
        session.flush()  # the instance UPDATE, the task rows and the audit rows are all in the database now
        Path(marker).write_text("written, not committed")
        time.sleep(60)


audit.append = append
Engine(Database(url)).complete(task_id, "sam.screener", {"note": "from the worker that dies"})
if when == "after-commit":
    Path(marker).write_text("committed")
    time.sleep(60)
"""


def run_and_kill(url: str, task_id: str, when: str, tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{when}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, task_id, str(marker), when],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                _, err = child.communicate()
                pytest.fail(f"the child finished before reaching the marker:\n{err.decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the child never reached the marker")
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL


@pytest.fixture
def waiting(any_engine: Engine) -> tuple[Engine, int, str]:
    """A triage case waiting on 'Record the contact'."""
    deploy_triage(any_engine)
    started = start_triage(any_engine, "C-1", "mash", data={"referrer": "police"})
    return any_engine, started.instance_id, open_task(any_engine, "C-1", "record_contact").id


def url_of(engine: Engine) -> str:
    return engine.db.engine.url.render_as_string(hide_password=False)


def test_killed_before_the_commit_leaves_everything_as_before(
    waiting: tuple[Engine, int, str], tmp_path: Path
) -> None:
    engine, instance_id, task_id = waiting
    before = snapshot(engine)
    revision = instance_row(engine, instance_id).revision
    statuses = task_statuses(engine, instance_id)

    run_and_kill(url_of(engine), task_id, "before-commit", tmp_path)

    assert instance_row(engine, instance_id).revision == revision
    assert task_statuses(engine, instance_id) == statuses
    assert snapshot(engine) == before
    assert chain_break(engine) is None
    # Nothing is left locked or half-done: the same completion now goes through, once.
    engine.complete(task_id, "sam.screener", {"note": "done again by hand"})
    assert instance_row(engine, instance_id).revision == revision + 1
    assert sorted(e for e, _, _ in task_statuses(engine, instance_id).values()) == [
        "health_check",
        "police_check",
        "record_contact",
    ]
    assert chain_break(engine) is None


def test_killed_after_the_commit_leaves_everything_as_after(
    waiting: tuple[Engine, int, str], tmp_path: Path
) -> None:
    engine, instance_id, task_id = waiting
    before = snapshot(engine)
    revision = instance_row(engine, instance_id).revision

    run_and_kill(url_of(engine), task_id, "after-commit", tmp_path)

    after = snapshot(engine)
    assert instance_row(engine, instance_id).revision == revision + 1
    assert instance_row(engine, instance_id).status == "running"
    statuses = task_statuses(engine, instance_id)
    assert statuses[task_id] == ("record_contact", "completed", "sam.screener")
    assert sorted(v for k, v in statuses.items() if k != task_id) == [
        ("health_check", "ready", None),
        ("police_check", "ready", None),
    ]
    assert engine.get_task(task_id).outcome == {"note": "from the worker that dies"}
    # The audit trail is the old one plus exactly this completion's events, and still whole.
    assert after["audit_event"][: len(before["audit_event"])] == before["audit_event"]
    new_actions = audit_actions(engine)[len(before["audit_event"]) :]
    assert sorted(new_actions) == ["task.completed", "task.created", "task.created"]
    assert chain_break(engine) is None
    assert engine.instance_data(instance_id)["note"] == "from the worker that dies"
    # Tables the completion does not touch are as they were.
    for table in ("process_definition", "case_record", "app_user", "team", "role", "membership"):
        assert after[table] == before[table], table
