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
