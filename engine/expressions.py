"""The restricted evaluator for gateway conditions, scripts and timer expressions.

A process owner's diagram may compute with the process data and call the
functions registered by name (see :class:`engine.registry.Registry`); it may not
import, reach a private or dunder attribute, or use a builtin outside the
allow-list below.  Source is checked once and the compiled code is cached.

Three layers, because each closes what the one before cannot:

* **syntax** (:func:`check_source`): an allow-list of statements (no ``while``, no
  ``import``, no ``class``, no ``with``, no ``match``, no generators), no name or
  attribute starting with ``_``, and no attribute that leads from an object to the
  interpreter's internals without an underscore (``gi_frame``, ``f_globals``,
  ``tb_frame``, ``str.format``'s ``{0.__class__}``...).  Refused at validation.
* **operations that build something huge in one C call** (``2 ** 10 ** 10``,
  ``"x" * 10 ** 12``, ``1 << 10 ** 10``, ``",".join(...)``, ``list(range(...))``): no tracer
  can interrupt them, so ``*``, ``**``, ``<<``, ``%``, ``+``, ``join``, ``replace``, f-strings
  and the collection builders are compiled into calls of guards that refuse a result over
  :data:`MAX_RESULT_SIZE` (before building it, where it can grow more than twice) and count
  everything built against :data:`MAX_TOTAL_ITEMS`; ``range`` is a bounded one and ``sum``
  adds numbers only.  Memory is bounded per evaluation this way, not absolutely: a
  container's memory limit stays the backstop.
* **steps** (:class:`StepBudget`): everything else that runs long is a Python loop
  in the diagram's own code (``for``, comprehensions, recursion through a lambda).
  Each line the diagram's code runs (including each turn of a loop) costs one step;
  over :data:`MAX_STEPS` the evaluation stops with :class:`EvaluationLimitExceeded`.
  A step count rather than a wall-clock timeout, so the limit is the same on a busy
  machine and in every thread (signals only reach the main thread), and a test can
  rely on it.  Registered functions are the engine's own code and are not counted.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import lru_cache
from types import CodeType, FrameType
from typing import Any

from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment

_ALLOWED_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "int",
    "isinstance", "len", "list", "map", "max", "min", "reversed", "round", "set", "sorted", "str",
    "sum", "tuple", "zip", "ValueError", "KeyError", "TypeError", "Exception",
)  # fmt: skip

# The most lines (and loop turns) one condition, script or timer expression may run.
MAX_STEPS = 100_000
# A backstop for a few steps that each do a lot of work in C (sum(range(...)) in a loop):
# checked at every step, so it never cuts short a diagram that stays under the step limit
# on a normal day.
MAX_SECONDS = 5.0
# The largest text or collection (characters, items) or integer (decimal digits) one guarded
# operation may produce.
MAX_RESULT_SIZE = 1_000_000
# ...and the most items all of them together may build in one evaluation (memory is the limit
# a step count cannot see: a loop of 1,000 steps each building a list of a million).
MAX_TOTAL_ITEMS = 5_000_000

FILENAME = "<bpmn>"


class ForbiddenExpression(ValueError):
    """The source uses something the restricted evaluator does not allow."""


class EvaluationLimitExceeded(ValueError):
    """A diagram's expression or script ran too long or built too large a value; it was stopped."""


class _OutOfSteps(BaseException):
    """Raised inside the diagram's code at the step limit.  Not an ``Exception``, and bare ``except:``
    is compiled as ``except Exception:``, so the diagram cannot catch it; :func:`run_limited` turns it
    into :class:`EvaluationLimitExceeded` outside."""


# Statements and expressions a diagram may not use at all, and why (the why is shown to the process owner).
_FORBIDDEN_NODES: dict[type[ast.AST], str] = {
    ast.Import: "imports are not allowed in a diagram",
    ast.ImportFrom: "imports are not allowed in a diagram",
    ast.Global: "global statements are not allowed in a diagram",
    ast.Nonlocal: "nonlocal statements are not allowed in a diagram",
    ast.While: "while loops are not allowed in a diagram (they may never end); loop over a list with for",
    ast.ClassDef: "classes cannot be defined in a diagram",
    ast.AsyncFunctionDef: "async functions are not allowed in a diagram",
    ast.AsyncFor: "async loops are not allowed in a diagram",
    ast.AsyncWith: "with statements are not allowed in a diagram",
    ast.With: "with statements are not allowed in a diagram",
    ast.Await: "await is not allowed in a diagram",
    ast.Yield: "generators (yield) are not allowed in a diagram",
    ast.YieldFrom: "generators (yield) are not allowed in a diagram",
    ast.Match: "match statements are not allowed in a diagram; use if and elif",
    ast.TryStar: "except* is not allowed in a diagram",
}

# Attributes without a leading underscore that still lead to frames, code or globals, or that
# reach attributes by name at run time (str.format("{0.__class__}")).
# Padding methods are here too: "x".ljust(10 ** 10) asks for ten gigabytes in one call.
_FORBIDDEN_ATTRIBUTES = frozenset(
    {"format", "format_map", "mro", "register", "ljust", "rjust", "center", "zfill", "expandtabs"}
)
_FORBIDDEN_ATTRIBUTE_PREFIXES = ("_", "gi_", "cr_", "ag_", "f_", "tb_", "co_", "func_", "im_")


_LARGE_WIDTH = re.compile(r"\d{5,}")
# %-formatting with a computed (*) or five-digit width.
_WIDE_PERCENT = re.compile(r"%[^a-zA-Z%]*(\*|\d{5,})")


def _forbidden_attribute(attr: str) -> bool:
    return attr in _FORBIDDEN_ATTRIBUTES or attr.startswith(_FORBIDDEN_ATTRIBUTE_PREFIXES)


def check_source(source: str, mode: str) -> ast.AST:
    """Parse ``source`` and refuse what a diagram may not do.  Raises SyntaxError or ForbiddenExpression."""
    if "\x00" in source:
        raise ForbiddenExpression("the expression contains a NUL character; remove it")
    tree = ast.parse(source, mode=mode)
    for node in ast.walk(tree):
        reason = _FORBIDDEN_NODES.get(type(node))
        if reason:
            raise ForbiddenExpression(reason)
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            raise ForbiddenExpression(
                f"setting or deleting the attribute {node.attr!r} is not allowed in a diagram; keep values "
                "in the process data (name = value, or a dict's entry)"
            )
        if isinstance(node, ast.Attribute) and _forbidden_attribute(node.attr):
            raise ForbiddenExpression(f"the attribute {node.attr!r} is not allowed in a diagram")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ForbiddenExpression(f"the name {node.id!r} is not allowed (names starting with _)")
        if isinstance(node, ast.FunctionDef | ast.Lambda | ast.ExceptHandler):
            own = getattr(node, "name", None)
            names = [a.arg for a in _arguments(node)] + ([own] if isinstance(own, str) else [])
            for name in names:
                if name.startswith("_"):
                    raise ForbiddenExpression(f"the name {name!r} is not allowed (names starting with _)")
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            spec = "".join(
                str(part.value) for part in ast.walk(node.format_spec) if isinstance(part, ast.Constant)
            )
            if _LARGE_WIDTH.search(spec) or any(
                isinstance(part, ast.FormattedValue) for part in ast.walk(node.format_spec)
            ):
                raise ForbiddenExpression(f"the format {spec!r} is too wide; use a width under 10000")
        if isinstance(node, ast.Try) and node.finalbody:
            # Code in finally would still run after the step limit stopped the script.
            raise ForbiddenExpression("finally clauses are not allowed in a diagram")
        if isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            raise ForbiddenExpression(f"the name {node.arg!r} is not allowed (names starting with _)")
    return tree


def _arguments(node: ast.AST) -> list[ast.arg]:
    args = getattr(node, "args", None)
    if not isinstance(args, ast.arguments):
        return []
    found = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    found += [a for a in (args.vararg, args.kwarg) if a is not None]
    return found


# ------------------------------------------------------------------ guarded arithmetic


def _size(value: Any) -> int | None:
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    return None


def _too_large(what: str) -> EvaluationLimitExceeded:
    return EvaluationLimitExceeded(
        f"{what} would be larger than the limit of {MAX_RESULT_SIZE:,}; diagrams compute with small values"
    )


def _charge(value: Any) -> Any:
    """Count a built text or collection against the evaluation's budget; refuse one that is too large."""
    size = _size(value)
    if size is None:
        return value
    if size > MAX_RESULT_SIZE:
        raise _too_large("the text or list")
    budget = _CURRENT.get()
    if budget is not None:
        budget.items += size
        if budget.items > budget.item_limit:
            raise EvaluationLimitExceeded(
                f"the expression or script built more than the limit of {budget.item_limit:,} items in all "
                "and was stopped; diagrams compute with small values"
            )
    return value


def _guard_mul(a: Any, b: Any) -> Any:
    for seq, count in ((a, b), (b, a)):
        size = _size(seq)
        if size is not None and isinstance(count, int) and size * max(count, 0) > MAX_RESULT_SIZE:
            raise _too_large("repeating a text or list")
    return _charge(a * b)


def _guard_add(a: Any, b: Any) -> Any:
    # At most twice the largest value already allowed, so checking the result is enough.
    return _charge(a + b)


def _int_digits(value: int) -> int:
    return value.bit_length() * 30103 // 100000 + 1  # log10(2) ~ 0.30103


def _guard_pow(a: Any, b: Any) -> Any:
    big = isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and b > 0 and abs(a) > 1
    if big and _int_digits(abs(a)) * b > MAX_RESULT_SIZE:
        raise _too_large("the power")
    return a**b


def _guard_lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a and (a.bit_length() + b) * 0.30103 > MAX_RESULT_SIZE:
        raise _too_large("the shifted number")
    return a << b


def _guard_mod(a: Any, b: Any) -> Any:
    if isinstance(a, str) and _WIDE_PERCENT.search(a):
        raise _too_large("the %-formatted text")
    return _charge(a % b)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "add": _guard_add,
    "mul": _guard_mul,
    "pow": _guard_pow,
    "lshift": _guard_lshift,
    "mod": _guard_mod,
}


def _guard_setitem(target: Any, key: Any, operator: str, value: Any) -> None:
    """``target[key] op= value``, with ``target`` and ``key`` evaluated once."""
    target[key] = _OPERATORS[operator](target[key], value)


def _guard_method(obj: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``text.join(items)`` and ``text.replace(old, new)``: sized before they are built."""
    if isinstance(obj, str | bytes) and name == "join" and len(args) == 1 and not kwargs:
        items = list(args[0])
        total = len(obj) * max(len(items) - 1, 0) + sum(len(i) for i in items if isinstance(i, str | bytes))
        if total > MAX_RESULT_SIZE:
            raise _too_large("the joined text")
        return _charge(obj.join(items))
    if isinstance(obj, str | bytes) and name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str | bytes) and isinstance(new, str | bytes):
            count = obj.count(old) if old else len(obj) + 1  # type: ignore[arg-type]
            if len(obj) + count * max(len(new) - len(old), 0) > MAX_RESULT_SIZE:
                raise _too_large("the replaced text")
    return _charge(getattr(obj, name)(*args, **kwargs))


def _guard_build(constructor: Any, *args: Any, **kwargs: Any) -> Any:
    """``list(...)``, ``sorted(...)`` and the like, counted against the budget."""
    return _charge(constructor(*args, **kwargs))


def _bounded_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RESULT_SIZE:
        raise _too_large("the range")
    budget = _CURRENT.get()
    if budget is not None:
        budget.items += len(result)  # whatever is built from it is counted once here
    return result


def _safe_sum(iterable: Any, start: Any = 0) -> Any:
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise TypeError("sum adds numbers; to join lists or texts use a comprehension or join")
    return sum(iterable, start)


_GUARDS: dict[type[ast.operator], str] = {
    ast.Mult: "mul",
    ast.Pow: "pow",
    ast.LShift: "lshift",
    ast.Mod: "mod",
    ast.Add: "add",
}
_GUARDED_METHODS = frozenset({"join", "replace"})
_GUARDED_BUILDERS = frozenset({"list", "tuple", "set", "frozenset", "dict", "sorted", "str"})
_GUARD_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{f"_fd_{name}": function for name, function in _OPERATORS.items()},
    "_fd_setitem": _guard_setitem,
    "_fd_method": _guard_method,
    "_fd_build": _guard_build,
    "_fd_charge": _charge,
}

SAFE_BUILTINS: dict[str, Any] = {name: getattr(builtins, name) for name in _ALLOWED_BUILTINS}
SAFE_BUILTINS["range"] = _bounded_range
SAFE_BUILTINS["sum"] = _safe_sum
# The guards are reached through the builtins, where a diagram cannot name them (they start with _).
SAFE_BUILTINS.update(_GUARD_FUNCTIONS)


def _call(name: str, args: list[ast.expr], node: ast.AST) -> ast.Call:
    call = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=[])
    return ast.copy_location(call, node)


class _GuardArithmetic(ast.NodeTransformer):
    """Compile the operations that can build something huge in one step into calls of the guards.

    ``a * b`` -> ``_fd_mul(a, b)``, ``a += b`` -> ``a = _fd_add(a, b)``, ``d[k] += v`` ->
    ``_fd_setitem(d, k, "add", v)``, ``t.join(x)`` -> ``_fd_method(t, "join", x)``,
    ``list(x)`` -> ``_fd_build(list, x)``, ``f"..."`` -> ``_fd_charge(f"...")``.
    """

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        guard = _GUARDS.get(type(node.op))
        return node if guard is None else _call(f"_fd_{guard}", [node.left, node.right], node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        guard = _GUARDS.get(type(node.op))
        if guard is None:
            return node
        if isinstance(node.target, ast.Name):
            load = ast.Name(id=node.target.id, ctx=ast.Load())
            call = _call(f"_fd_{guard}", [load, node.value], node)
            return ast.copy_location(ast.Assign(targets=[node.target], value=call), node)
        if isinstance(node.target, ast.Subscript):
            args = [node.target.value, node.target.slice, ast.Constant(guard), node.value]
            return ast.copy_location(ast.Expr(_call("_fd_setitem", args, node)), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _GUARDED_METHODS:
            call = _call("_fd_method", [func.value, ast.Constant(func.attr), *node.args], node)
            call.keywords = node.keywords
            return call
        if isinstance(func, ast.Name) and func.id in _GUARDED_BUILDERS:
            call = _call("_fd_build", [func, *node.args], node)
            call.keywords = node.keywords
            return call
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        self.generic_visit(node)
        return _call("_fd_charge", [node], node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        # Only the value is visited: a format spec must stay a plain JoinedStr.
        node.value = self.visit(node.value)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        self.generic_visit(node)
        if node.type is None:  # a bare except: would also catch the step limit
            node.type = ast.copy_location(ast.Name(id="Exception", ctx=ast.Load()), node)
        return node


@lru_cache(maxsize=4096)
def compile_checked(source: str, mode: str) -> CodeType:
    tree = check_source(source, mode)
    assert isinstance(tree, ast.Module | ast.Expression)
    tree = ast.fix_missing_locations(_GuardArithmetic().visit(tree))
    return compile(tree, FILENAME, mode)


# ------------------------------------------------------------------ the step budget


class StepBudget:
    """Counts the lines the diagram's own code runs in this thread, and stops it past ``limit``.

    Installed with ``sys.settrace`` for the length of one evaluation, after which the previous
    tracer (a debugger, coverage) is put back.  Only frames compiled from a diagram (filename
    ``<bpmn>``) are traced line by line; registered functions run at full speed.
    """

    def __init__(self, limit: int = MAX_STEPS, seconds: float = MAX_SECONDS) -> None:
        self.limit = limit
        self.steps = 0
        self.deadline = time.monotonic() + seconds
        # Items (characters, list entries) built by the guarded operations, in all.
        self.items = 0
        self.item_limit = MAX_TOTAL_ITEMS

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.steps += 1
            if self.steps > self.limit or time.monotonic() > self.deadline:
                raise _OutOfSteps
        return self._local

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == FILENAME:
            return self._local
        return None

    def run(self, function: Callable[[], Any]) -> Any:
        previous = sys.gettrace()
        token = _CURRENT.set(self)
        sys.settrace(self._global)
        try:
            return function()
        except _OutOfSteps:
            raise EvaluationLimitExceeded(
                f"the expression or script ran more than the limit of {self.limit:,} steps and was stopped; "
                "diagrams may not loop for long (do long work in a registered function)"
            ) from None
        finally:
            sys.settrace(previous)
            _CURRENT.reset(token)


# The budget of the evaluation running in this thread (or task), for the size guards.
_CURRENT: ContextVar[StepBudget | None] = ContextVar("frontdoor_evaluation_budget", default=None)


def run_limited(code: CodeType, scope: dict[str, Any], limit: int = MAX_STEPS) -> Any:
    """``eval(code, scope)`` (an expression's value; None for a script) within the step budget."""
    return StepBudget(limit).run(lambda: eval(code, scope))


def evaluate_restricted(
    expression: str, data: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]] | None = None
) -> Any:
    """Evaluate one expression with ``data`` and ``functions`` in scope, as a diagram's would be."""
    scope: dict[str, Any] = {**(functions or {}), **data}
    scope["__builtins__"] = SAFE_BUILTINS
    scope.setdefault("value_of", _value_of(dict(data)))
    return run_limited(compile_checked(expression, "eval"), scope)


def _value_of(context: dict[str, Any]) -> Callable[..., Any]:
    """``value_of("name", default)``: a process variable that may not have been set yet."""

    def value_of(name: str, default: Any = None) -> Any:
        return context.get(name, default)

    return value_of


class UnknownServiceTask(LookupError):
    pass


class RestrictedEnvironment(TaskDataEnvironment):  # type: ignore[misc]
    """SpiffWorkflow script environment that evaluates through the checks above.

    ``services`` are the service-task handlers by operator name (``Registry.service_tasks``):
    each takes the evaluated parameters as keyword arguments and returns JSON-serialisable data.
    """

    def __init__(
        self,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        services: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        super().__init__({"__builtins__": SAFE_BUILTINS, **(functions or {})})
        self.services = services if services is not None else {}

    def evaluate(
        self, expression: str, context: dict[str, Any], external_context: dict[str, Any] | None = None
    ) -> Any:
        scope = dict(self.globals)
        scope.update(external_context or {})
        scope.update(context)
        scope["__builtins__"] = SAFE_BUILTINS
        scope.setdefault("value_of", _value_of(context))
        return run_limited(compile_checked(expression, "eval"), scope)

    def execute(
        self, script: str, context: dict[str, Any], external_context: dict[str, Any] | None = None
    ) -> bool:
        code = compile_checked(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        # Work on a copy: a script stopped half-way (an error, the step limit) leaves the task's
        # data exactly as it was.
        scope = dict(context)
        scope.update(self.globals)
        scope.update(external_context or {})
        scope["__builtins__"] = SAFE_BUILTINS
        if "value_of" not in scope:
            scope["value_of"] = _value_of(context)
        run_limited(code, scope)
        self._remove_globals_and_functions_from_context(scope, external_context)
        scope.pop("value_of", None)
        context.clear()
        context.update(scope)
        return True

    def call_service(self, context: dict[str, Any], **kwargs: Any) -> str:
        name = str(kwargs.get("operation_name") or "")
        handler = self.services.get(name)
        if handler is None:
            known = ", ".join(sorted(self.services)) or "none are registered"
            raise UnknownServiceTask(f"no service-task adapter is called {name!r} (known: {known})")
        params = kwargs.get("operation_params") or {}
        values = {
            key: param.get("value") if isinstance(param, dict) else param for key, param in params.items()
        }
        return json.dumps(handler(**values))
