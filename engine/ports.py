"""The small interfaces adapters plug into.  The engine calls these; it never imports an adapter."""

from __future__ import annotations

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
