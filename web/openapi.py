"""The JSON API's OpenAPI 3.1 document, and the schemas the API's handlers validate with.

One source of truth: ``web.api`` validates request bodies with :data:`SCHEMAS` and query
parameters with :data:`PARAMETERS`, and the document served at ``/api/openapi.json`` is built
from the same dicts.  The contact's request body is the contact process's start form, read from
``processes/forms/`` by the engine's registry (the very schema ``Engine.start_for_subjects``
validates with); every task form is published as ``components/schemas/form.<name>`` so a client
knows what ``data`` a task's ``complete`` takes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from engine.core import Engine

PREFIX = "/api"
MAX_LIMIT = 200
DEFAULT_LIMIT = 50

# Problem types (RFC 9457): URNs, since there is no public page to point at.  The title of each
# is fixed; ``detail`` says what happened this time.
PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("urn:frontdoor:problem:bad-request", "The request is not well formed"),
    401: ("urn:frontdoor:problem:unauthenticated", "A valid API token is needed"),
    403: ("urn:frontdoor:problem:forbidden", "You do not have access to this"),
    404: ("urn:frontdoor:problem:not-found", "Not found"),
    405: ("urn:frontdoor:problem:method-not-allowed", "Method not allowed"),
    409: ("urn:frontdoor:problem:conflict", "It has changed, or is not in a state that allows this"),
    413: ("urn:frontdoor:problem:too-large", "The request is too large"),
    415: ("urn:frontdoor:problem:unsupported-media-type", "Send JSON"),
    422: ("urn:frontdoor:problem:invalid-data", "The data is not valid"),
    500: ("urn:frontdoor:problem:server-error", "The request could not be completed"),
}

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_INSTANT = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601."}
_NULLABLE_INSTANT = {"type": ["string", "null"], "format": "date-time", "description": "UTC, ISO 8601."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str, what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"One page of {what}. Ask for the next with offset=next_offset.",
        "required": ["items", "limit", "offset", "next_offset"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "offset": {"type": "integer", "minimum": 0},
            "next_offset": {
                "type": ["integer", "null"],
                "description": "The offset of the next page; null on the last page.",
            },
        },
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "FieldError": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {
                "type": "string",
                "description": "Where in the request: names and list positions joined by '/', as in "
                "'children/0/name' or 'data/urgency'; a query parameter's name; '' for the whole request.",
            },
            "message": {"type": "string", "description": "What is wrong, in plain English."},
        },
    },
    "Problem": {
        "type": "object",
        "description": "Problem details (RFC 9457), sent as application/problem+json.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri", "enum": sorted({t for t, _ in PROBLEMS.values()})},
            "title": _STRING,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": _STRING,
            "instance": {"type": "string", "description": "The path that was asked for."},
            "errors": {
                "type": "array",
                "description": "For invalid data: each problem beside its field.",
                "items": _ref("FieldError"),
            },
        },
    },
    "Process": {
        "type": "object",
        "required": ["key", "version", "name", "start_form", "deployed_at"],
        "properties": {
            "key": _STRING,
            "version": {"type": "integer", "minimum": 1, "description": "The newest deployed version."},
            "name": _NULLABLE_STRING,
            "start_form": {
                "type": ["string", "null"],
                "description": "The form its start event asks for (see components/schemas/form.<name>).",
            },
            "deployed_at": _INSTANT,
        },
    },
    "ProcessList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Process")}},
    },
    "Task": {
        "type": "object",
        "required": [
            "id",
            "name",
            "process",
            "element_id",
            "status",
            "case_reference",
            "child_name",
            "team",
            "role",
            "assignee",
            "created_at",
            "due_at",
            "due",
            "escalation_level",
            "form",
            "instructions",
            "revision",
            "completed_by",
            "completed_at",
        ],
        "properties": {
            "id": _STRING,
            "name": {"type": "string", "description": "What to do, e.g. 'Decide the response'."},
            "process": {"type": "string", "description": "The process key."},
            "element_id": _STRING,
            "status": {"enum": ["ready", "claimed", "completed", "cancelled"]},
            "case_reference": _NULLABLE_STRING,
            "child_name": _NULLABLE_STRING,
            "team": _NULLABLE_STRING,
            "role": _NULLABLE_STRING,
            "assignee": {"type": ["string", "null"], "description": "Who holds it; null while in a queue."},
            "created_at": _INSTANT,
            "due_at": _NULLABLE_INSTANT,
            "due": {
                "enum": ["overdue", "today", "soon", "later", None],
                "description": "As the queues say it (soon: within 2 working days); null without a due date.",
            },
            "escalation_level": {"type": "integer", "minimum": 0},
            "form": {
                "type": ["string", "null"],
                "description": "The form 'complete' takes as data: components/schemas/form.<name without "
                ".schema.json>.",
            },
            "instructions": _NULLABLE_STRING,
            "revision": {
                "type": "integer",
                "description": "The process instance's revision: send it as expected_revision to refuse "
                "completing a task whose case changed since you read it.",
            },
            "completed_by": _NULLABLE_STRING,
            "completed_at": _NULLABLE_INSTANT,
        },
    },
    "TaskPage": _page("Task", "tasks, soonest due first"),
    "CompleteTaskRequest": {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": {
            "data": {
                "type": "object",
                "description": "The answers to the task's form (see the task's 'form').",
            },
            "expected_revision": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "The task's revision when you read it; 409 if the case has moved on since.",
            },
        },
    },
    "CompleteTaskResult": {
        "type": "object",
        "required": ["task", "case_reference", "open_tasks"],
        "properties": {
            "task": _ref("Task"),
            "case_reference": _NULLABLE_STRING,
            "open_tasks": {
                "type": "array",
                "description": "The case's open tasks now, that you may see: where the case has moved on to.",
                "items": _ref("Task"),
            },
        },
    },
    "CreatedCase": {
        "type": "object",
        "required": ["reference", "child_name", "url", "open_tasks"],
        "properties": {
            "reference": _STRING,
            "child_name": _NULLABLE_STRING,
            "url": {"type": "string", "format": "uri-reference"},
            "open_tasks": {"type": "array", "items": _ref("Task")},
        },
    },
    "ContactCreated": {
        "type": "object",
        "description": "One case per child, linked to each other as siblings.",
        "required": ["cases"],
        "properties": {"cases": {"type": "array", "minItems": 1, "items": _ref("CreatedCase")}},
    },
    "Clock": {
        "type": "object",
        "required": ["name", "started_at", "target_at", "stopped_at", "breached", "working_days_left"],
        "properties": {
            "name": _STRING,
            "started_at": _INSTANT,
            "target_at": _NULLABLE_INSTANT,
            "stopped_at": _NULLABLE_INSTANT,
            "breached": {"type": ["boolean", "null"], "description": "Set when the clock stops."},
            "working_days_left": {
                "type": ["integer", "null"],
                "description": "Working days from today to the target (negative: past it); null if stopped.",
            },
        },
    },
    "LinkedCase": {
        "type": "object",
        "description": "Another child's case, by reference only: never their data.",
        "required": ["reference", "kind"],
        "properties": {"reference": _STRING, "kind": _STRING},
    },
    "CaseSummary": {
        "type": "object",
        "required": [
            "reference",
            "child_name",
            "status",
            "team",
            "worker",
            "opened_at",
            "closed_at",
            "closed_reason",
            "child",
            "facts",
            "clocks",
            "open_tasks",
            "linked_cases",
        ],
        "properties": {
            "reference": _STRING,
            "child_name": _NULLABLE_STRING,
            "status": _STRING,
            "team": _NULLABLE_STRING,
            "worker": _NULLABLE_STRING,
            "opened_at": _INSTANT,
            "closed_at": _NULLABLE_INSTANT,
            "closed_reason": _NULLABLE_STRING,
            "child": {
                "type": ["object", "null"],
                "description": "The child's details as recorded when the case was opened.",
            },
            "facts": {"type": "object", "description": "Named facts the process recorded (dates, codes)."},
            "clocks": {"type": "array", "items": _ref("Clock")},
            "open_tasks": {"type": "array", "items": _ref("Task")},
            "linked_cases": {"type": "array", "items": _ref("LinkedCase")},
        },
    },
    "Holder": {
        "type": "object",
        "required": ["username", "display_name", "employment"],
        "properties": {
            "username": _STRING,
            "display_name": _STRING,
            "employment": {"type": "string", "description": "permanent or agency"},
        },
    },
    "Escalation": {
        "type": "object",
        "required": [
            "task",
            "level",
            "label",
            "escalated_at",
            "late_by_hours",
            "working_days_late",
            "holder",
        ],
        "properties": {
            "task": _ref("Task"),
            "level": {"type": "integer", "minimum": 1},
            "label": {
                "type": "string",
                "description": "What the level means, e.g. 'Escalated to the team manager'.",
            },
            "escalated_at": _NULLABLE_INSTANT,
            "late_by_hours": {"type": ["number", "null"], "minimum": 0, "description": "Past its due time."},
            "working_days_late": {"type": ["integer", "null"], "minimum": 0},
            "holder": {
                "oneOf": [_ref("Holder"), {"type": "null"}],
                "description": "Who holds the work; null while it waits in the team queue.",
            },
        },
    },
    "EscalationPage": _page("Escalation", "escalated open tasks, highest level first"),
    "ReferralChild": {
        "type": "object",
        "description": "What became of one child named in the referral.",
        "required": ["name", "outcome", "case_references", "url"],
        "properties": {
            "name": _STRING,
            "outcome": {
                "enum": ["case_opened", "delivered_to_open_case"],
                "description": "case_opened: a new contact (case) for the child; delivered_to_open_case: the "
                "child already had an open case, and the referral went to it as new information.",
            },
            "case_references": {"type": "array", "minItems": 1, "items": _STRING},
            "url": {"type": "string", "format": "uri-reference", "description": "The (first) case."},
        },
    },
    "ReferralReceipt": {
        "type": "object",
        "description": "The answer to a referral; sent again, unchanged, to a retry with its reference.",
        "required": ["sender", "sender_reference", "received_at", "children"],
        "properties": {
            "sender": {"type": "string", "description": "The agency of the token that sent it."},
            "sender_reference": _STRING,
            "received_at": _INSTANT,
            "children": {"type": "array", "minItems": 1, "items": _ref("ReferralChild")},
        },
    },
}

PARAMETERS: dict[str, dict[str, Any]] = {
    "limit": {
        "name": "limit",
        "in": "query",
        "description": f"How many to return (at most {MAX_LIMIT}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    "offset": {
        "name": "offset",
        "in": "query",
        "description": "How many to skip.",
        "schema": {"type": "integer", "minimum": 0, "default": 0},
    },
    "user": {
        "name": "user",
        "in": "query",
        "description": "Only tasks held by this username.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
    },
    "team": {
        "name": "team",
        "in": "query",
        "description": "Only tasks of this team (its key).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "case": {
        "name": "case",
        "in": "query",
        "description": "Only tasks of the case with this reference.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "due": {
        "name": "due",
        "in": "query",
        "description": "overdue; today (due before the end of today, London); soon (within 2 working days, "
        "overdue included).",
        "schema": {"enum": ["overdue", "today", "soon"]},
    },
    "task_id": {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 36},
    },
    "reference": {
        "name": "reference",
        "in": "path",
        "required": True,
        "description": "The case reference, e.g. CH-000123.",
        "schema": {"type": "string", "maxLength": 64},
    },
}

_PROBLEM_CONTENT = {"application/problem+json": {"schema": _ref("Problem")}}

RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": {
        "description": "Not JSON, or a query parameter out of range.",
        "content": _PROBLEM_CONTENT,
    },
    "Unauthenticated": {
        "description": "No token, or a token that is unknown or revoked.",
        "headers": {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="frontdoor"'}
        },
        "content": _PROBLEM_CONTENT,
    },
    "Forbidden": {"description": "The token's user may not do or see this.", "content": _PROBLEM_CONTENT},
    "NotFound": {"description": "There is no such thing.", "content": _PROBLEM_CONTENT},
    "Conflict": {
        "description": "Someone else got there first, or it is no longer in a state that allows this.",
        "content": _PROBLEM_CONTENT,
    },
    "UnsupportedMediaType": {
        "description": "The body must be JSON (Content-Type: application/json).",
        "content": _PROBLEM_CONTENT,
    },
    "InvalidData": {
        "description": "The data does not fit the form; 'errors' puts each problem beside its field. "
        "Nothing was changed.",
        "content": _PROBLEM_CONTENT,
    },
    "ProcessError": {
        "description": "The process itself failed (a script or condition in the diagram); nothing changed.",
        "content": _PROBLEM_CONTENT,
    },
}


def _form_ref_name(form_key: str) -> str:
    return f"form.{form_key.removesuffix('.schema.json').removesuffix('.json')}"


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*names: str) -> dict[str, Any]:
    codes = {
        "BadRequest": "400",
        "Unauthenticated": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "UnsupportedMediaType": "415",
        "InvalidData": "422",
        "ProcessError": "500",
    }
    return {codes[n]: {"$ref": f"#/components/responses/{n}"} for n in ("Unauthenticated", *names)}


def _params(*names: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/parameters/{n}"} for n in names]


CONTACT_BODY = "__contact_start_form__"  # filled in by build_document from the deployed process
REFERRAL_FORM = "partner-referral.schema.json"  # processes/forms/: what POST /api/referrals takes

# path -> method -> operation.  web.api registers exactly these routes (tests compare with url_map).
OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    f"{PREFIX}/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    f"{PREFIX}/processes": {
        "get": {
            "operationId": "listProcesses",
            "summary": "Deployed processes",
            "description": "The newest version of each deployed process, and the form its start event takes.",
            "tags": ["processes"],
            "responses": {"200": _ok("ProcessList", "The processes, by key."), **_errors()},
        }
    },
    f"{PREFIX}/contacts": {
        "post": {
            "operationId": "recordContact",
            "summary": "Record a contact",
            "description": "Starts the contact process: one case per child named, linked to each other. The "
            "token's user is recorded as having taken it. Partners cannot record contacts. All or nothing.",
            "tags": ["contacts"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": CONTACT_BODY}}},
            "responses": {
                "201": {
                    "description": "The cases were opened; Location is the first child's case.",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _ref("ContactCreated")}},
                },
                **_errors(
                    "BadRequest",
                    "Forbidden",
                    "Conflict",
                    "UnsupportedMediaType",
                    "InvalidData",
                    "ProcessError",
                ),
            },
        }
    },
    f"{PREFIX}/referrals": {
        "post": {
            "operationId": "receiveReferral",
            "summary": "Send a referral (partner agencies)",
            "description": "For police, health and school systems, with a token made for their agency "
            "(`frontdoor tokens create NAME --user USERNAME --sender police|health|school`). Each child "
            "named gets a contact of their own, linked to the others; a child whose case is already open "
            "(same name and date of birth) gets the referral on that case instead, as new information for "
            "the allocated worker. Idempotent on (agency, sender_reference): a retry gets the first answer "
            "again (200) and changes nothing; the same reference with a different body is a conflict. "
            "All or nothing.",
            "tags": ["referrals"],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(_form_ref_name(REFERRAL_FORM))}},
            },
            "responses": {
                "201": {
                    "description": "Received: what became of each child. Location is the first child's case.",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _ref("ReferralReceipt")}},
                },
                "200": _ok("ReferralReceipt", "Already received with this reference: the first answer."),
                "400": {
                    "description": "Not JSON, or the referral does not fit the schema; 'errors' puts each "
                    "problem beside its field. Nothing was recorded.",
                    "content": _PROBLEM_CONTENT,
                },
                **_errors("Forbidden", "Conflict", "UnsupportedMediaType", "ProcessError"),
            },
        }
    },
    f"{PREFIX}/tasks": {
        "get": {
            "operationId": "listTasks",
            "summary": "Open tasks you may see",
            "description": "Yours, your teams' queues, and the tasks of cases you have access to; a partner "
            "sees only the tasks offered to them.",
            "tags": ["tasks"],
            "parameters": _params("user", "team", "case", "due", "limit", "offset"),
            "responses": {"200": _ok("TaskPage", "A page of tasks."), **_errors("BadRequest")},
        }
    },
    f"{PREFIX}/tasks/{{task_id}}/claim": {
        "post": {
            "operationId": "claimTask",
            "summary": "Claim a task",
            "description": "Take a task from a queue you hold its role in. Claiming your own again is fine.",
            "tags": ["tasks"],
            "parameters": _params("task_id"),
            "responses": {
                "200": _ok("Task", "The task, now yours."),
                **_errors("Forbidden", "NotFound", "Conflict"),
            },
        }
    },
    f"{PREFIX}/tasks/{{task_id}}/complete": {
        "post": {
            "operationId": "completeTask",
            "summary": "Complete a task",
            "description": "Answer the task's form; the case moves on. A claimed task only by its holder.",
            "tags": ["tasks"],
            "parameters": _params("task_id"),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("CompleteTaskRequest")}},
            },
            "responses": {
                "200": _ok("CompleteTaskResult", "Done; where the case is now."),
                **_errors(
                    "BadRequest",
                    "Forbidden",
                    "NotFound",
                    "Conflict",
                    "UnsupportedMediaType",
                    "InvalidData",
                    "ProcessError",
                ),
            },
        }
    },
    f"{PREFIX}/cases/{{reference}}": {
        "get": {
            "operationId": "getCase",
            "summary": "A child's case",
            "description": "As the case page shows it. Every call is written to the audit trail.",
            "tags": ["cases"],
            "parameters": _params("reference"),
            "responses": {"200": _ok("CaseSummary", "The case."), **_errors("Forbidden", "NotFound")},
        }
    },
    f"{PREFIX}/escalations": {
        "get": {
            "operationId": "listEscalations",
            "summary": "Escalated work (managers)",
            "description": "Open tasks that went past a deadline in the teams you manage (every team, for a "
            "service manager), highest level first.",
            "tags": ["escalations"],
            "parameters": _params("limit", "offset"),
            "responses": {
                "200": _ok("EscalationPage", "A page of escalations."),
                **_errors("BadRequest", "Forbidden"),
            },
        }
    },
}


def operation(path: str, method: str) -> dict[str, Any]:
    return OPERATIONS[path][method.lower()]


def form_component(form_key: str) -> str:
    """``record-contact.schema.json`` -> ``form.record-contact``."""
    stem = form_key[: -len(".schema.json")] if form_key.endswith(".schema.json") else form_key
    return f"form.{stem.removesuffix('.json')}"


def _publishable(schema: dict[str, Any]) -> dict[str, Any]:
    # $schema belongs at the root of a document; inside components the 3.1 dialect applies.
    return {k: v for k, v in schema.items() if k != "$schema"}


def build_document(engine: Engine, contact_process: str) -> dict[str, Any]:
    registry = engine.registry
    forms: dict[str, Any] = {}
    for directory in registry.form_dirs:
        for path in sorted(directory.glob("*.schema.json")):
            forms.setdefault(form_component(path.name), _publishable(registry.form_schema(path.name)))
    contact_form = _contact_form(engine, contact_process)
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        paths[path] = {}
        for method, op in methods.items():
            op = dict(op)
            if (
                "requestBody" in op
                and op["requestBody"]["content"]["application/json"]["schema"] == CONTACT_BODY
            ):
                body = _ref(form_component(contact_form)) if contact_form else {"type": "object"}
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            paths[path][method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Frontdoor API",
            "version": "1",
            "summary": "Contacts, tasks, cases and escalations of a children's services front door.",
            "description": "Token authentication: send `Authorization: Bearer <token>` (made with "
            "`frontdoor tokens create NAME --user USERNAME`). A token has exactly its user's access, as on "
            "the pages. Errors are problem details (RFC 9457); invalid data lists each problem beside its "
            "field. A request that fails changes nothing.",
        },
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **forms},
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `frontdoor tokens create`.",
                }
            },
        },
        "security": [{"bearer": []}],
        "tags": [
            {"name": t}
            for t in ("contacts", "referrals", "tasks", "cases", "escalations", "processes", "meta")
        ],
    }


def _contact_form(engine: Engine, contact_process: str) -> str | None:
    from engine.errors import NotFound

    try:
        return engine.start_form(contact_process)
    except NotFound:
        return None


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for ``components/schemas/<name>`` (references resolve within :data:`SCHEMAS`)."""
    resource = Resource.from_contents({"components": {"schemas": SCHEMAS}}, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:frontdoor:api", resource)
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:frontdoor:api#/components/schemas/{name}"},
        registry=registry,
        format_checker=jsonschema.FormatChecker(),
    )
