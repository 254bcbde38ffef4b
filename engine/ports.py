"""The small interfaces adapters plug into.  The engine calls these; it never imports an adapter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from . import clock
from .models import Outbox


class Notifier(Protocol):
    def notify(
        self, session: Session, *, recipients: list[str], subject: str, body: str, context: dict[str, Any]
    ) -> None:
        """Queue a message to people, inside the caller's transaction."""
        ...


class OutboxNotifier:
    """Writes each notification to the outbox in the command's own transaction.

    Whatever delivers it (the e-mail adapter) reads the outbox after commit, so a
    notification exists exactly when the change that caused it does.
    """

    def notify(
        self, session: Session, *, recipients: list[str], subject: str, body: str, context: dict[str, Any]
    ) -> None:
        session.add(
            Outbox(
                created_at=clock.now(),
                kind="notification",
                payload={"to": sorted(set(recipients)), "subject": subject, "body": body, **context},
                status="pending",
            )
        )


@dataclass(frozen=True)
class LetterRequest:
    """What a letter task asks to be written: for one case, to one recipient, from one template.

    ``data`` is what the task's ``letter.data`` expression gave, evaluated in that instance's own
    data (one child's: siblings' records are other instances), or the task's own answers.
    """

    template: str
    recipient: str
    data: dict[str, Any]
    case_reference: str | None
    subject_name: str | None
    written_at: datetime
    written_by: str
    written_by_name: str
    worker_name: str | None = None


@dataclass(frozen=True)
class RenderedLetter:
    pdf: bytes
    title: str


class LetterRenderer(Protocol):
    def render(self, request: LetterRequest) -> RenderedLetter:
        """Write the letter; raise ``ValueError`` (or ``OSError``) with a message naming what to fix."""
        ...
