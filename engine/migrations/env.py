"""Alembic environment: always run with a connection handed in by engine.db.Database.upgrade."""

from __future__ import annotations

from alembic import context

from engine.db import declared
from engine.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `frontdoor init` (engine.db.Database.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_name=declared,  # autogenerate must not drop the search index it cannot see
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
