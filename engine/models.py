"""Tables.  See DESIGN.md ("Tables") for what each one is for.

Instants are stored as naive UTC (SQLite has no time zones) and come back as
aware UTC datetimes through :class:`UTCDateTime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use engine.clock")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ProcessDefinition(Base):
    """One immutable, numbered version of one BPMN process."""

    __tablename__ = "process_definition"
    __table_args__ = (
        sa.UniqueConstraint("key", "version"),
        sa.Index("ix_process_definition_key_sha256", "key", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[int]
    name: Mapped[str | None] = mapped_column(sa.String(255))
    filename: Mapped[str] = mapped_column(sa.String(255))
    bpmn_xml: Mapped[str] = mapped_column(sa.Text)
    # sha256 of the file the process came from: deploying what is already the newest version
    # changes nothing; deploying an older file again makes it the newest version.
    sha256: Mapped[str] = mapped_column(sa.String(64))
    deployed_by: Mapped[str] = mapped_column(sa.String(100))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(20), default="active")


class CaseRecord(Base):
    """One child's episode, from contact to closure."""

    __tablename__ = "case_record"
    __table_args__ = (
        # PostgreSQL with pg_trgm (migration 0002): the queues' child filter, lower(...) LIKE '%...%'.
        sa.Index(
            "ix_case_record_subject_name_trgm",
            sa.func.lower(sa.text("subject_name")).label("subject_name_lower"),
            postgresql_using="gin",
            postgresql_ops={"subject_name_lower": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        sa.Index(
            "ix_case_record_reference_trgm",
            sa.func.lower(sa.text("reference")).label("reference_lower"),
            postgresql_using="gin",
            postgresql_ops={"reference_lower": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(sa.String(64), unique=True)
    subject_name: Mapped[str | None] = mapped_column(sa.String(255))
    team_key: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    worker: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_reason: Mapped[str | None] = mapped_column(sa.String(64))


class CaseLink(Base):
    """Two cases that belong together (siblings, a household): a row of its own, never shared data."""

    __tablename__ = "case_link"
    __table_args__ = (sa.UniqueConstraint("case_id", "linked_case_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("case_record.id"), index=True)
    linked_case_id: Mapped[int] = mapped_column(sa.ForeignKey("case_record.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseFact(Base):
    """A named fact about a case (a date, a code), declared in the BPMN with ``record.<name>``.

    Reports and statutory returns read these rows; they never parse workflow state.
    """

    __tablename__ = "case_fact"
    __table_args__ = (
        sa.UniqueConstraint("case_id", "name"),
        sa.Index("ix_case_fact_name", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("case_record.id"))
    name: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[Any] = mapped_column(JSONType)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    instance_id: Mapped[int | None] = mapped_column(sa.ForeignKey("process_instance.id"))
    element_id: Mapped[str | None] = mapped_column(sa.String(255))


class ProcessInstance(Base):
    __tablename__ = "process_instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(sa.ForeignKey("process_definition.id"), index=True)
    # Call activities to other files resolve to the versions deployed when the instance started;
    # {called process key: definition id}, so a running instance never changes underneath.
    called_definitions: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("case_record.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="running")
    # SpiffWorkflow state without the spec, completed history pruned (see engine.runtime).
    state: Mapped[str] = mapped_column(sa.Text)
    revision: Mapped[int] = mapped_column(default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_by: Mapped[str] = mapped_column(sa.String(100))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Task(Base):
    """The work-queue projection of one human task.  Queues read only this table."""

    __tablename__ = "task"
    __table_args__ = (
        # my tasks / team queue / tasks of a case, each ordered by due date.
        sa.Index("ix_task_assignee_open", "assignee", "status", "due_at"),
        sa.Index("ix_task_team_open", "team_key", "status", "due_at"),
        # A case's tasks; with the queue rules' columns and the due order after them, so that the
        # queues' child filter reads the matching cases' open tasks from the index alone (0006).
        sa.Index(
            "ix_task_case",
            "case_id",
            "status",
            "team_key",
            "assignee",
            "role_key",
            "due_at",
            "created_at",
            "id",
        ),
        sa.Index("ix_task_instance", "instance_id", "status"),
        # The open tasks only, in due order (migration 0002): a queue page is one range of one of these.
        # The predicates are literal text, as queries must write them for SQLite to use the index.
        sa.Index(
            "ix_task_team_due_open",
            "team_key",
            "due_at",
            sqlite_where=sa.text("status IN ('ready', 'claimed')"),
            postgresql_where=sa.text("status IN ('ready', 'claimed')"),
        ),
        sa.Index(
            "ix_task_assignee_due_open",
            "assignee",
            "due_at",
            sqlite_where=sa.text("status IN ('ready', 'claimed')"),
            postgresql_where=sa.text("status IN ('ready', 'claimed')"),
        ),
        sa.Index(  # waiting to be claimed, by team and role: a partner's queue
            "ix_task_offered",
            "team_key",
            "role_key",
            "due_at",
            sqlite_where=sa.text("status = 'ready' AND assignee IS NULL"),
            postgresql_where=sa.text("status = 'ready' AND assignee IS NULL"),
        ),
        sa.Index(  # the escalations, highest level first, each level in due order
            "ix_task_escalated",
            "escalation_level",
            "due_at",
            sqlite_where=sa.text("status IN ('ready', 'claimed') AND escalation_level > 0"),
            postgresql_where=sa.text("status IN ('ready', 'claimed') AND escalation_level > 0"),
        ),
        # The process heatmap: open and overdue tasks per element of one process (issue 6).
        sa.Index("ix_task_process_open", "process_key", "status", "element_id", "due_at"),
    )

    # The SpiffWorkflow task id: stable for the life of the task.
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(sa.ForeignKey("process_instance.id"))
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("case_record.id"))
    process_key: Mapped[str] = mapped_column(sa.String(255))
    element_id: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str] = mapped_column(sa.String(255))
    lane: Mapped[str | None] = mapped_column(sa.String(255))
    role_key: Mapped[str | None] = mapped_column(sa.String(64))
    team_key: Mapped[str | None] = mapped_column(sa.String(64))
    assignee: Mapped[str | None] = mapped_column(sa.String(100))
    # ready -> claimed -> completed; or cancelled when the process moves on without it.
    status: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_level: Mapped[int] = mapped_column(default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    form_key: Mapped[str | None] = mapped_column(sa.String(255))
    ui_form_key: Mapped[str | None] = mapped_column(sa.String(255))
    instructions: Mapped[str | None] = mapped_column(sa.Text)
    completed_by: Mapped[str | None] = mapped_column(sa.String(100))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Answers saved but not yet submitted ("save as draft"); cleared when the task closes.
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    draft_saved_by: Mapped[str | None] = mapped_column(sa.String(100))
    draft_saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Timer(Base):
    """A waiting BPMN timer as a row: the worker fires what is due, each row once."""

    __tablename__ = "timer"
    __table_args__ = (
        # The worker's one question: what is due next?
        sa.Index("ix_timer_due", "status", "due_at"),
        sa.Index("ix_timer_instance", "instance_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(sa.ForeignKey("process_instance.id"))
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("case_record.id"))
    # The SpiffWorkflow task that waits on the timer.
    task_id: Mapped[str] = mapped_column(sa.String(36))
    element_id: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str | None] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(20))  # date | duration | cycle
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(20), default="waiting")  # waiting | fired | cancelled
    # A boundary timer on a human task: that task, and the escalation level firing it reaches.
    attached_task_id: Mapped[str | None] = mapped_column(sa.String(36))
    escalation_level: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fired_by: Mapped[str | None] = mapped_column(sa.String(100))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class StatutoryClock(Base):
    """A named deadline on a case, declared in the BPMN and kept by the engine.

    Reports ask "decisions within 1 working day this month" of this table alone.
    """

    __tablename__ = "statutory_clock"
    __table_args__ = (
        sa.Index("ix_statutory_clock_name_stopped", "name", "stopped_at"),
        sa.Index("ix_statutory_clock_case", "case_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("case_record.id"))
    instance_id: Mapped[int] = mapped_column(sa.ForeignKey("process_instance.id"))
    name: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    target_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the clock stops: was the target missed?
    breached: Mapped[bool | None]
    started_by_element: Mapped[str | None] = mapped_column(sa.String(255))
    stopped_by_element: Mapped[str | None] = mapped_column(sa.String(255))


class AuditEvent(Base):
    """Append-only.  Each row carries the hash of its content and of the row before it."""

    __tablename__ = "audit_event"

    # ``seq`` is gapless and is the order of the chain; assigned under the audit_head lock.
    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(64))
    case_id: Mapped[int | None] = mapped_column(index=True)
    instance_id: Mapped[int | None] = mapped_column(index=True)
    task_id: Mapped[str | None] = mapped_column(sa.String(36))
    # Plain JSON, not JSONB: PostgreSQL's JSONB rewrites numbers (1e16, -0.0), and the hash must
    # be recomputable from exactly what was stored.
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHead(Base):
    """A single row: the last sequence number and hash.  Locking it orders concurrent appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(sa.String(64))


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(255))
    # Social Work England registration: only qualified workers may hold some roles' work.
    qualified: Mapped[bool] = mapped_column(default=False)
    employment: Mapped[str] = mapped_column(sa.String(20), default="permanent")  # permanent | agency
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))


class ApiToken(Base):
    """A system's credential for the JSON API: acts as ``user``; only the hash is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(default=False)
    # A partner system's token speaks for one sender (e.g. "police"): its references are its own.
    sender: Mapped[str | None] = mapped_column(sa.String(64))


class Team(Base):
    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))


class Role(Base):
    __tablename__ = "role"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    # Who may hold this role's work, e.g. {"qualified": true, "employment": ["permanent"]}.
    constraints: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Holders may assign and reassign the work of their team (managers).
    assigns_work: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str | None] = mapped_column(sa.Text)


class Membership(Base):
    """A user holds a role in a team."""

    __tablename__ = "membership"
    __table_args__ = (sa.UniqueConstraint("user_id", "team_id", "role_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("team.id"), index=True)
    role_id: Mapped[int] = mapped_column(sa.ForeignKey("role.id"))


class Outbox(Base):
    """Messages to send after commit (at least once, idempotently, keyed by id)."""

    __tablename__ = "outbox"
    # The sender's one question: what is pending and due?
    __table_args__ = (sa.Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Delivery (adapters/smtp.py): pending -> sending (claimed, committed before SMTP) -> sent;
    # back to pending with a later next_attempt_at on a temporary failure; failed when permanent.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Letter(Base):
    """A letter a task wrote (a PDF), kept with the child's case: who it went to, when, and by whom."""

    __tablename__ = "letter"
    __table_args__ = (sa.Index("ix_letter_case", "case_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("case_record.id"))
    instance_id: Mapped[int] = mapped_column(sa.ForeignKey("process_instance.id"))
    # The SpiffWorkflow task whose completion wrote it, and its element in the diagram.
    task_id: Mapped[str] = mapped_column(sa.String(36))
    element_id: Mapped[str] = mapped_column(sa.String(255))
    template: Mapped[str] = mapped_column(sa.String(100))
    recipient: Mapped[str] = mapped_column(sa.String(32))  # family | referrer | ...
    title: Mapped[str] = mapped_column(sa.String(255))
    pdf: Mapped[bytes] = mapped_column(sa.LargeBinary)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_by: Mapped[str | None] = mapped_column(sa.String(100))


class ProcessDraft(Base):
    """A process owner's diagram not yet deployed (engine/drafts.py): one per process key.

    ``revision`` goes up on every save; a save names the revision it started from, so two
    owners editing the same draft cannot overwrite each other's work unseen.
    """

    __tablename__ = "process_draft"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    bpmn_xml: Mapped[str] = mapped_column(sa.Text)
    revision: Mapped[int] = mapped_column(default=1)
    # The deployed version the draft was started from (None: a new process, or an uploaded file).
    based_on_version: Mapped[int | None]
    saved_by: Mapped[str] = mapped_column(sa.String(100))
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageSubscription(Base):
    """An instance waiting for a BPMN message: the projection ``correlate_message`` looks up.

    One row per waiting catch event (intermediate event, receive task, boundary event; ``task_id``
    set) or per message start of an event subprocess (``task_id`` null: it can start any time the
    instance runs).  ``correlation_key`` is the element's ``correlationKey`` expression, evaluated.
    """

    __tablename__ = "message_subscription"
    __table_args__ = (
        sa.Index("ix_message_subscription_lookup", "message_name", "correlation_key"),
        sa.Index("ix_message_subscription_instance", "instance_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(sa.ForeignKey("process_instance.id"))
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("case_record.id"))
    message_name: Mapped[str] = mapped_column(sa.String(255))
    correlation_key: Mapped[str | None] = mapped_column(sa.String(255))
    element_id: Mapped[str] = mapped_column(sa.String(255))
    task_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundReferral(Base):
    """A partner agency's referral as received: what makes re-sending it change nothing."""

    __tablename__ = "inbound_referral"
    __table_args__ = (sa.UniqueConstraint("sender", "sender_reference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(sa.String(64))
    sender_reference: Mapped[str] = mapped_column(sa.String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_by: Mapped[str] = mapped_column(sa.String(100))
    # sha256 of the body in canonical JSON: the same reference with another body is a conflict.
    payload_sha256: Mapped[str] = mapped_column(sa.String(64))
    # What it led to, per child: {"cases": [{"reference", "outcome": "opened"|"delivered", ...}]}.
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
