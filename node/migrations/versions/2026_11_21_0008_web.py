"""Web: people's accounts, sessions, citizens' receipts, stored acceptance reports.

Revision ID: 2026_11_21_0008
Revises: 2026_11_21_0007
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_21_0008"
down_revision = "2026_11_21_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", sa.String(24), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.String(24), nullable=False),
    )
    op.create_table(
        "receipts",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.String(24), nullable=False),
    )
    op.create_table(
        "acceptance_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prefix", sa.String(128), nullable=False),
        sa.Column("checked_at", sa.String(24), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("report", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in ("acceptance_reports", "receipts", "sessions", "users"):
        op.drop_table(table)
