"""Users, teams and roles: loading them, and deciding who may hold a task."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .errors import InvalidData, NotFound, PermissionDenied
from .models import Membership, Role, Team, User


def normalise_role_name(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def sync_roles(session: Session, roles: list[dict[str, Any]]) -> int:
    """Create or update roles from their definitions; return how many rows changed."""
    changed = 0
    existing = {r.key: r for r in session.scalars(sa.select(Role))}
    for definition in roles:
        key = definition["key"]
        values = {
            "name": definition["name"],
            "constraints": definition.get("constraints", {}),
            "assigns_work": bool(definition.get("assigns_work", False)),
            "description": definition.get("description"),
        }
        role = existing.get(key)
        if role is None:
            session.add(Role(key=key, **values))
            changed += 1
        elif any(getattr(role, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(role, k, v)
            changed += 1
    return changed


def sync_staff(session: Session, staff: dict[str, Any]) -> int:
    """Create teams, users and memberships that do not exist yet (never duplicates)."""
    changed = 0
    teams = {t.key: t for t in session.scalars(sa.select(Team))}
    for definition in staff.get("teams", []):
        if definition["key"] not in teams:
            team = Team(key=definition["key"], name=definition["name"])
            session.add(team)
            teams[team.key] = team
            changed += 1
    session.flush()
    roles = {r.key: r for r in session.scalars(sa.select(Role))}
    users = {u.username: u for u in session.scalars(sa.select(User))}
    for definition in staff.get("users", []):
        user = users.get(definition["username"])
        if user is None:
            user = User(
                username=definition["username"],
                display_name=definition["display_name"],
                email=definition.get("email"),
                qualified=bool(definition.get("qualified", False)),
                employment=definition.get("employment", "permanent"),
            )
            session.add(user)
            session.flush()
            users[user.username] = user
            changed += 1
        held = {
            (m.team_id, m.role_id)
            for m in session.scalars(sa.select(Membership).where(Membership.user_id == user.id))
        }
        for team_key, role_key in definition.get("memberships", []):
            if team_key not in teams or role_key not in roles:
                raise InvalidData(f"{user.username}: unknown team {team_key!r} or role {role_key!r}")
            pair = (teams[team_key].id, roles[role_key].id)
            if pair not in held:
                session.add(Membership(user_id=user.id, team_id=pair[0], role_id=pair[1]))
                held.add(pair)
                changed += 1
    return changed


@dataclass(frozen=True)
class RoleInfo:
    key: str
    name: str
    constraints: dict[str, Any]
    assigns_work: bool


class RoleBook:
    """Roles, read once and kept for a short while: a command must not scan the role table per task.

    Roles change only when an administrator (or ``frontdoor init``) loads them; a change made
    in another process is seen here within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._loaded_at = -math.inf
        self._by_key: dict[str, RoleInfo] = {}
        self._by_lane: dict[str, RoleInfo] = {}
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -math.inf

    def _fresh(self, session: Session) -> None:
        if time.monotonic() - self._loaded_at < self.ttl:
            return
        rows = session.execute(sa.select(Role.key, Role.name, Role.constraints, Role.assigns_work)).all()
        by_key = {
            key: RoleInfo(key, name, constraints or {}, bool(assigns))
            for key, name, constraints, assigns in rows
        }
        by_lane = {}
        for info in by_key.values():
            by_lane[normalise_role_name(info.key)] = info
            by_lane[normalise_role_name(info.name)] = info
        with self._lock:
            self._by_key, self._by_lane, self._loaded_at = by_key, by_lane, time.monotonic()

    def get(self, session: Session, key: str | None) -> RoleInfo | None:
        if key is None:
            return None
        self._fresh(session)
        return self._by_key.get(key)

    def for_lane(self, session: Session, lane: str | None) -> RoleInfo | None:
        """The role a lane stands for: matched on the role's name or key, ignoring case and spacing."""
        if not lane:
            return None
        self._fresh(session)
        return self._by_lane.get(normalise_role_name(lane))

    def names(self, session: Session) -> dict[str, str]:
        """role key -> the role's name, for showing."""
        self._fresh(session)
        return {key: info.name for key, info in self._by_key.items()}

    def assigning(self, session: Session) -> set[str]:
        self._fresh(session)
        return {key for key, info in self._by_key.items() if info.assigns_work}


class Holder(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def qualified(self) -> bool: ...
    @property
    def employment(self) -> str: ...


_USER_REF = sa.select(User.id, User.username, User.display_name, User.qualified, User.employment).where(
    User.username == sa.bindparam("username"), User.active.is_(True)
)
_HOLDS_ROLE = (
    sa.select(Membership.id)
    .join(Role, Role.id == Membership.role_id)
    .where(Membership.user_id == sa.bindparam("user_id"), Role.key == sa.bindparam("role"))
    .limit(1)
)
_HOLDS_ROLE_IN_TEAM = (
    sa.select(Membership.id)
    .join(Role, Role.id == Membership.role_id)
    .join(Team, Team.id == Membership.team_id)
    .where(
        Membership.user_id == sa.bindparam("user_id"),
        Role.key == sa.bindparam("role"),
        Team.key == sa.bindparam("team"),
    )
    .limit(1)
)


# The user, and whether they hold the role (in the team, when one is given).
_USER_AND_MEMBERSHIP = _USER_REF.add_columns(
    sa.exists()
    .where(
        Membership.user_id == User.id,
        Membership.role_id == Role.id,
        Membership.team_id == Team.id,
        Role.key == sa.bindparam("role"),
        sa.or_(sa.bindparam("team", type_=sa.String) == sa.null(), Team.key == sa.bindparam("team")),
    )
    .label("holds")
)


@dataclass(frozen=True)
class UserRef:
    id: int
    username: str
    display_name: str
    qualified: bool
    employment: str


def user_ref(session: Session, username: str) -> UserRef:
    """An active user's identity and what constrains the work they may hold, in one statement."""
    row = (
        session.connection()
        .execute(
            sa.select(User.id, User.username, User.display_name, User.qualified, User.employment).where(
                User.username == username, User.active.is_(True)
            )
        )
        .first()
    )
    if row is None:
        raise NotFound(f"there is no active user called {username!r}")
    return UserRef(*row)


def holders(session: Session, role_key: str, team_key: str | None = None) -> list[str]:
    """Usernames of active users holding the role (in the team, when one is given)."""
    query = (
        sa.select(User.username)
        .join(Membership, Membership.user_id == User.id)
        .join(Role, Role.id == Membership.role_id)
        .join(Team, Team.id == Membership.team_id)
        .where(Role.key == role_key, User.active.is_(True))
    )
    if team_key:
        query = query.where(Team.key == team_key)
    return sorted(set(session.scalars(query)))


def get_user(session: Session, username: str) -> User:
    user = session.scalar(sa.select(User).where(User.username == username))
    if user is None or not user.active:
        raise NotFound(f"there is no active user called {username!r}")
    return user


def _with_memberships(query: Any) -> sa.Select[Any]:
    """``query`` (of app_user) with the (team key, role key) of each membership in its last two
    columns: a row for each, or one row with two NULLs for a user who holds none."""
    joined: sa.Select[Any] = (
        query.add_columns(Team.key, Role.key)
        .outerjoin(Membership, Membership.user_id == User.id)
        .outerjoin(Team, Team.id == Membership.team_id)
        .outerjoin(Role, Role.id == Membership.role_id)
    )
    return joined


def _pairs(rows: Sequence[Any]) -> list[tuple[str, str]]:
    return [(team, role) for *_, team, role in rows if team is not None and role is not None]


def memberships(session: Session, user: User) -> list[tuple[str, str]]:
    """(team key, role key) pairs the user holds."""
    return _pairs(
        session.execute(_with_memberships(sa.select().select_from(User)).where(User.id == user.id)).all()
    )


def active_user_with_memberships(session: Session, user_id: int) -> tuple[Any, list[tuple[str, str]]] | None:
    """An active user's id, username, display name, qualified and employment, with the (team key,
    role key) pairs they hold, in one statement (the web reads it on every request); None if there is
    no such active user."""
    person = sa.select(User.id, User.username, User.display_name, User.qualified, User.employment)
    rows = session.execute(_with_memberships(person).where(User.id == user_id, User.active.is_(True))).all()
    return (tuple(rows[0][:-2]), _pairs(rows)) if rows else None  # the user's columns, and the pairs


def check_may_hold(
    session: Session, user: Holder | str, role_key: str | None, team_key: str | None, roles: RoleBook
) -> None:
    """Raise PermissionDenied, saying why, unless ``user`` may hold work of this role and team.

    Given a username, the user is looked up (and must be active) in the same statement that
    checks the membership.
    """
    role = roles.get(session, role_key)
    if isinstance(user, str):
        row = (
            session.connection()
            .execute(
                _USER_AND_MEMBERSHIP, {"username": user, "role": role.key if role else "", "team": team_key}
            )
            .first()
        )
        if row is None:
            raise NotFound(f"there is no active user called {user!r}")
        holds = row[-1]
        user = UserRef(*row[:-1])
    else:
        holds = None
    if role is None:
        return
    constraints = role.constraints
    if constraints.get("qualified") and not user.qualified:
        raise PermissionDenied(
            f"{user.display_name} ({user.username}) cannot hold this task: the role '{role.name}' needs a "
            "qualified, registered practitioner and they are not recorded as qualified"
        )
    allowed = constraints.get("employment")
    if allowed and user.employment not in allowed:
        raise PermissionDenied(
            f"{user.display_name} ({user.username}) cannot hold this task: the role '{role.name}' is limited "
            f"to {', '.join(allowed)} staff and they are {user.employment}"
        )
    if holds is None:
        query = _HOLDS_ROLE if team_key is None else _HOLDS_ROLE_IN_TEAM
        holds = session.connection().scalar(query, {"user_id": user.id, "role": role.key, "team": team_key})
    if not holds:
        where = f" in the team '{team_key}'" if team_key else ""
        raise PermissionDenied(
            f"{user.display_name} ({user.username}) does not hold the role '{role.name}'{where}; "
            "ask an administrator to add the membership, or assign the task to someone who does"
        )
