"""The log: entries, heads, signed heads, records, keys, meta.

Revision ID: 2026_11_21_0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "2026_11_21_0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("time", sa.String(24), nullable=False),
        sa.Column("contract", sa.String(64), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("op", sa.String(3), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("received_at", sa.String(24), nullable=False),
    )
    op.create_index("ix_entries_record", "entries", ["record_id"])
    op.create_table(
        "heads",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signed_seq", sa.BigInteger, nullable=False),
        sa.Column("signed_head", sa.LargeBinary, nullable=True),
        sa.Column("updated_at", sa.String(24), nullable=False),
    )
    op.create_table(
        "signed_heads",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("origin", sa.String(128), nullable=False),
        sa.Column("contract", sa.String(64), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("updated_at", sa.String(24), nullable=False),
    )
    op.create_index("ix_records_contract", "records", ["contract", "origin"])
    op.create_index("ix_records_origin", "records", ["origin"])
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("not_before", sa.String(24), nullable=False),
        sa.Column("not_after", sa.String(24), nullable=True),
        sa.Column("revoked_from", sa.String(24), nullable=True),
    )
    op.create_index("ix_keys_node", "keys", ["node"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(1024), nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "keys", "records", "signed_heads", "heads", "entries"):
        op.drop_table(table)
