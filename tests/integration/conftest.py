"""Fixtures for tests against real parts: broker, worker processes, SQL store."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hie.broker import answers, ensure_broker
from hie.settings import Settings
from tests.conftest import skip_or_fail
from tests.integration.harness import Harness

REDIS_URL = os.environ.get("HIE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("HIE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hie-home")


def _settings(broker: str, home: Path) -> Settings:
    database = os.environ.get("HIE_TEST_DATABASE_URL", f"sqlite:///{home / 'hie.db'}")
    settings = Settings(
        broker_url=broker,
        result_backend=REDIS_URL,
        database_url=database,
        home=home,
        _env_file=None,  # type: ignore[call-arg]
    )
    return settings


@pytest.fixture(scope="session")
def redis_settings(run_home: Path) -> Settings:
    """Settings for the Redis broker (the embedded one is started when none answers)."""
    settings = _settings(REDIS_URL, run_home)
    ensure_broker(settings)
    return settings


@pytest.fixture(scope="session", params=["redis", "amqp"])
def broker_settings(
    request: pytest.FixtureRequest, redis_settings: Settings, run_home: Path
) -> Settings:
    """Both brokers, for broker-level tests: Redis, and RabbitMQ (results stay on Redis)."""
    if request.param == "redis":
        return redis_settings
    if not answers(AMQP_URL):
        skip_or_fail(f"RabbitMQ does not answer at {AMQP_URL}")
    return _settings(AMQP_URL, run_home)


def _own_store(settings: Settings, tmp_path: Path) -> Settings:
    """Each test gets its own SQLite store, so what it counts is only its own messages."""
    if "HIE_TEST_DATABASE_URL" in os.environ:
        return settings
    return settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'hie.db'}"})


@pytest.fixture
def harness(redis_settings: Settings, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(_own_store(redis_settings, tmp_path), tmp_path)
    yield h
    h.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def store_harness(
    request: pytest.FixtureRequest, redis_settings: Settings, tmp_path: Path
) -> Iterator[Harness]:
    """A harness on each store: SQLite, and PostgreSQL in a fresh schema (dropped afterwards)."""
    if request.param == "sqlite":
        h = Harness(_own_store(redis_settings, tmp_path), tmp_path)
        yield h
        h.cleanup()
        return
    pg_url = request.getfixturevalue("pg_url")
    h = Harness(redis_settings.model_copy(update={"database_url": pg_url}), tmp_path)
    yield h
    h.cleanup()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An engine on the PostgreSQL test database itself, or a skip (a failure in CI)."""
    url = os.environ.get("HIE_TEST_POSTGRES_URL", POSTGRES_URL)
    engine = create_engine(url, connect_args={"connect_timeout": 5}, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        skip_or_fail(
            f"PostgreSQL at {make_url(url).render_as_string()} does not answer: {exc.orig}"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: Engine) -> Iterator[str]:
    """A URL whose connections see only a fresh schema, dropped after the test.

    The schema (``hie_test_<random>``, selected with ``search_path``) keeps concurrent test runs
    on the shared database from seeing each other's rows.
    """
    schema = f"hie_test_{secrets.token_hex(6)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = pg_admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def any_broker(broker_settings: Settings, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(_own_store(broker_settings, tmp_path), tmp_path)
    yield h
    h.cleanup()
