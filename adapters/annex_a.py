"""Ofsted's Annex A lists 1, 3, 4 and 5 as CSV, from case facts.

Column headings and coded answers ("a) Male", "e) 2A: Schools", "b) No") follow Ofsted's
Annex A template, so the files paste into it. Dates are dd/mm/yyyy; ages are whole years on
the date of the event the row is about. Each list covers a period (by default the six months
to the "as at" date; counts "in the last 12 months" are the 12 months to that date):

- List 1, contacts: every case whose ``contact_date`` falls in the period; source from
  ``contact_source``.
- List 3, referrals: ``referral_date`` in the period; ``referral_source``, ``referral_nfa``;
  the number of referrals of the same child (same UPN, else the same case) in the 12 months
  to the referral; the case's team and worker.
- List 4, assessments: each assessment open at some point in the period: the initial
  assessment (``assessment_start_date``, ``child_seen``, ``assessment_authorised_date``,
  ``assessment_outcome``) and the one carried out through a section 47 enquiry (starting
  on ``s47_start_date``; ``s47_assessment_child_seen``, ``core_assessment_authorised_date`` or
  ``section47_assessment_authorised_date``). "Requiring social care
  support" is No for an outcome of no further action or early help, Yes otherwise.
- List 5, section 47 enquiries: each enquiry open at some point in the period
  (``s47_start_date`` to ``icpc_date``, or open while no conference has been decided);
  ``icpc_not_required``, ``icpc_date``, ``cp_plan_start_date``.

The child's gender, ethnicity, date of birth and disability are the ``child_*`` facts recorded
when the contact or referral arrived; the child's ID is the one the CIN census uses.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from calendar import monthrange
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from engine.errors import FrontdoorError
from engine.queries import CaseFacts, cases_with_facts, display_names

from .census_cin import as_date, child_key, la_child_id

CHILD = ["Child Unique ID", "Gender", "Ethnicity", "Date of Birth", "Age of Child (Years)"]
DISABILITY = "Does the Child have a Disability"
TEAM = ["Allocated Team", "Allocated Worker"]

LIST_1 = [*CHILD, "Date of Contact", "Contact Source"]
LIST_3 = [
    *CHILD,
    "Date of referral",
    "Referral Source",
    "Referral NFA?",
    "Number of Referrals in Last 12 Months",
    *TEAM,
]
LIST_4 = [
    *CHILD,
    DISABILITY,
    "Continuous Assessment Start Date",
    "Child Seen During Continuous Assessment",
    "Continuous Assessment Date of Authorisation",
    "Was the child assessed as requiring LA children's social care support?",
    *TEAM,
]
LIST_5 = [
    *CHILD,
    DISABILITY,
    "Strategy discussion initiating Section 47 Enquiry Start Date",
    "Was an Initial Child Protection Conference deemed unnecessary?",
    "Date of Initial Child Protection Conference",
    "Did the Initial Child Protection Conference Result in a Child Protection Plan",
    "Number of Section 47 Enquiries in the last 12 months",
    "Number of ICPCs in the last 12 months",
    *TEAM,
]
FILES = {
    "List_1_contacts.csv": LIST_1,
    "List_3_referrals.csv": LIST_3,
    "List_4_assessments.csv": LIST_4,
    "List_5_section47.csv": LIST_5,
}

GENDER = {"male": "a) Male", "female": "b) Female"}
NOT_STATED = "c) Not stated/recorded"
ETHNICITY_ORDER = (
    "WBRI",
    "WIRI",
    "WIRT",
    "WOTH",
    "WROM",
    "MWBC",
    "MWBA",
    "MWAS",
    "MOTH",
    "AIND",
    "APKN",
    "ABAN",
    "AOTH",
    "BCRB",
    "BAFR",
    "BOTH",
    "CHNE",
    "OOTH",
    "REFU",
    "NOBT",
)
ETHNICITY = {
    code: f"{letter}) {code}" for letter, code in zip("abcdefghijklmnopqrst", ETHNICITY_ORDER, strict=True)
}
SOURCE = {
    "1A": "a) 1A: Individual",
    "1B": "b) 1B: Individual",
    "1C": "c) 1C: Individual",
    "1D": "d) 1D: Individual",
    "2A": "e) 2A: Schools",
    "2B": "f) 2B: Education services",
    "3A": "g) 3A: Health services",
    "3B": "h) 3B: Health services",
    "3C": "i) 3C: Health services",
    "3D": "j) 3D: Health services",
    "3E": "k) 3E: Health services",
    "3F": "l) 3F: Health services",
    "4": "m) 4: Housing",
    "5A": "n) 5A: LA services",
    "5B": "o) 5B: LA services",
    "5C": "p) 5C: LA services",
    "5D": "p1) 5D: LA services",
    "6": "q) 6: Police",
    "7": "r) 7: Other legal agency",
    "8": "s) 8: Other",
    "9": "t) 9: Anonymous",
    "10": "u) 10: Unknown",
}
YES, NO, UNKNOWN = "a) Yes", "b) No", "c) Unknown"


def months_before(day: date, months: int) -> date:
    """The day after the same date ``months`` earlier: the first day of a period of that many months."""
    month = day.month - months
    year = day.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1])) + timedelta(days=1)


def _day(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def _yes_no(value: Any) -> str:
    return "" if value is None else (YES if value else NO)


def _age(born: date | None, on: date | None) -> str:
    if born is None or on is None or born > on:
        return ""
    return str(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))


def _disability(case: CaseFacts) -> str:
    codes = case.facts.get("child_disabilities")
    if not codes:
        return UNKNOWN
    return NO if list(codes) == ["NONE"] else YES


class AnnexA:
    def __init__(self, session: Session, as_at: date, months: int = 6) -> None:
        if months < 1:
            raise FrontdoorError("--months must be at least 1")
        self.as_at = as_at
        self.start = months_before(as_at, months)
        self.year_start = months_before(as_at, 12)
        self.cases = cases_with_facts(session, ["contact_date", "referral_date"])
        self.teams, self.users = display_names(session)
        self.ids: dict[str, str] = {}
        for case in self.cases:  # oldest case first: the ID the CIN census gives the child
            self.ids.setdefault(child_key(case), la_child_id(case.reference))

    def in_period(self, day: date | None) -> bool:
        return day is not None and self.start <= day <= self.as_at

    def open_in_period(self, begun: date | None, ended: date | None) -> bool:
        return begun is not None and begun <= self.as_at and (ended is None or ended >= self.start)

    def child(self, case: CaseFacts, on: date | None) -> list[str]:
        born = as_date(case.facts.get("child_date_of_birth"))
        return [
            self.ids[child_key(case)],
            GENDER.get(str(case.facts.get("child_gender")), NOT_STATED),
            ETHNICITY.get(str(case.facts.get("child_ethnicity")), ETHNICITY["NOBT"]),
            _day(born),
            _age(born, on),
        ]

    def team(self, case: CaseFacts) -> list[str]:
        return [
            self.teams.get(case.team_key or "", case.team_key or ""),
            self.users.get(case.worker or "", case.worker or ""),
        ]

    def count_for_child(self, case: CaseFacts, fact: str, until: date) -> int:
        """How many of the child's cases have ``fact`` in the 12 months to ``until``."""
        since = months_before(until, 12)
        key = child_key(case)
        return sum(
            1
            for other in self.cases
            if child_key(other) == key
            and (day := as_date(other.facts.get(fact))) is not None
            and since <= day <= until
        )

    # ------------------------------------------------------------------------------- lists

    def list_1(self) -> Iterable[list[str]]:
        for case in self.cases:
            contacted = as_date(case.facts.get("contact_date"))
            if self.in_period(contacted):
                source = str(case.facts.get("contact_source"))
                yield [*self.child(case, contacted), _day(contacted), SOURCE.get(source, source)]

    def list_3(self) -> Iterable[list[str]]:
        for case in self.cases:
            referred = as_date(case.facts.get("referral_date"))
            if self.in_period(referred):
                assert referred is not None
                source = str(case.facts.get("referral_source"))
                yield [
                    *self.child(case, referred),
                    _day(referred),
                    SOURCE.get(source, source),
                    _yes_no(bool(case.facts.get("referral_nfa"))),
                    str(self.count_for_child(case, "referral_date", referred)),
                    *self.team(case),
                ]

    def list_4(self) -> Iterable[list[str]]:
        for case in self.cases:
            facts = case.facts
            initial = (
                as_date(facts.get("assessment_start_date")),
                facts.get("child_seen"),
                as_date(facts.get("assessment_authorised_date")),
                facts.get("assessment_outcome"),
            )
            s47_authorised = facts.get("core_assessment_authorised_date") or facts.get(
                "section47_assessment_authorised_date"
            )
            through_s47 = (
                as_date(facts.get("s47_start_date")),
                facts.get("s47_assessment_child_seen"),
                as_date(s47_authorised),
                "cp_plan" if facts.get("cp_plan_start_date") else facts.get("closure_reason"),
            )
            for begun, seen, authorised, outcome in (initial, through_s47):
                if not self.open_in_period(begun, authorised):
                    continue
                if authorised is None or authorised > self.as_at:
                    authorised, support = None, ""
                else:
                    support = NO if outcome in ("nfa", "early_help", "RC8", "RC9") else YES
                yield [
                    *self.child(case, begun),
                    _disability(case),
                    _day(begun),
                    UNKNOWN if seen is None else _yes_no(seen),
                    _day(authorised),
                    support,
                    *self.team(case),
                ]

    def list_5(self) -> Iterable[list[str]]:
        for case in self.cases:
            facts = case.facts
            begun = as_date(facts.get("s47_start_date"))
            icpc = as_date(facts.get("icpc_date"))
            if icpc is not None and icpc > self.as_at:
                icpc = None
            if not self.open_in_period(begun, icpc):
                continue
            not_required = facts.get("icpc_not_required")
            plan = as_date(facts.get("cp_plan_start_date"))
            yield [
                *self.child(case, begun),
                _disability(case),
                _day(begun),
                YES if not_required is True else NO if not_required is False else "",
                _day(icpc),
                _yes_no(plan is not None and plan <= self.as_at) if icpc else "",
                str(self.count_for_child(case, "s47_start_date", self.as_at)),
                str(self.count_for_child(case, "icpc_date", self.as_at)),
                *self.team(case),
            ]

    def files(self) -> dict[str, bytes]:
        makers: dict[str, Callable[[], Iterable[list[str]]]] = {
            "List_1_contacts.csv": self.list_1,
            "List_3_referrals.csv": self.list_3,
            "List_4_assessments.csv": self.list_4,
            "List_5_section47.csv": self.list_5,
        }
        out = {}
        for name, make in makers.items():
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\r\n")
            writer.writerow(FILES[name])
            writer.writerows(make())
            out[name] = buffer.getvalue().encode("utf-8-sig")  # Excel opens UTF-8 with a BOM as UTF-8
        return out


def export(session: Session, out_dir: Path, as_at: date, months: int = 6) -> dict[str, int]:
    """Write the four lists into ``out_dir`` (each file whole or not at all); rows per file."""
    files = AnnexA(session, as_at, months).files()
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, data in files.items():
            handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            staged.append((temporary, out_dir / name))
        for temporary, final in staged:
            os.replace(temporary, final)
    finally:
        for temporary, _ in staged:
            Path(temporary).unlink(missing_ok=True)
    return {name: data.count(b"\r\n") - 1 for name, data in files.items()}
