"""Web fixtures: an app on a fresh SQLite database with the council's processes and demo staff.

``demo_app`` also has the fifteen example cases (slower: use it where queues must be full).
Every demo user's password is ``DEMO_PASSWORD``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.models import AuditEvent, CaseRecord, User
from web import create_app
from web.auth import hasher

DEMO_PASSWORD = "frontdoor-demo"


def _app(tmp_path: Path, demo_cases: bool, url: str | None = None, **config: Any) -> tuple[Flask, Engine]:
    engine = Engine(Database(url or f"sqlite:///{tmp_path / 'web.db'}"))
    engine.init(demo=True, demo_cases=demo_cases)
    with engine.db.transaction() as session:
        # One argon2 hash for everyone: hashing is deliberately slow, and the tests need many users.
        session.execute(sa.update(User).values(password_hash=_demo_hash()))
    settings = {
        "TESTING": True,
        "SECRET_KEY": "test",
        "RATELIMIT_ENABLED": False,
        "SESSION_COOKIE_SECURE": False,
    }
    app = create_app({**settings, **config}, engine=engine)
    return app, engine


@lru_cache(maxsize=1)
def _demo_hash() -> str:
    return hasher.hash(DEMO_PASSWORD)


@pytest.fixture
def app(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Flask]:
    built, engine = _app(tmp_path, demo_cases=False)
    yield built
    engine.db.dispose()


@pytest.fixture
def demo_app(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Flask]:
    built, engine = _app(tmp_path, demo_cases=True)
    yield built
    engine.db.dispose()


def engine_of_app(app: Flask) -> Engine:
    engine: Engine = app.extensions["frontdoor.engine"]
    return engine


def csrf_token(client: FlaskClient, path: str = "/sign-in") -> str:
    """The CSRF token a page carries (pages put it in a meta tag and in every form)."""
    import re

    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, username: str, password: str = DEMO_PASSWORD) -> Any:
    token = csrf_token(client)
    return client.post("/sign-in", data={"username": username, "password": password, "csrf_token": token})


@pytest.fixture
def as_user(app: Flask) -> Any:
    """``as_user("sam.screener")`` -> a test client signed in as that demo user."""

    def make(username: str) -> FlaskClient:
        client = app.test_client()
        response = sign_in(client, username)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return make


def client_for(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = sign_in(client, username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def text_of(html: str) -> str:
    """The page's words, tags stripped and spaces squeezed (what a reader sees)."""
    words = re.sub(r"<[^>]+>", " ", html)
    for entity, char in (("&#39;", "'"), ("&#x27;", "'"), ("&quot;", '"'), ("&amp;", "&")):
        words = words.replace(entity, char)
    return re.sub(r"\s+", " ", words)


def views_of(engine: Engine, reference: str) -> list[tuple[str, dict[str, Any]]]:
    """(who, what) of each view of the case's record written to the audit trail, oldest first."""
    with engine.db.read() as session:
        case_id = session.scalar(sa.select(CaseRecord.id).where(CaseRecord.reference == reference))
        rows = session.execute(
            sa.select(AuditEvent.actor, AuditEvent.data)
            .where(AuditEvent.action == "case.viewed", AuditEvent.case_id == case_id)
            .order_by(AuditEvent.seq)
        )
        return [(actor, data) for actor, data in rows]
