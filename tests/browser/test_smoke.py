"""The browser can reach the pages: sign in, and the sign-in page passes axe-core."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, axe_violations, sign_in


def test_sign_in_page_is_accessible(page: Any, live: LiveServer) -> None:
    page.goto("/sign-in")
    assert page.title().startswith("Sign in")
    assert axe_violations(page) == []


def test_a_screener_signs_in_and_sees_their_work(page: Any, live: LiveServer) -> None:
    sign_in(page, "sam.screener")
    expect(page.get_by_role("button", name="Sign out Sam Screener")).to_be_visible()
    assert "/sign-in" not in page.url


def test_wrong_password_shows_the_error_summary(page: Any, live: LiveServer) -> None:
    page.goto("/sign-in")
    page.get_by_label("Username").fill("sam.screener")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("The username or password is not right")
    assert axe_violations(page) == []
