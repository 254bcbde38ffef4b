"""Who may see what: decided here, and nowhere else.

Each role in processes/roles.json carries an ``access`` level:

- practitioner: the cases of their teams and the cases allocated to them, and those cases' tasks;
- manager: as a practitioner, plus their teams' dashboards, and assigning work in their teams;
- service: every case and every dashboard (a service manager watches the whole service);
- partner (police, health, education): only the tasks offered to them, never a child's case page;
- owner / admin: processes, and users and teams (not children's records).

Every view of a child's record is written to the audit trail (see :func:`record_view`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app

from engine import audit, clock
from engine.audit import PendingEvent
from engine.models import CaseRecord, Task

from .auth import Person

CASE_LEVELS = {"practitioner", "manager", "service"}


@lru_cache(maxsize=1)
def _levels_by_role(roles_json: str) -> dict[str, str]:
    import json

    return {r["key"]: r.get("access", "practitioner") for r in json.loads(roles_json)["roles"]}


def _role_levels() -> dict[str, str]:
    """role key -> access level, re-read only when roles.json changes."""
    from . import engine_of

    path = engine_of(current_app).registry.root / "roles.json"
    stamp = path.stat().st_mtime_ns
    cached = _ROLE_LEVELS.get(str(path))
    if cached is None or cached[0] != stamp:
        cached = (stamp, _levels_by_role(path.read_text(encoding="utf-8")))
        _ROLE_LEVELS[str(path)] = cached
    return cached[1]


_ROLE_LEVELS: dict[str, tuple[int, dict[str, str]]] = {}


def levels(person: Person) -> dict[str, set[str]]:
    """access level -> the teams in which the person has it (computed once per person per request)."""
    cached: dict[str, set[str]] | None = getattr(person, "_levels", None)
    if cached is not None:
        return cached
    by_role = _role_levels()
    out: dict[str, set[str]] = {}
    for team, role in person.memberships:
        out.setdefault(by_role.get(role, "practitioner"), set()).add(team)
    object.__setattr__(person, "_levels", out)
    return out


def is_service(person: Person) -> bool:
    return "service" in levels(person)


def managed_teams(person: Person) -> set[str]:
    """Teams whose dashboards and queues the person manages (every team, for the service level)."""
    lv = levels(person)
    return lv.get("manager", set()) | ({"*"} if "service" in lv else set())


def is_manager(person: Person) -> bool:
    return bool(managed_teams(person))


def case_teams(person: Person) -> set[str]:
    lv = levels(person)
    return set().union(*(lv.get(level, set()) for level in CASE_LEVELS))


def is_process_owner(person: Person) -> bool:
    """Processes, their versions, drafts and deploying: the ``owner`` access level alone."""
    return "owner" in levels(person)


def can_view_process_heatmap(person: Person) -> bool:
    """Open and overdue work per step of a process: counts only, no child's record.

    For whoever changes the process (owner) and whoever watches the work (managers, service).
    """
    return is_process_owner(person) or is_manager(person)


def is_partner_only(person: Person) -> bool:
    lv = levels(person)
    return bool(lv) and set(lv) <= {"partner"}


def can_view_case(person: Person, case: CaseRecord) -> bool:
    if is_service(person):
        return True
    if case.worker == person.username:
        return True
    return case.team_key is not None and case.team_key in case_teams(person)


def task_offered_to(person: Person, task: Task) -> bool:
    """The task is the person's, or waits in a queue of a team where they hold its role."""
    if task.assignee == person.username:
        return True
    if task.assignee is None and task.role_key is not None:
        return (task.team_key, task.role_key) in set(person.memberships) or (
            task.team_key is None and task.role_key in person.roles
        )
    return False


def can_view_task(person: Person, task: Task, case: CaseRecord | None) -> bool:
    if task_offered_to(person, task):
        return True
    if is_partner_only(person):
        return False
    managed = managed_teams(person)
    if "*" in managed or (task.team_key is not None and task.team_key in managed):
        return True
    return case is not None and can_view_case(person, case)


@lru_cache(maxsize=1)
def _assigning_by_roles(roles_json: str) -> frozenset[str]:
    import json

    return frozenset(r["key"] for r in json.loads(roles_json)["roles"] if r.get("assigns_work"))


def assigning_teams(person: Person) -> set[str]:
    """Teams in which the person holds a role that assigns work (computed once per person per request)."""
    cached: set[str] | None = getattr(person, "_assigning", None)
    if cached is not None:
        return cached
    from . import engine_of

    path = engine_of(current_app).registry.root / "roles.json"
    roles = _assigning_by_roles(path.read_text(encoding="utf-8"))
    out = {team for team, role in person.memberships if role in roles}
    object.__setattr__(person, "_assigning", out)
    return out


def can_assign(person: Person, team_key: str | None) -> bool:
    """The engine's rule for assigning a task (Engine.assign): a role that assigns work in the task's
    team, or in any team for a task of no team.  The service level sees every queue but assigns only
    in its own team, so it gets no Assign control elsewhere."""
    teams = assigning_teams(person)
    return bool(teams) if team_key is None else team_key in teams


def require(allowed: bool) -> None:
    if not allowed:
        abort(403)


def record_view(person: Person, case: CaseRecord, page: str, **details: Any) -> None:
    """A child's record was looked at: who, when, which page (and which letter, say)."""
    from . import engine_of

    engine = engine_of(current_app)
    with engine.db.transaction() as session:
        audit.append(
            session,
            [PendingEvent(person.username, "case.viewed", case.id, data={"page": page, **details})],
            clock.now(),
        )


def viewable_case(viewer: Person, reference: str) -> CaseRecord:
    """The case ``reference`` if ``viewer`` may see it: 404 when there is none, 403 when not theirs.

    Every page of a child's record starts here, so the rule and its answers are the same on all.
    """
    from . import engine_of

    with engine_of(current_app).db.read() as session:
        case = session.scalar(sa.select(CaseRecord).where(CaseRecord.reference == reference))
    if case is None:
        abort(404)
    require(can_view_case(viewer, case))
    return case


def describe(person: Person) -> dict[str, Any]:
    return {"levels": {k: sorted(v) for k, v in levels(person).items()}}
