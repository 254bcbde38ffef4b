"""Oversight: the monthly case-file audit, supervision reminders, and the demo seed.

Closed cases for the audit come from the test's own set-up process (see test_transfer), through
the engine's API: the audit samples whatever closed, however it closed.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from engine.errors import PermissionDenied
from engine.models import CaseRecord, Membership, Role, Task, User
from engine.seed import run_seed
from tests.scenario.harness import LONDON, Council
from tests.scenario.test_transfer import CHECKLIST, open_case, prepare


def audit_tasks(council: Council) -> list[Task]:
    return [
        t
        for t in council.engine.tasks()
        if t.process_key == "case_file_audit" and t.element_id == "audit_case_file"
    ]


def supervision_tasks(council: Council) -> list[Task]:
    return [t for t in council.engine.tasks() if t.process_key == "supervision"]


def team_managers(council: Council) -> list[str]:
    with council.engine.db.read() as session:
        return sorted(
            set(
                session.scalars(
                    sa.select(User.username)
                    .join(Membership, Membership.user_id == User.id)
                    .join(Role, Role.id == Membership.role_id)
                    .where(Role.key == "team_manager", User.active.is_(True))
                )
            )
        )


def local_date(task: Task) -> date:
    assert task.due_at is not None
    return task.due_at.astimezone(LONDON).date()


AUDIT = {
    "audit_date": "2023-05-03",
    "audit_grade": "requires_improvement",
    "audit_chronology_up_to_date": True,
    "audit_child_seen_and_heard": True,
    "audit_timescales_met": False,
    "audit_management_oversight": True,
    "audit_outcome_letters_sent": False,
    "audit_feedback_requested": False,
    "audit_closure_appropriate": True,
    "audit_learning": "The referrer was not told the outcome in writing",
}


def audited(council: Council, task: Task) -> list[str]:
    """Complete an audit as its holder; return the cases its month's audits covered (the month's results)."""
    assert task.assignee is not None
    council.engine.complete(task.id, task.assignee, AUDIT)
    results = council.engine.instance_data(task.instance_id)["audit_results"]
    return sorted(r["case_reference"] for r in results)


def test_monthly_audit_samples_closed_cases_into_manager_tasks(council: Council) -> None:
    prepare(council)
    council.at("2023-03-01 10:00")
    council.engine.start("case_file_audit", "sid.service")
    assert audit_tasks(council) == []  # nothing closed yet: nothing to audit
    # The next sample: 09:00 on the first working day of next month (1 April 2023 is a Saturday).
    [waiting] = [t for t in council.engine.timers() if t.element_id == "start_of_next_month"]
    assert waiting.due_at.astimezone(LONDON).isoformat() == "2023-04-03T09:00:00+01:00"

    council.at("2023-03-15 11:00")
    march = [open_case(council, f"CH-A{n:04d}", close="RC8") for n in range(1, 4)]
    assert all(council.case(ref).status == "closed" for ref in march)

    council.at("2023-04-03 09:00")  # the timer fires
    [first] = audit_tasks(council)  # 10% of 3, at least one
    assert (first.role_key, first.team_key, first.case_id) == ("team_manager", None, None)
    # Straight to a team manager, in turn (any team's manager may audit).
    managers = team_managers(council)  # with the receiving team's: lee.longterm, mo.manager, tara.team...
    assert (first.status, first.assignee) == ("claimed", managers[(0 + 4) % len(managers)])
    # Due in 20 working days: Good Friday, Easter Monday and 1 May are not working days.
    assert local_date(first) == date(2023, 5, 4)
    # Nobody without the role can be given an audit.
    with pytest.raises(PermissionDenied):
        council.engine.assign(first.id, "sara.social", by="tara.team")

    council.at("2023-04-20 12:00")
    april = [open_case(council, f"CH-B{n:04d}", close="RC9") for n in range(1, 21)]

    council.at("2023-05-02 09:00")  # 1 May is a bank holiday: the sample is drawn on the 2nd
    open_now = audit_tasks(council)
    # Last month's unfinished audit is still there: audits never hold up the next sample.
    assert first.id in {t.id for t in open_now}
    may = [t for t in open_now if t.id != first.id]
    assert len(may) == 2  # 10% of April's 20 (March's closures are more than 31 days old)
    assert sorted(t.assignee or "" for t in may) == sorted(managers[(i + 5) % len(managers)] for i in (0, 1))

    audited(council, may[0])
    may_sample = audited(council, may[1])
    assert len(may_sample) == 2 and set(may_sample) <= set(april)
    [april_sample] = audited(council, first)
    assert april_sample in march
    done = council.engine.get_task(first.id)
    assert done.outcome is not None
    assert (done.status, done.completed_by, done.outcome["audit_grade"]) == (
        "completed",
        "mo.manager",
        "requires_improvement",
    )
    # The schedule waits for June.
    [waiting] = [t for t in council.engine.timers() if t.element_id == "start_of_next_month"]
    assert waiting.due_at.astimezone(LONDON).isoformat() == "2023-06-01T09:00:00+01:00"


def test_supervision_reminders_every_four_weeks(council: Council) -> None:
    council.at("2023-04-28 10:00")  # Friday; 1 May and 8 May 2023 are bank holidays
    council.engine.start("supervision", "tara.team", data={"worker": "sara.social", "team": "assessment"})

    [first] = supervision_tasks(council)
    assert (first.element_id, first.role_key, first.team_key) == (
        "hold_supervision",
        "team_manager",
        "assessment",
    )
    assert local_date(first) == date(2023, 5, 9)  # 5 working days
    with pytest.raises(PermissionDenied):  # a manager of another team does not supervise Sara
        council.engine.claim(first.id, "mo.manager")

    council.at("2023-05-02 10:00")
    record = {
        "supervision_date": "2023-05-02",
        "supervision_notes_summary": "Caseload of 14; two section 47 enquiries; training plan agreed",
        "supervision_cases_discussed": ["CH-000012", "CH-000019"],
        "supervision_schedule": "continue",
    }
    council.engine.complete(first.id, "tara.team", record)
    assert supervision_tasks(council) == []
    [waiting] = [t for t in council.engine.timers() if t.element_id == "four_weeks_on"]
    assert waiting.due_at.astimezone(LONDON).isoformat() == "2023-05-30T10:00:00+01:00"

    council.at("2023-05-30 10:00")  # four weeks on: the next reminder
    [second] = supervision_tasks(council)
    assert local_date(second) == date(2023, 6, 6)
    # Not held: a reminder to the manager when due, the service manager after 10 working days.
    council.at("2023-06-06 17:30")
    assert council.engine.get_task(second.id).escalation_level == 1
    council.at("2023-06-13 17:30")
    assert council.engine.get_task(second.id).escalation_level == 3

    council.engine.complete(
        second.id,
        "tara.team",
        {**record, "supervision_date": "2023-06-14", "supervision_schedule": "end"},
    )
    assert supervision_tasks(council) == []
    assert [t for t in council.engine.timers() if t.element_id == "four_weeks_on"] == []


def test_demo_seed_fills_queues_once(council: Council) -> None:
    seed = json.loads((council.engine.registry.root / "demo" / "cases.json").read_text(encoding="utf-8"))
    council.at("2023-05-10 10:30")

    first = run_seed(council.engine, seed)
    assert not first.skipped
    assert len(first.cases) >= 12
    assert all(ref.startswith(seed["reference_prefix"]) for ref in first.cases.values())
    council.fire_due()
    with council.engine.db.read() as session:
        cases = session.scalar(sa.select(sa.func.count()).select_from(CaseRecord))
        tasks = session.scalar(sa.select(sa.func.count()).select_from(Task))
    statuses = {council.case(ref).status for ref in first.cases.values()}
    assert statuses == {"open", "closed"}  # work at every stage, and some closed for the audit
    queues = {team: council.engine.tasks(team=team) for team in ("mash", "assessment", "longterm")}
    assert all(queues.values()), {team: len(q) for team, q in queues.items()}
    assert {t.element_id for t in queues["longterm"]} == {"decide_transfer"}  # siblings, together
    assert council.engine.tasks(user="sara.social")
    assert len(supervision_tasks(council)) == 3
    assert audit_tasks(council)

    second = run_seed(council.engine, seed)
    assert second.skipped
    with council.engine.db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CaseRecord)) == cases
        assert session.scalar(sa.select(sa.func.count()).select_from(Task)) == tasks


def test_seed_runner_labels_cases_fills_placeholders_and_runs_once(council: Council) -> None:
    prepare(council)  # the receiving team
    council.at("2023-05-10 10:30")  # Wednesday
    steps: list[dict[str, Any]] = [
        {"_comment": "ignored"},
        {
            "start": "case_transfer",
            "as": "sara.social",
            "case": "amy",
            "team": "assessment",
            "name": "Amy Example",
            "data": {"to_team": "longterm", "reason": "After the first core group", "siblings": []},
        },
        {
            "complete": "complete_transfer_checklist",
            "case": "amy",
            "as": "sara.social",
            "answers": {
                **{k: v for k, v in CHECKLIST.items() if k != "child_last_seen_date"},
                "child_last_seen_date": "{today-2wd}",
                "handover_summary": "Transfer of {case:amy}, requested {today}, seen {now-1h}",
            },
        },
        {"start": "supervision", "as": "tara.team", "data": {"worker": "sara.social", "team": "assessment"}},
        {"claim": "hold_supervision", "process": "supervision", "as": "tara.team"},
        {"claim": "decide_transfer", "case": 0, "as": "lee.longterm"},  # a case by its index
    ]
    first = run_seed(council.engine, steps, reference_prefix="SEED-")
    assert (first.skipped, first.cases, first.references) == (False, {"amy": "SEED-001"}, ["SEED-001"])
    assert (first.started, first.completed, first.claimed) == (2, 1, 2)
    amy = council.case("SEED-001")
    assert (amy.subject_name, amy.team_key) == ("Amy Example", "assessment")
    [checklist] = [
        t.outcome
        for t in council.engine.tasks(case_reference="SEED-001", include_closed=True)
        if t.element_id == "complete_transfer_checklist"
    ]
    assert checklist is not None
    assert checklist["child_last_seen_date"] == "2023-05-05"  # 8 May 2023 was a bank holiday
    assert (
        checklist["handover_summary"] == "Transfer of SEED-001, requested 2023-05-10, seen 2023-05-10T09:30"
    )
    assert council.open_elements("SEED-001") == {"decide_transfer"}
    assert council.task("SEED-001", "decide_transfer").assignee == "lee.longterm"
    assert [t.assignee for t in supervision_tasks(council)] == ["tara.team"]

    again = run_seed(council.engine, steps, reference_prefix="SEED-")
    assert again.skipped
    assert len(supervision_tasks(council)) == 1
    assert council.open_elements("SEED-001") == {"decide_transfer"}
