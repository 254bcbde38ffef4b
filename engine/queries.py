"""Functions a diagram may call that read the database (inside the command's own transaction).

The engine binds the command's session while it steps a workflow; outside a command
these functions refuse to run.  They read engine tables only (cases, users, roles),
never workflow state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import clock, directory
from .models import CaseRecord, User

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
