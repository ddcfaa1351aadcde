"""Rollups without the index on ``day``.

Rollups are read by subtree (the primary key's leading column, ``origin``), and a date
range is applied while they are read. The index on ``day`` cost every write instead: a
push's rollup rows fall on as many days as its records were received on, and SQLite writes
each index page a commit touches in full, so the index took about half of every WAL frame
a push wrote (``benchmarks.ingest``: 261 → 124 frames per push of 100 entries).

Revision ID: 2026_12_06_0011
Revises: 2026_11_22_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_06_0011"
down_revision = "2026_11_22_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_rollups_day", "rollups")


def downgrade() -> None:
    op.create_index("ix_rollups_day", "rollups", ["day"])
