"""The front door in a real browser, as the people who use it work through it.

A screener records a contact about two siblings; the MASH manager rates urgency; the police,
health and education partners share what they know; the manager refers one child to social care;
the assessment team's manager accepts and allocates; the social worker sends the letters and
completes the initial assessment; the clock then moves past the other child's decision deadline
and the manager sees the escalation, in words.  Every step is done through the pages (forms filled
by their labels), with Playwright's auto-waiting ``expect`` rather than sleeps.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engine.models import CaseRecord
from tests.browser.conftest import LiveServer, sign_in, sign_out

SIBLINGS = ("Zoe Quinn", "Theo Quinn")
PARTNERS = (
    ("pat.police", "Share what the police know"),
    ("hana.health", "Share what health services know"),
    ("ed.education", "Share what the school or nursery knows"),
)


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _fail_fast(page: Any) -> None:
    """Auto-waiting, but not for half a minute: a missing element fails in 10 seconds."""
    page.set_default_timeout(10_000)


def group(scope: Any, legend: str | re.Pattern[str]) -> Any:
    """A fieldset by its legend (radios and checkboxes are answered inside their question)."""
    return scope.get_by_role("group", name=legend, exact=isinstance(legend, str))


def choose(scope: Any, legend: str | re.Pattern[str], answer: str) -> None:
    group(scope, legend).get_by_label(answer, exact=True).check()


def row(page: Any, task: str, child: str) -> Any:
    """The queue row of ``task`` for ``child`` (whose own cell starts with the name: a sibling's row
    mentions the child too, as "Sibling of ...")."""
    child_cell = page.locator("td:nth-child(2)", has_text=re.compile(rf"^\s*{re.escape(child)}"))
    return (
        page.locator("tbody tr")
        .filter(has=page.get_by_role("link", name=task, exact=True))
        .filter(has=child_cell)
    )


def complete(page: Any, task: str, child: str) -> None:
    page.get_by_role("button", name="Complete", exact=True).click()
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        f"You completed ‘{task}’ for {child}"
    )
    expect(page).to_have_url(re.compile(r"/tasks/mine$"))


def switch_to(page: Any, username: str) -> None:
    sign_out(page)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, username)
    expect(page.get_by_role("heading", name="My tasks", exact=True)).to_be_visible()


def reference_of(live: LiveServer, child: str) -> str:
    with live.engine.db.read() as session:
        found = session.scalar(sa.select(CaseRecord.reference).where(CaseRecord.subject_name == child))
    assert found, f"no case for {child}"
    return str(found)


def open_task(live: LiveServer, reference: str, element: str) -> Any:
    matches = [t for t in live.engine.tasks(case_reference=reference) if t.element_id == element]
    assert matches, f"{reference} has no open {element} task"
    return matches[0]


def team_queue(page: Any) -> None:
    page.get_by_role("navigation", name="Menu").get_by_role("link", name="Team queue").click()
    expect(page.get_by_role("heading", name=re.compile("team queue$"), level=1)).to_be_visible()


# ----------------------------------------------------------------------------- the journey


def record_contact_about_two_siblings(page: Any, live: LiveServer) -> tuple[str, str]:
    sign_in(page, "sam.screener")
    page.get_by_role("navigation", name="Menu").get_by_role("link", name="Record a contact").click()
    expect(page.get_by_role("heading", name="Record a contact", level=1)).to_be_visible()

    received = group(page, "When was the contact received?")
    for label, value in (("Day", "6"), ("Month", "3"), ("Year", "2024"), ("Time", "09:30")):
        received.get_by_label(label, exact=True).fill(value)
    referrer = group(page, "Who raised the concern?")
    referrer.get_by_label("Name", exact=True).fill("Jo Head")
    referrer.get_by_label("Organisation (optional)").fill("Hillside Primary School")
    referrer.get_by_label("Relationship to the child").fill("Designated safeguarding lead")
    page.get_by_label("Source of the contact").select_option(label="Schools")
    page.get_by_label("What is the concern?").fill(
        "Zoe has bruising to her arm and says her father grabbed her"
    )
    consent = group(page, "Consent to share information")
    choose(consent, "Was the family's consent to share information sought?", "No")
    consent.get_by_label("Why was consent not sought?").fill(
        "Asking the family could put the children at risk"
    )
    for index, (name, born) in enumerate(zip(SIBLINGS, ("2015-04-12", "2019-10-03"), strict=True), start=1):
        child = group(page, f"Children the contact is about: entry {index}")
        child.get_by_label("Child's full name").fill(name)
        year, month, day = born.split("-")
        dob = group(child, "Date of birth")
        dob.get_by_label("Day").fill(day)
        dob.get_by_label("Month").fill(month)
        dob.get_by_label("Year").fill(year)
        choose(child, "Gender (optional)", "Female" if index == 1 else "Male")
    page.get_by_role("button", name="Record the contact").click()

    banner = page.locator(".govuk-notification-banner--success")
    expect(banner).to_contain_text("Contact recorded: 2 cases opened")
    zoe, theo = (reference_of(live, name) for name in SIBLINGS)
    expect(banner).to_contain_text(zoe)
    expect(banner).to_contain_text(theo)

    # One record per child, linked as siblings: the team queue groups their tasks under one heading.
    team_queue(page)
    expect(
        page.get_by_role("rowheader", name=re.compile(r"^Siblings: .*Zoe Quinn.*Theo Quinn"))
    ).to_be_visible()
    # Each child's case page links to the other's.
    page.get_by_role("link", name="Zoe Quinn").first.click()
    expect(page.get_by_role("heading", name="Zoe Quinn", level=1)).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Theo Quinn|" + theo))).to_be_visible()
    return zoe, theo


def rate_urgency(page: Any, zoe: str, theo: str) -> None:
    switch_to(page, "mo.manager")
    team_queue(page)
    # Filter by the family name (htmx swaps the results and keeps the filter in the address).
    page.get_by_label("Child's name or case reference").fill("Quinn")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"child=Quinn"))
    expect(page.locator("#queue-results")).to_contain_text("2 tasks match the filters")
    expect(row(page, "Rate the urgency", "Theo Quinn")).to_be_visible()
    expect(page.get_by_role("link", name="Ava Thompson")).to_have_count(0)
    # Typing a name and selecting "Apply filters" sends the filter twice (the box's change, then the
    # submit); the second answer can land after a claim and put back the row as it was before it.
    # Reload the filtered queue before claiming, so the claim is checked on a settled page.
    page.reload()
    zoe_row = row(page, "Rate the urgency", "Zoe Quinn")
    expect(zoe_row).to_contain_text("Due today")
    zoe_row.get_by_role("button", name=re.compile("^Claim")).click()
    expect(zoe_row).to_contain_text("You claimed ‘Rate the urgency’")
    expect(zoe_row.get_by_role("button", name=re.compile("^Release"))).to_be_visible()

    ratings = (
        ("Zoe Quinn", zoe, "Amber: risk of significant harm"),
        ("Theo Quinn", theo, "Green: needs assessment, no immediate risk"),
    )
    for child, reference, rating in ratings:
        page.goto(f"/teams/mash/queue?child={reference}")
        row(page, "Rate the urgency", child).get_by_role("link", name="Rate the urgency").click()
        expect(page.get_by_role("heading", name="Rate the urgency", level=1)).to_be_visible()
        expect(page.locator(".govuk-caption-l")).to_have_text(f"{child} ({reference})")
        choose(page, "How urgent is this?", rating)
        page.get_by_label("Why this rating?").fill("Injury to a child; disclosure at school")
        complete(page, "Rate the urgency", child)


def partners_share_what_they_know(page: Any) -> None:
    for username, task in PARTNERS:
        switch_to(page, username)
        team_queue(page)
        for child in SIBLINGS:
            task_row = row(page, task, child)
            expect(task_row).to_be_visible()
            # A partner sees the task, never a link to the child's record.
            expect(task_row.get_by_role("link", name=child)).to_have_count(0)
            task_row.get_by_role("link", name=task).click()
            expect(page.get_by_role("heading", name=task, level=1)).to_be_visible()
            choose(page, re.compile(r"^Is the child or household known to"), "No")
            page.get_by_label("What is known that bears on the concern?").fill("Nothing known")
            complete(page, task, child)
            team_queue(page)
        for child in SIBLINGS:
            expect(row(page, task, child)).to_have_count(0)


def decide_referral(page: Any, zoe: str) -> None:
    switch_to(page, "mo.manager")
    team_queue(page)
    row(page, "Decide the response", "Zoe Quinn").get_by_role("link", name="Decide the response").click()
    expect(page.get_by_role("heading", name="Decide the response", level=1)).to_be_visible()
    decision = group(page, "MASH decision")
    choose(decision, "What is the response?", "Referral to children's social care")
    decision.get_by_label("Why?", exact=True).fill("Injury to a child; the police know of domestic abuse")
    choose(decision, "Is there reasonable cause to suspect significant harm? (optional)", "No")
    consent = group(decision, "Consent to share information")
    choose(consent, "Was the family's consent sought?", "Yes")
    choose(consent, "Did they give it?", "Yes")
    complete(page, "Decide the response", f"Zoe Quinn ({zoe})")


def accept_and_allocate(page: Any) -> None:
    switch_to(page, "tara.team")
    team_queue(page)
    task = "Accept the referral and allocate"
    row(page, task, "Zoe Quinn").get_by_role("link", name=task).click()
    expect(page.get_by_role("heading", name=task, level=1)).to_be_visible()
    choose(page, "Does the referral need an assessment?", "Yes")
    page.get_by_label("Allocated social worker").fill("sara.social")
    choose(page, "Can the family be told what will happen?", "Yes")
    complete(page, task, "Zoe Quinn")


def social_worker_assesses(page: Any, live: LiveServer, zoe: str) -> None:
    switch_to(page, "sara.social")
    letters = ("Tell the referrer what will happen", "Tell the family what will happen")
    # Allocation gives the allocated worker the letters and the assessment: they are in My tasks.
    for task in (*letters, "Initial assessment"):
        expect(row(page, task, "Zoe Quinn")).to_contain_text("You")
    for task, to in zip(letters, ("Jo Head", "Ms Quinn"), strict=True):
        row(page, task, "Zoe Quinn").get_by_role("link", name=task).click()
        expect(page.get_by_role("heading", name=task, level=1)).to_be_visible()
        letter = group(page, "The letter")
        letter.get_by_label("Sent to").fill(to)
        choose(letter, "How it was sent", "Letter by post")
        letter.get_by_label("What the letter says").fill(
            "The referral was accepted; a social worker will visit"
        )
        complete(page, task, "Zoe Quinn")

    task = "Initial assessment"
    row(page, task, "Zoe Quinn").get_by_role("link", name=task).click()
    expect(page.get_by_role("heading", name=task, level=1)).to_be_visible()
    choose(page, "Was the child seen during the assessment?", "Yes")
    choose(
        page,
        "Factors identified at the end of the assessment",
        "Domestic abuse: concerns about the parent or carer",
    )
    page.get_by_label("What the assessment found").fill("Domestic abuse between the parents; Zoe is safe now")
    choose(page, "What do you recommend?", "No further action")
    complete(page, task, "Zoe Quinn")
    expect(row(page, task, "Zoe Quinn")).to_have_count(0)

    # The case page tells the story: the allocated worker, the letters sent.
    page.goto(f"/cases/{zoe}")
    expect(page.get_by_role("heading", name="Zoe Quinn", level=1)).to_be_visible()
    expect(page.locator("main")).to_contain_text("Sara Social")
    assert {t.element_id for t in live.engine.tasks(case_reference=zoe)} >= {"authorise_assessment"}


def test_a_contact_about_two_siblings_goes_from_the_front_door_to_an_escalation(
    page: Any, live: LiveServer
) -> None:
    zoe, theo = record_contact_about_two_siblings(page, live)
    rate_urgency(page, zoe, theo)
    partners_share_what_they_know(page)
    decide_referral(page, zoe)
    accept_and_allocate(page)
    social_worker_assesses(page, live, zoe)

    # Nobody decides for Theo: the clock passes a working day after his decision was due.
    decision = open_task(live, theo, "decide_response")
    assert decision.due_at is not None and decision.escalation_level == 0
    live.clock.set(decision.due_at + timedelta(days=1, hours=1))
    assert live.fire_due() > 0
    assert open_task(live, theo, "decide_response").escalation_level == 2

    switch_to(page, "mo.manager")
    page.get_by_role("navigation", name="Menu").get_by_role("link", name="Manager pages").click()
    expect(page.get_by_role("heading", name="Escalations", level=1)).to_be_visible()
    escalated = page.locator("tbody tr").filter(has_text=theo).filter(has_text="Decide the response")
    expect(escalated).to_have_count(1)
    expect(escalated).to_contain_text("Level 2: team manager")
    expect(escalated).to_contain_text(re.compile(r"1 working day late"))
    expect(escalated).to_contain_text("Not claimed")


# ----------------------------------------------------------------------------- details


def test_claim_and_release_update_the_row_without_reloading_the_page(page: Any, live: LiveServer) -> None:
    sign_in(page, "sam.screener")
    page.goto("/teams/mash/queue")
    address = page.url
    # A marker on the window: a full page load would lose it.
    page.evaluate("window.__stillTheSamePage = true")
    handover = row(page, "Hand over to the day service", "Eve Marsh")
    expect(handover).to_contain_text("Not claimed")

    handover.get_by_role("button", name=re.compile("^Claim")).click()
    expect(handover).to_contain_text("You claimed ‘Hand over to the day service’")
    expect(handover.get_by_role("button", name=re.compile("^Release"))).to_be_visible()
    expect(handover.get_by_role("button", name=re.compile("^Claim"))).to_have_count(0)
    expect(handover.get_by_role("cell", name="You", exact=True)).to_be_visible()
    assert page.url == address
    assert page.evaluate("window.__stillTheSamePage === true")
    [task] = [t for t in live.engine.tasks(case_reference="DEMO-005")]
    assert task.assignee == "sam.screener"

    handover.get_by_role("button", name=re.compile("^Release")).click()
    expect(handover).to_contain_text("You released ‘Hand over to the day service’")
    expect(handover.get_by_role("button", name=re.compile("^Claim"))).to_be_visible()
    expect(handover).to_contain_text("Not claimed")
    assert page.url == address
    assert page.evaluate("window.__stillTheSamePage === true")
    [task] = [t for t in live.engine.tasks(case_reference="DEMO-005")]
    assert task.assignee is None


def test_a_form_with_missing_answers_shows_the_error_summary_linking_to_each_field(
    page: Any, live: LiveServer
) -> None:
    sign_in(page, "mo.manager")
    task = open_task(live, "DEMO-001", "rate_urgency")
    page.goto(f"/tasks/{task.id}")
    group(page, "How urgent is this?").get_by_label("Red: immediate risk").check()
    page.get_by_role("button", name="Complete", exact=True).click()

    summary = page.locator(".govuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("There is a problem")
    expect(page).to_have_title(re.compile("^Error: Rate the urgency"))
    link = summary.get_by_role("link")
    expect(link).to_have_count(1)
    expect(link).to_have_attribute("href", "#urgency_reason")
    # The message also sits beside the field, and the answer already given is kept.
    expect(page.locator("#urgency_reason-error")).to_be_visible()
    expect(group(page, "How urgent is this?").get_by_label("Red: immediate risk")).to_be_checked()
    link.click()
    expect(page.get_by_label("Why this rating?")).to_be_focused()
    # Nothing was saved.
    assert open_task(live, "DEMO-001", "rate_urgency").status == "ready"


def test_the_queue_says_in_words_when_work_is_due(page: Any, live: LiveServer) -> None:
    sign_in(page, "mo.manager")
    page.goto("/teams/mash/queue")
    overdue = row(page, "Decide the response", "Dan Okafor")
    expect(overdue.locator(".fd-due")).to_have_text(re.compile(r"^Overdue"))
    expect(overdue.locator(".fd-due")).to_have_class(re.compile("fd-due--overdue"))
    today = row(page, "Rate the urgency", "Ava Thompson")
    expect(today.locator(".fd-due")).to_have_text("Due today")
    expect(today.locator(".fd-due")).to_have_class(re.compile("fd-due--today"))

    page.get_by_label("Due", exact=True).select_option(label="Overdue")
    expect(page).to_have_url(re.compile(r"due=overdue"))
    expect(row(page, "Decide the response", "Dan Okafor")).to_be_visible()
    expect(row(page, "Rate the urgency", "Ava Thompson")).to_have_count(0)
    for words in page.locator("#queue-results .fd-due").all_inner_texts():
        assert words.startswith("Overdue"), words
