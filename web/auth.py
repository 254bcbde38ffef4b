"""Signing in and out, and who the signed-in person is.

Passwords are hashed with argon2; sign-in attempts are rate-limited per address and
per username; the session cookie is HttpOnly, SameSite=Lax and Secure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from engine import directory
from engine.models import User

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.sign_in"
login_manager.login_message = "Sign in to see that page."
login_manager.login_message_category = "info"
limiter = Limiter(key_func=get_remote_address, default_limits=[])
hasher = PasswordHasher()


@dataclass
class Person:
    """The signed-in user, with the team roles that decide what they may see and do."""

    id: int
    username: str
    display_name: str
    qualified: bool
    employment: str
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (team, role)

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def roles(self) -> set[str]:
        return {role for _, role in self.memberships}

    @property
    def teams(self) -> set[str]:
        return {team for team, _ in self.memberships}

    def teams_with(self, *roles: str) -> set[str]:
        return {team for team, role in self.memberships if role in roles}


def load_person(user_id: int) -> Person | None:
    from . import engine_of

    with engine_of(current_app).db.read() as session:
        found = directory.active_user_with_memberships(session, user_id)
    if found is None:
        return None
    (uid, username, display_name, qualified, employment), memberships = found
    return Person(uid, username, display_name, qualified, employment, memberships)


@login_manager.user_loader
def _load_user(user_id: str) -> Person | None:
    return load_person(int(user_id)) if user_id.isdigit() else None


def check_password(username: str, password: str) -> int | None:
    """The user's id if the password is right; None otherwise (same work either way)."""
    from . import engine_of

    engine = engine_of(current_app)
    with engine.db.read() as session:
        row = session.execute(
            sa.select(User.id, User.password_hash).where(User.username == username, User.active.is_(True))
        ).first()
    stored = row.password_hash if row else None
    try:
        # Verify against a dummy hash when there is no user, so timing does not reveal usernames.
        ok = hasher.verify(stored or _DUMMY_HASH, password) and row is not None
    except (VerificationError, InvalidHashError):
        return None
    return row.id if ok and row else None


_DUMMY_HASH = hasher.hash("not a real password")


def set_password(session: Any, username: str, password: str) -> None:
    session.execute(
        sa.update(User).where(User.username == username).values(password_hash=hasher.hash(password))
    )


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
@limiter.limit("5 per minute", methods=["POST"], key_func=lambda: request.form.get("username", "").lower())
def sign_in() -> Any:
    errors: dict[str, str] = {}
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip().lower()
        password = request.form.get("password", "")
        if not username:
            errors["username"] = "Enter your username"
        if not password:
            errors["password"] = "Enter your password"
        if not errors:
            user_id = check_password(username, password)
            if user_id is None:
                errors["username"] = "The username or password is not right"
            else:
                person = load_person(user_id)
                assert person is not None
                login_user(person)
                target = request.args.get("next", "")
                # Only ever go back to a page of this site.
                if not target.startswith("/") or target.startswith("//"):
                    target = url_for("views.home")
                return redirect(target)
    return render_template("auth/sign_in.html", errors=errors, username=username), 400 if errors else 200


@bp.route("/sign-out", methods=["POST"])
@login_required
def sign_out() -> Any:
    logout_user()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.sign_in"))


def person() -> Person:
    """The signed-in person (for code that runs behind ``login_required``)."""
    assert isinstance(current_user._get_current_object(), Person)  # type: ignore[attr-defined]
    return current_user._get_current_object()  # type: ignore[attr-defined,no-any-return]
