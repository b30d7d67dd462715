"""Retention: old messages leave the store with their trail, deliveries and unused bodies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select

from hie.store.database import Database
from hie.store.models import BODIES, DELIVERIES, EVENTS, MESSAGES, UNFINISHED


class Retention(Database):
    """The store's purge (part of ``MessageStore``)."""

    # -- purging ---------------------------------------------------------------------------------

    def purge(self, days: float, batch_size: int = 1000, *, now: datetime | None = None) -> int:
        """Delete messages created more than ``days`` ago, with their events, deliveries and
        the bodies no remaining message uses. Returns how many messages were deleted.

        A message is kept, whatever its age, while any message of its session is unfinished
        (queued, in_progress or suspended): someone may still resend, resume or trace it.
        Messages in error are final for this purpose: they are purged with their session.
        Works in batches of ``batch_size``, one short transaction each, so memory stays bounded
        and other writers get the lock between batches.
        """
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        unfinished = [str(s) for s in UNFINISHED]
        other = MESSAGES.alias("other")
        session_busy = exists().where(
            other.c.session_id == MESSAGES.c.session_id, other.c.status.in_(unfinished)
        )
        deleted = 0
        after: tuple[datetime, str] | None = None
        while True:
            query = select(MESSAGES.c.message_id, MESSAGES.c.body_id, MESSAGES.c.created_at).where(
                MESSAGES.c.created_at < cutoff, ~session_busy
            )
            if after is not None:
                # Keyset paging: old messages of busy sessions are skipped once, not every batch.
                # Written as a range plus an exclusion, not "a > x OR (a = x AND b > y)": with
                # the OR, SQLite scanned and sorted every remaining old row for each batch.
                query = query.where(
                    MESSAGES.c.created_at >= after[0],
                    ~and_(MESSAGES.c.created_at == after[0], MESSAGES.c.message_id <= after[1]),
                )
            query = query.order_by(MESSAGES.c.created_at, MESSAGES.c.message_id).limit(batch_size)
            with self._write("purge old messages") as conn:
                rows = conn.execute(query).all()
                if not rows:
                    return deleted
                after = (rows[-1].created_at, rows[-1].message_id)
                deleted += self._delete_batch(conn, rows, session_busy)

    @staticmethod
    def _delete_batch(conn: Connection, rows: Sequence[Any], session_busy: Any) -> int:
        ids = [r.message_id for r in rows]
        body_ids = sorted({r.body_id for r in rows if r.body_id is not None})
        # Re-check the session in the DELETE itself: a message may have been queued in it since
        # the SELECT (PostgreSQL; SQLite's BEGIN IMMEDIATE already excludes other writers).
        count = conn.execute(
            delete(MESSAGES).where(MESSAGES.c.message_id.in_(ids), ~session_busy)
        ).rowcount
        gone = select(MESSAGES.c.message_id).where(MESSAGES.c.message_id.in_(ids))
        kept = {mid for (mid,) in conn.execute(gone)}
        removed = [mid for mid in ids if mid not in kept]
        if removed:
            conn.execute(delete(EVENTS).where(EVENTS.c.message_id.in_(removed)))
            conn.execute(delete(DELIVERIES).where(DELIVERIES.c.message_id.in_(removed)))
        if body_ids:
            in_use = exists().where(MESSAGES.c.body_id == BODIES.c.body_id)
            conn.execute(delete(BODIES).where(BODIES.c.body_id.in_(body_ids), ~in_use))
        return int(count)
