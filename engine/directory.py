"""Users, teams and roles: loading them, and deciding who may hold a task."""

from __future__ import annotations

from typing import Any

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


def get_user(session: Session, username: str) -> User:
    user = session.scalar(sa.select(User).where(User.username == username))
    if user is None or not user.active:
        raise NotFound(f"there is no active user called {username!r}")
    return user


def role_for_lane(session: Session, lane: str | None) -> Role | None:
    """The role a lane stands for: matched on the role's name or key, ignoring case and spacing."""
    if not lane:
        return None
    wanted = normalise_role_name(lane)
    for role in session.scalars(sa.select(Role)):
        if wanted in (normalise_role_name(role.name), normalise_role_name(role.key)):
            return role
    return None


def memberships(session: Session, user: User) -> list[tuple[str, str]]:
    """(team key, role key) pairs the user holds."""
    rows = session.execute(
        sa.select(Team.key, Role.key)
        .join(Membership, Membership.team_id == Team.id)
        .join(Role, Role.id == Membership.role_id)
        .where(Membership.user_id == user.id)
    )
    return [(team, role) for team, role in rows]


def check_may_hold(session: Session, user: User, role_key: str | None, team_key: str | None) -> None:
    """Raise PermissionDenied, saying why, unless ``user`` may hold work of this role and team."""
    if role_key is None:
        return
    role = session.scalar(sa.select(Role).where(Role.key == role_key))
    if role is None:
        return
    constraints = role.constraints or {}
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
    held = memberships(session, user)
    if not any(r == role_key and (team_key is None or t == team_key) for t, r in held):
        where = f" in the team '{team_key}'" if team_key else ""
        raise PermissionDenied(
            f"{user.display_name} ({user.username}) does not hold the role '{role.name}'{where}; "
            "ask an administrator to add the membership, or assign the task to someone who does"
        )
