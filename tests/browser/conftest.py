"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium) against a live server.

The server runs in this process (a thread), so the fake clock the tests move is the one the
pages and the timer firing see. A screenshot and the page's HTML are kept under
test-artifacts/ when a test fails. Without Chromium the tests are skipped with the reason,
unless FRONTDOOR_REQUIRE_BROWSER=1 (set by .ci/run), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from engine import clock as clock_module
from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from engine.models import User
from web import create_app
from web.auth import hasher

CHROMIUM = os.environ.get("FRONTDOOR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DEMO_PASSWORD = "frontdoor-demo"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def _chromium_problem() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium is not installed at {CHROMIUM} (.ci/run installs Debian's chromium package)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    problem = _chromium_problem()
    if problem:
        if os.environ.get("FRONTDOOR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{problem} (FRONTDOOR_REQUIRE_BROWSER=1)")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # As root in a sandbox-less container, with no network beyond this machine.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


class LiveServer:
    def __init__(self, app: Any, engine: Engine, clock: FakeClock) -> None:
        self.engine = engine
        self.clock = clock
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fire_due(self) -> int:
        fired = 0
        while self.engine.fire_next_due("browser-test-worker") is not None:
            fired += 1
        return fired

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A council with its processes, demo staff (password DEMO_PASSWORD) and example cases."""
    fake = FakeClock(datetime(2024, 3, 6, 9, 30, tzinfo=UTC))
    previous = clock_module.set_clock(fake)
    engine = Engine(Database(f"sqlite:///{tmp_path / 'browser.db'}"))
    engine.init(demo=True, demo_cases=True)
    with engine.db.transaction() as session:
        session.execute(sa.update(User).values(password_hash=hasher.hash(DEMO_PASSWORD)))
    app = create_app(
        {"SECRET_KEY": "browser-tests", "RATELIMIT_ENABLED": False, "SESSION_COOKIE_SECURE": False},
        engine=engine,
    )
    server = LiveServer(app, engine, fake)
    yield server
    server.stop()
    engine.db.dispose()
    clock_module.set_clock(previous)


@pytest.fixture
def page(browser: Any, live: LiveServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url)
    opened = context.new_page()
    yield opened
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        stem = request.node.name.replace("/", "_")
        opened.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
        (ARTIFACTS / f"{stem}.html").write_text(opened.content())
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


def sign_in(page: Any, username: str) -> None:
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the current page (axe-core from npm)."""
    # Evaluated through DevTools, not injected as a <script>: the page's CSP forbids inline script.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
