"""What callers record in the store: new messages, statuses, ACKs, events, and a worker's batch.

Each method is one short transaction. The hot path (a gateway's group commit: ``write_batch``; a
worker's batch: ``claim`` then ``record_hops``) runs the few statements of
``hie.store.writes.HotWrites``, one per kind of row however many rows there are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Unpack
from uuid import UUID

from sqlalchemy import Connection, select, update

from hie.errors import StoreError
from hie.messages import Envelope
from hie.store import writes
from hie.store.database import Database
from hie.store.models import MESSAGES, Status
from hie.store.records import AckRecord, Claim, HopRecord, NewEvent, SaveOptions, SaveRequest
from hie.store.writes import Tally, prepare, status_counter

#: The event written by ``set_status`` when the caller names none.
STATUS_EVENTS: dict[Status, str] = {
    Status.QUEUED: "queued",
    Status.IN_PROGRESS: "started",
    Status.COMPLETED: "completed",
    Status.ERROR: "failed",
    Status.SUSPENDED: "suspended",
    Status.DISCARDED: "discarded",
    Status.SKIPPED: "skipped",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _id(value: str | UUID) -> str:
    return str(value)


class Recording(Database):
    """The store's writing methods (part of ``MessageStore``)."""

    # -- saving ----------------------------------------------------------------------------------

    def save(self, envelope: Envelope, **options: Unpack[SaveOptions]) -> None:
        """Store a new message and its body, and write ``event`` to its trail.

        Raises:
            StoreError: the message id is already stored, or the database refused.
        """
        self.save_many([SaveRequest(envelope, **options)])

    def save_many(self, requests: Iterable[SaveRequest | Envelope]) -> None:
        """Store many messages in one transaction: all of them, or none (group commit)."""
        prepared = [prepare(r if isinstance(r, SaveRequest) else SaveRequest(r)) for r in requests]
        if not prepared:
            return
        with self._write(f"save {len(prepared)} message(s)") as conn:
            tally = Tally()
            self._hot.events(conn, self._hot.save(conn, prepared, tally))
            self._hot.count(conn, tally)

    # -- status, ACKs, events --------------------------------------------------------------------

    def set_status(
        self,
        message_id: str | UUID,
        status: Status | str,
        *,
        error: str | None = None,
        item: str | None = None,
        event: str | None = None,
        detail: str | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """Move a message to ``status`` and write an event (default: the status's own word).

        ``in_progress`` counts an attempt. ``error`` replaces the stored error text when given and
        is the event's detail unless ``detail`` is given; a later success keeps the last error.

        Raises:
            StoreError: no such message.
        """
        mid, new = _id(message_id), Status(status)
        with self._write(f"set message {mid} to {new}") as conn:
            self._set_status_in(conn, mid, new, error, item, event, detail, duration_ms)

    def _set_status_in(
        self,
        conn: Connection,
        mid: str,
        new: Status,
        error: str | None,
        item: str | None,
        event: str | None,
        detail: str | None,
        duration_ms: float | None,
    ) -> None:
        # The status it leaves decides what is counted: a message stored in error and then given
        # its reason (a gateway's NAK) went into error once. FOR UPDATE keeps the status read the
        # one replaced on PostgreSQL; SQLite's BEGIN IMMEDIATE already excludes other writers.
        before = conn.execute(
            select(MESSAGES.c.status, MESSAGES.c.target, MESSAGES.c.session_id)
            .where(MESSAGES.c.message_id == mid)
            .with_for_update()
        ).one_or_none()
        if before is None:
            raise StoreError(f"cannot set message {mid} to {new}: it is not in the store")
        values: dict[str, Any] = {"status": str(new), "updated_at": _now()}
        if error is not None:
            values["error"] = error
        if new is Status.IN_PROGRESS:
            values["attempts"] = MESSAGES.c.attempts + 1
        conn.execute(update(MESSAGES).where(MESSAGES.c.message_id == mid).values(values))
        session_id = before.session_id
        event_row = NewEvent(
            mid,
            event or STATUS_EVENTS[new],
            item=item,
            detail=detail if detail is not None else error,
            duration_ms=duration_ms,
            session_id=session_id,
            at=values["updated_at"],
        )
        self._hot.events(conn, [event_row])
        counter = status_counter(new)
        if counter is not None and before.target is not None and before.status != new:
            self._hot.count(conn, Tally({(before.target, counter): 1}))

    def set_ack(
        self,
        message_id: str | UUID,
        code: str,
        text: str | None = None,
        *,
        event: str = "ack_sent",
        item: str | None = None,
    ) -> None:
        """Record the ACK code (``AA``, ``AE``, ``CA``...) sent for, or received for, a message."""
        record = AckRecord(_id(message_id), code, text, event, item)
        with self._write("record 1 ACK(s)") as conn:
            self._hot.events(conn, self._hot.acks(conn, [record], writes.now()))

    def write_batch(self, saves: Sequence[SaveRequest], acks: Sequence[AckRecord] = ()) -> None:
        """New messages and ACK records in one transaction: a gateway's group commit."""
        prepared = [prepare(r) for r in saves]
        if not prepared and not acks:
            return
        with self._write(f"save {len(prepared)} message(s), {len(acks)} ACK(s)") as conn:
            tally = Tally()
            events = self._hot.save(conn, prepared, tally) if prepared else []
            if acks:
                events += self._hot.acks(conn, list(acks), writes.now())
            self._hot.events(conn, events)
            self._hot.count(conn, tally)

    def mark_possible_duplicate(
        self, message_id: str | UUID, detail: str | None = None, *, item: str | None = None
    ) -> None:
        """Flag a message that may have been sent before (e.g. redelivered after a crash)."""
        mid = _id(message_id)
        with self._write(f"flag message {mid} as a possible duplicate") as conn:
            conn.execute(
                update(MESSAGES)
                .where(MESSAGES.c.message_id == mid)
                .values(possible_duplicate=True, updated_at=_now())
            )
            event = NewEvent(mid, "possible_duplicate", item=item, detail=detail)
            self._hot.events(conn, [event])

    def record_event(
        self,
        message_id: str | UUID,
        event: str,
        *,
        item: str | None = None,
        detail: str | None = None,
        duration_ms: float | None = None,
        session_id: str | UUID | None = None,
    ) -> None:
        """Append one event to a message's trail (the status is left alone)."""
        sid = None if session_id is None else _id(session_id)
        new = NewEvent(_id(message_id), event, item, detail, duration_ms, sid)
        with self._write("record 1 event(s)") as conn:
            self._hot.events(conn, [new])

    # -- hops: what a worker writes for a batch of messages -------------------------------------

    def claim(
        self,
        envelopes: Sequence[Envelope],
        item: str,
        *,
        redelivered: Collection[str] = (),
    ) -> dict[str, Claim]:
        """Take a batch at ``item``, in one transaction: per message id, skip it or run it.

        Skipped: ``item`` already completed it (a redelivered or re-published copy), or an
        operator suspended or discarded it while its copy waited on the broker. The others move
        to ``in_progress`` with one more attempt and a ``started`` event; those whose ids are in
        ``redelivered`` (copies the broker gave out before) are flagged as possible duplicates.
        A message the store has never seen (published by another client) is saved first: the
        store is the record of everything a worker runs.
        """
        with self._write(f"claim {len(envelopes)} message(s) at {item}") as conn:
            return self._hot.claim(conn, envelopes, item, set(redelivered))

    def check(self, envelopes: Sequence[Envelope], item: str) -> dict[str, Claim] | None:
        """``claim`` as a read: which messages to skip and which attempt each of the others
        would be, leaving them as they are (None if the store has not seen one of them).

        For a business process, whose work is only what it records: its batch runs on this
        read, and ``record_hops(claim=...)`` takes the messages in the same transaction that
        records what they did. One write transaction per hop instead of two.
        """
        with self._read(f"check {len(envelopes)} message(s) at {item}") as conn:
            return self._hot.check(conn, envelopes, item)

    def record_hops(
        self,
        records: Sequence[HopRecord],
        *,
        running: Sequence[str] = (),
        claim: Mapping[str, datetime] | None = None,
    ) -> set[str]:
        """How a batch's hops ended, ALL in one transaction.

        For each record: the message's status and event, the messages it sends on (saved as
        queued) and its reply (saved as completed), the host's events, ACK and duplicate flag,
        and for a completed hop the delivery record (message id + item). A worker killed before
        the commit leaves nothing half done (the batch runs again, and what it would send was
        never published); one killed after it never repeats these hops. ``running``: messages
        still being worked on, whose clock is reset (``hie.tasks.heartbeat``: a long attempt is
        not taken for a lost one). ``claim``: messages run on a ``check`` (with when each
        started), taken here as ``claim`` would have; returns those no longer there to take
        (set aside by an operator or completed by another copy meanwhile), whose records were
        dropped.
        """
        if not records and not running:
            return set()
        with self._write(f"record {len(records)} hop(s)") as conn:
            return self._hot.record(conn, records, running, claim)

    def requeue(
        self, message_id: str | UUID, expected: Status | str, seen_at: datetime, detail: str
    ) -> bool:
        """Move a stale message back to ``queued`` (event ``requeued``), only if it has not
        moved since it was read: same status, same ``updated_at``. False when it has.

        The compare-and-set keeps the recovery sweeper from undoing a task that finished between
        the sweeper's read and its write.
        """
        mid, now = _id(message_id), _now()
        with self._write(f"requeue message {mid}") as conn:
            session_id = conn.execute(
                update(MESSAGES)
                .where(
                    MESSAGES.c.message_id == mid,
                    MESSAGES.c.status == str(Status(expected)),
                    MESSAGES.c.updated_at == seen_at,
                )
                .values(status=str(Status.QUEUED), updated_at=now)
                .returning(MESSAGES.c.session_id)
            ).scalar_one_or_none()
            if session_id is None:
                return False
            event = NewEvent(mid, "requeued", detail=detail, session_id=session_id, at=now)
            self._hot.events(conn, [event])
            return True
