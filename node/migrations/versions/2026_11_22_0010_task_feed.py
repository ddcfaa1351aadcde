"""The task feed: revisions numbered in commit order and hash-chained; the downlink keeps
the parent's chain at its cursor.

Revisions already held keep their delivery number as their feed number, so children's
cursors stay valid; the chain is computed over them in that order and the feed's head row
(its lock) starts where they end.

Revision ID: 2026_11_22_0010
Revises: 2026_11_22_0009
Create Date: 2026-11-22
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "2026_11_22_0010"
down_revision = "2026_11_22_0009"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64


def _link(chain: str, raw: bytes) -> str:
    """``node.taskfeed.link`` as of this revision."""
    return hashlib.sha256(bytes.fromhex(chain) + hashlib.sha256(raw).digest()).hexdigest()


def upgrade() -> None:
    op.add_column("tasks", sa.Column("feed", sa.BigInteger, nullable=True))
    op.add_column("tasks", sa.Column("chain", sa.String(64), nullable=True))
    op.create_index("ux_tasks_feed", "tasks", ["feed"], unique=True)
    op.create_table(
        "task_feed",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.Column("chain", sa.String(64), nullable=False),
    )
    op.add_column("downlink", sa.Column("chain", sa.String(64), nullable=True))
    conn = op.get_bind()
    last, chain = 0, _GENESIS
    rows = conn.execute(sa.text("SELECT delivery, raw FROM tasks ORDER BY delivery")).all()
    for delivery, raw in rows:
        last, chain = int(delivery), _link(chain, bytes(raw))
        conn.execute(
            sa.text("UPDATE tasks SET feed = :feed, chain = :chain WHERE delivery = :delivery"),
            {"feed": last, "chain": chain, "delivery": delivery},
        )
    conn.execute(
        sa.text("INSERT INTO task_feed (id, last, chain) VALUES (1, :last, :chain)"),
        {"last": last, "chain": chain},
    )


def downgrade() -> None:
    with op.batch_alter_table("downlink") as downlink:
        downlink.drop_column("chain")
    op.drop_table("task_feed")
    op.drop_index("ux_tasks_feed", "tasks")
    with op.batch_alter_table("tasks") as tasks:
        tasks.drop_column("chain")
        tasks.drop_column("feed")
