"""Trust: certificates on keys, enrollment tokens, replay cache.

Revision ID: 2026_11_21_0004
Revises: 2026_11_21_0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_21_0004"
down_revision = "2026_11_21_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("tier", sa.String(16), nullable=True))
        batch.add_column(sa.Column("issuer", sa.String(128), nullable=True))
        batch.add_column(sa.Column("cert", sa.LargeBinary, nullable=True))
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("child", sa.String(128), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(24), nullable=False),
        sa.Column("expires_at", sa.String(24), nullable=False),
        sa.Column("used_at", sa.String(24), nullable=True),
    )
    op.create_table(
        "replay_cache",
        sa.Column("sig_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.String(24), nullable=False),
    )
    op.create_index("ix_replay_expires", "replay_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_replay_expires", "replay_cache")
    op.drop_table("replay_cache")
    op.drop_table("tokens")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("cert")
        batch.drop_column("issuer")
        batch.drop_column("tier")
