"""Alembic environment: one chain for SQLite and PostgreSQL, run on a connection we hand in."""

from __future__ import annotations

from alembic import context

import sindri_console.models  # noqa: F401  (registers every table)
from sindri_console.db.base import Base

target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `sindri-console db upgrade`")
_run(connection)
