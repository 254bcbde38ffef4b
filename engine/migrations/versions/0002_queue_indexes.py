"""partial indexes for the open-task work queues (issue 5)

Revision ID: 0002
Revises: 0001

A queue page reads "the first 200 open tasks of a team (or of a person), soonest due first".
On (team_key, status, due_at) that is one index range per status merged and sorted; on these
partial indexes, which hold only the open tasks, it is one range already in due order that stops
after 200 rows.  The predicates are literal text: SQLite uses a partial index only when the
query's WHERE names the same literal values (web.queues and Engine.tasks render them so).

PostgreSQL only, where the pg_trgm extension is available (or already installed): trigram indexes
on the lowered child's name and case reference, for the queues' "Child's name or case reference"
filter (a LIKE '%...%' that a b-tree cannot serve).  Without it that filter scans case_record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN = "status IN ('ready', 'claimed')"
OFFERED = "status = 'ready' AND assignee IS NULL"
INDEXES = (
    ("ix_task_team_due_open", ["team_key", "due_at"], OPEN),
    ("ix_task_assignee_due_open", ["assignee", "due_at"], OPEN),
    ("ix_task_offered", ["team_key", "role_key", "due_at"], OFFERED),
    ("ix_task_escalated", ["escalation_level", "due_at"], f"{OPEN} AND escalation_level > 0"),
)
TRIGRAM = (
    ("ix_case_record_subject_name_trgm", "subject_name"),
    ("ix_case_record_reference_trgm", "reference"),
)


def upgrade() -> None:
    for name, columns, where in INDEXES:
        op.create_index(
            name,
            "task",
            columns,
            unique=False,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _trigram_available(bind):
        for name, column in TRIGRAM:
            op.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON case_record USING gin (lower({column}) gin_trgm_ops)"
            )


def _trigram_available(bind: sa.Connection) -> bool:
    """pg_trgm installed, or installable by this user (it is a trusted extension since PostgreSQL 13)."""
    installed = bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first()
    if installed:
        return True
    if not bind.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").first():
        return False
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError:  # no privilege: the filter still works, by a scan
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _column in TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    for name, _columns, _where in INDEXES:
        op.drop_index(name, table_name="task")
