"""The restricted evaluator: what a diagram's conditions, scripts and timers may and may not do.

Escape attempts are refused when the diagram is checked (so it never deploys); what can only be
known while it runs (a loop over a large range, a huge power) is stopped then, with a clear error,
leaving the task's data as it was.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from engine.expressions import (
    MAX_STEPS,
    EvaluationLimitExceeded,
    ForbiddenExpression,
    RestrictedEnvironment,
    check_source,
    evaluate_restricted,
)

# Each is a known way out of a Python "sandbox"; every one must be refused before it runs.
ESCAPES = {
    "subclasses": "().__class__.__base__.__subclasses__()",
    "mro": "''.__class__.__mro__[1].__subclasses__()",
    "mro-without-underscores": "str.mro()",
    "import-builtin": "__import__('os').system('true')",
    "builtins-name": "__builtins__",
    "globals-of-a-function": "value_of.__globals__",
    "format-reaches-attributes": "'{0.__class__.__base__}'.format(1)",
    "format-map": "'{x.__class__}'.format_map({'x': 1})",
    "generator-frame": "(x for x in [1]).gi_frame.f_back.f_globals",
    "frame-builtins": "(x for x in [1]).gi_frame.f_builtins",
    "code-object": "(lambda: 1).__code__",
    "private-name": "_secret",
    "lambda-private-argument": "(lambda _x: _x)(1)",
    "keyword-private": "dict(__class__=1)",
    "huge-padding": "'x'.ljust(10 ** 10)",
    "wide-format-spec": "f'{1:>1000000000}'",
    "nested-format-spec": "f'{1:>{width}}'",
}

SCRIPT_ESCAPES = {
    "import": "import os\nos.system('true')",
    "from-import": "from os import system",
    "while-forever": "while True:\n    pass",
    "class": "class A:\n    pass",
    "with-open": "with open('/etc/passwd') as f:\n    data = f.read()",
    "global": "global x\nx = 1",
    "generator-function": "def g():\n    yield 1",
    "match-class-attribute": "match 1:\n    case int(__class__=c):\n        pass",
    "finally-runs-after-the-limit": "try:\n    x = 1\nfinally:\n    x = 2",
    "exception-traceback": "try:\n    1 / 0\nexcept Exception as e:\n    t = e.__traceback__.tb_frame",
}


@pytest.mark.parametrize("source", ESCAPES.values(), ids=ESCAPES.keys())
def test_an_escape_attempt_in_an_expression_is_refused_before_it_runs(source: str) -> None:
    with pytest.raises(ForbiddenExpression):
        check_source(source, "eval")
    with pytest.raises(ForbiddenExpression):
        evaluate_restricted(source, {"width": 10})


@pytest.mark.parametrize("source", SCRIPT_ESCAPES.values(), ids=SCRIPT_ESCAPES.keys())
def test_an_escape_attempt_in_a_script_is_refused_and_changes_no_data(source: str) -> None:
    with pytest.raises(ForbiddenExpression):
        check_source(source, "exec")
    data: dict[str, Any] = {"answer": 42}
    with pytest.raises(ForbiddenExpression):
        RestrictedEnvironment().execute(source, data)
    assert data == {"answer": 42}


@pytest.mark.parametrize(
    "source", ["open('/etc/passwd').read()", "eval('1')", "getattr(1, 'real')", "vars()"]
)
def test_builtins_outside_the_allow_list_do_not_exist(source: str) -> None:
    with pytest.raises(NameError):
        evaluate_restricted(source, {})


LONG_RUNNING = {
    "range-in-a-comprehension": "sum([i for i in range(1000000)])",
    "nested-generators": "sum(1 for i in range(1000) for j in range(1000))",
    "huge-power": "2 ** 10 ** 10",
    "huge-repetition": "'x' * 10 ** 12",
    "huge-list": "[0] * 10 ** 10",
    "huge-shift": "1 << 10 ** 10",
    "huge-range": "len(range(10 ** 12))",
    "percent-width": "'%1000000000d' % 1",
    "lambda-calls-in-a-loop": "max(map(lambda n: n + 1, range(1000000)))",
    "join-of-copies": "'-'.join(['x' * 100000] * 100)",
    "replace-grows": "('x' * 100000).replace('x', 'yyyyyyyyyyyy')",
    "many-lists": "len([list(range(1000000)) for i in range(100)])",
}

SCRIPTS_THAT_GROW = {
    "doubling-text": "s = 'x'\nfor i in range(40):\n    s = s + s",
    "doubling-in-place": "s = 'x'\nfor i in range(40):\n    s += s",
    "doubling-an-entry": "d = {'k': 'x'}\nfor i in range(40):\n    d['k'] += d['k']",
    "doubling-f-string": "s = 'x'\nfor i in range(40):\n    s = f'{s}{s}'",
}


@pytest.mark.parametrize("source", LONG_RUNNING.values(), ids=LONG_RUNNING.keys())
def test_an_expression_that_would_run_long_or_grow_huge_is_stopped(source: str) -> None:
    check_source(source, "eval")  # allowed syntax: only running it shows the size
    with pytest.raises(EvaluationLimitExceeded) as caught:
        evaluate_restricted(source, {})
    assert "limit" in str(caught.value)


@pytest.mark.parametrize("script", SCRIPTS_THAT_GROW.values(), ids=SCRIPTS_THAT_GROW.keys())
def test_a_script_that_doubles_a_value_is_stopped_before_it_fills_memory(script: str) -> None:
    data: dict[str, Any] = {}
    with pytest.raises(EvaluationLimitExceeded, match="limit"):
        RestrictedEnvironment().execute(script, data)
    assert data == {}


def test_sum_adds_numbers_only_so_it_cannot_build_a_quadratic_list() -> None:
    with pytest.raises(TypeError, match="sum adds numbers"):
        evaluate_restricted("len(sum([[1] * 1000] * 1000, []))", {})
    assert evaluate_restricted("sum([1.5, 2], 1)", {}) == 4.5


def test_setting_an_attribute_is_refused() -> None:
    with pytest.raises(ForbiddenExpression, match="setting or deleting the attribute"):
        check_source("value_of.cache = {}", "exec")


def test_a_script_that_loops_for_long_is_stopped_and_leaves_the_data_as_it_was() -> None:
    data: dict[str, Any] = {"size": 10_000, "pairs": 0}
    script = "for i in range(size):\n    for j in range(size):\n        pairs = pairs + 1\n"

    with pytest.raises(EvaluationLimitExceeded) as caught:
        RestrictedEnvironment().execute(script, data)

    assert f"{MAX_STEPS:,} steps" in str(caught.value)
    assert data == {"size": 10_000, "pairs": 0}


def test_catching_everything_does_not_keep_a_stopped_script_running() -> None:
    # A bare except would catch the limit; it is read as "except Exception", which does not.
    script = (
        "for i in range(1000000):\n"
        "    try:\n"
        "        total = sum([j for j in range(1000)])\n"
        "    except:\n"
        "        caught = True\n"
    )
    data: dict[str, Any] = {}
    with pytest.raises(EvaluationLimitExceeded):
        RestrictedEnvironment().execute(script, data)
    assert data == {}


def test_recursion_ends_in_an_error_not_a_hang() -> None:
    with pytest.raises(RecursionError):
        evaluate_restricted("(lambda f: f(f))(lambda f: f(f))", {})


def test_the_evaluation_puts_back_whatever_tracer_was_installed() -> None:
    before = sys.gettrace()
    evaluate_restricted("sum(i for i in range(10))", {})
    with pytest.raises(EvaluationLimitExceeded):
        evaluate_restricted("sum(i for i in range(1000000))", {})
    assert sys.gettrace() is before


def test_what_diagrams_really_do_still_works() -> None:
    functions = {"double": lambda n: 2 * n}
    data = {"urgency": "amber", "children": [{"name": "Ella"}, {"name": "Sam"}], "days": 3}

    assert evaluate_restricted("{'red': 4, 'amber': 24}[urgency]", data) == 24
    assert evaluate_restricted("', '.join(c['name'] for c in children)", data) == "Ella, Sam"
    assert evaluate_restricted("double(days) + 2 ** 3 - 10 % 4", data, functions) == 12
    assert evaluate_restricted("'%d days' % days", data) == "3 days"
    assert evaluate_restricted("f'{days:02d}'", data) == "03"
    assert evaluate_restricted("value_of('missing', 'none')", data) == "none"
    assert evaluate_restricted("sorted(c['name'] for c in children)[0] * 2", data) == "EllaElla"
    assert evaluate_restricted("len(range(100000))", data) == 100000


def test_a_script_sets_data_and_a_bare_except_still_handles_ordinary_errors() -> None:
    data: dict[str, Any] = {"received": "2024-03-06"}
    script = (
        "try:\n"
        "    taken_by = taken_by_who\n"
        "except:\n"
        "    taken_by = None\n"
        "count = 0\n"
        "for i in range(10):\n"
        "    count += 2\n"
        "label = 'x' * 3\n"
    )
    script += "counts = {'x': 1}\ncounts['x'] += 1\nnames = ', '.join(['a', 'b']) + '!'\n"
    RestrictedEnvironment({"unused": len}).execute(script, data)
    assert data == {
        "received": "2024-03-06",
        "taken_by": None,
        "count": 20,
        "i": 9,
        "label": "xxx",
        "counts": {"x": 2},
        "names": "a, b!",
    }


def test_a_service_task_calls_only_a_registered_adapter() -> None:
    env = RestrictedEnvironment(services={"echo": lambda text: {"said": text}})
    params = {"text": {"value": "hello", "type": "str"}}
    assert env.call_service({}, operation_name="echo", operation_params=params) == '{"said": "hello"}'
    with pytest.raises(LookupError, match="no service-task adapter is called 'shell'"):
        env.call_service({}, operation_name="shell", operation_params={})
