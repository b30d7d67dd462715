"""One SQLAlchemy engine per process, tuned for the store's two backends.

SQLite (the embedded default) allows one writer at a time, even in WAL mode. Every write
transaction therefore starts with ``BEGIN IMMEDIATE``: it takes the write lock up front and waits
up to ``busy_timeout`` for it, instead of starting as a reader and failing at once with
``SQLITE_BUSY`` when it later tries to write. Reads start a plain deferred ``BEGIN`` and never
block writers (WAL). PostgreSQL gets a normal pool with pre-ping.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from hie.errors import StoreError

#: Execution option marking a connection that only reads (SQLite: deferred BEGIN).
READ_ONLY = "hie_read_only"
#: WAL pages after which a durable (ACK-gating) connection checkpoints; SQLite's default: 1,000.
DURABLE_CHECKPOINT_PAGES = 10_000


def is_sqlite(url: URL) -> bool:
    """True for any ``sqlite`` URL."""
    return url.get_backend_name() == "sqlite"


def is_sqlite_memory(url: URL) -> bool:
    """True for a private in-memory SQLite database (``sqlite://``, ``sqlite:///:memory:``)."""
    return is_sqlite(url) and url.database in (None, "", ":memory:")


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite ``url`` (None: in memory, a ``file:`` URI, or not SQLite)."""
    if not is_sqlite(url):
        return None
    if is_sqlite_memory(url) or url.query.get("uri") or (url.database or "").startswith("file:"):
        return None
    return Path(url.database or "")


def _install_sqlite_events(
    engine: Engine,
    busy_timeout_ms: int,
    wal: bool,
    durable: bool = False,
    syncs_after_commit: bool = False,
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event emit BEGIN instead of the sqlite3 module, which would
        # otherwise issue a deferred BEGIN we cannot make IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL loses at most the last transactions on power loss, never corrupts.
            # A durable store on a file HIE can name syncs the log itself after each commit,
            # outside the write lock (``hie.store.log_sync``); one given as a ``file:`` URI keeps
            # FULL (the log synced inside each commit).
            full = durable and not syncs_after_commit
            cursor.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            if durable:
                # A commit that runs a checkpoint copies the log into the database: milliseconds
                # an ACK would wait for. The workers' connections checkpoint at the default
                # 1,000 pages; the durable writer only if the log grew ten times that without.
                cursor.execute(f"PRAGMA wal_autocheckpoint={DURABLE_CHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
        else:
            _begin_immediate(conn.connection.dbapi_connection, busy_timeout_ms)


def _begin_immediate(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock in steps of 0.1 to 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15 ... ms between tries: with a gateway and
    several workers writing short transactions, a writer that just missed the lock slept far
    longer than the lock was held (measured at full load, bench/e2e.py: ACK p99 59 ms with
    SQLite's handler, 23 ms with this one). Only the wait for the write lock is done here;
    every other wait is still SQLite's, up to the same ``busy_timeout``.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.0001
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    # As SQLAlchemy would have raised it: callers catch its errors.
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


def _install_postgresql_relaxed_commit(engine: Engine) -> None:
    """Commits on ``engine``'s connections return before the server flushed its log."""

    @event.listens_for(engine, "connect")
    def _relax(dbapi_connection: Any, _record: Any) -> None:
        # Once per pooled connection; SET (not SET LOCAL) keeps it for the session.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        dbapi_connection.commit()


def build_engine(
    url: URL,
    *,
    pool_size: int,
    max_overflow: int,
    busy_timeout_ms: int,
    echo: bool,
    durable: bool = False,
) -> Engine:
    """A new engine for ``url`` with the store's connection settings.

    ``durable``: every commit is synced to disk before the store's write returns, so a commit
    survives a power cut (PostgreSQL: ``synchronous_commit`` on; SQLite: the store syncs the
    log right after the commit, outside the write lock, ``hie.store.log_sync``). Otherwise
    (the workers' hop records) a crash of the machine may lose the last few commits but never
    corrupts: SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL
    ``synchronous_commit=off`` (the server flushes its log within ``wal_writer_delay``, 200 ms by
    default). Those messages are still queued or in progress in the store and run again.
    """
    if not is_sqlite(url):
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, echo=echo
        )
        if not durable and url.get_backend_name() == "postgresql":
            _install_postgresql_relaxed_commit(engine)
        return engine
    if is_sqlite_memory(url):
        # One shared connection: only for tests and single-threaded tools.
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            echo=echo,
        )
        _install_sqlite_events(engine, busy_timeout_ms, wal=False)
        return engine
    path = sqlite_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created for its owner only (it holds patient data); SQLite gives its -wal and
            # -shm files the same permissions.
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise StoreError(
                f"cannot create folder {path.parent} for the SQLite store {path.name}: {exc}"
            ) from exc
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"check_same_thread": False},
        echo=echo,
    )
    _install_sqlite_events(
        engine, busy_timeout_ms, wal=True, durable=durable, syncs_after_commit=path is not None
    )
    return engine


class EngineHolder:
    """Creates the engine on first use in each process.

    A Celery prefork child inherits its parent's engine, whose pooled connections (sockets, SQLite
    file handles) the parent may still use: sharing them corrupts both. The holder notices the
    new pid and builds a fresh engine, dropping the inherited pool without closing the parent's
    connections (``dispose(close=False)``, as SQLAlchemy's pooling guide recommends).
    """

    def __init__(self, url: URL, **options: Any) -> None:
        self.url = url
        self._options = options
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = 0

    def get(self) -> Engine:
        """This process's engine."""
        engine, pid = self._engine, os.getpid()
        if engine is not None and self._pid == pid:
            return engine
        with self._lock:
            if self._engine is not None and self._pid != pid:
                self._engine.dispose(close=False)
                self._engine = None
            if self._engine is None:
                self._engine = build_engine(self.url, **self._options)
                self._pid = pid
            return self._engine

    def dispose(self) -> None:
        """Close this process's pooled connections; the next ``get`` opens new ones."""
        with self._lock:
            if self._engine is not None:
                if self._pid == os.getpid():
                    self._engine.dispose()
                else:
                    self._engine.dispose(close=False)
                self._engine = None


def parse_url(url: str | URL) -> URL:
    """``make_url`` that accepts a URL object too."""
    return make_url(url) if isinstance(url, str) else url
