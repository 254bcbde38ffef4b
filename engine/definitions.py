"""Deployed process versions and the cache of their parsed specs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy.orm import Session

from .bpmn import new_parser, parse_xml
from .errors import DefinitionError, Finding, NotFound
from .models import ProcessDefinition
from .runtime import SpecBundle
from .validation import ValidationContext, check_files


@dataclass(frozen=True)
class DeployResult:
    key: str
    version: int
    definition_id: int
    created: bool  # False: the same content was already deployed


def deploy(
    session: Session,
    files: list[tuple[str, bytes]],
    deployed_by: str,
    now: Any,
    form_exists: Callable[[str], bool] | None = None,
    context: ValidationContext | None = None,
) -> list[DeployResult]:
    """Validate the files together and record a new version of every process whose file changed.

    Validation is :func:`engine.validation.check_files` (the same findings ``frontdoor validate``
    prints and the editor shows), plus what only the database knows: that every process a
    call activity names is deployed or among these files.
    """
    if context is None:
        context = ValidationContext(form_exists=form_exists)
    checked = check_files(files, context)
    if checked.findings:
        raise DefinitionError(checked.findings)
    processes = checked.processes
    deploying = {p.key for p in processes}
    findings = []
    for process in processes:
        for called in sorted(process.called_keys - deploying):
            if latest(session, called) is None:
                for element, name in process.calls[called]:
                    findings.append(
                        Finding(
                            f"calls the process '{called}', which is neither in these files nor deployed; "
                            "deploy its file first or together with this one",
                            process.filename,
                            element,
                            name,
                        )
                    )
    if findings:
        raise DefinitionError(findings)
    results = []
    for process in processes:
        newest = session.scalar(
            sa.select(ProcessDefinition)
            .where(ProcessDefinition.key == process.key)
            .order_by(ProcessDefinition.version.desc())
            .limit(1)
        )
        if newest is not None and newest.sha256 == process.sha256:
            results.append(DeployResult(process.key, newest.version, newest.id, created=False))
            continue
        current = newest.version if newest is not None else 0
        definition = ProcessDefinition(
            key=process.key,
            version=current + 1,
            name=process.name,
            filename=process.filename,
            bpmn_xml=process.content.decode("utf-8"),
            sha256=process.sha256,
            deployed_by=deployed_by,
            deployed_at=now,
            status="active",
        )
        session.add(definition)
        session.flush()
        results.append(DeployResult(process.key, definition.version, definition.id, created=True))
    return results


def latest(session: Session, key: str) -> ProcessDefinition | None:
    return session.scalar(
        sa.select(ProcessDefinition)
        .where(ProcessDefinition.key == key, ProcessDefinition.status == "active")
        .order_by(ProcessDefinition.version.desc())
        .limit(1)
    )


def require_latest(session: Session, key: str) -> ProcessDefinition:
    definition = latest(session, key)
    if definition is None:
        known = session.scalars(sa.select(ProcessDefinition.key).distinct()).all()
        hint = f"; deployed processes: {', '.join(sorted(known))}" if known else "; nothing is deployed yet"
        raise NotFound(f"no process with the key '{key}' is deployed{hint}")
    return definition


class SpecCache:
    """Parsed specs per deployed version.  Versions are immutable, so entries never go stale."""

    def __init__(self, on_parse: Callable[[list[Any]], None] | None = None) -> None:
        # Called with every spec parsed, before it is used (the engine adopts timers there).
        self._on_parse = on_parse
        self._lock = threading.Lock()
        self._specs: dict[int, tuple[Any, dict[str, Any], set[str]]] = {}
        self._bundles: dict[tuple[int, tuple[tuple[str, int], ...]], SpecBundle] = {}

    def _parse(self, definition: ProcessDefinition) -> tuple[Any, dict[str, Any], set[str]]:
        """The spec, the subprocess specs found in its own file, and the keys it calls elsewhere."""
        cached = self._specs.get(definition.id)
        if cached is not None:
            return cached
        parser = new_parser()
        root = parse_xml(definition.bpmn_xml.encode("utf-8"), definition.filename)
        try:
            parser.add_bpmn_xml(root, definition.filename)
            spec = parser.get_spec(definition.key)
            local = parser.get_subprocess_specs(definition.key, require_call_activity_specs=False)
        except (ValidationException, SpiffWorkflowException) as exc:  # pragma: no cover - checked at deploy
            raise DefinitionError([Finding(str(exc), definition.filename, definition.key)]) from exc
        external = {name for name, sub in local.items() if sub is None}
        found = {name: sub for name, sub in local.items() if sub is not None}
        if self._on_parse is not None:
            self._on_parse([spec, *found.values()])
        self._specs[definition.id] = (spec, found, external)
        return spec, found, external

    def resolve_calls(self, session: Session, definition: ProcessDefinition) -> dict[str, int]:
        """Pin every process this version calls in other files to its newest deployed version."""
        pins: dict[str, int] = {}
        pending = [definition]
        while pending:
            current = pending.pop()
            with self._lock:
                _, _, external = self._parse(current)
            for key in sorted(external):
                if key in pins:
                    continue
                called = require_latest(session, key)
                pins[key] = called.id
                pending.append(called)
        return pins

    def bundle(self, session: Session, definition_id: int, pins: dict[str, int]) -> SpecBundle:
        cache_key = (definition_id, tuple(sorted(pins.items())))
        bundle = self._bundles.get(cache_key)
        if bundle is not None:
            return bundle
        with self._lock:
            definition = session.get(ProcessDefinition, definition_id)
            if definition is None:
                raise NotFound(f"process definition {definition_id} does not exist")
            spec, subprocess_specs, _ = self._parse(definition)
            subprocess_specs = dict(subprocess_specs)
            for key, called_id in pins.items():
                called = session.get(ProcessDefinition, called_id)
                if called is None:
                    raise NotFound(f"process definition {called_id} ({key}) does not exist")
                called_spec, called_subs, _ = self._parse(called)
                subprocess_specs[key] = called_spec
                for name, sub in called_subs.items():
                    subprocess_specs.setdefault(name, sub)
            bundle = SpecBundle(definition_id, definition.key, spec, subprocess_specs)
            self._bundles[cache_key] = bundle
            return bundle
