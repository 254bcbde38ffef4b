"""A task's JSON Schema as a GOV.UK form, and the posted form back as JSON.

Three steps, each a plain function with no Flask in it (so they are unit-tested alone):

- :func:`build_fields` turns a schema (code lists already inlined by the registry as ``oneOf``
  ``const``/``title`` pairs), an optional uiSchema, the values to show and the errors into a tree
  of :class:`Field` objects that ``templates/tasks/_fields.html`` renders with GOV.UK macros;
- :func:`form_to_json` turns the posted form into the JSON the schema describes (booleans,
  integers, ISO dates, arrays), with a message for each answer that cannot be converted;
- :func:`validate` checks the JSON against the schema and says what is wrong in plain words,
  keyed by the field's path, before the engine (which checks again) is asked to complete the task.

Paths are ``/``-separated (``participants/2/name``), as in :class:`engine.errors.InvalidData`.
Form names use dots (``participants.2.name``); element ids use hyphens (``participants-2-name``).

Which component a schema node becomes:

==========================================================  ==================================
string                                                      text input
string, format date                                         date input (day, month, year)
string, format date-time                                    date input and a time input
string, maxLength > 200, ``x-multiline`` or uiSchema        textarea
  ``ui:widget: textarea`` (or a long-answer name, see
  :data:`LONG_ANSWER_WORDS`)
integer / number                                            input with a numeric keyboard
boolean (also ``["boolean", "null"]``)                      Yes / No radios
``enum`` or ``oneOf`` of ``const``/``title``                radios (8 or fewer) or a select
array of ``enum``/``oneOf``                                 checkboxes
array of strings or numbers                                 textarea, one answer a line
array of objects                                            a few repeated fieldsets
object                                                      fieldset with its own fields
==========================================================  ==================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema

Path = tuple[str, ...]

LONDON = ZoneInfo("Europe/London")
MAX_RADIOS = 8
REPEATS = 3
TEXTAREA_LENGTH = 200
# Strings without a maxLength whose name says they hold prose get a textarea. A form can say so
# itself with "x-multiline": true (or a uiSchema textarea), which is better.
LONG_ANSWER_WORDS = frozenset(
    {
        "summary",
        "reasons",
        "reason",
        "information",
        "notes",
        "plan",
        "concern",
        "details",
        "actions",
        "found",
        "findings",
        "analysis",
        "views",
        "description",
        "advice",
        "comments",
        "outcome",
        "well",
        "better",
    }
)


@dataclass
class Option:
    value: str
    text: str
    checked: bool = False


@dataclass
class Field:
    """One question of the form (or a group of them: ``fieldset`` and ``repeat``)."""

    kind: str  # input, number, email, textarea, lines, date, datetime, radios, select, yesno,
    #            checkboxes, fieldset, repeat
    path: Path
    label: str
    hint: str | None = None
    required: bool = False
    optional: bool = False  # shown as "(optional)": neither required nor required by a condition
    options: list[Option] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    value: Any = ""  # str; for dates a dict of day/month/year(/time)
    error: str | None = None
    integer: bool = False
    depth: int = 0

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def id(self) -> str:
        return "-".join(self.path) or "form"

    @property
    def anchor(self) -> str:
        """The element the error summary links to (the first input of the question)."""
        if self.kind in ("date", "datetime"):
            return f"{self.id}-day"
        if self.kind in ("fieldset", "repeat") and self.children:
            return self.children[0].anchor
        return self.id

    @property
    def items(self) -> list[dict[str, Any]]:
        """The options as GOV.UK radio, checkbox or select items."""
        return [{"value": o.value, "text": o.text, "checked": o.checked} for o in self.options]

    def walk(self) -> Iterable[Field]:
        yield self
        for child in self.children:
            yield from child.walk()


# ------------------------------------------------------------------ schema reading


def _types(node: Mapping[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)} - {"null"}
    return set()


def choices(node: Mapping[str, Any]) -> list[tuple[Any, str]] | None:
    """(value, text) pairs of an ``enum`` or a ``oneOf``/``anyOf`` of ``const``s; None if not a choice."""
    if isinstance(node.get("enum"), list):
        return [(v, _display(v)) for v in node["enum"] if v is not None]
    for key in ("oneOf", "anyOf"):
        options = node.get(key)
        if (
            isinstance(options, list)
            and options
            and all(isinstance(o, dict) and "const" in o for o in options)
        ):
            return [(o["const"], str(o.get("title") or _display(o["const"]))) for o in options]
    return None


def _display(value: Any) -> str:
    if value is True:
        return "Yes"
    if value is False:
        return "No"
    return str(value)


def _wire(value: Any) -> str:
    """How a JSON value travels in a form field."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def kind_of(node: Mapping[str, Any], key: str = "", ui: Mapping[str, Any] | None = None) -> str:
    ui = ui or {}
    widget = ui.get("ui:widget")
    types = _types(node)
    if "array" in types:
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        if choices(items) is not None:
            return "checkboxes"
        if "object" in _types(items) or "properties" in items:
            return "repeat"
        return "lines"
    if "object" in types or ("properties" in node and not types):
        return "fieldset"
    options = choices(node)
    if options is not None:
        if widget == "radio":
            return "radios"
        if widget == "select":
            return "select"
        return "radios" if len(options) <= MAX_RADIOS else "select"
    if "boolean" in types:
        return "yesno"
    if types & {"integer", "number"}:
        return "number"
    fmt = node.get("format")
    if fmt == "date":
        return "date"
    if fmt == "date-time":
        return "datetime"
    if fmt == "email":
        return "email"
    if widget == "textarea" or node.get("x-multiline"):
        return "textarea"
    max_length = node.get("maxLength")
    if isinstance(max_length, int) and max_length > TEXTAREA_LENGTH:
        return "textarea"
    if max_length is None and set(key.lower().split("_")) & LONG_ANSWER_WORDS:
        return "textarea"
    return "input"


def _label(node: Mapping[str, Any], key: str) -> str:
    title = node.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return key.replace("_", " ").strip().capitalize() or "Answer"


def _conditionally_required(node: Mapping[str, Any]) -> set[str]:
    """Names some condition of this object may require (``if``/``then``/``else``, ``dependentRequired``)."""
    names: set[str] = set()

    def collect(part: Any) -> None:
        if not isinstance(part, dict):
            return
        names.update(n for n in part.get("required", []) if isinstance(n, str))
        for key in ("then", "else"):
            collect(part.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in part.get(key, []) or []:
                collect(sub)

    for key in ("then", "else"):
        collect(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []) or []:
            collect(sub)
    for required in (node.get("dependentRequired") or {}).values():
        names.update(required)
    return names


def _ordered(properties: Mapping[str, Any], ui: Mapping[str, Any]) -> list[str]:
    order = ui.get("ui:order")
    if not isinstance(order, list):
        return list(properties)
    named = [k for k in order if k in properties]
    rest = [k for k in properties if k not in named]
    if "*" in order:
        star = order.index("*")
        before = [k for k in order[:star] if k in properties]
        after = [k for k in order[star + 1 :] if k in properties]
        return before + [k for k in rest if k not in after] + after
    return named + rest


def node_at(schema: Mapping[str, Any], path: Iterable[str]) -> Mapping[str, Any]:
    """The schema of the value at ``path`` (``{}`` if the schema does not say)."""
    node: Mapping[str, Any] = schema
    for part in path:
        if part.isdigit() and isinstance(node.get("items"), dict):
            node = node["items"]
        elif isinstance(node.get("properties"), dict) and part in node["properties"]:
            node = node["properties"][part]
        else:
            return {}
    return node


def _ui_at(ui: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    found = (ui or {}).get(key)
    return found if isinstance(found, dict) else {}


# ------------------------------------------------------------------ building the fields


FormValues = Mapping[str, list[str]]


def _get(values: FormValues, name: str) -> str:
    found = values.get(name) or []
    return found[0] if found else ""


def build_fields(
    schema: Mapping[str, Any],
    values: FormValues | None = None,
    errors: Mapping[str, str] | None = None,
    ui: Mapping[str, Any] | None = None,
    repeats: int = REPEATS,
) -> list[Field]:
    """The questions of the form, with the values to show (form-shaped: name -> list of strings).

    ``errors`` are keyed by form path; each lands on the deepest question its path reaches.
    """
    values = values or {}
    fields = _object_fields(schema, (), values, ui or {}, repeats, 0)
    attach_errors(fields, errors or {})
    return fields


def _object_fields(
    node: Mapping[str, Any], path: Path, values: FormValues, ui: Mapping[str, Any], repeats: int, depth: int
) -> list[Field]:
    properties = node.get("properties") or {}
    required = {n for n in node.get("required", []) if isinstance(n, str)}
    conditional = _conditionally_required(node)
    out = []
    for key in _ordered(properties, ui):
        child = properties[key]
        if (
            not isinstance(child, dict)
            or child.get("readOnly")
            or _ui_at(ui, key).get("ui:widget") == "hidden"
        ):
            continue
        made = _field(child, (*path, key), key, values, _ui_at(ui, key), repeats, depth)
        made.required = key in required
        made.optional = key not in required and key not in conditional
        out.append(made)
    return out


def _field(
    node: Mapping[str, Any],
    path: Path,
    key: str,
    values: FormValues,
    ui: Mapping[str, Any],
    repeats: int,
    depth: int,
) -> Field:
    kind = kind_of(node, key, ui)
    hint = ui.get("ui:help") or node.get("description")
    made = Field(kind, path, _label(node, key), hint if isinstance(hint, str) else None, depth=depth)
    name = made.name
    default = node.get("default")
    if kind == "fieldset":
        made.children = _object_fields(node, path, values, ui, repeats, depth + 1)
    elif kind == "repeat":
        items = node["items"]
        item_ui = _ui_at(ui, "items")
        shown = max(repeats, _int(node.get("minItems")), _repeat_count(values, name) + 1)
        max_items = node.get("maxItems")
        if isinstance(max_items, int) and max_items > 0:
            shown = min(shown, max_items)
        for index in range(shown):
            legend = (
                f"{items['title']} {index + 1}" if items.get("title") else f"{made.label}: entry {index + 1}"
            )
            item = Field("fieldset", (*path, str(index)), legend, depth=depth + 1)
            item.children = _object_fields(items, item.path, values, item_ui, repeats, depth + 2)
            made.children.append(item)
    elif kind == "checkboxes":
        chosen = set(values.get(name) or ([_wire(v) for v in default] if isinstance(default, list) else []))
        made.options = [
            Option(_wire(v), text, _wire(v) in chosen) for v, text in choices(node["items"]) or []
        ]
    elif kind in ("radios", "select", "yesno"):
        pairs = [(True, "Yes"), (False, "No")] if kind == "yesno" else (choices(node) or [])
        current = _get(values, name) or (_wire(default) if default is not None else "")
        made.options = [Option(_wire(v), text, _wire(v) == current) for v, text in pairs]
        made.value = current
    elif kind in ("date", "datetime"):
        parts = {p: _get(values, f"{name}-{p}") for p in ("day", "month", "year", "time")}
        made.value = parts
    else:
        made.integer = "integer" in _types(node)
        made.value = _get(values, name) or (_wire(default) if default is not None else "")
    return made


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _repeat_count(values: FormValues, name: str) -> int:
    """How many repeated items the values hold (the highest index with an answer, plus one)."""
    prefix = f"{name}."
    highest = -1
    for key, found in values.items():
        if key.startswith(prefix) and any(v.strip() for v in found):
            index = key[len(prefix) :].split(".", 1)[0].split("-", 1)[0]
            if index.isdigit():
                highest = max(highest, int(index))
    return highest + 1


def attach_errors(fields: list[Field], errors: Mapping[str, str]) -> list[tuple[str, str]]:
    """Put each message on the deepest question its path reaches; return (anchor, message) in page order."""
    flat = [f for top in fields for f in top.walk()]
    by_path = {"/".join(f.path): f for f in flat}
    for path, message in errors.items():
        parts = [p for p in path.split("/") if p]
        target = None
        while parts:
            target = by_path.get("/".join(parts))
            if target is not None:
                break
            parts.pop()
        if target is None:
            target = flat[0] if flat else None
        if target is not None and not target.error:
            target.error = message
    return [(f.anchor, f.error) for f in flat if f.error]


def error_list(fields: list[Field]) -> list[dict[str, str]]:
    """Items for ``govukErrorSummary``, in the order the questions appear."""
    return [{"text": f.error, "href": f"#{f.anchor}"} for top in fields for f in top.walk() if f.error]


# ------------------------------------------------------------------ JSON -> form values


def json_to_form(schema: Mapping[str, Any], data: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Saved answers (a draft) as the form values that show them."""
    out: dict[str, list[str]] = {}
    _object_to_form(schema, (), data or {}, out)
    return out


def _object_to_form(node: Mapping[str, Any], path: Path, data: Any, out: dict[str, list[str]]) -> None:
    if not isinstance(data, dict):
        return
    properties = node.get("properties") or {}
    for key, child in properties.items():
        if key in data and isinstance(child, dict):
            _value_to_form(child, (*path, key), key, data[key], out)


def _value_to_form(
    node: Mapping[str, Any], path: Path, key: str, value: Any, out: dict[str, list[str]]
) -> None:
    name = ".".join(path)
    kind = kind_of(node, key)
    if value is None:
        return
    if kind == "fieldset":
        _object_to_form(node, path, value, out)
    elif kind == "repeat":
        for index, item in enumerate(value if isinstance(value, list) else []):
            _object_to_form(node["items"], (*path, str(index)), item, out)
    elif kind == "checkboxes":
        out[name] = [_wire(v) for v in value] if isinstance(value, list) else []
    elif kind == "lines":
        out[name] = ["\n".join(_wire(v) for v in value)] if isinstance(value, list) else []
    elif kind == "date" and isinstance(value, str):
        parsed = _iso_date(value)
        if parsed:
            out.update({f"{name}-day": [str(parsed.day)], f"{name}-month": [str(parsed.month)]})
            out[f"{name}-year"] = [str(parsed.year)]
    elif kind == "datetime" and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return
        if moment.tzinfo is not None:
            moment = moment.astimezone(LONDON)
        out.update({f"{name}-day": [str(moment.day)], f"{name}-month": [str(moment.month)]})
        out.update({f"{name}-year": [str(moment.year)], f"{name}-time": [moment.strftime("%H:%M")]})
    else:
        out[name] = [_wire(value)]


def _iso_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


# ------------------------------------------------------------------ form values -> JSON


@dataclass
class Conversion:
    """What :func:`form_to_json` made of a posted form."""

    data: dict[str, Any]
    errors: dict[str, str]  # form path -> message, for answers that could not be converted
    # JSON path of a kept repeated item -> its form path (blank items are dropped, so they differ)
    moved: dict[str, str] = field(default_factory=dict)

    def form_path(self, json_path: str) -> str:
        """Where a JSON path's answer was on the form."""
        parts = json_path.split("/")
        for cut in range(len(parts), 0, -1):
            head = "/".join(parts[:cut])
            if head in self.moved:
                return "/".join([self.moved[head], *parts[cut:]])
        return json_path

    def form_errors(self, json_errors: Mapping[str, str]) -> dict[str, str]:
        """Conversion errors first, then the validation errors, moved to where they were asked."""
        out = dict(self.errors)
        for path, message in json_errors.items():
            out.setdefault(self.form_path(path), message)
        return out


def without_empty(data: dict[str, Any]) -> dict[str, Any]:
    """The answers less empty objects (a draft keeps only what was written)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = without_empty(value)
        if value != {}:
            out[key] = value
    return out


def _as_lists(form: Any) -> dict[str, list[str]]:
    if hasattr(form, "getlist"):
        return {key: form.getlist(key) for key in form}
    return {k: (list(v) if isinstance(v, list | tuple) else [v]) for k, v in dict(form).items()}


def form_to_json(schema: Mapping[str, Any], form: Any, tz: ZoneInfo = LONDON) -> Conversion:
    """The posted form (a MultiDict or ``{name: [values]}``) as the JSON the schema describes.

    Unanswered questions are left out (so ``required`` says what is missing); an object is kept
    if anything in it was answered or its parent requires it (so its own fields say what is
    missing); blank repeated items are dropped.  Answers that cannot be read (``31/2/2024``,
    ``four``) are reported in ``errors`` and left out of ``data``.
    """
    values = _as_lists(form)
    result = Conversion({}, {})
    result.data = _object_from_form(schema, (), (), values, result, tz)
    return result


def _object_from_form(
    node: Mapping[str, Any],
    form_path: Path,
    json_path: Path,
    values: FormValues,
    result: Conversion,
    tz: ZoneInfo,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    properties = node.get("properties") or {}
    required = set(node.get("required", []))
    for key, child in properties.items():
        if not isinstance(child, dict) or child.get("readOnly"):
            continue
        converted = _value_from_form(
            child, (*form_path, key), (*json_path, key), key, values, result, tz, key in required
        )
        if converted is not _BLANK:
            out[key] = converted
    return out


_BLANK: Any = object()
_TIME = re.compile(r"^\s*(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm)?\s*$", re.IGNORECASE)


def _value_from_form(
    node: Mapping[str, Any],
    form_path: Path,
    json_path: Path,
    key: str,
    values: FormValues,
    result: Conversion,
    tz: ZoneInfo,
    required: bool,
) -> Any:
    name = ".".join(form_path)
    where = "/".join(form_path)
    kind = kind_of(node, key)
    label = _label(node, key)
    if kind == "fieldset":
        inner = _object_from_form(node, form_path, json_path, values, result, tz)
        return inner if inner or required else _BLANK
    if kind == "repeat":
        items = []
        for index in range(_repeat_count(values, name)):
            item = _object_from_form(
                node["items"], (*form_path, str(index)), (*json_path, str(len(items))), values, result, tz
            )
            if item:
                result.moved["/".join((*json_path, str(len(items))))] = "/".join((*form_path, str(index)))
                items.append(item)
        return items if items else _BLANK
    if kind == "checkboxes":
        allowed = {_wire(v): v for v, _ in choices(node["items"]) or []}
        chosen = [allowed[v] for v in values.get(name, []) if v in allowed]
        return chosen if chosen else _BLANK
    if kind == "lines":
        lines = [line.strip() for line in _get(values, name).replace("\r\n", "\n").split("\n")]
        lines = [line for line in lines if line]
        item_types = _types(node.get("items") or {})
        if item_types & {"integer", "number"}:
            numbers = []
            for line in lines:
                number = _number(line, "integer" in item_types)
                if number is None:
                    result.errors[where] = f"“{label}”: write one number a line"
                    return _BLANK
                numbers.append(number)
            return numbers or _BLANK
        return lines or _BLANK
    if kind in ("radios", "select", "yesno"):
        raw = _get(values, name)
        if not raw:
            return _BLANK
        pairs = [(True, "Yes"), (False, "No")] if kind == "yesno" else (choices(node) or [])
        allowed = {_wire(v): v for v, _ in pairs}
        if raw not in allowed:
            result.errors[where] = f"Select one of the options for “{label}”"
            return _BLANK
        return allowed[raw]
    if kind in ("date", "datetime"):
        return _date_from_form(kind, name, where, label, values, result, tz)
    raw = _get(values, name)
    if kind == "textarea":
        raw = raw.replace("\r\n", "\n")
    raw = raw.strip()
    if not raw:
        return _BLANK
    if kind == "number":
        integer = "integer" in _types(node)
        number = _number(raw, integer)
        if number is None:
            example = "a whole number, like 4" if integer else "a number, like 4 or 4.5"
            result.errors[where] = f"“{label}” must be {example}"
            return _BLANK
        return number
    return raw


def _number(raw: str, integer: bool) -> int | float | None:
    text = raw.replace(",", "").replace(" ", "")
    try:
        if integer:
            return int(text)
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _date_from_form(
    kind: str, name: str, where: str, label: str, values: FormValues, result: Conversion, tz: ZoneInfo
) -> Any:
    parts = {p: _get(values, f"{name}-{p}").strip() for p in ("day", "month", "year", "time")}
    date_parts = [parts["day"], parts["month"], parts["year"]]
    if not any(date_parts) and not parts["time"]:
        return _BLANK
    missing = [p for p in ("day", "month", "year") if not parts[p]]
    if missing:
        result.errors[where] = f"“{label}” must include a {' and a '.join(missing)}"
        return _BLANK
    try:
        day, month, year = (int(p) for p in date_parts)
        if len(parts["year"]) != 4:
            raise ValueError
        when = date(year, month, day)
    except ValueError:
        result.errors[where] = f"“{label}” must be a real date, like 27 3 2024"
        return _BLANK
    if kind == "date":
        return when.isoformat()
    match = _TIME.match(parts["time"])
    if not parts["time"]:
        result.errors[where] = f"“{label}” must include a time, like 14:30"
        return _BLANK
    hour, minute = (int(match.group(1)), int(match.group(2) or 0)) if match else (99, 99)
    if match and match.group(3):
        if not 1 <= hour <= 12:
            hour = 99
        hour = hour % 12 + (12 if match.group(3).lower() == "pm" else 0)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        result.errors[where] = f"“{label}” must have a real time, like 14:30"
        return _BLANK
    return datetime.combine(when, time(hour, minute), tz).isoformat()


# ------------------------------------------------------------------ validation in plain words


def validate(schema: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with ``data``, per JSON path, in words a practitioner can act on.

    The same checks the engine makes (it validates again on completion); one message a field.
    """
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    out: dict[str, str] = {}
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path = [str(p) for p in error.absolute_path]
        if _condition_unanswered(schema, error):
            continue
        if error.validator == "required" and isinstance(error.instance, dict):
            for missing in error.validator_value:
                if missing not in error.instance:
                    target = [*path, missing]
                    out.setdefault("/".join(target), _missing(node_at(schema, target), missing))
            continue
        out.setdefault("/".join(path), _message(error, schema, path))
    return out


def _condition_unanswered(schema: Mapping[str, Any], error: jsonschema.ValidationError) -> bool:
    """An ``else`` applied only because the ``if`` question is not answered yet: that question's own
    "required" error says what to do; asking for the ``else`` answers too would mislead."""
    path = list(error.absolute_schema_path)
    if "else" not in path:
        return False
    node: Any = schema
    for part in path[: len(path) - 1 - path[::-1].index("else")]:
        node = node[part]
    condition = node.get("if") if isinstance(node, dict) else None
    if not isinstance(condition, dict):
        return False
    instance = _instance_at(error)
    needed = condition.get("required", [])
    return isinstance(instance, dict) and any(name not in instance for name in needed)


def _instance_at(error: jsonschema.ValidationError) -> Any:
    """The object the ``if`` was applied to, where the error says (a ``required`` error does)."""
    return error.instance if error.validator == "required" else None


def _missing(node: Mapping[str, Any], key: str) -> str:
    label = _label(node, key)
    kind = kind_of(node, key)
    if kind in ("radios", "select", "yesno"):
        return f"Select an answer for “{label}”"
    if kind == "checkboxes":
        return f"Select at least one option for “{label}”"
    if kind in ("date", "datetime"):
        return f"Enter the date for “{label}”"
    if kind == "repeat":
        return f"Add at least {_count(max(1, _int(node.get('minItems'))), 'entry', 'entries')} to “{label}”"
    if kind == "number":
        return f"Enter a number for “{label}”"
    return f"Enter an answer for “{label}”"


def _message(error: jsonschema.ValidationError, schema: Mapping[str, Any], path: list[str]) -> str:
    node = node_at(schema, path) or (error.schema if isinstance(error.schema, dict) else {})
    key = path[-1] if path else ""
    if key.isdigit() and len(path) > 1:  # an item of a list: name the list
        node, key = node_at(schema, path[:-1]), path[-2]
    label = _label(node, key)
    kind = kind_of(node, key)
    rule, limit = error.validator, error.validator_value
    if rule == "minLength":
        return _missing(node, key) if limit <= 1 else f"“{label}” must be {limit} characters or more"
    if rule == "maxLength":
        return f"“{label}” must be {limit} characters or fewer"
    if rule in ("minimum", "exclusiveMinimum"):
        return f"“{label}” must be {'more than' if rule == 'exclusiveMinimum' else 'at least'} {limit}"
    if rule in ("maximum", "exclusiveMaximum"):
        return f"“{label}” must be {'less than' if rule == 'exclusiveMaximum' else 'at most'} {limit}"
    if rule == "minItems":
        if kind == "checkboxes":
            return f"Select at least {_count(limit, 'option')} for “{label}”"
        return f"Add at least {_count(limit, 'entry', 'entries')} to “{label}”"
    if rule == "maxItems":
        if kind == "checkboxes":
            return f"Select no more than {_count(limit, 'option')} for “{label}”" + _hint_suffix(node)
        return f"“{label}” can have at most {limit}"
    if rule == "contains":
        return _contains_message(node, label, limit)
    if rule == "uniqueItems":
        return f"Each answer to “{label}” must be different"
    if rule in ("enum", "const", "oneOf", "anyOf"):
        return f"Select one of the options for “{label}”"
    if rule == "format":
        if limit == "date":
            return f"“{label}” must be a real date"
        if limit == "date-time":
            return f"“{label}” must be a real date and time"
        if limit == "email":
            return f"Enter “{label}” as an e-mail address, like name@example.com"
        return f"“{label}” is not in the right form ({limit})"
    if rule == "pattern":
        return f"Enter “{label}” in the form asked for" + _hint_suffix(node)
    if rule == "type":
        wanted = limit if isinstance(limit, str) else "/".join(limit)
        if "integer" in wanted:
            return f"“{label}” must be a whole number"
        if "number" in wanted:
            return f"“{label}” must be a number"
        if "boolean" in wanted:
            return f"Select Yes or No for “{label}”"
        return f"“{label}” is not the right kind of answer"
    if rule == "additionalProperties":
        return "The form sent an answer it does not ask for; reload the page"
    return f"“{label}”: {error.message}"


def _count(n: Any, noun: str, nouns: str | None = None) -> str:
    return f"one {noun}" if n == 1 else f"{n} {nouns or noun + 's'}"


def _hint_suffix(node: Mapping[str, Any]) -> str:
    hint = node.get("description")
    return f": {hint}" if isinstance(hint, str) and hint else ""


def _contains_message(node: Mapping[str, Any], label: str, contains: Any) -> str:
    """``contains: {properties: {agency: {const: police}}}`` -> "“Who took part” must include Police"."""
    wanted = []
    items = node.get("items") if isinstance(node.get("items"), dict) else {}
    if isinstance(contains, dict):
        for key, sub in (contains.get("properties") or {}).items():
            if isinstance(sub, dict) and "const" in sub:
                options = dict(choices(node_at(items, [key])) or [])
                wanted.append(options.get(sub["const"], _display(sub["const"])))
        if "const" in contains:
            wanted.append(dict(choices(items) or []).get(contains["const"], _display(contains["const"])))
    if wanted:
        return f"“{label}” must include {' and '.join(wanted)}"
    return f"“{label}” is missing an answer it must include"


# ------------------------------------------------------------------ showing answers


def summary_rows(schema: Mapping[str, Any], data: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(question, answer) pairs of saved answers, for a completed task's summary list."""
    rows: list[tuple[str, str]] = []
    _summarise(schema, data or {}, "", rows)
    return rows


def _summarise(node: Mapping[str, Any], data: Any, prefix: str, rows: list[tuple[str, str]]) -> None:
    if not isinstance(data, dict):
        return
    properties = node.get("properties") or {}
    for key, value in data.items():
        child = properties.get(key) if isinstance(properties.get(key), dict) else {}
        label = f"{prefix}{_label(child, key)}"
        kind = kind_of(child, key) if child else "input"
        if kind == "fieldset" and isinstance(value, dict):
            _summarise(child, value, f"{label}: ", rows)
        elif kind == "repeat" and isinstance(value, list):
            for index, item in enumerate(value):
                _summarise(child["items"], item, f"{label} {index + 1}: ", rows)
        else:
            rows.append((label, _answer_text(child, kind, value)))


def _answer_text(node: Mapping[str, Any], kind: str, value: Any) -> str:
    if value is None:
        return "Not answered"
    if kind == "checkboxes" and isinstance(value, list):
        names = dict(choices(node.get("items") or {}) or [])
        return ", ".join(str(names.get(v, _display(v))) for v in value)
    if kind in ("radios", "select"):
        return str(dict(choices(node) or []).get(value, _display(value)))
    if kind == "date" and isinstance(value, str) and _iso_date(value):
        parsed = _iso_date(value)
        assert parsed is not None
        return f"{parsed.day} {parsed:%B %Y}"
    if isinstance(value, list):
        return ", ".join(_display(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_display(v)}" for k, v in value.items())
    return _display(value)
