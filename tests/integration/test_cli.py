"""`frontdoor` from a user's terminal: what it prints, and its exit status."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import cli

from .helpers import FIXTURES


@pytest.fixture
def url(sqlite_url: str) -> str:
    return sqlite_url


def frontdoor(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}{result.exception!r}"
    return result.output


def user_error(result: Result, status: int = 1) -> str:
    """A refusal a user can act on: a message, the given exit status, and no traceback."""
    assert result.exit_code == status, f"exit {result.exit_code}: {result.output}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
def initialised(url: str) -> str:
    """The council's processes and staff, plus the triage test shape (its forms are in this folder's copy)."""
    ok(frontdoor(url, "init"))
    ok(frontdoor(url, "deploy", str(FIXTURES / "triage.bpmn")))
    return url


def test_init_twice_changes_nothing_the_second_time(url: str) -> None:
    first = ok(frontdoor(url, "init"))
    second = ok(frontdoor(url, "init"))

    assert first.startswith("ok:")
    assert not re.search(r"\b0 roles", first)
    assert re.search(r"\b[1-9]\d* process versions? added", first)
    assert re.search(r"\b0 roles, 0 staff records and 0 process versions added", second), second


def test_processes_list(initialised: str) -> None:
    listed = ok(frontdoor(initialised, "processes", "list"))

    assert re.search(r"^contact\tv1\tactive\t", listed, re.MULTILINE), listed
    assert re.search(r"^triage\tv1\tactive\t", listed, re.MULTILINE), listed


def test_deploy_prints_versions_and_is_idempotent(url: str) -> None:
    ok(frontdoor(url, "init"))
    initialised = url
    path = str(FIXTURES / "triage.bpmn")

    assert (
        ok(frontdoor(initialised, "deploy", path, "--by", "olive.owner")).strip()
        == "triage: deployed version 1"
    )
    again = ok(frontdoor(initialised, "deploy", path))

    assert "unchanged" in again and "version 1" in again
    assert re.search(
        r"^triage\tv1\t.*\tolive\.owner\t", ok(frontdoor(initialised, "processes", "list")), re.M
    )


@pytest.mark.parametrize(
    "content",
    [
        b"<bpmn:definitions><unclosed></bpmn:definitions>",
        b'<?xml version="1.0"?><note>not a diagram</note>',
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
    ],
    ids=["malformed", "not-bpmn", "xxe"],
)
def test_deploying_a_bad_file_is_an_error_without_a_traceback(
    initialised: str, tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.bpmn"
    bad.write_bytes(content)

    output = user_error(frontdoor(initialised, "deploy", str(bad)))

    assert output.startswith("error: ")
    assert "bad.bpmn" in output
    assert "root:" not in output
    assert "bad" not in ok(frontdoor(initialised, "processes", "list"))


def test_a_case_from_start_to_claim_to_complete(initialised: str) -> None:
    started = ok(
        frontdoor(initialised, "start", "triage", "--case", "C-1", "--team", "mash", "--data", '{"a":1}')
    )
    assert re.match(r"started instance \d+ on case C-1\n", started), started
    [task_id] = re.findall(r"^  task (\S+)$", started, re.MULTILINE)

    queue = json.loads(ok(frontdoor(initialised, "tasks", "--team", "mash", "--json")))
    assert [(t["id"], t["status"], t["team"], t["role"], t["assignee"]) for t in queue] == [
        (task_id, "ready", "mash", "contact_officer", None)
    ]
    assert json.loads(ok(frontdoor(initialised, "tasks", "--team", "assessment", "--json"))) == []

    assert (
        ok(frontdoor(initialised, "claim", task_id, "--user", "sam.screener")).strip()
        == "claimed by sam.screener"
    )
    mine = json.loads(ok(frontdoor(initialised, "tasks", "--user", "sam.screener", "--json")))
    assert [(t["id"], t["status"], t["assignee"]) for t in mine] == [(task_id, "claimed", "sam.screener")]

    bad_json = frontdoor(initialised, "complete", task_id, "--user", "sam.screener", "--data", '{"note": ')
    output = user_error(bad_json, status=2)
    assert "JSON" in output
    assert (
        json.loads(ok(frontdoor(initialised, "tasks", "--user", "sam.screener", "--json")))[0]["id"]
        == task_id
    )

    not_object = frontdoor(initialised, "complete", task_id, "--user", "sam.screener", "--data", '["refer"]')
    assert "JSON object" in user_error(not_object, status=2)

    assert ok(
        frontdoor(initialised, "complete", task_id, "--user", "sam.screener", "--data", "{}")
    ).strip() == ("completed")
    plain = ok(frontdoor(initialised, "tasks", "--case", "C-1"))
    assert "Police check" in plain and "Health check" in plain and task_id not in plain
    assert ok(frontdoor(initialised, "audit", "verify")).strip() == "ok"


def test_refusals_are_errors_without_a_traceback(initialised: str) -> None:
    started = ok(frontdoor(initialised, "start", "triage", "--case", "C-1", "--team", "mash"))
    [task_id] = re.findall(r"^  task (\S+)$", started, re.MULTILINE)

    denied = user_error(frontdoor(initialised, "claim", task_id, "--user", "pat.police"))
    assert denied.startswith("error: ") and "Contact officer" in denied

    missing = user_error(frontdoor(initialised, "complete", "no-such-task", "--user", "sam.screener"))
    assert missing.startswith("error: ") and "no-such-task" in missing

    unknown = user_error(frontdoor(initialised, "start", "no_such_process"))
    assert unknown.startswith("error: ") and "no_such_process" in unknown

    not_json = user_error(frontdoor(initialised, "start", "triage", "--data", "{a: 1}"), status=2)
    assert "JSON" in not_json


def test_calendar_add(url: str) -> None:
    output = ok(frontdoor(url, "calendar", "add", "2023-04-28", "15"))

    assert output.split()[0] == "2023-05-23"


def test_a_command_before_init_says_to_run_init(url: str) -> None:
    output = user_error(frontdoor(url, "tasks"))

    assert "init" in output


def test_an_unreachable_database_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    output = user_error(frontdoor(f"sqlite:///{tmp_path}/no/such/folder/frontdoor.db", "processes", "list"))

    assert output.startswith("error: ")
