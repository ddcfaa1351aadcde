"""Entries indexed by ``(origin, record_id)`` instead of ``record_id`` alone.

A record is written by one origin only, so its history is found among its origin's
entries, and the record names its origin. The index on ``record_id`` alone was written at
a random place by every entry: record ids are UUIDv7, ordered by the moment a record was
made, and a hub receives many stations' records of the same hours at once, so each
entry of a push fell on a leaf page of its own, and SQLite writes every page a commit
touches in full to its WAL (with 200,000 entries held, 4.1 KB of WAL per entry for this
index alone, a third of everything a push wrote). Under ``origin`` first, a push's new
records are appended to its origin's run of the index: a page or two per push.

Revision ID: 2026_12_06_0012
Revises: 2026_12_06_0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_06_0012"
down_revision = "2026_12_06_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_entries_origin_record", "entries", ["origin", "record_id"])
    op.drop_index("ix_entries_record", "entries")


def downgrade() -> None:
    op.create_index("ix_entries_record", "entries", ["record_id"])
    op.drop_index("ix_entries_origin_record", "entries")
