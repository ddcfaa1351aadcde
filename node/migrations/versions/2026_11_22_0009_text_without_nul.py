"""Derived text holds U+FFFD where an entry holds U+0000, on SQLite as on PostgreSQL.

PostgreSQL text and JSONB cannot hold U+0000, so materialised records, report notes and
review messages now carry U+FFFD in its place on every backend (``node/db.py``). A SQLite
store may still hold U+0000 derived before: this brings it to the same state (PostgreSQL
never could hold any). Entries keep their exact bytes.

Revision ID: 2026_11_22_0009
Revises: 2026_11_21_0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "2026_11_22_0009"
down_revision = "2026_11_21_0008"
branch_labels = None
depends_on = None

_REPLACEMENT = "\ufffd"


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", _REPLACEMENT)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    # JSON columns hold json.dumps text, where U+0000 is the escape \u0000
    rows = conn.execute(
        sa.text("SELECT record_id, data FROM records WHERE data LIKE :escape"),
        {"escape": "%\\u0000%"},
    ).all()
    for record_id, data in rows:
        fixed = json.dumps(_storable(json.loads(data)))
        if fixed != data:
            conn.execute(
                sa.text("UPDATE records SET data = :data WHERE record_id = :id"),
                {"data": fixed, "id": record_id},
            )
    # SQLite's replace() cannot find U+0000 (its instr() can): the text is fixed here
    for table, key, column in (
        ("task_events", "origin, seq", "note"),
        ("rejections", "id", "message"),
    ):
        names = [k.strip() for k in key.split(",")]
        found = conn.execute(
            sa.text(f"SELECT {key}, {column} FROM {table} WHERE instr({column}, char(0)) > 0")
        ).all()
        for row in found:
            where = " AND ".join(f"{k} = :{k}" for k in names)
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = :text WHERE {where}"),
                {"text": _storable(row[-1]), **dict(zip(names, row[:-1], strict=True))},
            )


def downgrade() -> None:
    """Nothing to undo: the originals are in the entries."""
