"""Alembic environment for the message store.

``MessageStore.migrate()`` builds the Alembic ``Config`` in code and hands over an open
connection in ``config.attributes["connection"]``, so no ``alembic.ini`` is needed. Run by the
``alembic`` command instead, ``sqlalchemy.url`` from the config is used.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

from hie.store.models import Base

# Any constant works; it only has to be the same in every process that migrates this database.
_PG_MIGRATION_LOCK = 0x48494553544F5245  # "HIESTORE"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two workers starting together would both try CREATE TABLE; the second waits here,
            # then finds the schema at head. SQLite gets the same effect from BEGIN IMMEDIATE.
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the caller's connection, or one built from ``sqlalchemy.url``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or migrate with MessageStore(url).migrate()")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run them online")
run_migrations_online()
