"""Functions a diagram may call that read the database (inside the command's own transaction).

The engine binds the command's session while it steps a workflow; outside a command
these functions refuse to run.  They read engine tables only (cases, users, roles),
never workflow state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import clock, directory
from .models import CaseFact, CaseRecord, Team, User

_session: ContextVar[Session | None] = ContextVar("frontdoor_session", default=None)


@contextmanager
def bound(session: Session) -> Iterator[Session]:
    token = _session.set(session)
    try:
        yield session
    finally:
        _session.reset(token)


def _current() -> Session:
    session = _session.get()
    if session is None:
        raise RuntimeError("this function can only be called while the engine runs a process")
    return session


def closed_cases_sample(days: int = 31, share: float = 0.1, minimum: int = 1) -> list[str]:
    """References of a share of the cases closed in the last ``days`` days (at least ``minimum``).

    The draw is seeded by the day it is made, so re-running a command draws the same sample.
    """
    now = clock.now()
    rows = (
        _current()
        .scalars(
            sa.select(CaseRecord.reference)
            .where(CaseRecord.status == "closed", CaseRecord.closed_at >= now - timedelta(days=int(days)))
            .order_by(CaseRecord.reference)
        )
        .all()
    )
    if not rows:
        return []
    count = min(len(rows), max(int(minimum), round(len(rows) * float(share))))
    return sorted(random.Random(now.date().isoformat()).sample(list(rows), count))


def users_with_role(role: str, team: str | None = None) -> list[str]:
    """Usernames of active users holding ``role`` (in ``team``, if given)."""
    return directory.holders(_current(), role, team)


def user_details(username: str) -> dict[str, Any]:
    """Whether a user is qualified and how they are employed (for routing, not for display)."""
    user = _current().scalar(sa.select(User).where(User.username == username))
    if user is None:
        return {}
    return {"username": user.username, "qualified": user.qualified, "employment": user.employment}


def query_functions() -> dict[str, Callable[..., Any]]:
    return {
        "closed_cases_sample": closed_cases_sample,
        "users_with_role": users_with_role,
        "user_details": user_details,
    }


# -- reads for reports and returns (a session of the caller's own; no workflow state) ----------------


@dataclass(frozen=True)
class CaseFacts:
    """A case row with every ``record.*`` fact it holds, by name."""

    case_id: int
    reference: str
    subject_name: str | None
    team_key: str | None
    worker: str | None
    status: str
    facts: dict[str, Any]


def cases_with_facts(session: Session, any_of: Sequence[str]) -> list[CaseFacts]:
    """Every case holding at least one of the facts ``any_of``, with all its facts, oldest case first.

    Two indexed queries whatever the number of cases: the cases, then their facts.
    """
    rows = session.execute(
        sa.select(
            CaseRecord.id,
            CaseRecord.reference,
            CaseRecord.subject_name,
            CaseRecord.team_key,
            CaseRecord.worker,
            CaseRecord.status,
        )
        .where(
            CaseRecord.id.in_(sa.select(CaseFact.case_id).where(CaseFact.name.in_(list(any_of))).distinct())
        )
        .order_by(CaseRecord.id)
    ).all()
    facts: dict[int, dict[str, Any]] = {row.id: {} for row in rows}
    if facts:
        for case_id, name, value in session.execute(
            sa.select(CaseFact.case_id, CaseFact.name, CaseFact.value).where(
                CaseFact.case_id.in_(list(facts))
            )
        ):
            facts[case_id][name] = value
    return [CaseFacts(*row, facts=facts[row.id]) for row in rows]


def display_names(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    """Team names by key and users' display names by username (for lists people read)."""
    teams = dict(session.execute(sa.select(Team.key, Team.name)).tuples().all())
    users = dict(session.execute(sa.select(User.username, User.display_name)).tuples().all())
    return teams, users
