"""``frontdoor census``: the statutory returns (the CIN census, Ofsted's Annex A).

Progress and errors go to stderr; a return is written whole (temporary file, then rename) or
not at all.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from engine import clock
from engine.cli import _engine, user_errors
from engine.errors import FrontdoorError

from . import annex_a, census_cin

LONDON = ZoneInfo("Europe/London")


@click.group("census")
def census_group() -> None:
    """Statutory returns: the Children in Need census and Ofsted's Annex A lists."""


@census_group.command("cin")
@click.option("--year", required=True, help="The census year, e.g. 2025-26 (1 April 2025 to 31 March 2026).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The XML file.")
@click.option("--la-code", help="The council's three-digit DfE LA code (default: la_code in council.json).")
@click.pass_context
@user_errors
def cin(ctx: click.Context, year: str, out: Path, la_code: str | None) -> None:
    """The CIN census XML for every child with a referral open at some point in the year."""
    census_year = census_cin.CensusYear.parse(year)
    engine = _engine(ctx)
    council = engine.registry.read_json_optional("council.json") or {}
    code = la_code or council.get("la_code")
    if not code:
        raise FrontdoorError("give --la-code (the council's three-digit DfE code) or la_code in council.json")
    click.echo(f"CIN census {census_year.label}: reading case records...", err=True)
    with engine.db.read() as session:
        count = census_cin.export(session, census_year, str(code), out, now=clock.now())
    click.echo(f"wrote {out}: {count} children", err=True)


@census_group.command("annex-a")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="A folder.")
@click.option(
    "--as-at",
    "as_at",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The last day the lists cover (default: today).",
)
@click.option("--months", default=6, show_default=True, help="How many months the lists cover.")
@click.pass_context
@user_errors
def annex_a_command(ctx: click.Context, out: Path, as_at: datetime | None, months: int) -> None:
    """Ofsted's Annex A lists 1 (contacts), 3 (referrals), 4 (assessments), 5 (section 47) as CSV."""
    day = as_at.date() if as_at is not None else clock.now().astimezone(LONDON).date()
    engine = _engine(ctx)
    click.echo(f"Annex A to {day.isoformat()} ({months} months): reading case records...", err=True)
    with engine.db.read() as session:
        rows = annex_a.export(session, out, day, months)
    for name, count in rows.items():
        click.echo(f"wrote {out / name}: {count} rows", err=True)
