"""BPMN messages: subscriptions kept by the projection, and Engine.correlate_message.

The fixture diagram (tests/fixtures/bpmn/new_information.bpmn) waits for ``new_information``
in a non-interrupting event subprocess for as long as it runs, and for ``reply_received`` at an
intermediate catch event after its first task; both keyed on the subject's name and birth date.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from engine.core import Engine
from engine.errors import InvalidData, NotFound
from engine.messages import subject_key
from engine.models import MessageSubscription, ProcessInstance
from engine.runtime import find_task

from .helpers import audit_actions, bpmn, instance_row, open_tasks

ELLA = {"name": "Ella Stone", "date_of_birth": "2014-05-01"}
ELLA_KEY = subject_key("Ella Stone", "2014-05-01")


def start_watch(engine: Engine, case: str = "C-1", subject: dict[str, Any] | None = None) -> int:
    engine.deploy([bpmn("new_information.bpmn")], "olive.owner")
    started = engine.start(
        "watch", "sam.screener", case_reference=case, team_key="mash", data={"subject": subject or ELLA}
    )
    return started.instance_id


def subscriptions(engine: Engine, instance_id: int | None = None) -> list[tuple[str, str | None, str]]:
    query = sa.select(
        MessageSubscription.message_name, MessageSubscription.correlation_key, MessageSubscription.element_id
    )
    if instance_id is not None:
        query = query.where(MessageSubscription.instance_id == instance_id)
    with engine.db.read() as session:
        return sorted(tuple(row) for row in session.execute(query))


def test_subject_key_ignores_case_spacing_and_accents() -> None:
    assert subject_key("  Ella   STONE ", "2014-05-01") == "ella stone|2014-05-01"
    assert subject_key("Zoë Brontë", "2015-01-02") == subject_key("zoe bronte", "2015-01-02")
    assert subject_key("Ella Stone", "2014-05-01") != subject_key("Ella Stone", "2014-05-02")


def test_a_running_instance_is_subscribed_to_its_event_subprocess_message(engine: Engine) -> None:
    instance_id = start_watch(engine)
    assert subscriptions(engine, instance_id) == [("new_information", ELLA_KEY, "news_received")]


def test_correlating_opens_a_task_without_interrupting_the_work(engine: Engine) -> None:
    instance_id = start_watch(engine)
    before = instance_row(engine, instance_id).revision

    deliveries = engine.correlate_message(
        "new_information", ELLA_KEY, {"concern": "Seen alone at night"}, "police-system"
    )

    assert [(d.instance_id, d.case_reference) for d in deliveries] == [(instance_id, "C-1")]
    tasks = open_tasks(engine, "C-1")
    assert sorted(tasks) == ["read_news", "work"]  # the main work goes on
    assert deliveries[0].open_tasks == [tasks["read_news"].id]
    # An `instructions` property shows the message's content with the task.
    assert tasks["read_news"].instructions == "Read what was sent.\n\nSeen alone at night"
    assert instance_row(engine, instance_id).revision == before + 1
    assert "message.correlated" in audit_actions(engine)
    # The payload is in the task's data, under the message variable.
    engine.complete(tasks["read_news"].id, "sam.screener", {})
    # Still subscribed: a second message opens a second task.
    assert subscriptions(engine, instance_id) == [("new_information", ELLA_KEY, "news_received")]
    engine.correlate_message("new_information", ELLA_KEY, {"concern": "again"}, "police-system")
    assert [t.element_id for t in engine.tasks(case_reference="C-1")].count("read_news") == 1


def test_the_payload_reaches_the_process_data(engine: Engine) -> None:
    instance_id = start_watch(engine)
    engine.correlate_message("new_information", ELLA_KEY, {"concern": "Seen alone"}, "police-system")
    task = open_tasks(engine, "C-1")["read_news"]
    with engine.db.read() as session:
        _, workflow, _, _ = engine._load(session, instance_id, None)
    spiff_task = find_task(workflow, task.id)
    assert spiff_task is not None
    assert spiff_task.data["new_information"] == {"concern": "Seen alone"}
    assert spiff_task.data["subject"] == ELLA


def test_an_intermediate_catch_event_subscribes_while_it_waits_and_not_after(engine: Engine) -> None:
    instance_id = start_watch(engine)
    engine.complete(open_tasks(engine, "C-1")["work"].id, "sam.screener", {})
    assert subscriptions(engine, instance_id) == [
        ("new_information", ELLA_KEY, "news_received"),
        ("reply_received", ELLA_KEY, "wait_reply"),
    ]
    engine.correlate_message("reply_received", ELLA_KEY, {"answer": "yes"}, "health-system")
    assert sorted(open_tasks(engine, "C-1")) == ["read_reply"]
    assert subscriptions(engine, instance_id) == [("new_information", ELLA_KEY, "news_received")]
    engine.complete(open_tasks(engine, "C-1")["read_reply"].id, "sam.screener", {})
    # The instance has ended: nothing waits, and a late message is refused.
    assert instance_row(engine, instance_id).status == "completed"
    assert subscriptions(engine, instance_id) == []
    with pytest.raises(NotFound, match="new_information"):
        engine.correlate_message("new_information", ELLA_KEY, {}, "police-system")


def test_an_unknown_key_is_not_found_and_changes_nothing(engine: Engine) -> None:
    instance_id = start_watch(engine)
    revision = instance_row(engine, instance_id).revision
    actions = audit_actions(engine)
    with pytest.raises(NotFound, match="no running process is waiting for the message 'new_information'"):
        engine.correlate_message("new_information", subject_key("Nobody", "2000-01-01"), {}, "police-system")
    with pytest.raises(NotFound):
        engine.correlate_message("no_such_message", ELLA_KEY, {}, "police-system")
    assert instance_row(engine, instance_id).revision == revision
    assert audit_actions(engine) == actions


def test_a_payload_that_is_not_json_is_refused(engine: Engine) -> None:
    start_watch(engine)
    with pytest.raises(InvalidData):
        engine.correlate_message("new_information", ELLA_KEY, {"when": float("nan")}, "police-system")
    assert sorted(open_tasks(engine, "C-1")) == ["work"]


def test_a_message_goes_to_the_subject_it_is_keyed_on_only(engine: Engine) -> None:
    ella = start_watch(engine, "C-1")
    finn = start_watch(engine, "C-2", {"name": "Finn Stone", "date_of_birth": "2017-11-20"})
    deliveries = engine.correlate_message("new_information", ELLA_KEY, {}, "police-system")
    assert [d.instance_id for d in deliveries] == [ella]
    assert "read_news" not in open_tasks(engine, "C-2")
    assert finn != ella


def test_cancelling_removes_the_subscriptions(engine: Engine) -> None:
    instance_id = start_watch(engine)
    engine.cancel(instance_id, "mo.manager", "opened in error")
    assert subscriptions(engine, instance_id) == []


def test_several_commands_in_one_atomic_block_roll_back_together(engine: Engine) -> None:
    start_watch(engine)
    with pytest.raises(NotFound), engine.atomic():
        engine.correlate_message("new_information", ELLA_KEY, {"n": 1}, "police-system")
        engine.correlate_message("new_information", subject_key("Nobody", "2000-01-01"), {}, "x")
    assert sorted(open_tasks(engine, "C-1")) == ["work"]


@pytest.mark.postgres
def test_concurrent_deliveries_to_one_instance_both_land(postgres_url: str, fake_clock: Any) -> None:
    from tests.conftest import make_engine

    engine = make_engine(postgres_url)
    try:
        instance_id = start_watch(engine)
        revision = instance_row(engine, instance_id).revision
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def deliver(n: int) -> None:
            try:
                barrier.wait()
                engine.correlate_message("new_information", ELLA_KEY, {"n": n}, f"system-{n}")
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(n,)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        # Serialised on the instance lock: two tasks, two revisions, nothing lost.
        names = [t.element_id for t in engine.tasks(case_reference="C-1")]
        assert names.count("read_news") == 2
        with engine.db.read() as session:
            assert (
                session.scalar(sa.select(ProcessInstance.revision).where(ProcessInstance.id == instance_id))
                == revision + 2
            )
    finally:
        engine.db.dispose()
