"""partner referrals (idempotency) and BPMN message subscriptions (issue 7)

Revision ID: 0004
Revises: 0003

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "message_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("message_name", sa.String(length=255), nullable=False),
        sa.Column("correlation_key", sa.String(length=255), nullable=True),
        sa.Column("element_id", sa.String(length=255), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["process_instance.id"],
            name=op.f("fk_message_subscription_instance_id_process_instance"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_record.id"], name=op.f("fk_message_subscription_case_id_case_record")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_subscription")),
    )
    with op.batch_alter_table("message_subscription", schema=None) as batch_op:
        batch_op.create_index(
            "ix_message_subscription_lookup", ["message_name", "correlation_key"], unique=False
        )
        batch_op.create_index("ix_message_subscription_instance", ["instance_id"], unique=False)

    op.create_table(
        "inbound_referral",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("sender_reference", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("received_by", sa.String(length=100), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("result", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_referral")),
        sa.UniqueConstraint(
            "sender", "sender_reference", name=op.f("uq_inbound_referral_sender_sender_reference")
        ),
    )

    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("sender")
    op.drop_table("inbound_referral")
    with op.batch_alter_table("message_subscription", schema=None) as batch_op:
        batch_op.drop_index("ix_message_subscription_instance")
        batch_op.drop_index("ix_message_subscription_lookup")
    op.drop_table("message_subscription")
