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
from typing import Any


def default_processes_dir() -> Path:
    configured = os.environ.get("FRONTDOOR_PROCESSES_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "processes"


class Registry:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_processes_dir()).resolve()
        self.functions: dict[str, Callable[..., Any]] = {}

    def register_function(self, name: str, function: Callable[..., Any]) -> None:
        """Make ``function`` callable from BPMN expressions as ``name``."""
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"{name!r} cannot be called from a diagram: use a plain identifier")
        self.functions[name] = function

    def bpmn_files(self) -> list[Path]:
        return sorted(self.root.rglob("*.bpmn"))

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

    def roles(self) -> list[dict[str, Any]]:
        roles: list[dict[str, Any]] = self.read_json("roles.json")["roles"]
        return roles
