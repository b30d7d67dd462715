"""Alembic migrations of the message store (run with ``MessageStore.migrate()``)."""
