"""Message store behaviour specific to PostgreSQL.

Each test gets its own schema from the ``pg_url`` fixture (``tests/integration/conftest.py``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from hie.store import ItemCounters, MessageStore
from hie.store.models import Base
from tests.unit.test_store_sqlite import store_before_counters

pytestmark = pytest.mark.integration


def test_migrations_from_two_processes_at_once_both_succeed(pg_url: str) -> None:
    # Given two processes (as two workers starting together) on an empty schema
    script = "import sys; from hie.store import MessageStore; MessageStore(sys.argv[1]).migrate()"
    # When both migrate at the same moment
    workers = [
        subprocess.Popen([sys.executable, "-c", script, pg_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [(w.wait(timeout=60), w.stderr.read() if w.stderr else "") for w in workers]
    for w in workers:
        if w.stderr:
            w.stderr.close()

    # Then the advisory lock serialised them: no "relation already exists"
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    store = MessageStore(pg_url)
    assert store.counts_by_status()
    store.dispose()


def test_migrated_schema_matches_the_models(pg_url: str) -> None:
    store = MessageStore(pg_url)
    store.migrate()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.dispose()
    assert diff == []


def test_upgrade_starts_the_counters_from_the_stored_messages(pg_url: str) -> None:
    # Given a store written before there were counters
    store = MessageStore(pg_url)
    store_before_counters(store)
    try:
        # When it is upgraded
        store.migrate()
        # Then status shows the same figures as before the upgrade
        counters = store.counters(["Out", "In"])
    finally:
        store.dispose()
    assert counters["Out"] == ItemCounters(received=3, completed=2, failed=1, retried=1)
    assert counters["In"] == ItemCounters(sent=3)


def test_tables_are_created_in_the_test_schema_only(pg_url: str, pg_admin: Engine) -> None:
    store = MessageStore(pg_url)
    store.migrate()
    schema = str(make_url(pg_url).query["options"]).split("=", 1)[1]
    with pg_admin.connect() as conn:
        tables = set(
            conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            ).scalars()
        )
    store.dispose()
    assert {"messages", "bodies", "events", "deliveries", "alembic_version"} <= tables


def test_only_durable_stores_wait_for_the_log_flush_at_commit(pg_url: str) -> None:
    # Given the gateway's store (its commit gates an ACK) and a worker's store (hop records a
    # restart can replay)
    gateway, worker = MessageStore(pg_url, durable=True), MessageStore(pg_url)
    try:
        # Then only the gateway's commits wait until PostgreSQL's log is on disk
        for store, expected in ((gateway, "on"), (worker, "off")):
            with store.engine.connect() as conn:
                assert conn.execute(text("SHOW synchronous_commit")).scalar() == expected
                # and the connection still sees the URL's own options (the test schema)
                assert conn.execute(text("SHOW search_path")).scalar().startswith("hie_test_")
    finally:
        gateway.dispose()
        worker.dispose()
