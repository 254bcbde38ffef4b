"""The commands as a user meets them, on SQLite and on PostgreSQL: start, claim, unclaim, assign,
complete, cancel, and the work queues that show their results."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from engine import directory
from engine.core import Engine
from engine.errors import Conflict, InvalidData, NotFound, PermissionDenied

from .helpers import (
    audit_count,
    deploy_triage,
    do_checks,
    instance_row,
    open_task,
    open_tasks,
    snapshot,
    start_triage,
    task_statuses,
    walk_to_allocate,
)


@pytest.fixture
def triage(any_engine: Engine) -> Engine:
    deploy_triage(any_engine)
    return any_engine


def add_contact_officer(engine: Engine, username: str = "cam.colleague") -> str:
    """A second contact officer in the MASH, so two people can want the same task."""
    staff = {
        "users": [
            {
                "username": username,
                "display_name": "Cam Colleague",
                "qualified": False,
                "memberships": [["mash", "contact_officer"]],
            }
        ]
    }
    with engine.db.transaction() as session:
        directory.sync_staff(session, staff)
    return username


# ------------------------------------------------------------------------------------------- start


def test_start_opens_the_case_and_the_first_task(triage: Engine) -> None:
    started = start_triage(triage, "C-1", "mash", data={"referrer": "school"})

    case = triage.get_case("C-1")
    assert (case.reference, case.team_key, case.status) == ("C-1", "mash", "open")
    [task] = triage.tasks(case_reference="C-1")
    assert started.open_tasks == [task.id]
    assert started.case_reference == "C-1"
    assert (task.element_id, task.name) == ("record_contact", "Record the contact")
    assert task.role_key == "contact_officer"  # from the lane "Contact officer"
    assert task.team_key == "mash"  # from the case
    assert task.form_key == "triage-record-contact.schema.json"  # from the spiffworkflow property
    assert (task.status, task.assignee, task.case_id, task.instance_id) == (
        "ready",
        None,
        case.id,
        started.instance_id,
    )
    row = instance_row(triage, started.instance_id)
    assert (row.status, row.revision, row.case_id) == ("running", 1, case.id)
    assert triage.instance_data(started.instance_id)["referrer"] == "school"


def test_a_second_process_on_an_existing_case_reuses_the_case(triage: Engine) -> None:
    start_triage(triage, "C-1", "mash")
    start_triage(triage, "C-1", "mash")

    assert len(triage.tasks(case_reference="C-1")) == 2
    assert {t.case_id for t in triage.tasks(case_reference="C-1")} == {triage.get_case("C-1").id}


def test_starting_an_unknown_process_is_not_found(triage: Engine) -> None:
    with pytest.raises(NotFound, match="no_such_process"):
        triage.start("no_such_process", "sam.screener", case_reference="C-9", team_key="mash")
    with pytest.raises(NotFound):
        triage.get_case("C-9")


# ------------------------------------------------------------------------------ claim and unclaim


def test_claim_and_unclaim(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")

    triage.claim(task.id, "sam.screener")
    claimed = triage.get_task(task.id)
    assert (claimed.status, claimed.assignee) == ("claimed", "sam.screener")
    assert [t.id for t in triage.tasks(user="sam.screener")] == [task.id]

    triage.unclaim(task.id, "sam.screener")
    released = triage.get_task(task.id)
    assert (released.status, released.assignee) == ("ready", None)
    assert triage.tasks(user="sam.screener") == []


def test_a_task_claimed_by_one_cannot_be_claimed_or_completed_by_another(triage: Engine) -> None:
    other = add_contact_officer(triage)
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    triage.claim(task.id, "sam.screener")
    before = snapshot(triage)

    with pytest.raises(Conflict, match=r"sam\.screener"):
        triage.claim(task.id, other)
    with pytest.raises(Conflict, match=r"sam\.screener"):
        triage.complete(task.id, other, {"note": "mine"})
    with pytest.raises(Conflict):
        triage.unclaim(task.id, other)

    assert snapshot(triage) == before


def test_claim_without_the_role_is_refused_naming_the_role(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)

    with pytest.raises(PermissionDenied) as caught:
        triage.claim(task.id, "pat.police")

    assert "Contact officer" in str(caught.value)
    assert snapshot(triage) == before


def test_completing_a_ready_task_without_the_role_is_refused(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)

    with pytest.raises(PermissionDenied, match="Contact officer"):
        triage.complete(task.id, "hana.health", {"note": "not mine to do"})

    assert snapshot(triage) == before


# ------------------------------------------------------------------------------------------ assign


def test_a_manager_assigns_and_reassigns(triage: Engine) -> None:
    other = add_contact_officer(triage)
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")

    triage.assign(task.id, "sam.screener", by="mo.manager")
    assert (triage.get_task(task.id).status, triage.get_task(task.id).assignee) == ("claimed", "sam.screener")

    triage.assign(task.id, other, by="mo.manager")
    assert triage.get_task(task.id).assignee == other
    assert [t.id for t in triage.tasks(user=other)] == [task.id]
    assert triage.tasks(user="sam.screener") == []


def test_someone_who_is_not_a_manager_cannot_assign(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)

    with pytest.raises(PermissionDenied, match="manager"):
        triage.assign(task.id, "sam.screener", by="sam.screener")

    assert snapshot(triage) == before


def test_a_manager_of_another_team_cannot_assign(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")

    with pytest.raises(PermissionDenied, match="mash"):
        triage.assign(task.id, "sam.screener", by="tara.team")  # manages 'assessment'


def test_assigning_to_someone_without_the_role_is_refused(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)

    with pytest.raises(PermissionDenied, match="Contact officer"):
        triage.assign(task.id, "hana.health", by="mo.manager")

    assert snapshot(triage) == before


def test_the_qualified_constraint_of_a_role_is_enforced(triage: Engine) -> None:
    allocate = walk_to_allocate(triage)
    assert (allocate.role_key, allocate.team_key) == ("team_manager", "mash")
    before = snapshot(triage)

    with pytest.raises(PermissionDenied) as caught:
        triage.assign(allocate.id, "ash.assistant", by="mo.manager")

    assert "qualified" in str(caught.value)
    assert snapshot(triage) == before
    triage.assign(allocate.id, "mo.manager", by="mo.manager")  # qualified and a team manager of mash
    assert triage.get_task(allocate.id).assignee == "mo.manager"


# ---------------------------------------------------------------------------------------- complete


def test_completing_the_same_task_twice_is_a_conflict_and_changes_nothing(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    triage.complete(task.id, "sam.screener", {"note": "first"})
    before = snapshot(triage)

    with pytest.raises(Conflict, match=r"completed.*sam\.screener"):
        triage.complete(task.id, "sam.screener", {"note": "second"})

    assert snapshot(triage) == before
    row = triage.get_task(task.id)
    assert (row.status, row.completed_by, row.outcome) == ("completed", "sam.screener", {"note": "first"})


def test_completing_with_a_stale_revision_is_a_conflict(triage: Engine) -> None:
    started = start_triage(triage)
    triage.complete(open_task(triage, "C-1", "record_contact").id, "sam.screener", {})
    seen = instance_row(triage, started.instance_id).revision
    police = open_task(triage, "C-1", "police_check")
    health = open_task(triage, "C-1", "health_check")
    triage.complete(police.id, "pat.police", {"known_to_police": False}, expected_revision=seen)
    before = snapshot(triage)

    with pytest.raises(Conflict, match="reload"):
        triage.complete(health.id, "hana.health", {"known_to_health": True}, expected_revision=seen)

    assert snapshot(triage) == before
    assert instance_row(triage, started.instance_id).revision == seen + 1
    triage.complete(health.id, "hana.health", {"known_to_health": True}, expected_revision=seen + 1)
    assert open_task(triage, "C-1", "decide").status == "ready"


UNSTORABLE: dict[str, Any] = {
    "a set": {"siblings": {"A", "B"}},
    "NaN": {"score": float("nan")},
    "infinity": {"score": math.inf},
    "NaN, nested": {"scores": {"police": [1.0, float("nan")]}},
    "a datetime": {"seen_at": datetime(2024, 3, 6, 9, 30, tzinfo=UTC)},
    "bytes": {"scan": b"\x00\x01"},
    "a key with a space": {"first name": "Jo"},
    "a key starting with a digit": {"1st_contact": "yes"},
    "a non-string key": {1: "one"},
    "a private key": {"_spiff_internal": 1},
    "not an object": ["refer"],
}


@pytest.mark.parametrize("case", list(UNSTORABLE), ids=list(UNSTORABLE))
def test_data_that_cannot_be_stored_as_json_is_refused_before_anything_is_written(
    triage: Engine, case: str
) -> None:
    started = start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)
    events = audit_count(triage)

    with pytest.raises(InvalidData):
        triage.complete(task.id, "sam.screener", UNSTORABLE[case])
    with pytest.raises(InvalidData):
        start_triage(triage, "C-2", data=UNSTORABLE[case])

    assert audit_count(triage) == events
    assert snapshot(triage) == before
    assert instance_row(triage, started.instance_id).revision == 1
    with pytest.raises(NotFound):
        triage.get_case("C-2")


def test_a_nul_character_is_refused_as_invalid_data_on_every_store(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)

    with pytest.raises(InvalidData):
        triage.complete(task.id, "sam.screener", {"note": "pasted from a PDF\x00"})

    assert snapshot(triage) == before


def test_unknown_tasks_and_users_are_not_found(triage: Engine) -> None:
    start_triage(triage)
    task = open_task(triage, "C-1", "record_contact")
    before = snapshot(triage)
    unknown = "00000000-0000-4000-8000-000000000000"

    with pytest.raises(NotFound, match=unknown):
        triage.complete(unknown, "sam.screener", {})
    with pytest.raises(NotFound):
        triage.claim(unknown, "sam.screener")
    with pytest.raises(NotFound):
        triage.get_task(unknown)
    with pytest.raises(NotFound, match=r"nobody\.here"):
        triage.claim(task.id, "nobody.here")
    with pytest.raises(NotFound):
        triage.cancel(987654, "mo.manager", "no such instance")

    assert snapshot(triage) == before


# ------------------------------------------------------------------------------------------ cancel


def test_cancelling_an_instance_cancels_its_open_tasks(triage: Engine) -> None:
    started = start_triage(triage)
    record = open_task(triage, "C-1", "record_contact")
    triage.complete(record.id, "sam.screener", {})
    police = open_task(triage, "C-1", "police_check")
    triage.claim(police.id, "pat.police")
    health = open_task(triage, "C-1", "health_check")

    triage.cancel(started.instance_id, "mo.manager", "duplicate referral")

    assert triage.tasks(case_reference="C-1") == []
    assert task_statuses(triage, started.instance_id) == {
        record.id: ("record_contact", "completed", "sam.screener"),
        police.id: ("police_check", "cancelled", "pat.police"),
        health.id: ("health_check", "cancelled", None),
    }
    assert instance_row(triage, started.instance_id).status == "cancelled"
    before = snapshot(triage)
    with pytest.raises(Conflict, match="cancelled"):
        triage.complete(health.id, "hana.health", {})
    with pytest.raises(Conflict, match="cancelled"):
        triage.cancel(started.instance_id, "mo.manager", "again")
    assert snapshot(triage) == before


def test_cancelling_needs_a_reason(triage: Engine) -> None:
    started = start_triage(triage)
    before = snapshot(triage)

    with pytest.raises(InvalidData):
        triage.cancel(started.instance_id, "mo.manager", "   ")

    assert snapshot(triage) == before


# ------------------------------------------------------------------------------------- a full walk


def test_a_full_walk_of_the_loop_completes_with_the_last_answers(triage: Engine) -> None:
    started = start_triage(triage, data={"referrer": "school"})
    for round_, decision in enumerate(["more_information", "more_information", "refer"], start=1):
        record = open_task(triage, "C-1", "record_contact")
        triage.claim(record.id, "sam.screener")
        triage.complete(record.id, "sam.screener", {"note": f"round {round_}"})
        assert set(open_tasks(triage, "C-1")) == {"police_check", "health_check"}
        do_checks(triage, "C-1", {"health_check": {"health_round": round_}})
        triage.complete(open_task(triage, "C-1", "decide").id, "mo.manager", {"decision": decision})

    allocate = open_task(triage, "C-1", "allocate")
    triage.complete(allocate.id, "mo.manager", {"allocated_to": "sara.social"})

    row = instance_row(triage, started.instance_id)
    assert row.status == "completed"
    assert row.ended_at is not None
    assert triage.tasks(case_reference="C-1") == []
    data = triage.instance_data(started.instance_id)
    assert data["referrer"] == "school"
    assert data["note"] == "round 3"
    assert data["health_round"] == 3
    assert data["decision"] == "refer"
    assert data["allocated_to"] == "sara.social"
    done = triage.tasks(case_reference="C-1", include_closed=True)
    assert sorted(t.element_id for t in done) == sorted(
        ["record_contact", "police_check", "health_check", "decide"] * 3 + ["allocate"]
    )
    assert {t.status for t in done} == {"completed"}


def test_the_loop_keeps_both_partners_latest_answers(triage: Engine) -> None:
    """SpiffWorkflow 3.2's parallel join would keep the stale answer of the branch that finished first
    (its data is overwritten by the other branch's copy from the previous round; cf.
    sartography/SpiffWorkflow#440): each partner's latest answer must survive every round."""
    started = start_triage(triage)
    for round_, decision in enumerate(["more_information", "more_information", "refer"], start=1):
        triage.complete(open_task(triage, "C-1", "record_contact").id, "sam.screener", {})
        # Health answers first, police second.
        health = open_task(triage, "C-1", "health_check")
        triage.complete(health.id, "hana.health", {"health_round": round_})
        police = open_task(triage, "C-1", "police_check")
        triage.complete(police.id, "pat.police", {"police_round": round_})
        triage.complete(open_task(triage, "C-1", "decide").id, "mo.manager", {"decision": decision})

    data = triage.instance_data(started.instance_id)
    assert (data["police_round"], data["health_round"]) == (3, 3)


# ------------------------------------------------------------------------------------------ queues


def test_the_queues_show_the_right_tasks(triage: Engine) -> None:
    start_triage(triage, "C-1", "mash")
    start_triage(triage, "C-2", "mash")
    start_triage(triage, "C-3", "assessment")
    c1 = open_task(triage, "C-1", "record_contact")
    c2 = open_task(triage, "C-2", "record_contact")
    c3 = open_task(triage, "C-3", "record_contact")
    triage.claim(c1.id, "sam.screener")
    triage.complete(c2.id, "sam.screener", {})

    mine = triage.tasks(user="sam.screener")
    assert [t.id for t in mine] == [c1.id]
    mash = {(t.case_id, t.element_id) for t in triage.tasks(team="mash")}
    case = {ref: triage.get_case(ref).id for ref in ("C-1", "C-2", "C-3")}
    assert mash == {
        (case["C-1"], "record_contact"),
        (case["C-2"], "police_check"),
        (case["C-2"], "health_check"),
    }
    assert [t.id for t in triage.tasks(team="assessment")] == [c3.id]
    assert {t.element_id for t in triage.tasks(case_reference="C-2")} == {"police_check", "health_check"}
    assert c2.id in {t.id for t in triage.tasks(case_reference="C-2", include_closed=True)}
    assert triage.tasks(case_reference="C-404") == []
    assert triage.tasks(team="edt") == []
