"""A council on a fake clock: the vocabulary scenario tests are written in.

Times are given and read in Europe/London, as a council states them.  Moving the
clock fires due timers, as the worker would, so a scenario reads like the case file.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from engine.clock import FakeClock
from engine.core import Engine
from engine.models import AuditEvent, CaseFact, CaseLink, CaseRecord, StatutoryClock, Task, Timer

LONDON = ZoneInfo("Europe/London")


def local(text: str) -> datetime:
    """``"2023-04-28 10:00"`` in London, as an aware instant."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


class Council:
    def __init__(self, engine: Engine, clock: FakeClock) -> None:
        self.engine = engine
        self.clock = clock

    # ---------------------------------------------------------------- time

    def at(self, when: str) -> None:
        """Set the clock to a London time and fire whatever fell due."""
        self.clock.set(local(when))
        self.fire_due()

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))
        self.fire_due()

    def fire_due(self) -> int:
        fired = 0
        while self.engine.fire_next_due("test-worker") is not None:
            fired += 1
        return fired

    def now_local(self) -> datetime:
        return self.clock.now().astimezone(LONDON)

    # ---------------------------------------------------------------- work

    def contact(
        self, children: list[dict[str, Any]], by: str = "sam.screener", team: str = "mash", **shared: Any
    ) -> list[str]:
        """Record a contact about one or more children; return their case references."""
        results = self.engine.start_for_subjects(
            "contact", by, children, shared, team_key=team, subject_field="child", subjects_field="children"
        )
        return [r.case_reference for r in results if r.case_reference]

    def open_tasks(self, case: str) -> list[Task]:
        return self.engine.tasks(case_reference=case)

    def open_elements(self, case: str) -> set[str]:
        return {t.element_id for t in self.open_tasks(case)}

    def task(self, case: str, element: str) -> Task:
        matches = [t for t in self.open_tasks(case) if t.element_id == element]
        if not matches:
            raise AssertionError(
                f"{case} has no open '{element}' task; open: {sorted(self.open_elements(case))}"
            )
        return matches[0]

    def complete(self, case: str, element: str, user: str, **answers: Any) -> None:
        task = self.task(case, element)
        if task.assignee not in (None, user):
            raise AssertionError(f"'{element}' on {case} is held by {task.assignee}, not {user}")
        self.engine.complete(task.id, user, answers)

    def claim(self, case: str, element: str, user: str) -> None:
        self.engine.claim(self.task(case, element).id, user)

    def assign(self, case: str, element: str, to: str, by: str) -> None:
        self.engine.assign(self.task(case, element).id, to, by)

    # ------------------------------------------------------------- records

    def case(self, reference: str) -> CaseRecord:
        return self.engine.get_case(reference)

    def facts(self, reference: str) -> dict[str, Any]:
        with self.engine.db.read() as session:
            case_id = self._case_id(session, reference)
            rows = session.scalars(sa.select(CaseFact).where(CaseFact.case_id == case_id))
            return {row.name: row.value for row in rows}

    def clocks(self, reference: str) -> dict[str, StatutoryClock]:
        with self.engine.db.read() as session:
            case_id = self._case_id(session, reference)
            rows = session.scalars(
                sa.select(StatutoryClock).where(StatutoryClock.case_id == case_id).order_by(StatutoryClock.id)
            )
            return {row.name: row for row in rows}

    def clock_target_date(self, reference: str, name: str) -> date | None:
        target = self.clocks(reference)[name].target_at
        return target.astimezone(LONDON).date() if target else None

    def due_date(self, case: str, element: str) -> date | None:
        due = self.task(case, element).due_at
        return due.astimezone(LONDON).date() if due else None

    def timers(self, reference: str) -> list[Timer]:
        with self.engine.db.read() as session:
            case_id = self._case_id(session, reference)
            return list(
                session.scalars(sa.select(Timer).where(Timer.case_id == case_id).order_by(Timer.due_at))
            )

    def events(self, reference: str, action: str | None = None) -> list[AuditEvent]:
        with self.engine.db.read() as session:
            case_id = self._case_id(session, reference)
            query = sa.select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq)
            if action:
                query = query.where(AuditEvent.action == action)
            return list(session.scalars(query))

    def linked(self, reference: str) -> set[str]:
        with self.engine.db.read() as session:
            case_id = self._case_id(session, reference)
            other = sa.orm.aliased(CaseRecord)
            rows = session.scalars(
                sa.select(other.reference)
                .join(CaseLink, CaseLink.linked_case_id == other.id)
                .where(CaseLink.case_id == case_id)
            )
            return set(rows)

    def instance_data(self, reference: str) -> list[dict[str, Any]]:
        """The data each running instance of the case holds (to check what a child's record contains)."""
        from engine.models import ProcessInstance

        with self.engine.db.read() as session:
            case_id = self._case_id(session, reference)
            ids = session.scalars(
                sa.select(ProcessInstance.id).where(ProcessInstance.case_id == case_id)
            ).all()
        return [self.engine.instance_data(i) for i in ids]

    @staticmethod
    def _case_id(session: sa.orm.Session, reference: str) -> int:
        case_id = session.scalar(sa.select(CaseRecord.id).where(CaseRecord.reference == reference))
        if case_id is None:
            raise AssertionError(f"no case {reference}")
        return case_id
