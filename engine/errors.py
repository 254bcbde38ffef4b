"""Errors a user of the engine can act on.

Every error says what is wrong and, where it can, what to change.  Commands
raise them before anything is written, or from inside the transaction, which
is then rolled back: an error never leaves half a change behind.
"""

from __future__ import annotations

from dataclasses import dataclass


class FrontdoorError(Exception):
    """Base class: the message is meant for the person who asked."""


@dataclass(frozen=True)
class Finding:
    """One problem in a BPMN file, tied to the element that has it."""

    message: str
    file: str | None = None
    element_id: str | None = None
    element_name: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<bpmn>"
        if self.line:
            where += f":{self.line}"
        element = self.element_id or "-"
        if self.element_name:
            element += f" ({self.element_name})"
        return f"{where}: {element}: {self.message}"


class DefinitionError(FrontdoorError):
    """A BPMN file cannot be deployed; ``findings`` says where and why."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


class NotFound(FrontdoorError):
    pass


class Conflict(FrontdoorError):
    """Someone else changed the thing first, or it is not in a state that allows this."""


class InvalidData(FrontdoorError):
    """Input data refused before anything was written.

    ``fields`` maps a field's path (``"children/0/name"``; ``""`` for the whole form) to
    what is wrong with it, so a page can put each message beside its field.
    """

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        self.fields = fields or {}
        super().__init__(message)


class PermissionDenied(FrontdoorError):
    pass


class ProcessError(FrontdoorError):
    """The process itself failed while running (a script or condition raised).

    The command is rolled back; ``element_id``/``element_name`` say where in the diagram.
    """

    def __init__(self, message: str, element_id: str | None = None, element_name: str | None = None) -> None:
        self.element_id = element_id
        self.element_name = element_name
        where = f"{element_id} ({element_name})" if element_name else (element_id or "the process")
        super().__init__(f"{where}: {message}")
