"""A fresh PostgreSQL schema for one benchmark run, so that every run starts from an empty
store and leaves the database as it found it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text

from node.db import normalise_url

__all__ = ["admin_engine", "drop_schema", "fresh_schema", "schema_for_run"]


def admin_engine(url: str) -> Any:
    """An engine on ``url`` in autocommit, for creating, dropping and listing schemas."""
    return create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")


def fresh_schema(url: str, prefix: str) -> tuple[str, str]:
    """A new schema named ``<prefix>_<8 hex>``, and the URL that puts a node's store in it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = admin_engine(url)
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    engine.dispose()
    joiner = "&" if "?" in url else "?"
    return name, f"{url}{joiner}options=-csearch_path%3D{name}"


def drop_schema(url: str, name: str) -> None:
    engine = admin_engine(url)
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    engine.dispose()


@contextmanager
def schema_for_run(url: str, prefix: str) -> Iterator[str]:
    """The URL of a fresh schema, dropped when the block ends (whether or not it failed)."""
    name, scoped = fresh_schema(url, prefix)
    try:
        yield scoped
    finally:
        drop_schema(url, name)
