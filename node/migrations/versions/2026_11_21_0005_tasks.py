"""Tasks: revisions in delivery order, reports seen, the downlink cursor.

Revision ID: 2026_11_21_0005
Revises: 2026_11_21_0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_21_0005"
down_revision = "2026_11_21_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("delivery", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("rev", sa.Integer, nullable=False),
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("issued", sa.String(24), nullable=False),
        sa.Column("due", sa.String(24), nullable=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.String(24), nullable=False),
    )
    op.create_index("ux_tasks_rev", "tasks", ["task_id", "rev"], unique=True)
    op.create_index("ix_tasks_target", "tasks", ["target"])
    op.create_table(
        "task_events",
        sa.Column("origin", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("task_rev", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.String(24), nullable=False),
        sa.Column("note", sa.String(2000), nullable=True),
    )
    op.create_index("ix_task_events_task", "task_events", ["task_id"])
    op.create_table(
        "task_alerts",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("alert", sa.String(32), primary_key=True),
        sa.Column("at", sa.String(24), nullable=False),
    )
    op.create_table(
        "downlink",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("after", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.String(24), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("downlink")
    op.drop_table("task_alerts")
    op.drop_index("ix_task_events_task", "task_events")
    op.drop_table("task_events")
    op.drop_index("ix_tasks_target", "tasks")
    op.drop_index("ux_tasks_rev", "tasks")
    op.drop_table("tasks")
