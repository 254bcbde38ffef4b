"""``POST /api/referrals``: referrals from partner agencies' systems (police, health, schools).

A partner's API token is bound to its sender (``frontdoor tokens create NAME --user U --sender
police``).  The body is checked against ``processes/forms/partner-referral.schema.json``; a body
that does not fit gets 400 with each problem beside its field, and nothing is stored.

Each child named gets a contact of their own (the contact process, one case per child, linked as
siblings), unless the child already has an open case: then the referral is delivered to that case
as the BPMN message ``new_information``, correlated on the child (``subject_key(name, date of
birth)``, the key the contact process subscribes with), which gives the allocated worker a task.

The sender's reference makes a retry harmless: the first answer is kept in ``inbound_referral``
(sender, reference, sha256 of the body) and sent again; the same reference with a different body
is a 409.  Recording the referral, opening the cases and delivering the messages are one
transaction (``Engine.atomic``).  The route lives on the API blueprint (``web.api.bp``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import jsonschema
import sqlalchemy as sa
from flask import Response, g, request, url_for
from sqlalchemy.exc import IntegrityError

from engine import clock, messages
from engine.core import Engine
from engine.errors import NotFound
from engine.models import InboundReferral

from . import tokens
from .api import (
    _CHALLENGE,
    CONTACT_PROCESS,
    CONTACT_SUBJECT,
    CONTACT_SUBJECTS,
    CONTACT_TEAM,
    Problem,
    _config,
    _engine,
    _instant,
    _json_body,
    _ok,
    bp,
)
from .auth import Person, load_person

F = TypeVar("F", bound=Callable[..., Any])

FORM = "partner-referral.schema.json"
MESSAGE = "new_information"  # the message the contact process listens for while a case is open
# The census referral source when the sender does not give a more precise one.
SOURCES = {"police": "6", "health": "3F", "school": "2A"}


def _partner_token(view: F) -> F:
    """Like web.api.token_required, and the token must speak for a partner agency (``g.sender``)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "Send your agency's API token as 'Authorization: Bearer <token>'.",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        found = tokens.verify(_engine().db, token.strip())
        person = load_person(found.user_id) if found else None
        if found is None or person is None:
            raise Problem(
                401,
                "The token is not known, has been revoked, or its user is no longer active.",
                headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
            )
        if found.sender not in SOURCES:
            raise Problem(
                403,
                "This token is not a partner agency's: only a token made with "
                "`frontdoor tokens create NAME --user USERNAME --sender police|health|school` may send "
                "referrals.",
            )
        g.person, g.sender = person, found.sender
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _schema(engine: Engine) -> dict[str, Any]:
    return engine.registry.form_schema(FORM)


def _check(schema: dict[str, Any], body: Any) -> None:
    """400 with every problem beside its field (as web.api reports invalid data)."""
    if not isinstance(body, dict):
        raise Problem(
            400,
            "The body must be a JSON object: the referral.",
            [{"field": "", "message": "Send a JSON object"}],
        )
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors: list[dict[str, str]] = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        path = "/".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    errors.append(
                        {"field": f"{path}/{name}" if path else name, "message": "This is required"}
                    )
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for name in sorted(set(error.instance) - known):
                field = f"{path}/{name}" if path else name
                errors.append({"field": field, "message": "This is not something a referral takes"})
            continue
        if error.validator == "oneOf" and isinstance(error.schema, dict):
            choices = [str(c["const"]) for c in error.schema.get("oneOf", []) if "const" in c]
            if choices:
                errors.append({"field": path, "message": f"Use one of: {', '.join(choices)}"})
                continue
        errors.append({"field": path, "message": error.message})
    if errors:
        summary = "; ".join(f"{e['field'] or 'the body'}: {e['message']}" for e in errors)
        raise Problem(
            400, f"The referral does not fit the schema, so nothing was recorded: {summary}", errors
        )


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _earlier(engine: Engine, sender: str, reference: str) -> InboundReferral | None:
    with engine.db.read() as session:
        return session.scalar(
            sa.select(InboundReferral).where(
                InboundReferral.sender == sender, InboundReferral.sender_reference == reference
            )
        )


def _replay(earlier: InboundReferral, digest: str) -> Response:
    if earlier.payload_sha256 != digest:
        raise Problem(
            409,
            f"The reference {earlier.sender_reference!r} was already used for a different referral "
            f"(received {_instant(earlier.received_at)}); give each new referral a new reference.",
        )
    return _ok(earlier.result, 200)


def _agency_name(schema: dict[str, Any], agency: str) -> str:
    for choice in schema["properties"]["agency"].get("oneOf", []):
        if choice.get("const") == agency:
            return str(choice.get("title", agency))
    return agency


def _summary(payload: dict[str, Any], received: str) -> str:
    """The referral as the worker reads it on the task page (plain text; paragraphs, lines)."""
    referrer = payload["referrer"]
    consent = payload["consent"]
    if consent.get("sought"):
        consent_text = "given" if consent.get("given") else "refused"
    else:
        consent_text = f"not sought: {consent.get('reason_not_sought', '')}"
    contact = ", ".join(referrer[k] for k in ("phone", "email") if referrer.get(k))
    return "\n".join(
        [
            f"From {referrer['name']} ({referrer['role']}), {referrer['organisation']}"
            + (f"; {contact}" if contact else ""),
            f"{payload['agency_name']} reference {payload['sender_reference']}, received {received}",
            f"Consent to share: {consent_text}",
            "",
            payload["concern"],
        ]
    )


def _contact_child(child: dict[str, Any]) -> dict[str, Any]:
    return {k: child[k] for k in ("name", "date_of_birth", "gender", "address", "identifier") if k in child}


def _contact(engine: Engine, body: dict[str, Any], received: datetime) -> dict[str, Any]:
    """The contact process's start answers, from the referral (all but the children)."""
    referrer = body["referrer"]
    contact_referrer = {
        "name": referrer["name"],
        "organisation": referrer["organisation"],
        "relationship": referrer["role"],
        **{k: referrer[k] for k in ("phone", "email", "address") if k in referrer},
    }
    return {
        "received_at": received.astimezone(engine.calendar.timezone).strftime("%Y-%m-%dT%H:%M"),
        "referrer": contact_referrer,
        "source": body.get("source") or SOURCES[body["agency"]],
        "concern": body["concern"],
        "consent": body["consent"],
        "partner_referral": {"sender": body["agency"], "sender_reference": body["sender_reference"]},
    }


@bp.post("/referrals")
@_partner_token
def receive_referral() -> Response:
    person: Person = g.person
    sender: str = g.sender
    engine = _engine()
    schema = _schema(engine)
    body = _json_body()
    _check(schema, body)
    if body["agency"] != sender:
        raise Problem(
            403,
            f"This token sends referrals for {sender}; it cannot send one as {body['agency']}.",
            [{"field": "agency", "message": f"Must be {sender}, the agency of your token"}],
        )
    digest = _digest(body)
    earlier = _earlier(engine, sender, body["sender_reference"])
    if earlier is not None:
        return _replay(earlier, digest)
    try:
        result = _receive(engine, person, sender, body, digest)
    except IntegrityError:
        # Another request with the same reference committed first: answer as a retry would be.
        earlier = _earlier(engine, sender, body["sender_reference"])
        if earlier is None:
            raise
        return _replay(earlier, digest)
    location = result["children"][0]["url"]
    return _ok(result, 201, {"Location": location})


def _receive(
    engine: Engine, person: Person, sender: str, body: dict[str, Any], digest: str
) -> dict[str, Any]:
    received = clock.now()
    schema = _schema(engine)
    children: list[dict[str, Any]] = body["children"]
    with engine.atomic() as session:
        record = InboundReferral(
            sender=sender,
            sender_reference=body["sender_reference"],
            received_at=received,
            received_by=person.username,
            payload_sha256=digest,
            result={},
        )
        session.add(record)
        session.flush()  # a concurrent duplicate stops here, on the unique (sender, reference)
        outcomes: list[dict[str, Any] | None] = [None] * len(children)
        new: list[int] = []
        for index, child in enumerate(children):
            key = messages.subject_key(child["name"], child["date_of_birth"])
            open_cases = messages.waiting_cases(session.connection(), MESSAGE, key)
            if not open_cases:
                new.append(index)
                continue
            workers = {worker for _, worker in open_cases}
            payload = {
                "sender": sender,
                "sender_reference": body["sender_reference"],
                "agency_name": _agency_name(schema, sender),
                "received_at": _instant(received),
                "referrer": body["referrer"],
                "concern": body["concern"],
                "consent": body["consent"],
                "child": _contact_child(child),
                # The task goes to the worker holding the case (the team's queue while nobody does).
                "allocated_worker": workers.pop() if len(workers) == 1 else None,
            }
            local = received.astimezone(engine.calendar.timezone)
            payload["summary"] = _summary(payload, f"{local:%d %B %Y at %H:%M}".lstrip("0"))
            try:
                deliveries = engine.correlate_message(MESSAGE, key, payload, person.username)
            except NotFound:  # the case moved on to its end a moment ago: a new contact, then
                new.append(index)
                continue
            outcomes[index] = {
                "outcome": "delivered_to_open_case",
                "case_references": [d.case_reference for d in deliveries if d.case_reference],
            }
        if new:
            started = engine.start_for_subjects(
                _config("CONTACT_PROCESS", CONTACT_PROCESS),
                person.username,
                [_contact_child(children[i]) for i in new],
                _contact(engine, body, received),
                team_key=_config("CONTACT_TEAM", CONTACT_TEAM),
                subject_field=CONTACT_SUBJECT,
                subjects_field=CONTACT_SUBJECTS,
            )
            for index, result in zip(new, started, strict=True):
                outcomes[index] = {"outcome": "case_opened", "case_references": [str(result.case_reference)]}
        summary = {
            "sender": sender,
            "sender_reference": body["sender_reference"],
            "received_at": _instant(received),
            "children": [
                {
                    "name": child["name"],
                    "outcome": outcome["outcome"],
                    "case_references": outcome["case_references"],
                    "url": url_for("api.get_case", reference=outcome["case_references"][0]),
                }
                for child, outcome in zip(children, outcomes, strict=True)
                if outcome is not None
            ],
        }
        record.result = summary
    return summary
