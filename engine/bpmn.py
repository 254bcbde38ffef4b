"""Reading BPMN safely and turning it into SpiffWorkflow specs (stage 1 of validation).

Every file is parsed here with a hardened lxml parser (no DTD, no entities, no
network, a size limit) before SpiffWorkflow sees it; SpiffWorkflow only ever
receives an already-parsed tree.  Every problem becomes a :class:`Finding` that
names the file, the element and what to change.  What a well-formed diagram
needs to *run* (stage 2) and the council's rules (stage 3) are in
:mod:`engine.validation`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from .errors import DefinitionError, Finding

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

    # The <process> element, its SpiffWorkflow spec and those of its embedded subprocesses.
    element: Any = None
    spec: Any = None
    subprocess_specs: dict[str, Any] = field(default_factory=dict)

    @property
    def called_keys(self) -> set[str]:
        return set(self.calls)


def new_parser() -> SpiffBpmnParser:
    return SpiffBpmnParser(validator=VALIDATOR)


def load_files(files: list[tuple[str, bytes]]) -> tuple[list[ParsedProcess], list[Finding]]:
    """Stage 1: safe parse, the BPMN 2.0 schema, and what SpiffWorkflow needs to build a spec.

    Returns every executable process in the files and every finding; a process whose file
    has a finding has no spec.  Never raises for a bad file.
    """
    findings: list[Finding] = []
    parser = new_parser()
    processes: list[ParsedProcess] = []
    roots: dict[str, etree._Element] = {}
    for filename, content in files:
        try:
            root = parse_xml(content, filename)
        except DefinitionError as exc:
            findings.extend(exc.findings)
            continue
        roots[filename] = root
        try:
            parser.add_bpmn_xml(root, filename)
        except Exception as exc:
            findings.append(finding_from_spiff(exc, filename, root))
            continue
        digest = hashlib.sha256(content).hexdigest()
        every = list(root.iterfind(f"{{{BPMN_NS}}}process"))
        executable = [p for p in every if p.get("isExecutable", "true") != "false"]
        if not every:
            findings.append(
                Finding(
                    "the file holds no process, only a collaboration or other definitions; "
                    "add a pool with its process to deploy it",
                    filename,
                    root.get("id"),
                    root.get("name"),
                )
            )
        elif not executable:
            for process in every:
                findings.append(
                    Finding(
                        'the process is marked not executable (isExecutable="false"): it can be viewed and '
                        'edited but not deployed; set isExecutable="true" (in the modeler: the pool\'s '
                        '"Executable" box) once every step has what it needs to run',
                        filename,
                        process.get("id"),
                        process.get("name"),
                        _line(process),
                    )
                )
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
                    element=process,
                )
            )
    # Specs for the files that read cleanly, so their own problems are reported alongside.
    unreadable = {f.file for f in findings}
    for process in processes:
        if process.filename in unreadable:
            continue
        try:
            process.spec = parser.get_spec(process.key)
            # Embedded subprocesses; call activities to other files are checked by the caller,
            # which knows what is already deployed.
            found = parser.get_subprocess_specs(process.key, require_call_activity_specs=False)
            process.subprocess_specs = {k: v for k, v in found.items() if v is not None}
        except Exception as exc:
            findings.append(finding_from_spiff(exc, process.filename, roots.get(process.filename)))
    return processes, findings


def _line(element: Any) -> int | None:
    line = getattr(element, "sourceline", None)
    return line if isinstance(line, int) else None


def _by_id(root: etree._Element | None, element_id: str | None) -> etree._Element | None:
    if root is None or not element_id:
        return None
    return next((e for e in root.iter() if isinstance(e.tag, str) and e.get("id") == element_id), None)


def _by_name(root: etree._Element | None, localname: str, name: str) -> etree._Element | None:
    if root is None:
        return None
    wanted = " ".join(name.split())
    return next(
        (
            e
            for e in root.iter(f"{{{BPMN_NS}}}{localname}")
            if " ".join((e.get("name") or "").split()) == wanted
        ),
        None,
    )


# SpiffWorkflow's messages, in words a process owner can act on: (pattern, message, how to find the
# element when SpiffWorkflow does not say which one it means).
_TRANSLATIONS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"Data Store with name (?P<name>.*) has no implementation", re.S),
        "the data store is not connected to anything Frontdoor can read or write; remove it (and its "
        "data associations) or keep the diagram for viewing only",
    ),
    (
        re.compile(r"A Service Task must have an operator"),
        "the service task names no adapter, so Frontdoor cannot run it; choose an adapter for it "
        "(spiffworkflow:serviceTaskOperator), or make it a user task or a script task",
    ),
    (
        re.compile(r"Cannot resolve data(Input|Output)Association"),
        "a data association of this task points at a data object that is not defined in the same "
        "process; connect it to a data object of this process or remove it",
    ),
    (
        re.compile(r"Exactly one start event is required in a SubWorkflow Task; found (?P<n>\d+)"),
        "a sub-process needs exactly one start event inside it; add one (or remove the extra ones)",
    ),
    (
        re.compile(r"A multiinstance task must specify a cardinality or a loop input data reference"),
        "the activity repeats (multi-instance) but says neither how many times (loop cardinality) nor "
        "over which collection (input data); set one of them, or make it a single activity",
    ),
    (
        re.compile(r"No start event found|Could not find a start event", re.I),
        "the process has no start event; add one",
    ),
]


def finding_from_spiff(exc: BaseException, filename: str, root: etree._Element | None = None) -> Finding:
    """A finding from whatever SpiffWorkflow (or lxml) raised while reading the diagram."""
    if isinstance(exc, ValidationException):
        raw = str(exc.args[0]) if exc.args else str(exc)
        element_id, element_name = exc.id or None, exc.name or None
        line = exc.line_number if isinstance(exc.line_number, int) else None
        file = exc.file_name or filename
    else:
        raw = str(exc) or type(exc).__name__
        task_spec = getattr(exc, "task_spec", None)
        element_id = (
            (getattr(task_spec, "bpmn_id", None) or getattr(task_spec, "name", None)) if task_spec else None
        )
        element_name = getattr(task_spec, "bpmn_name", None) if task_spec else None
        line, file = None, filename
        if not isinstance(exc, SpiffWorkflowException):
            raw = f"the diagram could not be read ({type(exc).__name__}: {raw})"
    message = _explain(raw)
    for pattern, better in _TRANSLATIONS:
        match = pattern.search(raw)
        if match:
            message = better
            named = match.groupdict().get("name")
            if named and not element_id:
                found = _by_name(root, "dataStore", named)
                if found is None:
                    found = _by_name(root, "dataStoreReference", named)
                if found is not None:
                    element_id, element_name, line = found.get("id"), found.get("name"), _line(found)
            break
    if line is None:
        line = _line(_by_id(root, element_id))
    return Finding(message, file, element_id, element_name, line)


def _explain(message: str) -> str:
    """Add the fix to the few messages that do not say it."""
    message = " ".join(message.split())
    if "schema" in message.lower() or "Element '" in message:
        return f"{message} (the file does not follow the BPMN 2.0 schema at this element; correct it there)"
    return message


SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
GATEWAYS = ("exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway")
