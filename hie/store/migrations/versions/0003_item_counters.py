"""Per-item counters that only grow: what status and metrics show, without counting messages.

Revision ID: 0003_item_counters
Revises: 0002_target_status_index
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_item_counters"
down_revision: str | None = "0002_target_status_index"
branch_labels: str | None = None
depends_on: str | None = None

# Each counter starts from what the messages still in the store say, in share 0: the figures
# status showed before the upgrade, so they do not jump. Messages purged before are not known.
# counter: (the item column, its table, which rows count)
_BACKFILL = {
    "received": ("target", "messages", "target IS NOT NULL"),
    "sent": ("source", "messages", "source IS NOT NULL"),
    "completed": ("target", "messages", "target IS NOT NULL AND status = 'completed'"),
    "failed": ("target", "messages", "target IS NOT NULL AND status = 'error'"),
    "retried": ("item", "events", "item IS NOT NULL AND event = 'retried'"),
}


def upgrade() -> None:
    """Create ``item_counters`` and fill it from the messages and events in the store."""
    op.create_table(
        "item_counters",
        sa.Column("item", sa.String(200), primary_key=True),
        sa.Column("counter", sa.String(20), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
    )
    for counter, (column, table, where) in _BACKFILL.items():
        op.execute(
            "INSERT INTO item_counters (item, counter, shard, total) "
            f"SELECT {column}, '{counter}', 0, COUNT(*) FROM {table} "
            f"WHERE {where} GROUP BY {column}"
        )


def downgrade() -> None:
    """Drop the counters (the messages they were counted from are untouched)."""
    op.drop_table("item_counters")
