"""Signing in: what a practitioner sees, and what an attacker does not get."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from engine.clock import FakeClock
from tests.webapp.conftest import _app, csrf_token, sign_in


def test_pages_need_sign_in(app: Flask) -> None:
    response = app.test_client().get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")


def test_sign_in_with_the_right_password(app: Flask) -> None:
    client = app.test_client()
    response = sign_in(client, "sam.screener")
    assert response.status_code == 302
    assert client.get("/").status_code in (200, 302)


def test_wrong_password_is_refused_with_the_error_summary(app: Flask) -> None:
    client = app.test_client()
    response = sign_in(client, "sam.screener", "not-the-password")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "There is a problem" in page and "The username or password is not right" in page
    assert "Error: Sign in" in page  # the title says so too, for screen-reader users


def test_unknown_user_gets_the_same_answer(app: Flask) -> None:
    page = sign_in(app.test_client(), "nobody.here", "whatever").get_data(as_text=True)
    assert "The username or password is not right" in page


def test_a_form_without_its_csrf_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    response = client.post("/sign-in", data={"username": "sam.screener", "password": "frontdoor-demo"})
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # still signed out


def test_security_headers_and_no_inline_script(app: Flask) -> None:
    response = app.test_client().get("/sign-in")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    page = response.get_data(as_text=True)
    assert "<script>" not in page and " style=" not in page and "onclick" not in page


def test_session_cookie_flags(tmp_path: object, app: Flask) -> None:
    app.config["SESSION_COOKIE_SECURE"] = True
    client = app.test_client()
    response = sign_in(client, "sam.screener")
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie


def test_sign_in_is_rate_limited(tmp_path: Path, fake_clock: FakeClock) -> None:
    limited, engine = _app(tmp_path, demo_cases=False, RATELIMIT_ENABLED=True)
    try:
        client = limited.test_client()
        token = csrf_token(client)
        statuses = [
            client.post(
                "/sign-in", data={"username": "sam.screener", "password": "wrong", "csrf_token": token}
            ).status_code
            for _ in range(8)
        ]
        # Five tries a minute per username: the sixth is refused before the password is even checked.
        assert statuses[:5] == [400] * 5 and set(statuses[5:]) == {429}
    finally:
        engine.db.dispose()


def test_council_name_in_the_header_and_no_crown(app: Flask) -> None:
    page = app.test_client().get("/sign-in").get_data(as_text=True)
    assert "Northshire County Council" in page
    assert "govuk-logo" not in page and "GOV.UK" not in page
