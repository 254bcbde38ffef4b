"""Reading BPMN safely and turning it into SpiffWorkflow specs.

Every file is parsed here with a hardened lxml parser (no DTD, no entities, no
network, a size limit) before SpiffWorkflow sees it; SpiffWorkflow only ever
receives an already-parsed tree.  Every problem becomes a :class:`Finding` that
names the file, the element and what to change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from .errors import DefinitionError, Finding
from .expressions import ForbiddenExpression, check_source

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
MAX_BPMN_BYTES = 5 * 1024 * 1024
NSMAP = {"bpmn": BPMN_NS}


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_pis=True,
    )


def parse_xml(content: bytes, filename: str) -> etree._Element:
    """Parse ``content`` as untrusted XML; refuse DTDs and entities outright."""
    if len(content) > MAX_BPMN_BYTES:
        raise DefinitionError(
            [Finding(f"the file is {len(content):,} bytes; the limit is {MAX_BPMN_BYTES:,}", filename)]
        )
    # A DOCTYPE is how both entity expansion ("billion laughs") and external entities get in;
    # BPMN never needs one, so refuse it before lxml reads any declaration.
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content or b"<\x00!\x00" in content:
        raise DefinitionError(
            [Finding("DOCTYPE and ENTITY declarations are not allowed in BPMN files; remove them", filename)]
        )
    try:
        root = etree.fromstring(content, safe_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        raise DefinitionError(
            [Finding(f"not well-formed XML: {exc.msg}; fix the XML syntax there", filename, line=line)]
        ) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise DefinitionError([Finding("DOCTYPE declarations are not allowed in BPMN files", filename)])
    if root.tag != f"{{{BPMN_NS}}}definitions":
        raise DefinitionError(
            [
                Finding(
                    f"this is not a BPMN 2.0 file: the root element is <{etree.QName(root).localname}>, "
                    f"expected <definitions> in the namespace {BPMN_NS}",
                    filename,
                )
            ]
        )
    return root


@dataclass
class ParsedProcess:
    key: str
    name: str | None
    filename: str
    content: bytes
    sha256: str
    # Called process key -> the (id, name) of each callActivity element that calls it.
    calls: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)

    # (element id, element name, form file) for every task that names a form.
    forms: list[tuple[str, str | None, str]] = field(default_factory=list)

    @property
    def called_keys(self) -> set[str]:
        return set(self.calls)


def _finding_from_spiff(exc: Exception, filename: str) -> Finding:
    if isinstance(exc, ValidationException):
        line = exc.line_number if isinstance(exc.line_number, int) else None
        message = str(exc.args[0]) if exc.args else str(exc)
        return Finding(_explain(message), exc.file_name or filename, exc.id or None, exc.name or None, line)
    task_spec = getattr(exc, "task_spec", None)
    if task_spec is not None:
        return Finding(
            _explain(str(exc)),
            filename,
            getattr(task_spec, "bpmn_id", None) or task_spec.name,
            getattr(task_spec, "bpmn_name", None),
        )
    return Finding(_explain(str(exc)), filename)


def _explain(message: str) -> str:
    """Add the fix to the few messages that do not say it."""
    message = message.strip()
    if "schema" in message.lower() or "Element '" in message:
        return f"{message} (the file does not follow the BPMN 2.0 schema at this element)"
    return message


def new_parser() -> SpiffBpmnParser:
    return SpiffBpmnParser(validator=VALIDATOR)


def read_process_files(files: list[tuple[str, bytes]]) -> list[ParsedProcess]:
    """Validate a set of files deployed together; return each executable process in them.

    All-or-nothing: any finding in any file raises :class:`DefinitionError` with
    every finding collected, and nothing is returned.
    """
    findings: list[Finding] = []
    parser = new_parser()
    processes: list[ParsedProcess] = []
    for filename, content in files:
        try:
            root = parse_xml(content, filename)
        except DefinitionError as exc:
            findings.extend(exc.findings)
            continue
        try:
            parser.add_bpmn_xml(root, filename)
        except (ValidationException, SpiffWorkflowException) as exc:
            findings.append(_finding_from_spiff(exc, filename))
            continue
        findings.extend(_unread_gateway_properties(root, filename))
        digest = hashlib.sha256(content).hexdigest()
        executable = [
            p for p in root.iterfind(f"{{{BPMN_NS}}}process") if p.get("isExecutable", "true") != "false"
        ]
        if not executable:
            findings.append(Finding('the file has no executable process (isExecutable="true")', filename))
        for process in executable:
            calls: dict[str, list[tuple[str, str | None]]] = {}
            for call in process.iter(f"{{{BPMN_NS}}}callActivity"):
                if call.get("calledElement"):
                    calls.setdefault(call.get("calledElement"), []).append(
                        (call.get("id", ""), call.get("name"))
                    )
            processes.append(
                ParsedProcess(
                    key=process.get("id", ""),
                    name=process.get("name"),
                    filename=filename,
                    content=content,
                    sha256=digest,
                    calls=calls,
                )
            )
    if findings:
        raise DefinitionError(findings)
    for process in processes:
        try:
            spec = parser.get_spec(process.key)
            # Embedded subprocesses; call activities to other files are checked by the caller,
            # which knows what is already deployed.
            found = parser.get_subprocess_specs(process.key, require_call_activity_specs=False)
            subprocesses = {k: v for k, v in found.items() if v is not None}
        except (ValidationException, SpiffWorkflowException) as exc:
            findings.append(_finding_from_spiff(exc, process.filename))
            continue
        findings.extend(check_executable(spec, process.filename))
        for task_spec in [spec, *subprocesses.values()]:
            for inner in getattr(task_spec, "task_specs", {}).values():
                props = (getattr(inner, "extensions", None) or {}).get("properties") or {}
                for prop in ("formJsonSchemaFilename", "formUiSchemaFilename"):
                    if props.get(prop):
                        process.forms.append((inner.bpmn_id or inner.name, inner.bpmn_name, props[prop]))
    if findings:
        raise DefinitionError(findings)
    return processes


SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
GATEWAYS = ("exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway")


def _unread_gateway_properties(root: etree._Element, filename: str) -> list[Finding]:
    """SpiffWorkflow reads no extension properties on gateways: say so rather than ignore them."""
    findings = []
    for tag in GATEWAYS:
        for gateway in root.iter(f"{{{BPMN_NS}}}{tag}"):
            if next(gateway.iter(f"{{{SPIFF_NS}}}property"), None) is not None:
                findings.append(
                    Finding(
                        "properties on a gateway are never applied; move them to the task or event "
                        "before or after it",
                        filename,
                        gateway.get("id"),
                        gateway.get("name"),
                    )
                )
    return findings


def check_executable(spec: Any, filename: str) -> list[Finding]:
    """Catch what SpiffWorkflow would only discover when a case reaches the element."""
    findings: list[Finding] = []
    for task_spec in spec.task_specs.values():
        for condition, _target in getattr(task_spec, "cond_task_specs", None) or []:
            expression = condition.args[0] if condition is not None and condition.args else None
            if isinstance(expression, str):
                problem = _syntax_problem(expression, "eval")
                if problem:
                    findings.append(
                        Finding(
                            f"the condition {expression!r} is not a valid expression: {problem}",
                            filename,
                            getattr(task_spec, "bpmn_id", None),
                            getattr(task_spec, "bpmn_name", None),
                        )
                    )
        for attribute in ("script", "prescript", "postscript"):
            script = getattr(task_spec, attribute, None)
            if isinstance(script, str) and script.strip():
                problem = _syntax_problem(script, "exec")
                if problem:
                    findings.append(
                        Finding(
                            f"the {attribute} does not parse: {problem}",
                            filename,
                            getattr(task_spec, "bpmn_id", None),
                            getattr(task_spec, "bpmn_name", None),
                        )
                    )
    return findings


def _syntax_problem(source: str, mode: str) -> str | None:
    """Why the restricted evaluator would refuse ``source``, or None if it accepts it."""
    try:
        check_source(source, mode)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno}, column {exc.offset}); correct the Python syntax"
    except ForbiddenExpression as exc:
        return f"{exc}; diagrams may only compute with the process data and the registered functions"
    return None
