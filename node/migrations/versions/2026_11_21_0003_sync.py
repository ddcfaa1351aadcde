"""Sync: uplink cursors and backoff state, peers, data-quality bookkeeping.

Revision ID: 2026_11_21_0003
Revises: 2026_11_21_0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_21_0003"
down_revision = "2026_11_21_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uplink_cursor",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("acked", sa.BigInteger, nullable=False),
        sa.Column("blocked", sa.String(512), nullable=True),
        sa.Column("updated_at", sa.String(24), nullable=False),
    )
    op.create_table(
        "uplink_state",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("failures", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_at", sa.String(24), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("last_contact", sa.String(24), nullable=True),
    )
    op.create_table(
        "peers",
        sa.Column("node", sa.String(128), primary_key=True),
        sa.Column("last_seen", sa.String(24), nullable=False),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("pushes", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quality_raised",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_entries_status", "entries", ["status"])


def downgrade() -> None:
    op.drop_index("ix_entries_status", "entries")
    for table in ("quality_raised", "peers", "uplink_state", "uplink_cursor"):
        op.drop_table(table)
