"""The working-day calendar: worked dates, holidays, DST, closures, config errors and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from govuk_bank_holidays.bank_holidays import BankHolidays

from engine.calendar import WorkingCalendar, calendar_from_dict, load_calendar
from engine.calendar_cli import calendar_group

LONDON = ZoneInfo("Europe/London")
SHIPPED = Path(__file__).resolve().parents[2] / "processes" / "calendar.json"


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return load_calendar(SHIPPED)


def london(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- working days --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        # The worked dates in DOMAIN.md.
        (date(2023, 4, 28), 15, date(2023, 5, 23)),  # 1 May and the 8 May coronation holiday
        (date(2022, 9, 16), 1, date(2022, 9, 20)),  # 19 September: the state funeral
        (date(2012, 5, 30), 10, date(2012, 6, 15)),  # 4 and 5 June: spring bank holiday and jubilee
        # Easter.
        (date(2024, 3, 28), 1, date(2024, 4, 2)),
        (date(2025, 4, 17), 1, date(2025, 4, 22)),
        # Christmas, with substitute days when 25/26 December fall at the weekend.
        (date(2023, 12, 22), 1, date(2023, 12, 27)),
        (date(2022, 12, 23), 1, date(2022, 12, 28)),  # Christmas on Sunday: 27th is the substitute
        (date(2021, 12, 24), 1, date(2021, 12, 29)),  # both on the weekend: 27th and 28th
        (date(2020, 12, 24), 1, date(2020, 12, 29)),  # Boxing Day on Saturday: 28th
        (date(2022, 12, 30), 1, date(2023, 1, 3)),  # New Year's Day on Sunday: 2 January
        # D itself never counts, whether or not it is a working day.
        (date(2023, 4, 24), 1, date(2023, 4, 25)),
        (date(2023, 4, 29), 1, date(2023, 5, 2)),  # from a Saturday, over the May Day holiday
        (date(2023, 5, 1), 1, date(2023, 5, 2)),  # from a bank holiday
        # Platinum jubilee, 2 and 3 June 2022.
        (date(2022, 6, 1), 1, date(2022, 6, 6)),
        # Zero and negative n.
        (date(2023, 4, 29), 0, date(2023, 4, 29)),
        (date(2023, 5, 23), -15, date(2023, 4, 28)),
        (date(2022, 9, 20), -1, date(2022, 9, 16)),
        (date(2023, 12, 27), -1, date(2023, 12, 22)),
        (date(2023, 5, 2), -1, date(2023, 4, 28)),
        (date(2023, 4, 30), -1, date(2023, 4, 28)),  # from a Sunday
    ],
)
def test_add_working_days(cal: WorkingCalendar, start: date, n: int, expected: date) -> None:
    assert cal.add_working_days(start, n) == expected
    assert cal.working_days_between(start, expected) == n


@pytest.mark.parametrize(
    "day",
    [date(2012, 6, 4), date(2012, 6, 5), date(2022, 6, 3), date(2022, 9, 19), date(2023, 5, 8)],
)
def test_one_off_holidays_are_not_working_days(cal: WorkingCalendar, day: date) -> None:
    assert not cal.is_working_day(day)
    assert day in cal.bank_holidays(day.year)


def test_working_and_non_working_days(cal: WorkingCalendar) -> None:
    assert cal.is_working_day(date(2023, 5, 9))
    assert cal.non_working_reason(date(2023, 5, 9)) is None
    assert cal.non_working_reason(date(2023, 5, 6)) == "Saturday"
    assert cal.non_working_reason(date(2023, 5, 7)) == "Sunday"
    assert "Coronation" in (cal.non_working_reason(date(2023, 5, 8)) or "")
    # The shipped file has no closures: 27-29 December 2023 are working days.
    assert all(cal.is_working_day(date(2023, 12, d)) for d in (27, 28, 29))


def test_working_days_between(cal: WorkingCalendar) -> None:
    assert cal.working_days_between(date(2023, 4, 28), date(2023, 5, 23)) == 15
    assert cal.working_days_between(date(2023, 5, 23), date(2023, 4, 28)) == -15
    assert cal.working_days_between(date(2023, 4, 28), date(2023, 4, 28)) == 0
    assert cal.working_days_between(date(2023, 4, 29), date(2023, 5, 1)) == 0  # weekend and May Day
    assert cal.working_days_between(date(2023, 4, 28), date(2023, 5, 2)) == 1


def test_between_is_the_inverse_of_add_2012_to_2028(cal: WorkingCalendar) -> None:
    ns = [1, 2, 3, 5, 7, 10, 15, 35, 45, -1, -2, -10, -15, 0]
    d, last, i = date(2012, 1, 1), date(2028, 12, 31), 0
    while d <= last:
        n = ns[i % len(ns)]
        later = cal.add_working_days(d, n)
        assert cal.working_days_between(d, later) == n, (d, n, later)
        if n > 0:
            assert later > d and cal.is_working_day(later), (d, n)
            # ... and it is the first date that far: one day earlier is one working day short.
            assert cal.working_days_between(d, later - timedelta(days=1)) == n - 1, (d, n)
            assert cal.add_working_days(later, -n) <= d
        elif n < 0:
            assert later < d and cal.is_working_day(later), (d, n)
            assert cal.working_days_between(d, later + timedelta(days=1)) == n + 1, (d, n)
        else:
            assert later == d
        # between then add lands on the end date whenever that is a working day.
        end = d + timedelta(days=i % 60)
        if cal.is_working_day(end):
            assert cal.add_working_days(d, cal.working_days_between(d, end)) == end, (d, end)
        d += timedelta(days=1)
        i += 1


# -- GOV.UK's published list ---------------------------------------------------------------------

_GOVUK = BankHolidays(use_cached_holidays=True).get_holidays(division=BankHolidays.ENGLAND_AND_WALES)
_GOVUK_YEARS = sorted({h["date"].year for h in _GOVUK})


def test_govuk_cached_data_covers_2012_to_2028() -> None:
    # If a newer govuk-bank-holidays drops a year, say so here rather than only skipping below.
    assert set(range(2012, 2029)) <= set(_GOVUK_YEARS), _GOVUK_YEARS


@pytest.mark.parametrize("year", range(2012, 2029))
def test_bank_holidays_match_govuk(cal: WorkingCalendar, year: int) -> None:
    if year not in _GOVUK_YEARS:
        pytest.skip(f"govuk-bank-holidays cached data has no {year} (covers {_GOVUK_YEARS})")
    govuk = {h["date"]: h["title"] for h in _GOVUK if h["date"].year == year}
    ours = cal.bank_holidays(year)
    assert sorted(set(ours) - set(govuk)) == [], "holidays GOV.UK does not list"
    assert sorted(set(govuk) - set(ours)) == [], "GOV.UK holidays the calendar misses"
    for day in govuk:
        assert not cal.is_working_day(day)


# -- instants ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "at", "expected"),
    [
        (london(2024, 1, 9, 3, 0), time(9), utc(2024, 1, 9, 9, 0)),  # 03:00 on a working Tuesday (GMT)
        (london(2023, 6, 13, 3, 0), time(9), utc(2023, 6, 13, 8, 0)),  # ... in summer (BST)
        (london(2023, 6, 13, 8, 59), time(9), utc(2023, 6, 13, 8, 0)),
        (london(2023, 6, 13, 9, 0), time(9), utc(2023, 6, 14, 8, 0)),  # strictly after
        (london(2023, 12, 22, 17, 30), time(9), utc(2023, 12, 27, 9, 0)),  # the example
        (utc(2023, 6, 13, 7, 30), time(9), utc(2023, 6, 13, 8, 0)),  # any aware input zone
        (london(2023, 6, 13, 10, 0), time(17), utc(2023, 6, 13, 16, 0)),
        (london(2023, 5, 5, 17, 30), time(9), utc(2023, 5, 9, 8, 0)),  # over the coronation weekend
        # Clocks go forward on Sunday 26 March 2023 and back on Sunday 29 October 2023.
        (london(2023, 3, 24, 18, 0), time(9), utc(2023, 3, 27, 8, 0)),
        (london(2023, 10, 27, 18, 0), time(9), utc(2023, 10, 30, 9, 0)),
        # Easter 2024 and the clocks going forward on Easter Sunday.
        (london(2024, 3, 28, 17, 0), time(9), utc(2024, 4, 2, 8, 0)),
    ],
)
def test_next_working_time(cal: WorkingCalendar, after: datetime, at: time, expected: datetime) -> None:
    result = cal.next_working_time(after, at)
    assert result == expected
    assert result.tzinfo is UTC


def test_next_working_time_defaults_to_opening_and_rejects_naive(cal: WorkingCalendar) -> None:
    assert cal.next_working_time(london(2023, 12, 22, 17, 30)) == utc(2023, 12, 27, 9, 0)
    with pytest.raises(ValueError, match="no time zone"):
        cal.next_working_time(datetime(2023, 12, 22, 17, 30), time(9))
    with pytest.raises(ValueError, match="tzinfo"):
        cal.next_working_time(london(2023, 12, 22, 17, 30), time(9, tzinfo=UTC))


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        (london(2024, 5, 3, 16, 0), 4, london(2024, 5, 7, 12, 0)),  # the example (6 May holiday)
        (london(2024, 5, 8, 10, 0), 3, london(2024, 5, 8, 13, 0)),
        (london(2024, 5, 8, 16, 0), 1, london(2024, 5, 8, 17, 0)),  # ends at closing: stays at closing
        (london(2024, 5, 8, 16, 0), 1.5, london(2024, 5, 9, 9, 30)),
        (london(2024, 5, 8, 7, 0), 1, london(2024, 5, 8, 10, 0)),  # before opening
        (london(2024, 5, 8, 19, 0), 1, london(2024, 5, 9, 10, 0)),  # after closing
        (london(2024, 5, 11, 10, 0), 2, london(2024, 5, 13, 11, 0)),  # from a Saturday
        (london(2024, 5, 8, 10, 0), 0, london(2024, 5, 8, 10, 0)),
        (london(2024, 5, 11, 10, 0), 0, london(2024, 5, 13, 9, 0)),  # zero from outside hours: the opening
        (london(2024, 5, 8, 9, 0), 72, london(2024, 5, 20, 17, 0)),  # nine full working days
        (london(2023, 12, 22, 16, 0), 4, london(2023, 12, 27, 12, 0)),  # Christmas
        # DST: the working day, not the clock change, decides.
        (london(2023, 3, 24, 16, 0), 2, london(2023, 3, 27, 10, 0)),
        (london(2023, 10, 27, 16, 0), 2, london(2023, 10, 30, 10, 0)),
        (london(2024, 3, 28, 16, 0), 2, london(2024, 4, 2, 10, 0)),  # Easter and DST together
    ],
)
def test_add_working_hours(cal: WorkingCalendar, start: datetime, hours: float, expected: datetime) -> None:
    result = cal.add_working_hours(start, hours)
    assert result == expected
    assert result.tzinfo is UTC


def test_add_working_hours_in_utc_across_dst(cal: WorkingCalendar) -> None:
    # Friday 16:00 GMT + 2h = Monday 10:00 BST, which is 09:00 UTC; the reverse in October.
    assert cal.add_working_hours(utc(2023, 3, 24, 16, 0), 2) == utc(2023, 3, 27, 9, 0)
    assert cal.add_working_hours(utc(2023, 10, 27, 15, 0), 2) == utc(2023, 10, 30, 10, 0)


@pytest.mark.parametrize("hours", [-1, float("nan"), float("inf")])
def test_add_working_hours_rejects_bad_hours(cal: WorkingCalendar, hours: float) -> None:
    with pytest.raises(ValueError, match="hours"):
        cal.add_working_hours(london(2024, 5, 8, 10, 0), hours)


def test_add_working_hours_rejects_naive(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="no time zone"):
        cal.add_working_hours(datetime(2024, 5, 8, 10, 0), 1)


# -- configuration -------------------------------------------------------------------------------

COUNCIL = {
    "timezone": "Europe/London",
    "working_hours": {"start": "08:30", "end": "16:30"},
    "holidays": {"country": "GB", "subdivision": "ENG"},
    "closures": [{"date": "2024-07-15", "reason": "Staff training day"}],
    "recurring_closures": [
        {"month": 12, "day": 29, "reason": "Council closure"},
        {"month": 12, "day": 30, "reason": "Council closure"},
        {"month": 12, "day": 31},
    ],
}


def write_config(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_council_closures_from_a_config_file(tmp_path: Path) -> None:
    council = load_calendar(write_config(tmp_path, COUNCIL))
    assert council.add_working_days(date(2023, 12, 28), 1) == date(2024, 1, 2)
    assert council.add_working_days(date(2023, 12, 22), 3) == date(2024, 1, 2)
    assert council.add_working_days(date(2030, 12, 27), 1) == date(2031, 1, 2)  # recurring: every year
    assert council.non_working_reason(date(2030, 12, 30)) == "Council closure"
    assert council.non_working_reason(date(2030, 12, 31)) == "Closure"
    assert council.add_working_days(date(2024, 7, 12), 1) == date(2024, 7, 16)
    assert council.non_working_reason(date(2024, 7, 15)) == "Staff training day"
    assert council.is_working_day(date(2025, 7, 15))  # a one-off closure does not recur
    # Closures also stop the working-hours clock; hours here are 08:30-16:30.
    assert council.add_working_hours(london(2023, 12, 28, 15, 30), 2) == london(2024, 1, 2, 9, 30)
    assert council.next_working_time(london(2023, 12, 28, 16, 45)) == london(2024, 1, 2, 8, 30)


def test_defaults(tmp_path: Path) -> None:
    default = load_calendar(None)
    minimal = load_calendar(write_config(tmp_path, {}))
    for c in (default, minimal):
        assert c.timezone_name == "Europe/London"
        assert (c.day_start, c.day_end) == (time(9), time(17))
        assert c.add_working_days(date(2023, 4, 28), 15) == date(2023, 5, 23)


def test_shipped_file_has_no_closures() -> None:
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert data["closures"] == [] and data["recurring_closures"] == []
    assert "_comment" in data


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="time zone"):
        WorkingCalendar(timezone="Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="before"):
        WorkingCalendar(day_start=time(17), day_end=time(9))
    with pytest.raises(ValueError, match="ZZ"):
        WorkingCalendar(country="ZZ")
    with pytest.raises(ValueError, match="day of the year"):
        WorkingCalendar(recurring_closures=[(2, 30)])
    assert not WorkingCalendar(closures=[date(2024, 7, 15)]).is_working_day(date(2024, 7, 15))


def _with(**changes: object) -> dict[str, object]:
    return {**COUNCIL, **changes}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ([], None, "JSON object"),
        (_with(closure=[]), None, "unknown key"),
        (_with(timezone="Europe/Londres"), "timezone", "unknown time zone"),
        (_with(timezone=3), "timezone", "string"),
        (_with(working_hours={"start": "9am", "end": "17:00"}), "working_hours.start", "HH:MM"),
        (_with(working_hours={"start": "09:00", "end": "24:00"}), "working_hours.end", "HH:MM"),
        (_with(working_hours={"start": "17:00", "end": "09:00"}), "working_hours", "before"),
        (_with(working_hours="09:00-17:00"), "working_hours", "JSON object"),
        (_with(holidays={"country": "ZZ"}), "holidays", "ZZ"),
        (_with(holidays={"country": "GB", "subdivision": "XXX"}), "holidays", "XXX"),
        (_with(closures={"date": "2023-12-29"}), "closures", "list"),
        (_with(closures=[{"date": "2023-02-30"}]), "closures[0].date", "YYYY-MM-DD"),
        (_with(closures=[{"date": "29/12/2023"}]), "closures[0].date", "YYYY-MM-DD"),
        (_with(closures=[{"reason": "x"}]), "closures[0].date", "required"),
        (_with(closures=[{"date": "2023-12-29", "reason": ""}]), "closures[0].reason", "string"),
        (_with(closures=["2023-12-29"]), "closures[0]", "JSON object"),
        (_with(recurring_closures=[{"month": 13, "day": 1}]), "recurring_closures[0]", "day of the year"),
        (_with(recurring_closures=[{"month": 2, "day": 30}]), "recurring_closures[0]", "day of the year"),
        (_with(recurring_closures=[{"month": "12", "day": 29}]), "recurring_closures[0].month", "number"),
        (_with(recurring_closures=[{"month": 12}]), "recurring_closures[0].day", "required"),
        (_with(recurring_closures=[{"month": 12, "day": 29, "year": 2023}]), "recurring_closures[0]", "year"),
    ],
)
def test_config_errors_name_the_file_and_field(
    tmp_path: Path, data: object, field: str | None, words: str
) -> None:
    path = write_config(tmp_path, data)
    with pytest.raises(ValueError) as info:
        load_calendar(path)
    message = str(info.value)
    assert str(path) in message
    if field is not None:
        assert f"field '{field}'" in message
    assert words in message


def test_config_comments_and_29_february_are_allowed(tmp_path: Path) -> None:
    data = _with(_comment="notes", recurring_closures=[{"month": 2, "day": 29, "_note": "leap years"}])
    council = load_calendar(write_config(tmp_path, data))
    assert not council.is_working_day(date(2024, 2, 29))
    assert council.is_working_day(date(2024, 2, 28))


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match="not found") as info:
        load_calendar(missing)
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text('{"timezone": "Europe/London",\n}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"not valid JSON \(line 2") as info:
        load_calendar(broken)
    assert str(broken) in str(info.value)


def test_calendar_from_dict_names_its_source() -> None:
    with pytest.raises(ValueError, match=r"^settings: field 'timezone'"):
        calendar_from_dict({"timezone": ""}, source="settings")


# -- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    monkeypatch.delenv("FRONTDOOR_PROCESSES_DIR", raising=False)  # use the shipped processes/

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(calendar_group, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug
        return result.exit_code, result.output

    return run


@pytest.mark.parametrize(
    ("args", "first_word"),
    [
        (["add", "2023-04-28", "15"], "2023-05-23"),
        (["add", "2022-09-16", "1"], "2022-09-20"),
        (["add", "2012-05-30", "10"], "2012-06-15"),
        (["add", "2023-05-23", "-15"], "2023-04-28"),
        (["add", "2023-04-29", "0"], "2023-04-29"),
        (["between", "2023-04-28", "2023-05-23"], "15"),
        (["between", "2023-05-23", "2023-04-28"], "-15"),
        (["next", "2023-12-22T17:30", "--at", "09:00"], "2023-12-27T09:00"),
        (["next", "2023-12-22T17:30"], "2023-12-27T09:00"),
        (["next", "2023-06-13T03:00", "--at", "09:00"], "2023-06-13T09:00"),  # local, not UTC
        (["add-hours", "2024-05-03T16:00", "4"], "2024-05-07T12:00"),
        (["add-hours", "2023-03-24T16:00", "2"], "2023-03-27T10:00"),
    ],
)
def test_cli(invoke: Callable[..., tuple[int, str]], args: list[str], first_word: str) -> None:
    code, output = invoke(*args)
    assert code == 0, output
    assert output.split()[0] == first_word
    assert len(output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["add", "2023-02-30", "1"], "YYYY-MM-DD"),
        (["add", "tomorrow", "1"], "YYYY-MM-DD"),
        (["add", "2023-04-28", "many"], "integer"),
        (["between", "2023-04-28", "23/05/2023"], "YYYY-MM-DD"),
        (["next", "2023-12-22", "--at", "09:00"], "YYYY-MM-DDTHH:MM"),
        (["next", "2023-12-22T17:30+00:00"], "YYYY-MM-DDTHH:MM"),
        (["next", "2023-12-22T17:30", "--at", "9am"], "HH:MM"),
        (["add-hours", "2024-05-03T25:00", "4"], "YYYY-MM-DDTHH:MM"),
        (["add-hours", "2024-05-03T16:00", "-1"], ">= 0"),
        (["add-hours", "2024-05-03T16:00", "four"], ">= 0"),
    ],
)
def test_cli_bad_input(invoke: Callable[..., tuple[int, str]], args: list[str], expected: str) -> None:
    code, output = invoke(*args)
    assert code == 2
    assert expected in output
    assert "Traceback" not in output


def test_cli_uses_frontdoor_processes_dir(invoke: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    write_config(tmp_path, COUNCIL)
    code, output = invoke("add", "2023-12-28", "1", env={"FRONTDOOR_PROCESSES_DIR": str(tmp_path)})
    assert (code, output.split()[0]) == (0, "2024-01-02")
    code, output = invoke("next", "2023-12-28T17:00", env={"FRONTDOOR_PROCESSES_DIR": str(tmp_path)})
    assert (code, output.split()[0]) == (0, "2024-01-02T08:30")


def test_cli_reports_a_bad_calendar_file(invoke: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    code, output = invoke("add", "2023-04-28", "15", env={"FRONTDOOR_PROCESSES_DIR": str(tmp_path)})
    assert code == 1
    assert str(tmp_path / "calendar.json") in output and "not found" in output
    write_config(tmp_path, _with(timezone="Nowhere"))
    code, output = invoke("add", "2023-04-28", "15", env={"FRONTDOOR_PROCESSES_DIR": str(tmp_path)})
    assert code == 1
    assert "field 'timezone'" in output
