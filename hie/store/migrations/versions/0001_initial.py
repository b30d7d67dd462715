"""Initial message store: messages, bodies, events, deliveries.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# SQLite only auto-increments an INTEGER PRIMARY KEY, never a BIGINT one.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "bodies",
        sa.Column("body_id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_bodies_session_sha256", "bodies", ["session_id", "sha256"])

    op.create_table(
        "messages",
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("correlation_id", sa.String(36), nullable=True),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("msg_type", sa.String(200), nullable=True),
        sa.Column("control_id", sa.String(200), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("body_id", _BIG_ID, sa.ForeignKey("bodies.body_id"), nullable=True),
        sa.Column("ack_code", sa.String(10), nullable=True),
        sa.Column("ack_text", sa.Text(), nullable=True),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("possible_duplicate", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=True),
    )
    for name, columns in [
        ("ix_messages_session_id", ["session_id"]),
        ("ix_messages_status_updated_at", ["status", "updated_at"]),
        ("ix_messages_created_at", ["created_at"]),
        ("ix_messages_msg_type", ["msg_type"]),
        ("ix_messages_control_id", ["control_id"]),
        ("ix_messages_source", ["source"]),
        ("ix_messages_target", ["target"]),
        ("ix_messages_parent_id", ["parent_id"]),
        ("ix_messages_body_id", ["body_id"]),
    ]:
        op.create_index(name, "messages", columns)

    op.create_table(
        "events",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("item", sa.String(200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_events_message_id", "events", ["message_id"])
    op.create_index("ix_events_session_id", "events", ["session_id"])

    op.create_table(
        "deliveries",
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("completed_at", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop everything the upgrade created."""
    op.drop_table("deliveries")
    op.drop_table("events")
    op.drop_table("messages")
    op.drop_table("bodies")
