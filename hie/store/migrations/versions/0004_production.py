"""The production of every message and counter: productions sharing one store see their own.

Revision ID: 0004_production
Revises: 0003_item_counters
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_production"
down_revision: str | None = "0003_item_counters"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``messages.production`` (empty for what is stored already) and key the counters by
    production too (what was counted so far goes under "")."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("production", sa.String(200), nullable=True))
        batch.create_index("ix_messages_production_status", ["production", "status"])
    op.create_table(
        "item_counters_new",
        sa.Column("production", sa.String(200), primary_key=True),
        sa.Column("item", sa.String(200), primary_key=True),
        sa.Column("counter", sa.String(20), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO item_counters_new (production, item, counter, shard, total) "
        "SELECT '', item, counter, shard, total FROM item_counters"
    )
    op.drop_table("item_counters")
    op.rename_table("item_counters_new", "item_counters")


def downgrade() -> None:
    """Back to counters per item (productions summed) and messages without their production."""
    op.create_table(
        "item_counters_old",
        sa.Column("item", sa.String(200), primary_key=True),
        sa.Column("counter", sa.String(20), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO item_counters_old (item, counter, shard, total) "
        "SELECT item, counter, shard, SUM(total) FROM item_counters GROUP BY item, counter, shard"
    )
    op.drop_table("item_counters")
    op.rename_table("item_counters_old", "item_counters")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_production_status")
        batch.drop_column("production")
