"""The one door through which the engine reads ``processes/``.

``processes/`` is what a council runs: BPMN files, form schemas, code lists,
the calendar, role definitions.  The engine knows none of it in advance; it
reads it here.  Functions a BPMN expression may call are registered here too,
explicitly, by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jsonschema


def default_processes_dir() -> Path:
    configured = os.environ.get("FRONTDOOR_PROCESSES_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "processes"


class Registry:
    def __init__(self, root: Path | None = None, extra_form_dirs: list[Path] | None = None) -> None:
        self.root = (root or default_processes_dir()).resolve()
        # Where form schemas are looked for after processes/forms/ (tests add their own).
        self.form_dirs = [self.root / "forms", *(extra_form_dirs or [])]
        self.functions: dict[str, Callable[..., Any]] = {}
        # Service-task adapters by the operator name a diagram's service task gives
        # (spiffworkflow:serviceTaskOperator); adapters register theirs at start-up.
        self.service_tasks: dict[str, Callable[..., Any]] = {}
        self._forms: dict[str, dict[str, Any]] = {}

    def register_function(self, name: str, function: Callable[..., Any]) -> None:
        """Make ``function`` callable from BPMN expressions as ``name``."""
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"{name!r} cannot be called from a diagram: use a plain identifier")
        self.functions[name] = function

    def register_service_task(self, name: str, handler: Callable[..., Any]) -> None:
        """Let a diagram's service task call ``handler`` (keyword arguments in, JSON-able data out)."""
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"{name!r} cannot name a service task: use letters, digits, '_', '-' or '.'")
        self.service_tasks[name] = handler

    def rules(self) -> list[dict[str, Any]]:
        """The council's rules every diagram must keep (``processes/rules.json``; none if absent)."""
        document = self.read_json_optional("rules.json")
        if document is None:
            return []
        rules = document.get("rules") if isinstance(document, dict) else None
        if not isinstance(rules, list):
            raise ValueError(f'{self.root / "rules.json"}: expected an object with a list of "rules"')
        return rules

    def bpmn_files(self) -> list[Path]:
        """The diagrams ``frontdoor init`` deploys: everything except ``variants/`` (deployed by choice)."""
        return sorted(
            p for p in self.root.rglob("*.bpmn") if "variants" not in p.relative_to(self.root).parts
        )

    def read_json(self, relative: str) -> Any:
        path = self.root / relative
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing: it is part of the processes folder") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None

    def read_json_optional(self, relative: str) -> Any:
        if not (self.root / relative).exists():
            return None
        return self.read_json(relative)

    def form_file_exists(self, form_key: str) -> bool:
        return "/" not in form_key and any((d / form_key).is_file() for d in self.form_dirs)

    def form_schema(self, form_key: str) -> dict[str, Any]:
        """The JSON Schema of a task's form, from ``processes/forms/``; checked once, then cached."""
        cached = self._forms.get(form_key)
        if cached is not None:
            return cached
        if "/" in form_key or "\\" in form_key or form_key.startswith("."):
            raise ValueError(f"form name {form_key!r} must be a plain file name in processes/forms/")
        path = next((d / form_key for d in self.form_dirs if (d / form_key).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"the form {form_key} is not in processes/forms/; add it or fix the name")
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(schema, dict):
            raise ValueError(f"processes/forms/{form_key} is not a JSON Schema object")
        schema = cast(dict[str, Any], self._inline_code_lists(schema, form_key))
        jsonschema.validators.validator_for(schema).check_schema(schema)
        self._forms[form_key] = schema
        return schema

    def code_list(self, name: str) -> dict[str, Any]:
        """A code list from ``processes/codes/`` (a JSON Schema ``oneOf`` of ``const``/``title`` pairs)."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"code list name {name!r} must be a plain name")
        codes: dict[str, Any] = self.read_json(f"codes/{name}.json")
        return codes

    def _inline_code_lists(self, node: Any, form_key: str) -> Any:
        """Replace ``{"$ref": "codes/NAME.json"}`` with that code list, so a form names its codes once."""
        if isinstance(node, list):
            return [self._inline_code_lists(item, form_key) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.split("/")[-2:-1] == ["codes"] and ref.endswith(".json"):
            name = ref.rsplit("/", 1)[-1][: -len(".json")]
            try:
                codes = self.code_list(name)
            except FileNotFoundError:
                raise ValueError(f"processes/forms/{form_key} refers to {ref}, which is not there") from None
            merged = {k: v for k, v in codes.items() if k not in ("description",)}
            merged.update({k: v for k, v in node.items() if k != "$ref"})
            return merged
        return {k: self._inline_code_lists(v, form_key) for k, v in node.items()}

    def roles(self) -> list[dict[str, Any]]:
        roles: list[dict[str, Any]] = self.read_json("roles.json")["roles"]
        return roles
