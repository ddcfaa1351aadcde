"""Rollups: aggregates per origin, day and metric.

Revision ID: 2026_11_21_0006
Revises: 2026_11_21_0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_21_0006"
down_revision = "2026_11_21_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("metric", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_rollups_day", "rollups", ["day"])


def downgrade() -> None:
    op.drop_index("ix_rollups_day", "rollups")
    op.drop_table("rollups")
