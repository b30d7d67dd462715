"""Message store behaviour specific to PostgreSQL, and the fixture other store tests share.

Each test gets its own schema (``hie_test_<random>``, selected with ``search_path``) in the shared
database, dropped afterwards, so concurrent test runs never see each other's rows. Without a
reachable server the tests skip, unless ``HIE_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hie.store import ItemCounters, MessageStore
from hie.store.models import Base
from tests.unit.test_store_sqlite import store_before_counters

pytestmark = pytest.mark.integration

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An engine on the test database itself, or a skip (a failure in CI) if none answers."""
    url = os.environ.get("HIE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    engine = create_engine(url, connect_args={"connect_timeout": 5}, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {make_url(url).render_as_string()} does not answer: {exc.orig}"
        if os.environ.get("HIE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: Engine) -> Iterator[str]:
    """A URL whose connections see only a fresh schema, dropped after the test."""
    schema = f"hie_test_{secrets.token_hex(6)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = pg_admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


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
