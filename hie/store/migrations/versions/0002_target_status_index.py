"""Index messages by (target, status): backpressure counts the messages waiting for an item.

Revision ID: 0002_target_status_index
Revises: 0001_initial
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision: str = "0002_target_status_index"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Replace the index on target with one on (target, status)."""
    op.create_index("ix_messages_target_status", "messages", ["target", "status"])
    op.drop_index("ix_messages_target", table_name="messages")


def downgrade() -> None:
    """Back to the index on target alone."""
    op.create_index("ix_messages_target", "messages", ["target"])
    op.drop_index("ix_messages_target_status", table_name="messages")
