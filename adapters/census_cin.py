"""The Children in Need (CIN) census: one XML return per year, built from case facts.

Every child with an episode (a referral) open at any point in the census year is returned:
referred on or before 31 March and not closed before 1 April. The return is "as at" the
reference date: anything recorded after 31 March (a closure, an authorisation, a conference)
is left out, as the DfE's rules expect.

Where the facts come from (``record.*`` properties in ``processes/*.bpmn``):

- ChildIdentifiers: LAchildID is the case reference without its punctuation (the oldest
  case, where the same child, by UPN, has several); UPN, date of birth and sex (from
  ``gender``) are ``child_*`` facts recorded when the contact or referral arrives. A date
  of birth after the reference date is returned as an expected date of birth, with sex U.
- ChildCharacteristics: ``child_ethnicity`` and ``child_disabilities`` (contact form).
- CINdetails: ``referral_date``, ``referral_source``, ``referral_nfa`` (accepting the
  referral), ``primary_need_code`` (the assessments), ``closure_date``, ``closure_reason``.
- Assessments: the initial assessment (``assessment_start_date``,
  ``assessment_authorised_date``, ``assessment_factors``) and the assessment through which a
  section 47 enquiry is carried out, which starts the day the enquiry does
  (``s47_start_date``; ``core_assessment_*`` or, in the 2013 variant,
  ``section47_assessment_*``).
- Section47: ``s47_start_date``, ``icpc_target_date``, ``icpc_date``, ``icpc_not_required``
  (the conference date is returned here only, never on CINdetails: rule 2884).
- ChildProtectionPlans: ``cp_plan_start_date``, ``abuse_category`` (initial and latest),
  ``previous_cp_plans``.

Not returned: CIN plan dates, plan end dates and review conferences (the pathway does not
record them yet), dates of death and former UPNs.

A child missing what the DfE's rules require is named with the field and where to record it;
the command then writes nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy.orm import Session

from engine.errors import FrontdoorError
from engine.queries import CaseFacts, cases_with_facts

SOFTWARE = "Frontdoor"
RELEASE = "0.1.0"

SEX = {"male": "M", "female": "F", "not_known": "U", "not_specified": "U"}

# Where each missing field is put right, for the message that names it.
WHERE = {
    "date of birth": "with the child's details on the contact",
    "sex": "with the child's details on the contact (gender)",
    "ethnicity": "with the child's details on the contact",
    "disability": "with the child's details on the contact",
    "referral source": "on the contact (source)",
    "primary need": "on the assessment, or when accepting the referral",
    "number of previous child protection plans": "at the initial child protection conference",
    "category of abuse": "at the initial child protection conference",
    "reason for closure": "at closure",
}


class CensusIncomplete(FrontdoorError):
    """Children whose records lack what the return needs; nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"the return is incomplete: {len(problems)} field(s) missing, nothing written\n{lines}"
        )


@dataclass(frozen=True)
class CensusYear:
    """A census year: 1 April to 31 March, named like ``2025-26``."""

    start: date
    end: date

    @classmethod
    def parse(cls, text: str) -> CensusYear:
        match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if not match or (int(match[1]) + 1) % 100 != int(match[2]):
            raise FrontdoorError(f"census year {text!r} is not like 2025-26 (1 April 2025 to 31 March 2026)")
        first = int(match[1])
        return cls(date(first, 4, 1), date(first + 1, 3, 31))

    @property
    def label(self) -> str:
        return f"{self.start.year}-{self.end.year % 100:02d}"

    def contains(self, day: date | None) -> bool:
        return day is not None and self.start <= day <= self.end


def as_date(value: Any) -> date | None:
    """A fact holding an ISO date (or date-time) as a date; None when absent or empty."""
    if value in (None, ""):
        return None
    return date.fromisoformat(str(value)[:10])


def child_label(case: CaseFacts) -> str:
    return f"{case.reference} ({case.subject_name})" if case.subject_name else case.reference


def la_child_id(reference: str) -> str:
    """The census allows letters and digits only, at most 20 (rules 1570, 1580)."""
    return re.sub(r"[^A-Za-z0-9]", "", reference)[:20]


def child_key(case: CaseFacts) -> str:
    """Cases of the same child: the same UPN; otherwise each case is its own child."""
    upn = case.facts.get("child_upn")
    return f"upn:{upn}" if upn else f"case:{case.reference}"


@dataclass
class Episode:
    """One CINdetails block, as at the reference date."""

    case: CaseFacts
    referral_date: date
    closure_date: date | None
    nfa: bool
    assessments: list[dict[str, Any]] = field(default_factory=list)
    section47: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None


@dataclass
class Child:
    la_child_id: str
    cases: list[CaseFacts]
    episodes: list[Episode]


def episodes_in_year(cases: Iterable[CaseFacts], year: CensusYear) -> list[CaseFacts]:
    """Cases whose referral was open at some point in the year (as known at the reference date)."""
    chosen = []
    for case in cases:
        referred = as_date(case.facts.get("referral_date"))
        closed = as_date(case.facts.get("closure_date"))
        if referred is None or referred > year.end:
            continue
        if closed is not None and closed < year.start:
            continue
        chosen.append(case)
    return chosen


def _assessment(
    start: date | None, authorised: date | None, factors: Any, year: CensusYear
) -> dict[str, Any] | None:
    if start is None or start > year.end:
        return None
    if authorised is not None and authorised > year.end:
        authorised = None  # authorised after the reference date: still open on it
    if authorised is not None and authorised < year.start:
        return None  # finished before the year began
    return {
        "start": start,
        "authorised": authorised,
        "factors": list(factors or []) if authorised else [],
    }


def build_episode(case: CaseFacts, year: CensusYear) -> Episode:
    facts = case.facts
    referral_date = as_date(facts["referral_date"])
    assert referral_date is not None
    closure = as_date(facts.get("closure_date"))
    episode = Episode(
        case=case,
        referral_date=referral_date,
        closure_date=closure if closure is not None and closure <= year.end else None,
        nfa=bool(facts.get("referral_nfa")),
    )
    initial = _assessment(
        as_date(facts.get("assessment_start_date")),
        as_date(facts.get("assessment_authorised_date")),
        facts.get("assessment_factors"),
        year,
    )
    s47_start = as_date(facts.get("s47_start_date"))
    if "section47_assessment_authorised_date" in facts:  # the 2013 single assessment
        through_s47 = _assessment(
            s47_start,
            as_date(facts.get("section47_assessment_authorised_date")),
            facts.get("section47_assessment_factors"),
            year,
        )
    else:
        through_s47 = _assessment(
            s47_start,
            as_date(facts.get("core_assessment_authorised_date")),
            facts.get("core_assessment_factors"),
            year,
        )
    episode.assessments = [a for a in (initial, through_s47) if a is not None]

    if s47_start is not None and s47_start <= year.end:
        icpc = as_date(facts.get("icpc_date"))
        if icpc is not None and icpc > year.end:
            icpc = None
        not_required = facts.get("icpc_not_required") is True
        ended_before = (icpc is not None and icpc < year.start) or (not_required and s47_start < year.start)
        if not ended_before:
            episode.section47 = {
                "start": s47_start,
                "target": as_date(facts.get("icpc_target_date")),
                "icpc": icpc,
                "not_required": not_required,
            }
    plan_start = as_date(facts.get("cp_plan_start_date"))
    if plan_start is not None and plan_start <= year.end:
        episode.plan = {
            "start": plan_start,
            "category": facts.get("abuse_category"),
            "previous": facts.get("previous_cp_plans"),
        }
    return episode


def collect(session: Session, year: CensusYear) -> list[Child]:
    """The children to return, or CensusIncomplete naming each child and missing field."""
    cases = episodes_in_year(cases_with_facts(session, ["referral_date"]), year)
    grouped: dict[str, list[CaseFacts]] = {}
    for case in cases:
        grouped.setdefault(child_key(case), []).append(case)
    problems: list[str] = []
    children = []
    for group in grouped.values():
        group.sort(key=lambda c: (as_date(c.facts["referral_date"]), c.case_id))
        episodes = [build_episode(case, year) for case in group]
        problems.extend(check(group[0], episodes, year))
        children.append(Child(la_child_id(group[0].reference), group, episodes))
    if problems:
        raise CensusIncomplete(problems)
    children.sort(key=lambda c: c.la_child_id)
    return children


def check(first: CaseFacts, episodes: list[Episode], year: CensusYear) -> list[str]:
    """What the DfE's rules require and the records lack, as 'child: field missing (record it on ...)'."""
    missing: list[tuple[CaseFacts, str]] = []
    facts = first.facts
    if as_date(facts.get("child_date_of_birth")) is None:
        missing.append((first, "date of birth"))
    if SEX.get(str(facts.get("child_gender"))) is None:
        missing.append((first, "sex"))
    if not facts.get("child_ethnicity"):
        missing.append((first, "ethnicity"))
    if not facts.get("child_disabilities") and any(not e.nfa for e in episodes):
        missing.append((first, "disability"))
    for episode in episodes:
        case = episode.case
        if not case.facts.get("referral_source"):
            missing.append((case, "referral source"))
        if not episode.nfa and not case.facts.get("primary_need_code"):
            missing.append((case, "primary need"))
        if episode.closure_date is not None and not case.facts.get("closure_reason"):
            missing.append((case, "reason for closure"))
        if episode.plan is not None:
            if not episode.plan["category"]:
                missing.append((case, "category of abuse"))
            if episode.plan["previous"] is None:
                missing.append((case, "number of previous child protection plans"))
    return [f"{child_label(case)}: {name} is missing; record it {WHERE[name]}" for case, name in missing]


# ------------------------------------------------------------------------------------------ XML


def _text(parent: etree._Element, tag: str, value: Any) -> None:
    if value is None or value == "":
        return
    element = etree.SubElement(parent, tag)
    if isinstance(value, bool):
        element.text = "1" if value else "0"  # rules compare with "0"/"1" (both valid xs:boolean)
    elif isinstance(value, date):
        element.text = value.isoformat()
    else:
        element.text = str(value)


def to_xml(children: list[Child], year: CensusYear, la_code: str, now: datetime | None = None) -> bytes:
    message = etree.Element("Message")
    header = etree.SubElement(message, "Header")
    details = etree.SubElement(header, "CollectionDetails")
    _text(details, "Collection", "CIN")
    _text(details, "Year", year.end.year)
    _text(details, "ReferenceDate", year.end)
    source = etree.SubElement(header, "Source")
    _text(source, "SourceLevel", "L")
    _text(source, "LEA", la_code)
    _text(source, "SoftwareCode", SOFTWARE)
    _text(source, "Release", RELEASE)
    _text(source, "SerialNo", "001")
    _text(source, "DateTime", (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    container = etree.SubElement(message, "Children")
    for child in children:
        facts = child.cases[0].facts
        node = etree.SubElement(container, "Child")
        ids = etree.SubElement(node, "ChildIdentifiers")
        _text(ids, "LAchildID", child.la_child_id)
        _text(ids, "UPN", facts.get("child_upn"))
        born = as_date(facts.get("child_date_of_birth"))
        unborn = born is not None and born > year.end
        _text(ids, "PersonBirthDate", None if unborn else born)
        _text(ids, "ExpectedPersonBirthDate", born if unborn else None)
        _text(ids, "Sex", "U" if unborn else SEX[str(facts.get("child_gender"))])

        characteristics = etree.SubElement(node, "ChildCharacteristics")
        _text(characteristics, "Ethnicity", facts.get("child_ethnicity"))
        if facts.get("child_disabilities"):
            disabilities = etree.SubElement(characteristics, "Disabilities")
            for code in facts["child_disabilities"]:
                _text(disabilities, "Disability", code)

        for episode in child.episodes:
            _episode(node, episode)
    return bytes(etree.tostring(message, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _episode(node: etree._Element, episode: Episode) -> None:
    facts = episode.case.facts
    cin = etree.SubElement(node, "CINdetails")
    _text(cin, "CINreferralDate", episode.referral_date)
    _text(cin, "ReferralSource", facts.get("referral_source"))
    _text(cin, "PrimaryNeedCode", facts.get("primary_need_code"))
    if episode.closure_date is not None:
        _text(cin, "CINclosureDate", episode.closure_date)
        _text(cin, "ReasonForClosure", facts.get("closure_reason"))
    _text(cin, "ReferralNFA", episode.nfa)
    for assessment in episode.assessments:
        block = etree.SubElement(cin, "Assessments")
        _text(block, "AssessmentActualStartDate", assessment["start"])
        _text(block, "AssessmentAuthorisationDate", assessment["authorised"])
        if assessment["factors"]:
            factors = etree.SubElement(block, "FactorsIdentifiedAtAssessment")
            for code in assessment["factors"]:
                _text(factors, "AssessmentFactors", code)
    if episode.section47 is not None:
        s47 = etree.SubElement(cin, "Section47")
        _text(s47, "S47ActualStartDate", episode.section47["start"])
        _text(s47, "InitialCPCtarget", episode.section47["target"])
        _text(s47, "DateOfInitialCPC", episode.section47["icpc"])
        _text(s47, "ICPCnotRequired", episode.section47["not_required"])
    if episode.plan is not None:
        plan = etree.SubElement(cin, "ChildProtectionPlans")
        _text(plan, "CPPstartDate", episode.plan["start"])
        _text(plan, "InitialCategoryOfAbuse", episode.plan["category"])
        _text(plan, "LatestCategoryOfAbuse", episode.plan["category"])
        _text(plan, "NumberOfPreviousCPP", episode.plan["previous"])


# ------------------------------------------------------------------------------------ writing


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over: never a half-written return."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export(session: Session, year: CensusYear, la_code: str, out: Path, now: datetime | None = None) -> int:
    """Write the return to ``out``; the number of children in it."""
    if not re.fullmatch(r"\d{3}", la_code or ""):
        raise FrontdoorError(f"LA code {la_code!r} is not the council's three-digit DfE code (e.g. 931)")
    children = collect(session, year)
    write_atomically(out, to_xml(children, year, la_code, now))
    return len(children)
