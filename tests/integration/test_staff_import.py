"""`frontdoor users import FILE.csv`: the staff directory from a spreadsheet."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from adapters.staff_csv import import_staff
from engine import directory
from engine.core import Engine
from engine.errors import InvalidData
from engine.models import AuditEvent, Membership, Role, Team, User
from web.cli import cli

HEADER = "username,display_name,email,teams,roles,qualified,employment\n"
STAFF = HEADER + (
    "nia.new,Nia New,nia.new@council.example,assessment,social_worker;section47_lead,yes,permanent\n"
    "aga.agency,Aga Agency,,assessment,social_worker,yes,agency\n"
    'rio.duty,"Duty, Rio",rio@council.example,front=Front Door Duty; mash,contact_officer,no,permanent\n'
)


def directory_snapshot(engine: Engine) -> dict[str, object]:
    with engine.db.read() as session:
        users = {
            u.username: (u.display_name, u.email, u.qualified, u.employment)
            for u in session.scalars(sa.select(User))
        }
        teams = {t.key: t.name for t in session.scalars(sa.select(Team))}
        memberships = sorted(
            session.execute(
                sa.select(User.username, Team.key, Role.key)
                .join(Membership, Membership.user_id == User.id)
                .join(Team, Team.id == Membership.team_id)
                .join(Role, Role.id == Membership.role_id)
            ).all()
        )
        events = session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    return {"users": users, "teams": teams, "memberships": [tuple(m) for m in memberships], "events": events}


def held(engine: Engine, username: str) -> set[tuple[str, str]]:
    with engine.db.read() as session:
        user = directory.get_user(session, username)
        return set(directory.memberships(session, user))


def test_import_creates_users_teams_and_memberships(engine: Engine) -> None:
    result = import_staff(engine.db, STAFF)

    assert sorted(result.created) == ["aga.agency", "nia.new", "rio.duty"]
    assert result.teams_created == ["front"]
    snapshot = directory_snapshot(engine)
    assert snapshot["users"]["nia.new"] == ("Nia New", "nia.new@council.example", True, "permanent")
    assert snapshot["users"]["aga.agency"] == ("Aga Agency", None, True, "agency")
    assert snapshot["users"]["rio.duty"] == ("Duty, Rio", "rio@council.example", False, "permanent")
    assert snapshot["teams"]["front"] == "Front Door Duty"
    assert held(engine, "nia.new") == {("assessment", "social_worker"), ("assessment", "section47_lead")}
    assert held(engine, "rio.duty") == {("front", "contact_officer"), ("mash", "contact_officer")}
    # The engine's own rule for who may hold work sees the imported facts.
    with engine.db.read() as session:
        directory.check_may_hold(session, "nia.new", "section47_lead", "assessment", engine.roles)


def test_importing_again_updates_and_never_duplicates(engine: Engine) -> None:
    import_staff(engine.db, STAFF)
    first = directory_snapshot(engine)

    again = import_staff(engine.db, STAFF)
    assert again.created == [] and again.updated == [] and len(again.unchanged) == 3
    assert directory_snapshot(engine) == first  # not even an audit event

    changed = STAFF.replace(
        "Nia New,nia.new@council.example,assessment,social_worker;section47_lead,yes,permanent",
        "Nia Newman,nia@council.example,longterm,social_worker,yes,permanent",
    )
    result = import_staff(engine.db, changed)
    assert result.updated == ["nia.new"] and result.created == []
    snapshot = directory_snapshot(engine)
    assert snapshot["users"]["nia.new"] == ("Nia Newman", "nia@council.example", True, "permanent")
    assert held(engine, "nia.new") == {("longterm", "social_worker")}
    assert len(snapshot["users"]) == len(first["users"])  # type: ignore[arg-type]
    # Demo staff not in the file are untouched.
    assert snapshot["users"]["sara.social"] == first["users"]["sara.social"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("bad_row", "where", "message"),
    [
        ("Bad Name,Bad,,mash,contact_officer,no,permanent", "row 3, column username", "is not a username"),
        ("zed,Zed,,mash,contact_officer,maybe,permanent", "row 3, column qualified", "write yes or no"),
        ("zed,Zed,,mash,contact_officer,no,contractor", "row 3, column employment", "permanent or agency"),
        ("zed,Zed,,mash,wizard,no,permanent", "row 3, column roles", "there is no role 'wizard'"),
        ("zed,Zed,,nowhere,contact_officer,no,permanent", "row 3, column teams", "nowhere=Team name"),
        ("zed,Zed,zed-at-council,mash,contact_officer,no,permanent", "row 3, column email", "not an e-mail"),
        ("zed,Zed,,assessment,section47_lead,yes,agency", "row 3, column employment", "permanent staff only"),
        ("zed,Zed,,assessment,social_worker,no,permanent", "row 3, column qualified", "needs a qualified"),
        (
            "nia.new,Nia Again,,mash,contact_officer,no,permanent",
            "row 3, column username",
            "already on row 2",
        ),
    ],
)
def test_a_bad_row_changes_nothing_and_says_where(
    engine: Engine, bad_row: str, where: str, message: str
) -> None:
    before = directory_snapshot(engine)
    text = HEADER + "nia.new,Nia New,,assessment,social_worker,yes,permanent\n" + bad_row + "\n"
    with pytest.raises(InvalidData) as refused:
        import_staff(engine.db, text)
    assert where in refused.value.fields, refused.value.fields
    assert message in refused.value.fields[where]
    assert "nothing was imported" in str(refused.value)
    assert directory_snapshot(engine) == before  # the good row was not imported either


def test_a_header_without_a_column_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidData, match="row 1: the header has no column employment"):
        import_staff(
            engine.db, "username,display_name,teams,roles,qualified\nzed,Zed,mash,contact_officer,no\n"
        )


def frontdoor(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def test_the_command_imports_and_reports_bad_rows(engine: Engine, sqlite_url: str, tmp_path: Path) -> None:
    good = tmp_path / "staff.csv"
    good.write_text(STAFF, encoding="utf-8")
    result = frontdoor(sqlite_url, "users", "import", str(good))
    assert result.exit_code == 0, result.output
    assert "3 user(s) created" in result.output

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "zed,Zed,,mash,contact_officer,maybe,permanent\n", encoding="utf-8")
    before = directory_snapshot(engine)
    result = frontdoor(sqlite_url, "users", "import", str(bad))
    assert result.exit_code == 1
    assert "row 2, column qualified: write yes or no, not 'maybe'" in result.output
    assert "Traceback" not in result.output
    assert directory_snapshot(engine) == before
