"""The audit trail: append-only, hash-chained.

Each event's hash covers its own content and the previous event's hash, so
changing, removing or reordering any row breaks the chain from there on.
Appends take a row lock on ``audit_head`` (the last sequence number and hash),
which orders concurrent commands; it is taken last in each command so it is
held only for the final inserts and the commit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import AuditEvent, AuditHead

GENESIS = "0" * 64

_LOCK_HEAD = sa.select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
_INSERT_EVENT = sa.insert(AuditEvent)
_MOVE_HEAD = (
    sa.update(AuditHead)
    .where(AuditHead.id == 1)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)


@dataclass
class PendingEvent:
    actor: str
    action: str
    case_id: int | None = None
    instance_id: int | None = None
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def event_hash(
    seq: int,
    prev_hash: str,
    occurred_at: datetime,
    actor: str,
    action: str,
    case_id: int | None,
    instance_id: int | None,
    task_id: str | None,
    data: dict[str, Any],
) -> str:
    content = json.dumps(
        [seq, prev_hash, occurred_at.isoformat(), actor, action, case_id, instance_id, task_id, data],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def append(session: Session, events: list[PendingEvent], occurred_at: datetime) -> None:
    if not events:
        return
    connection = session.connection()
    head = connection.execute(_LOCK_HEAD).first()
    if head is None:
        raise RuntimeError("the audit trail has no head row; run `frontdoor init` to upgrade the schema")
    seq, prev = head.seq, head.hash
    rows = []
    for event in events:
        seq += 1
        digest = event_hash(
            seq,
            prev,
            occurred_at,
            event.actor,
            event.action,
            event.case_id,
            event.instance_id,
            event.task_id,
            event.data,
        )
        rows.append(
            {
                "seq": seq,
                "occurred_at": occurred_at,
                "actor": event.actor,
                "action": event.action,
                "case_id": event.case_id,
                "instance_id": event.instance_id,
                "task_id": event.task_id,
                "data": event.data,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    connection.execute(_INSERT_EVENT, rows)
    connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})


@dataclass
class ChainBreak:
    seq: int
    reason: str


def verify(session: Session, batch: int = 5000) -> ChainBreak | None:
    """Walk the whole chain in order; return the first broken row, or None when intact."""
    expected_seq, prev = 0, GENESIS
    last_seen = 0
    while True:
        rows = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.seq > last_seen).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            expected_seq += 1
            if row.seq != expected_seq:
                return ChainBreak(expected_seq, f"row {expected_seq} is missing (next row is {row.seq})")
            if row.prev_hash != prev:
                return ChainBreak(row.seq, "its previous-hash does not match the row before it")
            digest = event_hash(
                row.seq,
                row.prev_hash,
                row.occurred_at,
                row.actor,
                row.action,
                row.case_id,
                row.instance_id,
                row.task_id,
                row.data,
            )
            if digest != row.hash:
                return ChainBreak(row.seq, "its content does not match its hash (the row was changed)")
            prev = row.hash
            last_seen = row.seq
        session.expunge_all()
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != expected_seq or head.hash != prev):
        return ChainBreak(
            expected_seq + 1, f"the chain ends at row {expected_seq} but the head records {head.seq}"
        )
    return None
