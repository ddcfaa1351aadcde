"""Acceptance: the organisation register and the record of refused segments.

Revision ID: 2026_11_21_0007
Revises: 2026_11_21_0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_21_0007"
down_revision = "2026_11_21_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "register",
        sa.Column("node", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("region", sa.String(32), nullable=True),
    )
    op.create_table(
        "rejections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(128), nullable=False),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("at", sa.String(24), nullable=False),
        sa.Column("reviewed", sa.Boolean, nullable=False),
    )
    op.create_index("ix_rejections_origin", "rejections", ["origin"])


def downgrade() -> None:
    op.drop_index("ix_rejections_origin", "rejections")
    op.drop_table("rejections")
    op.drop_table("register")
