"""Migrations run on SQLite and PostgreSQL, are idempotent and match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from node.db import Store
from node.tables import metadata


def test_migrations_create_the_model_schema(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.migrate()
        store.migrate()  # idempotent
        with store.engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert {
                "entries",
                "heads",
                "signed_heads",
                "records",
                "keys",
                "meta",
                "alembic_version",
            } <= names
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        store.dispose()
