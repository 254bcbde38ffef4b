"""Shared fixtures.

Databases: ``db_url`` is a fresh SQLite file per test; tests that take ``any_db_url``
run once on SQLite and once on PostgreSQL.  PostgreSQL comes from
``FRONTDOOR_TEST_POSTGRES_URL`` (default: the local server's ``test`` database's
host); each test session makes its own database and drops it at the end.  Without
a server the PostgreSQL cases are skipped with the reason, unless
``FRONTDOOR_REQUIRE_POSTGRES=1`` (set by .ci/run), which turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import clock as clock_module
from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.registry import Registry

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_URL = os.environ.get(
    "FRONTDOOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    """A clock standing still at a working Wednesday morning, installed process-wide."""
    fake = FakeClock(datetime(2024, 3, 6, 9, 30, tzinfo=UTC))
    previous = clock_module.set_clock(fake)
    yield fake
    clock_module.set_clock(previous)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'frontdoor.db'}"


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A database of this test session's own on the PostgreSQL server, dropped afterwards."""
    problem = _postgres_available()
    if problem:
        if os.environ.get("FRONTDOOR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{problem} (FRONTDOOR_REQUIRE_POSTGRES=1: CI must test PostgreSQL)")
        pytest.skip(problem)
    name = f"frontdoor_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    engine = sa.create_engine(postgres_server_url)
    with engine.begin() as connection:
        tables = connection.execute(
            sa.text(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ).scalars()
        names = ", ".join(f'"{t}"' for t in tables)
        if names:
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        # The schema's own starting row: where the audit chain begins.
        connection.execute(
            sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :genesis)"), {"genesis": "0" * 64}
        )
    engine.dispose()
    return postgres_server_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


def make_engine(url: str) -> Engine:
    """An engine on ``url`` with the schema, the roles and the demo staff (no processes deployed)."""
    engine = Engine(Database(url), Registry(extra_form_dirs=[FIXTURES / "forms"]))
    engine.db.upgrade()
    from engine import directory

    with engine.db.transaction() as session:
        directory.sync_roles(session, engine.registry.roles())
        directory.sync_staff(session, engine.registry.read_json("demo/staff.json"))
    return engine


@pytest.fixture
def engine(sqlite_url: str, fake_clock: FakeClock) -> Iterator[Engine]:
    built = make_engine(sqlite_url)
    yield built
    built.db.dispose()


@pytest.fixture
def any_engine(any_db_url: str, fake_clock: FakeClock) -> Iterator[Engine]:
    built = make_engine(any_db_url)
    yield built
    built.db.dispose()


def fixture_bpmn(name: str) -> tuple[str, bytes]:
    path = FIXTURES / "bpmn" / name
    return path.name, path.read_bytes()
