"""process owners' draft diagrams and instance migrations (issue 6)

Revision ID: 0005
Revises: 0004

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- process owners' draft diagrams (engine/drafts.py, web/process_owner.py) ---
    op.create_table(
        "process_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("bpmn_xml", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("based_on_version", sa.Integer(), nullable=True),
        sa.Column("saved_by", sa.String(length=100), nullable=False),
        sa.Column("saved_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_process_draft")),
        sa.UniqueConstraint("key", name=op.f("uq_process_draft_key")),
    )
    # --- end of process owners' draft diagrams ---
    # --- process heatmap (web/process_views.py): open and overdue tasks per element ---
    op.create_index(
        "ix_task_process_open", "task", ["process_key", "status", "element_id", "due_at"], unique=False
    )
    # --- end of process heatmap ---


def downgrade() -> None:
    # --- process heatmap ---
    op.drop_index("ix_task_process_open", table_name="task")
    # --- end of process heatmap ---
    # --- process owners' draft diagrams ---
    op.drop_table("process_draft")
    # --- end of process owners' draft diagrams ---
