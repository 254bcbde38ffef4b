"""One validation pipeline for BPMN files, used by deploy, ``frontdoor validate`` and the editor.

Three stages, in order; a file that fails the first is not looked at further:

1. **Readable** (:func:`engine.bpmn.load_files`): safe XML (no DTD, no entities, a size
   limit), the BPMN 2.0 schema, and what SpiffWorkflow needs to build a process.
2. **Executable** (:func:`check_executable`): every user task is in a lane named for a
   role; every form it names exists; every condition, script, timer and property
   expression is accepted by the restricted evaluator; every service task names an
   adapter the engine knows; escalation levels are 1, 2 or 3.
3. **The council's rules** (:func:`check_rules`): data in ``processes/rules.json``, each
   rule one of a few generic kinds that know nothing of what the elements mean:

   ``every_path_reaches``
       from each element matching ``from``, every way the process can go on reaches an
       element matching ``to`` before it ends (a parallel split needs one branch to);
   ``every_path_passes``
       no token reaches an element matching ``to`` without first passing an element
       matching each of ``through`` (a parallel join waits for all its branches);
       elements matching ``unless`` are exempt (an explicit, visible waiver);
   ``every_element_has``
       each element matching ``elements`` also matches one of ``one_of``;
   ``expression_is``
       the timer or a property of each element matching ``elements`` works out to
       ``expect``, after substituting what the process's scripts assign to the names in
       it (``icpc_target_at`` -> ``working_days(icpc_days, ...)`` -> ``working_days(15, ...)``);
       with ``when``, a process holding an element matching ``when`` must have one.

   A selector is an object (all keys must hold) or a list of them (any may):
   ``{"type": "userTask"}``, ``{"id": "x"}``, ``{"property": "dueDate"}``,
   ``{"property": "p", "value": "v"}``, ``{"calledElement": "key"}``, ``{"hasTimer": true}``.

Every finding names the file, the element (id and name) and what to change; the web editor
draws them on the diagram by element id.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lxml import etree

from .bpmn import BPMN_NS, GATEWAYS, SPIFF_NS, ParsedProcess, load_files
from .errors import Finding
from .expressions import ForbiddenExpression, check_source

# Properties whose values the engine evaluates as expressions (README, "Writing processes").
EXPRESSION_PROPERTIES = ("dueDate", "assignee", "title", "letter.data")
EXPRESSION_PROPERTY_PREFIXES = ("record.", "case.", "clock.")
FORM_PROPERTIES = ("formJsonSchemaFilename", "formUiSchemaFilename")


# ------------------------------------------------------------------------------ context


@dataclass(frozen=True)
class ValidationContext:
    """What validation checks a diagram against.

    ``roles`` maps each normalised role name and key to the role's name (None: lanes are not
    checked); ``form_exists`` says whether a form file exists (None: forms are not checked);
    ``services`` are the service-task adapters' names; ``rules`` the council's rules.
    """

    roles: Mapping[str, str] | None = None
    form_exists: Callable[[str], bool] | None = None
    services: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_registry(cls, registry: Any) -> ValidationContext:
        """The context of a processes folder (:class:`engine.registry.Registry`).

        Raises ValueError naming the file when ``roles.json`` or ``rules.json`` is malformed.
        """
        roles: dict[str, str] = {}
        for role in registry.roles():
            for label in (role.get("key"), role.get("name")):
                if isinstance(label, str) and label:
                    roles[normalise_role_name(label)] = str(role.get("name") or role.get("key"))
        return cls(
            roles=roles,
            form_exists=registry.form_file_exists,
            services=frozenset(registry.service_tasks),
            rules=parse_rules(registry.rules(), str(registry.root / "rules.json")),
        )


def normalise_role_name(name: str) -> str:
    """As :func:`engine.directory.normalise_role_name`: lanes match roles ignoring case and spacing."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


# ------------------------------------------------------------------------------ entry points


@dataclass
class Checked:
    findings: list[Finding]
    processes: list[ParsedProcess]


def validate(content: bytes, filename: str, context: ValidationContext) -> list[Finding]:
    """Every finding for one BPMN file; an empty list means it can be deployed."""
    return validate_files([(filename, content)], context)


def validate_files(files: list[tuple[str, bytes]], context: ValidationContext) -> list[Finding]:
    """Every finding for files deployed together (call activities may cross them)."""
    return check_files(files, context).findings


def check_files(files: list[tuple[str, bytes]], context: ValidationContext) -> Checked:
    """The three stages.  A file that fails stage 1 gets no more findings; the others are checked on.

    Never raises for a bad file: anything unexpected becomes a finding.
    """
    try:
        processes, findings = load_files(files)
        # Stage 1 failed for these files: nothing further is said about them.
        readable = [
            p for p in processes if p.spec is not None and p.filename not in {f.file for f in findings}
        ]
        for process in readable:
            findings.extend(check_executable(process, context))
        for process in readable:
            findings.extend(check_rules(process, context.rules))
        return Checked([_tidy(f) for f in findings], processes)
    except Exception as exc:
        names = ", ".join(name for name, _ in files)
        return Checked(
            [
                Finding(
                    f"the diagram could not be checked ({type(exc).__name__}: {exc}); "
                    "simplify the element it names or report this file to the Frontdoor team",
                    names or None,
                )
            ],
            [],
        )


def _tidy(finding: Finding) -> Finding:
    """One line per finding: element names drawn over several lines in a modeler keep their words only."""
    name = " ".join(finding.element_name.split()) if finding.element_name else finding.element_name
    return replace(finding, message=" ".join(finding.message.split()), element_name=name or None)


def format_finding(finding: Finding) -> str:
    """``FILE: ELEMENT_ID (name): message`` (the line, where known, ends the message)."""
    element = finding.element_id or "-"
    if finding.element_name:
        element += f" ({finding.element_name})"
    where = (
        f" (line {finding.line})" if finding.line and f"line {finding.line}" not in finding.message else ""
    )
    return f"{finding.file or '<bpmn>'}: {element}: {finding.message}{where}"


# ------------------------------------------------------------------------------ stage 2


def _element(task_spec: Any) -> tuple[str | None, str | None]:
    return getattr(task_spec, "bpmn_id", None) or getattr(task_spec, "name", None), getattr(
        task_spec, "bpmn_name", None
    )


def _properties(task_spec: Any) -> dict[str, str]:
    props = (getattr(task_spec, "extensions", None) or {}).get("properties") or {}
    return {str(k): "" if v is None else str(v) for k, v in props.items()}


def _syntax_problem(source: str, mode: str) -> str | None:
    """Why the restricted evaluator would refuse ``source``, or None if it accepts it."""
    try:
        check_source(source, mode)
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno}, column {exc.offset}); correct the Python syntax"
    except ForbiddenExpression as exc:
        return f"{exc}; diagrams may only compute with the process data and the registered functions"
    except (ValueError, RecursionError, MemoryError) as exc:  # ast.parse on pathological input
        return f"it cannot be read ({type(exc).__name__}); shorten it"
    return None


def check_executable(process: ParsedProcess, context: ValidationContext) -> list[Finding]:
    """Stage 2: what SpiffWorkflow would only discover when a case reaches the element."""
    findings: list[Finding] = []
    filename = process.filename
    lines: dict[str, int] = {}
    if process.element is not None:
        for element in process.element.getroottree().getroot().iter():
            if isinstance(element.tag, str) and element.get("id") and isinstance(element.sourceline, int):
                lines.setdefault(element.get("id"), element.sourceline)

    def add(message: str, task_spec: Any) -> None:
        element_id, element_name = _element(task_spec)
        findings.append(Finding(message, filename, element_id, element_name, lines.get(element_id or "")))

    # Sub-process specs from other files (call activities) are checked as their own file's.
    own = [spec for spec in process.subprocess_specs.values() if getattr(spec, "file", filename) == filename]
    specs = [process.spec, *own]
    seen: set[int] = set()
    for spec in specs:
        for task_spec in getattr(spec, "task_specs", {}).values():
            if id(task_spec) in seen:
                continue
            seen.add(id(task_spec))
            _check_task_spec(task_spec, context, add, process)
    if process.element is not None:
        findings.extend(_unread_gateway_properties(process.element, filename))
    return findings


def _check_task_spec(
    task_spec: Any, context: ValidationContext, add: Callable[[str, Any], None], process: ParsedProcess
) -> None:
    props = _properties(task_spec)
    element_id, element_name = _element(task_spec)

    def refuse_unless_valid(source: str, mode: str, what: str) -> None:
        """A finding ``what: why`` unless ``source`` passes the restricted evaluator's checks."""
        problem = _syntax_problem(source, mode)
        if problem:
            add(f"{what}: {problem}", task_spec)

    if getattr(task_spec, "manual", False) and context.roles is not None:
        lane = getattr(task_spec, "lane", None)
        choices = ", ".join(sorted(set(context.roles.values())))
        if not lane and not props.get("assignee", "").strip():
            add(
                f"the user task is in no lane and names no assignee, so nobody is offered it; put it (or the "
                f"sub-process holding it) in a lane named for a role ({choices}), or give it an assignee",
                task_spec,
            )
        elif lane and normalise_role_name(str(lane)) not in context.roles:
            add(
                f"its lane '{lane}' is not a role, so nobody is offered the task; rename the lane to one "
                f"of the roles in processes/roles.json ({choices})",
                task_spec,
            )

    for prop in FORM_PROPERTIES:
        form = props.get(prop)
        if form:
            process.forms.append((element_id or "", element_name, form))
            if context.form_exists is not None and not context.form_exists(form):
                add(
                    f"names the form {form}, which is not in processes/forms/; add it or fix the name",
                    task_spec,
                )

    for condition, _target in getattr(task_spec, "cond_task_specs", None) or []:
        expression = condition.args[0] if condition is not None and condition.args else None
        if isinstance(expression, str):
            refuse_unless_valid(expression, "eval", f"the condition {expression!r} is not a valid expression")

    for attribute in ("script", "prescript", "postscript"):
        script = getattr(task_spec, attribute, None)
        if isinstance(script, str) and script.strip():
            label = {"script": "script", "prescript": "pre-script", "postscript": "post-script"}[attribute]
            refuse_unless_valid(script, "exec", f"the {label} is refused")

    for expression in _timer_expressions(task_spec):
        problem = _timer_problem(expression)
        if problem:
            add(f"the timer expression {expression!r} is refused: {problem}", task_spec)

    for name, value in props.items():
        is_expression = name in EXPRESSION_PROPERTIES or name.startswith(EXPRESSION_PROPERTY_PREFIXES)
        if is_expression and value.strip():
            refuse_unless_valid(value, "eval", f"the property {name} = {value!r} is not a valid expression")
    level = props.get("escalationLevel")
    if level is not None and level.strip() not in ("1", "2", "3"):
        add(
            f"escalationLevel is {level!r}; it must be 1, 2 or 3 (who is told: see escalation.json)",
            task_spec,
        )

    operation = getattr(task_spec, "operation_name", None)
    if operation is not None or type(task_spec).__name__ == "ServiceTask":
        if not operation:
            add(
                "the service task names no adapter; choose one (spiffworkflow:serviceTaskOperator)", task_spec
            )
        elif operation not in context.services:
            known = ", ".join(sorted(context.services)) or "none are installed"
            add(
                f"the service task calls the adapter '{operation}', which Frontdoor does not have "
                f"(adapters: {known}); choose one of them or make this a user task",
                task_spec,
            )
        for param, spec in (getattr(task_spec, "operation_params", None) or {}).items():
            given = spec.get("value") if isinstance(spec, dict) else None
            if isinstance(given, str) and given.strip():
                refuse_unless_valid(
                    given, "eval", f"the service task parameter {param} = {given!r} is refused"
                )

    for attribute in ("cardinality", "condition", "completion_condition"):
        loop = getattr(task_spec, attribute, None)
        if isinstance(loop, str) and loop.strip():
            refuse_unless_valid(
                loop, "eval", f"the multi-instance {attribute.replace('_', ' ')} {loop!r} is refused"
            )


def _timer_expressions(task_spec: Any) -> list[str]:
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    definition = getattr(task_spec, "event_definition", None)
    if definition is None:
        return []
    found = []
    for candidate in [definition, *(getattr(definition, "event_definitions", None) or [])]:
        if isinstance(candidate, TimerEventDefinition) and isinstance(candidate.expression, str):
            found.append(candidate.expression)
    return found


def _timer_problem(expression: str) -> str | None:
    from .timers import _ISO_LITERAL

    text = expression.strip()
    if not text:
        return (
            "it is empty; give an ISO 8601 date, duration or cycle, or an expression such as working_days(2)"
        )
    if _ISO_LITERAL.match(text):
        return None
    return _syntax_problem(text, "eval")


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


# ------------------------------------------------------------------------------ stage 3: rules


_SELECTOR_KEYS = {"type", "id", "property", "value", "calledElement", "hasTimer"}
_RULE_KINDS = {"every_path_reaches", "every_path_passes", "every_element_has", "expression_is"}


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    title: str
    fix: str
    spec: Mapping[str, Any] = field(default_factory=dict)


def parse_rules(raw: Iterable[Any], where: str = "rules.json") -> tuple[Rule, ...]:
    """Check the rules file's shape once, so a typo there is reported as such and not as a diagram's fault."""
    rules = []
    for index, item in enumerate(raw):
        label = f"{where}: rule {index + 1}"
        if not isinstance(item, dict):
            raise ValueError(f"{label} is not an object")
        rule_id = item.get("id")
        label = f"{where}: rule {rule_id!r}" if rule_id else label
        for key in ("id", "kind", "title", "fix"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ValueError(f"{label} needs a text {key!r}")
        if item["kind"] not in _RULE_KINDS:
            raise ValueError(f"{label}: kind {item['kind']!r} is not one of {', '.join(sorted(_RULE_KINDS))}")
        required = {
            "every_path_reaches": ("from", "to"),
            "every_path_passes": ("to", "through"),
            "every_element_has": ("elements", "one_of"),
            "expression_is": ("elements", "subject", "expect"),
        }[item["kind"]]
        for key in required:
            if key not in item:
                raise ValueError(f"{label} ({item['kind']}) needs {key!r}")
        for key in ("from", "to", "elements", "one_of", "unless", "when"):
            if key in item:
                _check_selector(item[key], f"{label}: {key}")
        if item["kind"] == "every_path_passes":
            through = item["through"]
            if not isinstance(through, list) or not through:
                raise ValueError(f"{label}: 'through' must be a list of {{label, select}}")
            for step in through:
                if (
                    not isinstance(step, dict)
                    or not isinstance(step.get("label"), str)
                    or "select" not in step
                ):
                    raise ValueError(f"{label}: each of 'through' needs a 'label' and a 'select'")
                _check_selector(step["select"], f"{label}: through")
        if item["kind"] == "expression_is":
            subject = item["subject"]
            if subject != "timer" and not (isinstance(subject, str) and subject.startswith("property:")):
                raise ValueError(f"{label}: subject must be 'timer' or 'property:NAME'")
            try:
                ast.parse(str(item["expect"]), mode="eval")
            except SyntaxError as exc:
                raise ValueError(f"{label}: expect is not an expression ({exc.msg})") from None
        rules.append(Rule(item["id"], item["kind"], item["title"].strip(), item["fix"].strip(), item))
    return tuple(rules)


def _check_selector(selector: Any, label: str) -> None:
    options = selector if isinstance(selector, list) else [selector]
    for option in options:
        if not isinstance(option, dict) or not option:
            raise ValueError(f'{label}: a selector is an object such as {{"type": "userTask"}}')
        unknown = set(option) - _SELECTOR_KEYS
        if unknown:
            raise ValueError(f"{label}: unknown selector key(s) {', '.join(sorted(unknown))}")


@dataclass
class Node:
    id: str
    name: str | None
    tag: str
    element: Any
    properties: dict[str, str]
    timer: str | None = None
    attached_to: str | None = None
    interrupting: bool = True
    outgoing: list[str] = field(default_factory=list)
    incoming: list[str] = field(default_factory=list)
    conditional_out: bool = False
    boundaries: list[str] = field(default_factory=list)

    def label(self) -> str:
        return f"'{self.name}'" if self.name else self.id


_FLOW_NODES = {
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
    "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    *GATEWAYS,
}  # fmt: skip
_SCOPES = ("subProcess", "transaction", "adHocSubProcess")


class Graph:
    """The flow nodes of one process or sub-process and the sequence flows between them."""

    def __init__(self, scope: etree._Element) -> None:
        self.nodes: dict[str, Node] = {}
        for child in scope:
            if not isinstance(child.tag, str):
                continue
            qname = etree.QName(child)
            if qname.namespace != BPMN_NS or qname.localname not in _FLOW_NODES or not child.get("id"):
                continue
            self.nodes[child.get("id")] = Node(
                id=child.get("id"),
                name=child.get("name"),
                tag=qname.localname,
                element=child,
                properties=_element_properties(child),
                timer=_element_timer(child),
                attached_to=child.get("attachedToRef"),
                interrupting=child.get("cancelActivity", "true") != "false",
            )
        for flow in scope.iterfind(f"{{{BPMN_NS}}}sequenceFlow"):
            source, target = (
                self.nodes.get(flow.get("sourceRef", "")),
                self.nodes.get(flow.get("targetRef", "")),
            )
            if source is None or target is None:
                continue
            source.outgoing.append(target.id)
            target.incoming.append(source.id)
            if flow.find(f"{{{BPMN_NS}}}conditionExpression") is not None:
                source.conditional_out = True
        for node in self.nodes.values():
            if node.attached_to in self.nodes:
                self.nodes[node.attached_to].boundaries.append(node.id)

    def has_timer(self, node: Node) -> bool:
        return node.timer is not None or any(self.nodes[b].timer is not None for b in node.boundaries)

    def matches(self, node: Node, selector: Any) -> bool:
        options = selector if isinstance(selector, list) else [selector]
        return any(self._matches_one(node, option) for option in options)

    def _matches_one(self, node: Node, option: Mapping[str, Any]) -> bool:
        types = option.get("type")
        if types is not None and node.tag not in (types if isinstance(types, list) else [types]):
            return False
        if "id" in option and node.id != option["id"]:
            return False
        if "property" in option:
            if option["property"] not in node.properties:
                return False
            if "value" in option and node.properties[option["property"]].strip() != str(option["value"]):
                return False
        if "calledElement" in option and node.element.get("calledElement") != option["calledElement"]:
            return False
        return "hasTimer" not in option or self.has_timer(node) == bool(option["hasTimer"])

    def _parallel_split(self, node: Node) -> bool:
        # A parallel gateway, or an activity with several unconditioned outgoing flows (implicit split).
        return node.tag == "parallelGateway" or (
            node.tag not in GATEWAYS and len(node.outgoing) > 1 and not node.conditional_out
        )

    def must_reach(self, selector: Any) -> dict[str, bool]:
        """For each node: does every way on from it reach a node matching ``selector`` before an end?

        The greatest fixed point, so a loop that may turn for ever but can only leave towards the
        target counts as reaching it.
        """
        return self._fixed_point(True, lambda node, ok: self._reaches(node, selector, ok))

    def _reaches(self, node: Node, selector: Any, ok: dict[str, bool]) -> bool:
        if self.matches(node, selector):
            return True
        if not node.outgoing:
            normal = False
        elif self._parallel_split(node):
            normal = any(ok[t] for t in node.outgoing)
        else:
            normal = all(ok[t] for t in node.outgoing)
        interrupting = [b for b in node.boundaries if self.nodes[b].interrupting]
        return normal and all(ok[b] for b in interrupting)

    def reachable_without(self, selector: Any) -> dict[str, bool]:
        """For each node: can a token arrive there without having passed a node matching ``selector``?

        The least fixed point from the start events.  A parallel join with several incoming
        flows needs every one of them; a boundary event can fire while its activity is unfinished.
        """
        return self._fixed_point(False, lambda node, arrive: self._arrives(node, selector, arrive))

    def _fixed_point(self, start: bool, step: Callable[[Node, dict[str, bool]], bool]) -> dict[str, bool]:
        """Every node's value, from ``start`` everywhere, re-derived by ``step`` until nothing changes."""
        values = {node_id: start for node_id in self.nodes}
        changed = True
        while changed:
            changed = False
            for node in self.nodes.values():
                value = step(node, values)
                if value != values[node.id]:
                    values[node.id], changed = value, True
        return values

    def leaves(self, node_id: str, selector: Any, arrive: dict[str, bool]) -> bool:
        return arrive[node_id] and not self.matches(self.nodes[node_id], selector)

    def _arrives(self, node: Node, selector: Any, arrive: dict[str, bool]) -> bool:
        if node.tag == "startEvent" and not node.incoming:
            return True
        if node.attached_to in self.nodes:
            return arrive[node.attached_to]
        if node.tag == "parallelGateway" and len(node.incoming) > 1:
            return all(self.leaves(p, selector, arrive) for p in node.incoming)
        return any(self.leaves(p, selector, arrive) for p in node.incoming)

    def path_back(self, target: Node, selector: Any, arrive: dict[str, bool]) -> list[Node]:
        """One way from a start event to ``target`` that avoids ``selector`` (for the message)."""
        path, current, seen = [target], target, {target.id}
        while not (current.tag == "startEvent" and not current.incoming):
            if current.attached_to in self.nodes:
                options = [current.attached_to]
            else:
                options = [p for p in current.incoming if self.leaves(p, selector, arrive)]
            options = [p for p in options if p not in seen]
            if not options:
                break
            current = self.nodes[options[0]]
            seen.add(current.id)
            path.append(current)
        return list(reversed(path))

    def path_on(self, start: Node, selector: Any, ok: dict[str, bool]) -> list[Node]:
        """One way on from ``start`` that ends without reaching ``selector`` (for the message)."""
        path, current, seen = [start], start, {start.id}
        while current.outgoing or current.boundaries:
            options = [t for t in current.outgoing if not ok[t]]
            options += [b for b in current.boundaries if self.nodes[b].interrupting and not ok[b]]
            options = [t for t in options if t not in seen]
            if not options:
                break
            current = self.nodes[options[0]]
            seen.add(current.id)
            path.append(current)
        return path


def _element_properties(element: etree._Element) -> dict[str, str]:
    props: dict[str, str] = {}
    extensions = element.find(f"{{{BPMN_NS}}}extensionElements")
    if extensions is None:
        return props
    for holder in extensions.iterfind(f"{{{SPIFF_NS}}}properties"):
        for prop in holder.iterfind(f"{{{SPIFF_NS}}}property"):
            if prop.get("name"):
                props[prop.get("name", "")] = prop.get("value") or ""
    return props


def _element_timer(element: etree._Element) -> str | None:
    timer = element.find(f"{{{BPMN_NS}}}timerEventDefinition")
    if timer is None:
        return None
    for tag in ("timeDate", "timeDuration", "timeCycle"):
        found = timer.find(f"{{{BPMN_NS}}}{tag}")
        if found is not None:
            return (found.text or "").strip()
    return ""


def _graphs(process: etree._Element) -> list[Graph]:
    scopes = [process]
    for tag in _SCOPES:
        scopes.extend(process.iter(f"{{{BPMN_NS}}}{tag}"))
    return [Graph(scope) for scope in scopes]


def _route(nodes: list[Node]) -> str:
    if len(nodes) > 8:
        nodes = [*nodes[:3], *nodes[-4:]]
        return (
            " -> ".join(n.label() for n in nodes[:3])
            + " -> ... -> "
            + " -> ".join(n.label() for n in nodes[3:])
        )
    return " -> ".join(n.label() for n in nodes)


def check_rules(process: ParsedProcess, rules: Iterable[Rule]) -> list[Finding]:
    """Stage 3: each rule, on the process and each of its sub-processes."""
    if process.element is None:
        return []
    findings: list[Finding] = []
    graphs = _graphs(process.element)
    assignments = _script_assignments(process.element)
    for rule in rules:
        for graph in graphs:
            for node, message in _apply(rule, graph, assignments):
                findings.append(
                    Finding(
                        f"{rule.title}: {message}. {rule.fix}",
                        process.filename,
                        node.id,
                        node.name,
                        node.element.sourceline if isinstance(node.element.sourceline, int) else None,
                    )
                )
    return findings


def _apply(rule: Rule, graph: Graph, assignments: dict[str, ast.expr | None]) -> list[tuple[Node, str]]:
    spec = rule.spec
    problems: list[tuple[Node, str]] = []
    if rule.kind == "every_path_reaches":
        starts = [n for n in graph.nodes.values() if graph.matches(n, spec["from"])]
        if not starts:
            return []
        ok = graph.must_reach(spec["to"])
        for node in starts:
            if not ok[node.id]:
                route = _route(graph.path_on(node, spec["to"], ok))
                what = spec.get("to_label", "the required step")
                problems.append(
                    (node, f"the process can go on from here to its end without {what} ({route})")
                )
    elif rule.kind == "every_path_passes":
        targets = [
            n
            for n in graph.nodes.values()
            if graph.matches(n, spec["to"]) and not ("unless" in spec and graph.matches(n, spec["unless"]))
        ]
        for step in spec["through"] if targets else []:
            arrive = graph.reachable_without(step["select"])
            for node in targets:
                if graph.leaves(node.id, step["select"], arrive):
                    route = _route(graph.path_back(node, step["select"], arrive))
                    problems.append((node, f"this can be reached without {step['label']} ({route})"))
    elif rule.kind == "every_element_has":
        for node in graph.nodes.values():
            if graph.matches(node, spec["elements"]) and not graph.matches(node, spec["one_of"]):
                problems.append((node, str(spec.get("problem") or "it has none of what the rule asks for")))
    elif rule.kind == "expression_is":
        problems.extend(_expression_problems(spec, graph, assignments))
    return problems


def _expression_problems(
    spec: Mapping[str, Any], graph: Graph, assignments: dict[str, ast.expr | None]
) -> list[tuple[Node, str]]:
    problems: list[tuple[Node, str]] = []
    expected = ast.parse(str(spec["expect"]), mode="eval").body
    subject = str(spec["subject"])
    chosen = [n for n in graph.nodes.values() if graph.matches(n, spec["elements"])]
    if not chosen and "when" in spec:
        for node in graph.nodes.values():
            if graph.matches(node, spec["when"]):
                problems.append(
                    (node, f"no element of this process has the expression it needs ({spec['expect']})")
                )
    for node in chosen:
        if subject == "timer":
            source, what = node.timer, "its timer"
        else:
            name = subject.split(":", 1)[1]
            source, what = node.properties.get(name), f"its property {name}"
        if source is None or not source.strip():
            problems.append((node, f"{what} is missing; it must work out to {spec['expect']}"))
            continue
        try:
            actual = ast.parse(source.strip(), mode="eval").body
        except SyntaxError:
            problems.append((node, f"{what} ({source.strip()!r}) is not an expression"))
            continue
        resolved = _resolve(actual, assignments)
        if ast.dump(resolved) != ast.dump(expected):
            shown = ast.unparse(resolved)
            via = f" (through this process's scripts: {shown})" if shown != source.strip() else ""
            problems.append((node, f"{what} is {source.strip()}{via}, not {spec['expect']}"))
    return problems


def _script_assignments(process: etree._Element) -> dict[str, ast.expr | None]:
    """``name -> expression`` for each simple assignment in the process's scripts (None: assigned twice)."""
    sources = [e.text or "" for e in process.iter(f"{{{BPMN_NS}}}script")]
    for tag in ("preScript", "postScript"):
        sources.extend(e.text or "" for e in process.iter(f"{{{SPIFF_NS}}}{tag}"))
    found: dict[str, ast.expr | None] = {}
    for source in sources:
        try:
            tree = ast.parse(source, mode="exec")
        except (SyntaxError, ValueError, RecursionError):
            continue
        for statement in tree.body:
            targets: list[ast.expr] = []
            if isinstance(statement, ast.Assign):
                targets = statement.targets
            elif isinstance(statement, ast.AugAssign | ast.AnnAssign):
                targets = [statement.target]
            for target in targets:
                if not isinstance(target, ast.Name):
                    continue
                value = statement.value if isinstance(statement, ast.Assign) else None
                if target.id in found and (
                    value is None or ast.dump(value) != ast.dump(found[target.id] or ast.Pass())
                ):
                    found[target.id] = None
                elif target.id not in found:
                    found[target.id] = value
    return found


def _resolve(expression: ast.expr, assignments: dict[str, ast.expr | None], depth: int = 0) -> ast.expr:
    """Substitute what the scripts assign (once) to the names in ``expression``, a few levels deep."""
    if depth > 10:
        return expression

    class Substitute(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            value = assignments.get(node.id)
            if value is None:
                return node
            return _resolve(value, assignments, depth + 1)

    copy = ast.parse(ast.unparse(expression), mode="eval").body
    result = Substitute().visit(copy)
    assert isinstance(result, ast.expr)
    return result
