"""``MessageStore``: every message, its body, its trail and its deliveries, in SQL.

The broker is transport; the store is the record. One class for callers, its methods kept by job:

* ``hie.store.recording``: new messages, statuses, ACKs, events, a worker's claim and hop
  records (the hot path, whose statements are in ``hie.store.writes``);
* ``hie.store.queries``: one message, searches, trails, traces, counts, what waits;
* ``hie.store.retention``: purging old messages;
* ``hie.store.database``: this process's engine, the schema (``migrate``), transactions.
"""

from __future__ import annotations

from hie.store.queries import Queries
from hie.store.retention import Retention
from hie.store.recording import Recording


class MessageStore(Recording, Queries, Retention):
    """The message store on one database URL (SQLite file or PostgreSQL).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///var/hie.db`` or
            ``postgresql+psycopg2://hie@db/hie``. A SQLite file's folder is created if missing.
        pool_size: connections kept open per process.
        max_overflow: extra connections allowed under load.
        busy_timeout_ms: how long a SQLite writer waits for the write lock before failing.
        durable: every commit is on disk when it returns (SQLite: the log synced right after
            each commit, ``hie.store.log_sync``; PostgreSQL ``synchronous_commit=on``), for
            writes that take custody of a message (the gateway's before its ACK, a service's).
            Otherwise a power cut may lose the last few commits, never corrupts them (SQLite
            ``NORMAL``, PostgreSQL ``synchronous_commit=off``): for hop records, which a restart
            replays.
        echo: log every SQL statement (debugging only).
        production: the production this process serves: its new messages and counters carry
            it, and what the store is asked (what waits, what is stale, counts, searches) is
            about that production's messages only, plus those stored before productions were
            recorded. None: every production's (the tools that look at the whole store).

    Every method raises ``StoreError`` when the database refuses or does not answer.
    """
