"""Draft diagrams: a process owner's work in progress, kept until it is deployed.

One draft per process key.  A draft is any BPMN that passes the safe parse (no DTD, no
entities, the size limit, a BPMN 2.0 ``definitions`` root): it may still have findings, which
is why it is a draft.  Every save names the revision it started from and is refused as a
:class:`~engine.errors.Conflict` if someone saved in between, never overwriting their work.
Deploying a draft is the same deploy as ``frontdoor deploy`` (a new version; running
instances stay on theirs) and removes the draft, in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.orm import Session

from . import audit, clock, definitions
from .audit import PendingEvent
from .bpmn import BPMN_NS, parse_xml
from .errors import Conflict, DefinitionError, Finding, NotFound
from .models import ProcessDefinition, ProcessDraft

if TYPE_CHECKING:
    from .core import Engine

# Process ids become part of page addresses: an XML NCName without the exotic characters.
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,254}$")


@dataclass(frozen=True)
class DraftSaved:
    key: str
    revision: int
    saved_at: datetime


def read_bpmn(content: bytes, filename: str) -> tuple[str, str]:
    """(process key, text) of an uploaded or edited file, or :class:`DefinitionError` saying why not.

    Only what every later step needs is checked here: the safe parse and UTF-8.
    """
    root = parse_xml(content, filename)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [Finding(f"the file is not UTF-8 (byte {exc.start} cannot be read); save it as UTF-8", filename)]
        ) from None
    return process_key(root, filename), text


def process_key(root: etree._Element, filename: str) -> str:
    """The key a draft is filed under: the first executable process's id, else the first process's,
    else the file's name."""
    processes = list(root.iterfind(f"{{{BPMN_NS}}}process"))
    executable = [p for p in processes if p.get("isExecutable", "true") != "false"]
    for process in executable + processes:
        key = process.get("id") or ""
        if KEY_PATTERN.match(key):
            return key
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", PurePath(filename).stem).strip("._-")[:200]
    if not stem or not KEY_PATTERN.match(stem):
        stem = f"process_{stem}" if stem else "process"
    return stem


def get(engine: Engine, key: str) -> ProcessDraft | None:
    with engine.db.read() as session:
        return session.scalar(sa.select(ProcessDraft).where(ProcessDraft.key == key))


def all_drafts(engine: Engine) -> list[ProcessDraft]:
    with engine.db.read() as session:
        return list(session.scalars(sa.select(ProcessDraft).order_by(ProcessDraft.key)))


def save(
    engine: Engine,
    key: str,
    content: bytes,
    filename: str,
    actor: str,
    seen_revision: int | None,
    based_on_version: int | None = None,
) -> DraftSaved:
    """Save the diagram as the draft of ``key``.

    ``seen_revision`` is the draft revision the editor started from (None: there was no draft).
    A different current revision means someone else saved first: :class:`Conflict`, nothing saved.
    """
    if not KEY_PATTERN.match(key):
        raise NotFound(f"{key!r} cannot be a process key; use letters, digits, '_', '.' and '-'")
    _, text = read_bpmn(content, filename)
    with engine.db.transaction() as session:
        now = clock.now()
        draft = _lock(session, key)
        if draft is None:
            if seen_revision is not None:
                raise Conflict(
                    f"the draft of {key} was deployed or discarded by someone else since you opened it; "
                    "your changes were not saved: copy them, reload the editor and make them again"
                )
            draft = ProcessDraft(
                key=key,
                filename=filename,
                bpmn_xml=text,
                revision=1,
                based_on_version=based_on_version,
                saved_by=actor,
                saved_at=now,
            )
            session.add(draft)
        else:
            if seen_revision != draft.revision:
                raise Conflict(
                    f"{draft.saved_by} saved the draft of {key} (revision {draft.revision}) after you "
                    "opened it; your changes were not saved: reload the editor to see theirs"
                )
            draft.bpmn_xml = text
            draft.filename = filename
            draft.revision += 1
            draft.saved_by = actor
            draft.saved_at = now
        session.flush()
        audit.append(
            session,
            [PendingEvent(actor, "process.draft_saved", data={"key": key, "revision": draft.revision})],
            now,
        )
        return DraftSaved(key, draft.revision, now)


def upload(engine: Engine, filename: str, content: bytes, actor: str) -> DraftSaved:
    """An uploaded file becomes the draft of the process it holds (replacing any draft of it)."""
    filename = PurePath(filename or "upload.bpmn").name[:255] or "upload.bpmn"
    key, _ = read_bpmn(content, filename)
    current = get(engine, key)
    return save(engine, key, content, filename, actor, current.revision if current else None)


def discard(engine: Engine, key: str, seen_revision: int, actor: str) -> None:
    with engine.db.transaction() as session:
        draft = _require(session, key, seen_revision)
        session.delete(draft)
        audit.append(
            session,
            [PendingEvent(actor, "process.draft_discarded", data={"key": key, "revision": seen_revision})],
            clock.now(),
        )


def deploy(engine: Engine, key: str, seen_revision: int, actor: str) -> list[definitions.DeployResult]:
    """Deploy the draft as a new version and remove it: one transaction, all or nothing.

    Findings raise :class:`DefinitionError` and leave the draft as it was.
    """
    with engine.db.transaction() as session:
        now = clock.now()
        draft = _require(session, key, seen_revision)
        results = engine.deploy_in(session, [(draft.filename, draft.bpmn_xml.encode("utf-8"))], actor, now)
        session.delete(draft)
        return results


class _DryRun(Exception):
    """Raised to roll back a deploy that was only a check."""


def check(engine: Engine, content: bytes, filename: str) -> list[Finding]:
    """Everything a deploy of this file would refuse, without deploying it (the transaction is
    rolled back).  An empty list: the file can be deployed."""
    try:
        with engine.db.transaction() as session:
            engine.deploy_in(session, [(filename, content)], "validation", clock.now())
            raise _DryRun
    except DefinitionError as exc:
        return list(exc.findings)
    except ValueError as exc:  # the processes folder's roles.json or rules.json cannot be read
        return [Finding(f"the checks cannot run: {exc}", filename)]
    except _DryRun:
        return []


def versions(engine: Engine, key: str) -> list[ProcessDefinition]:
    with engine.db.read() as session:
        return list(
            session.scalars(
                sa.select(ProcessDefinition)
                .where(ProcessDefinition.key == key)
                .order_by(ProcessDefinition.version.desc())
            )
        )


def _lock(session: Session, key: str) -> ProcessDraft | None:
    return session.scalar(sa.select(ProcessDraft).where(ProcessDraft.key == key).with_for_update())


def _require(session: Session, key: str, seen_revision: int) -> ProcessDraft:
    draft = _lock(session, key)
    if draft is None:
        raise NotFound(f"there is no draft of {key}; it may have been deployed or discarded already")
    if draft.revision != seen_revision:
        raise Conflict(
            f"{draft.saved_by} saved the draft of {key} (revision {draft.revision}) after you opened it "
            f"(revision {seen_revision}); reload it and check their changes first"
        )
    return draft
