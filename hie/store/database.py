"""The database under a ``MessageStore``: this process's engine, its schema, short transactions.

Process model: the engine is created lazily in each process (see ``EngineHolder``), so a forked
Celery child never reuses its parent's connections; ``dispose()`` closes them at shutdown.
Every transaction is short (SQLite has one writer at a time) and every database error leaves
as a ``StoreError`` naming what was being done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hie.errors import StoreError, StoreSyncError
from hie.store.engine import READ_ONLY, EngineHolder, parse_url, sqlite_file
from hie.store.log_sync import LogSync
from hie.store.writes import HotWrites

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic keeps its running migration context in a module global: one migration per process at
# a time. Between processes, a PostgreSQL advisory lock or SQLite's write lock serialises them.
_MIGRATE_LOCK = threading.Lock()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # No sqlalchemy.url: env.py uses our connection (and configparser would choke on the "%" of
    # an escaped password or query string).
    return config


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's INFO lines ("Context impl SQLiteImpl" ...) kept out of every command's output."""
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def head_revision() -> str | None:
    """The newest schema revision this HIE knows."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def describe(exc: SQLAlchemyError) -> str:
    """The database's own complaint, without the statement and its parameters."""
    # DBAPIError's own text repeats the SQL and its parameters (a 5 MB body, say); keep the cause.
    return str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)


class Database:
    """Connections and schema of one store; see ``MessageStore`` for the arguments."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        busy_timeout_ms: int = 30_000,
        durable: bool = False,
        echo: bool = False,
        production: str | None = None,
    ) -> None:
        self.url = parse_url(url)
        self.production = production
        self._engines = EngineHolder(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            busy_timeout_ms=busy_timeout_ms,
            durable=durable,
            echo=echo,
        )
        self._hot = HotWrites(self.url.get_backend_name(), production)
        # A durable SQLite store syncs its log after each commit, outside the write lock.
        path = sqlite_file(self.url) if durable else None
        self._log = None if path is None else LogSync(path)

    @property
    def where(self) -> str:
        """The store's URL, without its password (for messages)."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> Engine:
        """This process's engine (created on first use after start or fork)."""
        return self._engines.get()

    def dispose(self) -> None:
        """Close this process's connections; call from ``worker_process_shutdown``."""
        self._engines.dispose()

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers (a health check)."""
        with self._read("reach the database") as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Upgrade the schema to ``revision`` (default: the newest). Safe to run every start.

        Returns the revision before and after. Alembic's own progress lines are not shown (they
        went to every command's output); ``hie db upgrade`` says what changed instead.
        """
        config = _alembic_config()
        what = f"migrate the message store {self!r}"
        with _quiet_alembic(), self._wrap_errors(what), _MIGRATE_LOCK, self.engine.connect() as c:
            before = MigrationContext.configure(c).get_current_revision()
            config.attributes["connection"] = c
            command.upgrade(config, revision)
            c.commit()
            after = MigrationContext.configure(c).get_current_revision()
        return before, after

    def schema_revision(self) -> str | None:
        """The schema revision of the store (None: no schema yet)."""
        what = f"read the schema version of {self!r}"
        with _quiet_alembic(), self._wrap_errors(what), self.engine.connect() as c:
            return MigrationContext.configure(c).get_current_revision()

    def ensure_schema(self) -> None:
        """For commands that only read or make small changes (``status``, ``messages``, the
        viewer): a new, empty store gets the schema; one made by an older HIE is not upgraded
        here (that changes stored data: ``hie db upgrade``, or ``hie start``, does it).

        Raises:
            StoreError: the store is at another revision, saying what to run.
        """
        current, head = self.schema_revision(), head_revision()
        if current == head:
            return
        if current is None:
            self.migrate()
            return
        known = {
            s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
        }
        if current not in known:
            raise StoreError(
                f"the message store {self.where} is at schema revision {current}, newer than this "
                f"HIE knows ({head}): upgrade HIE"
            )
        raise StoreError(
            f"the message store {self.where} is at schema revision {current}, this HIE needs "
            f"{head}: run `hie db upgrade` (or `hie start`, which upgrades it)"
        )

    @contextmanager
    def _wrap_errors(self, what: str) -> Iterator[None]:
        """Database errors inside leave as ``StoreError``: "cannot <what>: <the cause>"."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {describe(exc)}") from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        with self._wrap_errors(what), self.engine.begin() as conn:
            yield conn
        if self._log is not None:
            # Committed; on disk before anyone is told (see ``hie.store.log_sync``).
            try:
                self._log.sync()
            except StoreSyncError as exc:
                raise StoreSyncError(f"{what}: committed, but {exc}") from exc

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with self._wrap_errors(what), self.engine.connect() as conn:
            yield conn.execution_options(**{READ_ONLY: True})
