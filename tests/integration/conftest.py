"""Integration tests run against a copy of ``processes/`` that also holds the form schemas the
test diagrams name (tests/fixtures/bpmn/*.bpmn), so completing their tasks validates real forms."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.registry import default_processes_dir

FORMS = Path(__file__).resolve().parent.parent / "fixtures" / "forms"


@pytest.fixture(scope="session")
def processes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("processes") / "processes"
    shutil.copytree(default_processes_dir(), copy)
    (copy / "forms").mkdir(exist_ok=True)
    for schema in FORMS.glob("*.schema.json"):  # the test diagrams' forms, whatever processes/ holds
        shutil.copy(schema, copy / "forms" / schema.name)
    return copy


@pytest.fixture(autouse=True)
def _processes_with_test_forms(processes_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FRONTDOOR_PROCESSES_DIR", str(processes_dir))
    yield
