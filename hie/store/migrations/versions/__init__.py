"""Alembic revisions of the message store, oldest first."""
