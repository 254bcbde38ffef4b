"""Letter tasks: completing a task marked ``letter`` writes its PDF, in the same command.

Properties on the task (``spiffworkflow:property``), all data in the diagram:

- ``letter``: the template's name (the renderer's business where it lives; the WeasyPrint
  adapter reads ``processes/letters/<name>.html``);
- ``letter.recipient``: who it is to (``family``, ``referrer``, ...), shown with the letter;
- ``letter.data``: an expression giving the name: value pairs the template may use, evaluated in
  the completed task's data.  That is one instance's data, and each child's record is its own
  instance, so nothing of a sibling can reach a letter.  Without it the template gets nothing but
  the case's reference and the subject's name: a template cannot show what it is not given.

The letter row, the PDF and the audit event are written in the command's transaction: a letter
exists exactly when the completion that wrote it does, and a letter that cannot be written (no
such template, a template error) refuses the completion with the reason.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .errors import ProcessError
from .models import CaseRecord, Letter, User
from .ports import LetterRequest

if TYPE_CHECKING:
    from .projection import Projector

LETTER = "letter"
RECIPIENT = "letter.recipient"
DATA = "letter.data"


def write_letters(projector: Projector) -> None:
    """Write the letter of every completed task the diagram marks ``letter``."""
    renderer = projector.services.letters
    if renderer is None:
        return
    from .projection import element_id, element_name, properties

    for spiff_task in projector.ctx.completed:
        props = properties(spiff_task.task_spec)
        template = (props.get(LETTER) or "").strip()
        if not template:
            continue
        spec = spiff_task.task_spec
        where = (element_id(spec), element_name(spec))
        data: Any = {}
        if props.get(DATA):
            data = projector.services.evaluate(spiff_task, props[DATA])
            if not isinstance(data, dict):
                raise ProcessError(
                    f"letter.data must give name: value pairs for the template, not {type(data).__name__}",
                    *where,
                )
        request = _request(projector, template, (props.get(RECIPIENT) or "").strip() or "recipient", data)
        try:
            rendered = renderer.render(request)
        except (ValueError, OSError) as exc:
            raise ProcessError(f"the letter {template!r} could not be written: {exc}", *where) from exc
        letter = Letter(
            case_id=projector.instance.case_id,
            instance_id=projector.instance.id,
            task_id=str(spiff_task.id),
            element_id=where[0],
            template=template,
            recipient=request.recipient,
            title=(rendered.title or template)[:255],
            pdf=rendered.pdf,
            sha256=hashlib.sha256(rendered.pdf).hexdigest(),
            created_at=projector.ctx.now,
            sent_at=projector.ctx.now,
            sent_by=projector.ctx.actor,
        )
        projector.session.add(letter)
        projector.session.flush()
        projector.event(
            "letter.written",
            str(spiff_task.id),
            {
                "letter": letter.id,
                "template": template,
                "recipient": letter.recipient,
                "title": letter.title,
                "sha256": letter.sha256,
            },
        )


def _request(projector: Projector, template: str, recipient: str, data: dict[str, Any]) -> LetterRequest:
    session = projector.session
    subject_name = None
    if projector.instance.case_id is not None:
        subject_name = session.scalar(
            sa.select(CaseRecord.subject_name).where(CaseRecord.id == projector.instance.case_id)
        )
    worker = projector.case.worker if projector.case else None
    return LetterRequest(
        template=template,
        recipient=recipient,
        data=data,
        case_reference=projector.case.reference if projector.case else None,
        subject_name=subject_name,
        written_at=projector.ctx.now,
        written_by=projector.ctx.actor,
        written_by_name=_display_name(projector, projector.ctx.actor) or projector.ctx.actor,
        worker_name=_display_name(projector, worker) if worker else None,
    )


def _display_name(projector: Projector, username: str) -> str | None:
    name: str | None = projector.session.scalar(sa.select(User.display_name).where(User.username == username))
    return name
