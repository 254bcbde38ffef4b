"""Scenario fixtures: the real processes/ folder, deployed by `init`, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.clock import FakeClock
from engine.core import Engine
from engine.db import Database
from tests.scenario.harness import Council


@pytest.fixture
def council(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Council]:
    engine = Engine(Database(f"sqlite:///{tmp_path / 'council.db'}"))
    engine.init(demo=True)
    yield Council(engine, fake_clock)
    engine.db.dispose()
