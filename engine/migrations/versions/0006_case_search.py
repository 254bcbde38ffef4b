"""the child filter's full-text index on SQLite (issue 5)

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


def upgrade() -> None:
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
    if bind.dialect.name != "sqlite":
        return
    for name in TRIGGERS:
        bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    bind.exec_driver_sql("DROP TABLE IF EXISTS case_search")
