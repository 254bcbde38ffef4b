"""The staff directory from a CSV file: ``frontdoor users import FILE.csv``.

One row per person, with a header row.  Columns (any order; ``email`` may be left out):

=============  ==========================================================================
username       the sign-in name: lower-case letters, digits, ``.``, ``_``, ``-``
display_name   the name shown on pages
email          optional
teams          team keys separated by ``;`` (``mash; assessment``).  A team that does not
               exist yet is written ``key=Team name`` and is created.
roles          role keys from ``processes/roles.json``, separated by ``;``: the person holds
               each role in each of their teams
qualified      ``yes`` or ``no``: registered with Social Work England
employment     ``permanent`` or ``agency``
=============  ==========================================================================

Every row is checked before anything is written; any problem is reported with its row number
(the header is row 1) and column, and nothing changes.  Then, in one transaction, users are
created or updated by username, teams created or renamed by key, and each listed user's
memberships set to exactly their teams x roles.  Importing the same file again changes nothing;
nobody is ever duplicated.  People not in the file are left as they are.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from engine import audit, clock
from engine.audit import PendingEvent
from engine.db import Database
from engine.errors import InvalidData
from engine.models import Membership, Role, Team, User

COLUMNS = ("username", "display_name", "email", "teams", "roles", "qualified", "employment")
REQUIRED = tuple(c for c in COLUMNS if c != "email")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
TEAM_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0", ""}
EMPLOYMENT = ("permanent", "agency")


@dataclass
class StaffRow:
    row: int
    username: str
    display_name: str
    email: str | None
    teams: dict[str, str | None]  # key -> name given in the file (to create or rename it)
    roles: list[str]
    qualified: bool
    employment: str


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    teams_created: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.created)} user(s) created",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
        ]
        if self.teams_created:
            parts.append(f"teams created: {', '.join(self.teams_created)}")
        return "; ".join(parts)


def read_rows(text: str, roles: dict[str, dict[str, Any]], teams: set[str]) -> list[StaffRow]:
    """Parse and check every row; raise InvalidData naming each bad row and column."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    problems: list[tuple[str, str]] = []
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    if missing:
        problems.append(("row 1", f"the header has no column {', '.join(missing)}"))
    if unknown:
        problems.append(
            ("row 1", f"unknown column {', '.join(unknown)} (the columns are {', '.join(COLUMNS)})")
        )
    if problems:
        raise _invalid(problems)
    rows: list[StaffRow] = []
    seen: dict[str, int] = {}
    new_teams: set[str] = set()
    for number, raw in enumerate(reader, start=2):
        if None in raw:
            problems.append((f"row {number}", f"has more values than the {len(header)} columns"))
            continue
        values = {k: (v or "").strip() for k, v in raw.items()}
        if not any(values.values()):
            continue  # a blank line

        def bad(column: str, message: str, number: int = number) -> None:
            problems.append((f"row {number}, column {column}", message))

        username = values["username"]
        if not USERNAME.match(username):
            bad("username", f"{username!r} is not a username: lower-case letters, digits, '.', '_' or '-'")
        elif username in seen:
            bad("username", f"{username} is already on row {seen[username]}")
        else:
            seen[username] = number
        display_name = values["display_name"]
        if not display_name or len(display_name) > 255:
            bad("display_name", "give the name to show, 1 to 255 characters")
        email = values.get("email") or None
        if email is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
            bad("email", f"{email!r} is not an e-mail address")
        row_teams: dict[str, str | None] = {}
        for entry in _split(values["teams"]):
            key, _, name = (part.strip() for part in entry.partition("="))
            if not TEAM_KEY.match(key):
                bad("teams", f"{key!r} is not a team key: lower-case letters, digits, '_' or '-'")
            elif key not in teams and not name and key not in new_teams:
                bad("teams", f"there is no team {key!r}; to create it write {key}=Team name")
            else:
                row_teams[key] = name or None
                if name:
                    new_teams.add(key)
        if not values["teams"]:
            bad("teams", "name at least one team")
        row_roles = _split(values["roles"])
        if not row_roles:
            bad("roles", "name at least one role")
        qualified_text = values["qualified"].lower()
        if qualified_text not in YES | NO or not qualified_text:
            bad("qualified", f"write yes or no, not {values['qualified']!r}")
        qualified = qualified_text in YES
        employment = values["employment"].lower()
        if employment not in EMPLOYMENT:
            bad("employment", f"write permanent or agency, not {values['employment']!r}")
        for role_key in row_roles:
            role = roles.get(role_key)
            if role is None:
                bad("roles", f"there is no role {role_key!r} (the roles are {', '.join(sorted(roles))})")
                continue
            constraints = role.get("constraints") or {}
            if constraints.get("qualified") and qualified_text and not qualified:
                bad("qualified", f"the role {role_key} needs a qualified social worker")
            allowed = constraints.get("employment")
            if allowed and employment in EMPLOYMENT and employment not in allowed:
                bad("employment", f"the role {role_key} is for {', '.join(allowed)} staff only")
        rows.append(
            StaffRow(number, username, display_name, email, row_teams, row_roles, qualified, employment)
        )
    if problems:
        raise _invalid(problems)
    if not rows:
        raise InvalidData("the file has no staff rows under its header")
    return rows


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _invalid(problems: list[tuple[str, str]]) -> InvalidData:
    listed = "\n".join(f"  {where}: {message}" for where, message in problems)
    fields: dict[str, str] = {}
    for where, message in problems:
        fields[where] = f"{fields[where]}; {message}" if where in fields else message
    return InvalidData(f"nothing was imported; correct the file and import it again:\n{listed}", fields)


def import_staff(db: Database, text: str, actor: str = "cli") -> ImportResult:
    """Check every row, then create or update users, teams and memberships in one transaction."""
    result = ImportResult()
    with db.transaction() as session:
        roles = {
            r.key: {"id": r.id, "constraints": r.constraints or {}} for r in session.scalars(sa.select(Role))
        }
        teams = {t.key: t for t in session.scalars(sa.select(Team))}
        rows = read_rows(text, roles, set(teams))
        for row in rows:
            for key, name in row.teams.items():
                team = teams.get(key)
                if team is None:
                    team = Team(key=key, name=name or key)
                    session.add(team)
                    teams[key] = team
                    result.teams_created.append(key)
                elif name and team.name != name:
                    team.name = name
        session.flush()
        users = {
            u.username: u
            for u in session.scalars(sa.select(User).where(User.username.in_([r.username for r in rows])))
        }
        for row in rows:
            user = users.get(row.username)
            values = {
                "display_name": row.display_name,
                "email": row.email,
                "qualified": row.qualified,
                "employment": row.employment,
            }
            if user is None:
                user = User(username=row.username, active=True, **values)
                session.add(user)
                session.flush()
                result.created.append(row.username)
                changed = True
            else:
                changed = any(getattr(user, k) != v for k, v in values.items())
                for k, v in values.items():
                    setattr(user, k, v)
            wanted = {(teams[t].id, roles[r]["id"]) for t in row.teams for r in row.roles}
            held = {
                (m.team_id, m.role_id): m
                for m in session.scalars(sa.select(Membership).where(Membership.user_id == user.id))
            }
            for pair in wanted - held.keys():
                session.add(Membership(user_id=user.id, team_id=pair[0], role_id=pair[1]))
                changed = True
            for pair in held.keys() - wanted:
                session.delete(held[pair])
                changed = True
            if row.username not in result.created:
                (result.updated if changed else result.unchanged).append(row.username)
        now = clock.now()
        if result.created or result.updated or result.teams_created:
            audit.append(
                session,
                [
                    PendingEvent(
                        actor,
                        "staff.imported",
                        data={
                            "created": result.created,
                            "updated": result.updated,
                            "teams_created": result.teams_created,
                        },
                    )
                ],
                now,
            )
    return result


# ---------------------------------------------------------------------------------------- CLI


@click.group("users")
def users_group() -> None:
    """The staff directory: users, teams, roles."""


@users_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> None:
    """Create or update staff from FILE.csv (columns: username, display_name, email, teams, roles,
    qualified, employment). Every row is checked first; a bad row changes nothing."""
    from engine.cli import _engine, user_errors

    @user_errors
    def run() -> None:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidData(f"{file}: cannot read it as UTF-8 text ({exc})") from None
        result = import_staff(_engine(ctx).db, text)
        click.echo(f"ok: {result.summary()}")

    run()
