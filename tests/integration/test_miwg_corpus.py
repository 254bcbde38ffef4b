"""Diagrams from other tools: the BPMN Model Interchange Working Group's reference models.

Every file in the corpus folder opens for viewing and editing; validating or deploying it either
works or gives findings that name the element and say what to change; nothing raises.  The
folder is ``tests/fixtures/miwg/`` (copied from ``../shared/corpus/miwg/``) (or ``FRONTDOOR_MIWG_CORPUS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import drafts
from engine.bpmn import parse_xml
from engine.cli import cli
from engine.core import Engine
from engine.errors import DefinitionError
from engine.registry import Registry
from engine.validation import ValidationContext, format_finding, validate

from .helpers import snapshot

CORPUS = Path(
    os.environ.get("FRONTDOOR_MIWG_CORPUS", Path(__file__).resolve().parents[1] / "fixtures" / "miwg")
)
FILES = sorted(CORPUS.glob("*.bpmn")) if CORPUS.is_dir() else []
MISSING = f"the MIWG corpus is not at {CORPUS} (set FRONTDOOR_MIWG_CORPUS to its folder)"
CASES = [pytest.param(path, id=path.name) for path in FILES] or [
    pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="corpus-missing")
]


@pytest.mark.parametrize("path", CASES)
def test_each_file_opens_for_viewing_and_editing(path: Path) -> None:
    content = path.read_bytes()
    parse_xml(content, path.name)  # the safe parse the viewer's and the editor's pages rely on
    key, text = drafts.read_bpmn(content, path.name)
    assert key and text


@pytest.mark.parametrize("path", CASES)
def test_each_file_validates_to_findings_that_name_the_element_and_the_fix(path: Path) -> None:
    findings = validate(path.read_bytes(), path.name, ValidationContext.from_registry(Registry()))
    for finding in findings:
        line = format_finding(finding)
        assert "\n" not in line
        assert finding.file == path.name
        assert finding.element_id, f"names no element: {line}"
        assert "Traceback" not in finding.message and "could not be checked" not in finding.message, line
        # Says what to do: every message carries its remedy after a semicolon or a full stop.
        assert ";" in finding.message or ". " in finding.message, line


@pytest.mark.parametrize("path", CASES)
def test_deploying_each_file_works_or_refuses_with_findings_and_changes_nothing(
    engine: Engine, path: Path
) -> None:
    before = snapshot(engine)
    try:
        results = engine.deploy([(path.name, path.read_bytes())], "olive.owner")
    except DefinitionError as exc:
        assert exc.findings
        assert snapshot(engine) == before
    else:
        assert results and all(r.created for r in results)


@pytest.mark.skipif(not FILES, reason=MISSING)
def test_frontdoor_validate_takes_the_whole_folder_without_a_traceback() -> None:
    result = CliRunner().invoke(cli, ["validate", *map(str, FILES)])
    assert result.exit_code in (0, 1), repr(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "error:" not in result.output
    for path in FILES:
        assert f"{path}: " in result.output


def test_the_whole_corpus_is_checked() -> None:
    """The folder holds all 21 reference models: a missing file would silently shrink the tests."""
    assert len(FILES) == 21, f"{CORPUS} holds {len(FILES)} .bpmn files, not the suite's 21"
