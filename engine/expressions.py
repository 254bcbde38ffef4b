"""The restricted evaluator for gateway conditions, scripts and timer expressions.

A process owner's diagram may compute with the process data and call the
functions registered by name (see :class:`engine.registry.Registry`); it may not
import, reach a private or dunder attribute, or use a builtin outside the
allow-list below.  Source is checked once and the compiled code is cached.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import CodeType
from typing import Any

from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment

_ALLOWED_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "int",
    "isinstance", "len", "list", "map", "max", "min", "range", "reversed", "round", "set", "sorted", "str",
    "sum", "tuple", "zip", "ValueError", "KeyError", "TypeError",
)  # fmt: skip
SAFE_BUILTINS = {name: getattr(builtins, name) for name in _ALLOWED_BUILTINS}

_FORBIDDEN_NODES: tuple[type[ast.AST], ...] = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)


class ForbiddenExpression(ValueError):
    """The source uses something the restricted evaluator does not allow."""


def check_source(source: str, mode: str) -> ast.AST:
    """Parse ``source`` and refuse what a diagram may not do.  Raises SyntaxError or ForbiddenExpression."""
    tree = ast.parse(source, mode=mode)
    for node in ast.walk(tree):
        if isinstance(node, _FORBIDDEN_NODES):
            raise ForbiddenExpression("imports and global statements are not allowed in a diagram")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ForbiddenExpression(f"the attribute {node.attr!r} is not allowed (names starting with _)")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ForbiddenExpression(f"the name {node.id!r} is not allowed (names starting with __)")
    return tree


@lru_cache(maxsize=4096)
def compile_checked(source: str, mode: str) -> CodeType:
    tree = check_source(source, mode)
    assert isinstance(tree, ast.Module | ast.Expression)
    return compile(tree, "<bpmn>", mode)


def _value_of(context: dict[str, Any]) -> Callable[..., Any]:
    """``value_of("name", default)``: a process variable that may not have been set yet."""

    def value_of(name: str, default: Any = None) -> Any:
        return context.get(name, default)

    return value_of


class RestrictedEnvironment(TaskDataEnvironment):  # type: ignore[misc]
    """SpiffWorkflow script environment that evaluates through the checks above."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        super().__init__({"__builtins__": SAFE_BUILTINS, **(functions or {})})

    def evaluate(
        self, expression: str, context: dict[str, Any], external_context: dict[str, Any] | None = None
    ) -> Any:
        scope = dict(self.globals)
        scope.update(external_context or {})
        scope.update(context)
        scope["__builtins__"] = SAFE_BUILTINS
        scope.setdefault("value_of", _value_of(context))
        return eval(compile_checked(expression, "eval"), scope)

    def execute(
        self, script: str, context: dict[str, Any], external_context: dict[str, Any] | None = None
    ) -> bool:
        code = compile_checked(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update(self.globals)
        context.update(external_context or {})
        context["__builtins__"] = SAFE_BUILTINS
        if "value_of" not in context:
            context["value_of"] = _value_of(context)
        try:
            exec(code, context)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        return True
