"""the work queues' child filter: a full-text index on SQLite, and ix_task_case covering (issue 5)

Revision ID: 0006
Revises: 0005

The work queues' "Child's name or case reference" filter matches anywhere in the name
(LIKE '%okafor%'), which no b-tree serves: on SQLite it read all of case_record (about 22 ms for
100,000 cases).  An FTS5 table with the trigram tokenizer (SQLite 3.34+) answers the same question
from an index in about 1 ms.  It is an external-content table: it stores only the index, and
triggers keep it in step with case_record, in the same transaction as every change.

PostgreSQL has the pg_trgm indexes of migration 0002 instead.  Where SQLite was built without
FTS5 or the trigram tokenizer, nothing is created and the filter keeps its scan (web.queues asks
whether case_search exists).

Both stores: ix_task_case (case_id, status) becomes (case_id, status, team_key, assignee, role_key,
due_at, created_at, id).  The filter reads the open tasks of the matching cases (a common surname:
1,681 children, 4,300 tasks) and keeps those of the queue in due order; with the columns the queue
rules and the order need in the index, that is read from the index alone, not from 4,300 rows of
the task table (SQLite: 23 ms to 9 ms for a manager's queue, 32 ms to 15 ms for a practitioner's).
The engine's reads of a case's tasks use the same index as before, by its first two columns.
Rebuilding it locks the task table against writes while it is built (about a second for 300,000
tasks).

A later migration that rebuilds case_record on SQLite (Alembic's batch mode copies the table) drops
these triggers with the old table: it must create them again, and 'rebuild' the index.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

TRIGGERS = {
    "case_search_insert": """
        CREATE TRIGGER case_search_insert AFTER INSERT ON case_record BEGIN
            INSERT INTO case_search (rowid, reference, subject_name)
            VALUES (new.id, new.reference, new.subject_name);
        END""",
    "case_search_delete": """
        CREATE TRIGGER case_search_delete AFTER DELETE ON case_record BEGIN
            INSERT INTO case_search (case_search, rowid, reference, subject_name)
            VALUES ('delete', old.id, old.reference, old.subject_name);
        END""",
    # Only a change of what is indexed touches the index (a case changes team or worker far more often).
    "case_search_update": """
        CREATE TRIGGER case_search_update AFTER UPDATE OF reference, subject_name ON case_record BEGIN
            INSERT INTO case_search (case_search, rowid, reference, subject_name)
            VALUES ('delete', old.id, old.reference, old.subject_name);
            INSERT INTO case_search (rowid, reference, subject_name)
            VALUES (new.id, new.reference, new.subject_name);
        END""",
}


CASE_INDEX = ("case_id", "status")
COVERING_CASE_INDEX = ("case_id", "status", "team_key", "assignee", "role_key", "due_at", "created_at", "id")


def upgrade() -> None:
    op.drop_index("ix_task_case", table_name="task")
    op.create_index("ix_task_case", "task", list(COVERING_CASE_INDEX), unique=False)
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    try:
        bind.exec_driver_sql(
            "CREATE VIRTUAL TABLE case_search USING fts5("
            "reference, subject_name, content='case_record', content_rowid='id', tokenize='trigram')"
        )
    except sa.exc.OperationalError as exc:  # no FTS5, or SQLite older than 3.34: the filter scans
        log.warning("case_search not created (%s): the child filter will read every case", exc.orig)
        return
    for sql in TRIGGERS.values():
        bind.exec_driver_sql(sql)
    bind.exec_driver_sql("INSERT INTO case_search (case_search) VALUES ('rebuild')")  # the cases so far


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in TRIGGERS:
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        bind.exec_driver_sql("DROP TABLE IF EXISTS case_search")
    op.drop_index("ix_task_case", table_name="task")
    op.create_index("ix_task_case", "task", list(CASE_INDEX), unique=False)
