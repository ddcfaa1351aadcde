"""Private fields of own records, kept at the origin only.

Revision ID: 2026_11_21_0002
Revises: 2026_11_21_0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "2026_11_21_0002"
down_revision = "2026_11_21_0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "local_private",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("data", _JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("local_private")
