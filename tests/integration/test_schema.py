"""The migrations and the models describe the same schema.

Several changes add tables and columns; a model edited without its migration (or the
reverse) would only show up on a council's upgrade.  Alembic's comparison finds it here.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.db import Database, declared
from engine.models import Base


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrations_build_the_schema_the_models_declare(store: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("sqlite_url" if store == "sqlite" else "postgres_url")
    database = Database(url)
    database.upgrade()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": declared}
        )
        differences = compare_metadata(context, Base.metadata)
    database.dispose()
    assert differences == [], "models and migrations disagree; write a migration for:\n" + "\n".join(
        map(str, differences)
    )


def test_every_migration_can_be_undone(sqlite_url: str) -> None:
    from alembic import command

    from engine.db import alembic_config

    database = Database(sqlite_url)
    database.upgrade()
    with database.engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    tables = set(sa.inspect(database.engine).get_table_names()) - {"alembic_version"}
    database.dispose()
    assert tables == set()


def test_the_child_search_index_covers_the_cases_made_before_it(sqlite_url: str) -> None:
    """Migration 0006 on a council's existing SQLite database: the cases already there are found,
    and from then on every new, renamed or deleted case is followed (the triggers)."""
    from alembic import command

    from engine.db import alembic_config

    def matching(connection: sa.Connection, text: str) -> set[int]:
        found = connection.execute(
            sa.text("SELECT rowid FROM case_search WHERE case_search MATCH :phrase"), {"phrase": f'"{text}"'}
        )
        return set(found.scalars())

    case = sa.text(
        "INSERT INTO case_record (id, reference, subject_name, status, opened_at) "
        "VALUES (:id, :reference, :name, 'open', '2024-03-06 09:30:00')"
    )
    database = Database(sqlite_url)
    with database.engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        connection.execute(case, {"id": 1, "reference": "REF-001", "name": "Dan Okafor"})
    database.upgrade()
    with database.engine.begin() as connection:
        assert matching(connection, "okafor") == {1} and matching(connection, "ref-0") == {1}
        connection.execute(case, {"id": 2, "reference": "REF-002", "name": "Ada Okafor"})
        assert matching(connection, "okafor") == {1, 2}
        connection.execute(sa.text("UPDATE case_record SET subject_name = 'Dan Smith' WHERE id = 1"))
        connection.execute(sa.text("DELETE FROM case_record WHERE id = 2"))
        assert matching(connection, "okafor") == set() and matching(connection, "smith") == {1}
        connection.execute(sa.text("UPDATE case_record SET team_key = 'mash' WHERE id = 1"))  # not indexed
        assert matching(connection, "smith") == {1}
    database.dispose()
