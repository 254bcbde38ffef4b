"""Everything that crosses the boundary, plugged into the engine's ports (engine/ports.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.core import Engine
    from engine.worker import PeriodicJob


def wire_letters(engine: Engine) -> None:
    """Letter tasks write PDFs with WeasyPrint from processes/letters/ (unless a renderer is set)."""
    from .letters import WeasyPrintLetters

    if engine.services.letters is None:
        engine.use_letter_renderer(WeasyPrintLetters(engine.registry.root))


def worker_jobs(engine: Engine) -> list[PeriodicJob]:
    """What the worker runs beside the timers: the outbox's e-mail, when SMTP is configured."""
    from .smtp import outbox_job

    job = outbox_job(engine)
    return [job] if job is not None else []
