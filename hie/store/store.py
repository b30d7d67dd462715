"""``MessageStore``: every message, its body, its trail and its deliveries, in SQL.

The broker is transport; the store is the record. Writes are short transactions (SQLite has one
writer at a time), and batches share one: ``save_many`` for many messages, ``record_events_many``
for many events, ``record_hops`` for a worker's batch, ``GroupCommitter`` for many callers.

Process model: the engine is created lazily in each process (see ``EngineHolder``), so a forked
Celery child never reuses its parent's connections. Call ``after_fork()`` from
``worker_process_init`` to drop the inherited pool at once, and ``dispose()`` at shutdown.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    and_,
    delete,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hie.errors import StoreError
from hie.messages import BODY_HL7, BODY_NONE, BODY_TEXT, Envelope
from hie.store import writes
from hie.store.engine import READ_ONLY, EngineHolder, parse_url
from hie.store.writes import prepare
from hie.store.hl7_fields import check_path, field_matches
from hie.store.models import UNFINISHED, Body, DeliveryRow, EventRow, MessageRow, Status
from hie.store.records import (
    AckRecord,
    Claim,
    EventRecord,
    HopRecord,
    MessageHeader,
    NewEvent,
    SaveRequest,
    TraceNode,
)

MESSAGES = cast(Table, MessageRow.__table__)
BODIES = cast(Table, Body.__table__)
EVENTS = cast(Table, EventRow.__table__)
DELIVERIES = cast(Table, DeliveryRow.__table__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic keeps its running migration context in a module global: one migration per process at
# a time. Between processes, a PostgreSQL advisory lock or SQLite's write lock serialises them.
_MIGRATE_LOCK = threading.Lock()

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

_HEADER_COLUMNS = [c for c in MESSAGES.c if c.name != "headers"]


def _now() -> datetime:
    return datetime.now(UTC)


def _id(value: str | UUID) -> str:
    return str(value)


def _opt_id(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _describe(exc: SQLAlchemyError) -> str:
    # DBAPIError's own text repeats the SQL and its parameters (a 5 MB body, say); keep the cause.
    return str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)


class MessageStore:
    """The message store on one database URL (SQLite file or PostgreSQL).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///var/hie.db`` or
            ``postgresql+psycopg2://hie@db/hie``. A SQLite file's folder is created if missing.
        pool_size: connections kept open per process.
        max_overflow: extra connections allowed under load.
        busy_timeout_ms: how long a SQLite writer waits for the write lock before failing.
        durable: every commit is on disk when it returns (SQLite ``synchronous=FULL``,
            PostgreSQL ``synchronous_commit=on``), for writes that take custody of a message (the
            gateway's before its ACK, a service's). Otherwise a power cut may lose the last few
            commits, never corrupts them (SQLite ``NORMAL``, PostgreSQL ``synchronous_commit=off``):
            for hop records, which a restart replays.
        echo: log every SQL statement (debugging only).

    Every method raises ``StoreError`` when the database refuses or does not answer.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        busy_timeout_ms: int = 30_000,
        durable: bool = False,
        echo: bool = False,
    ) -> None:
        self.url = parse_url(url)
        self._engines = EngineHolder(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            busy_timeout_ms=busy_timeout_ms,
            durable=durable,
            echo=echo,
        )
        self._hot = writes.HotWrites(self.url.get_backend_name())

    def __repr__(self) -> str:
        return f"MessageStore({self.url.render_as_string(hide_password=True)!r})"

    # -- engine and schema ---------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's engine (created on first use after start or fork)."""
        return self._engines.get()

    def after_fork(self) -> None:
        """Drop the engine inherited from a parent process; call from ``worker_process_init``."""
        self._engines.after_fork()

    def dispose(self) -> None:
        """Close this process's connections; call from ``worker_process_shutdown``."""
        self._engines.dispose()

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (default: the newest). Safe to run every start."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        # No sqlalchemy.url: env.py uses our connection (and configparser would choke on the
        # "%" of an escaped password or query string).
        try:
            with _MIGRATE_LOCK, self.engine.connect() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot migrate the message store {self!r}: {_describe(exc)}"
            ) from exc

    create_schema = migrate

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_describe(exc)}") from exc

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(**{READ_ONLY: True})
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_describe(exc)}") from exc

    # -- saving ----------------------------------------------------------------------------------

    def save(
        self,
        envelope: Envelope,
        *,
        status: Status | str = Status.QUEUED,
        msg_type: str | None = None,
        control_id: str | None = None,
        raw_body: str | bytes | None = None,
        event: str | None = "stored",
        item: str | None = None,
    ) -> None:
        """Store a new message and its body, and write ``event`` to its trail.

        Raises:
            StoreError: the message id is already stored, or the database refused.
        """
        self.save_many([SaveRequest(envelope, status, msg_type, control_id, raw_body, event, item)])

    def save_many(self, requests: Iterable[SaveRequest | Envelope]) -> None:
        """Store many messages in one transaction: all of them, or none (group commit)."""
        prepared = [prepare(r if isinstance(r, SaveRequest) else SaveRequest(r)) for r in requests]
        if not prepared:
            return
        with self._write(f"save {len(prepared)} message(s)") as conn:
            self._hot.events(conn, self._hot.save(conn, prepared))

    # -- reading one message ---------------------------------------------------------------------

    def load(self, message_id: str | UUID) -> Envelope:
        """The stored message as an ``Envelope``, body included.

        Raises:
            StoreError: no such message.
        """
        mid = _id(message_id)
        with self._read(f"load message {mid}") as conn:
            row = conn.execute(
                select(MESSAGES, BODIES.c.content, BODIES.c.content_type)
                .outerjoin(BODIES, BODIES.c.body_id == MESSAGES.c.body_id)
                .where(MESSAGES.c.message_id == mid)
            ).one_or_none()
        if row is None:
            raise StoreError(f"message {mid} is not in the store")
        m = row._mapping
        body_type: str = m["content_type"] or BODY_NONE
        body: Any = m["content"]
        if body_type not in (BODY_NONE, BODY_HL7, BODY_TEXT):
            body = json.loads(body)
        return Envelope(
            message_id=UUID(m["message_id"]),
            session_id=UUID(m["session_id"]),
            correlation_id=m["correlation_id"],
            parent_id=m["parent_id"],
            source=m["source"],
            target=m["target"],
            priority=m["priority"],
            created_at=m["created_at"],
            body_type=body_type,
            body=body,
            key=m["key"],
            headers=json.loads(m["headers"]) if m["headers"] else {},
        )

    def header(self, message_id: str | UUID) -> MessageHeader:
        """The header row of one message (no body).

        Raises:
            StoreError: no such message.
        """
        mid = _id(message_id)
        with self._read(f"read message {mid}") as conn:
            row = conn.execute(
                select(*_HEADER_COLUMNS).where(MESSAGES.c.message_id == mid)
            ).one_or_none()
        if row is None:
            raise StoreError(f"message {mid} is not in the store")
        return MessageHeader.from_row(row)

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
        values: dict[str, Any] = {"status": str(new), "updated_at": _now()}
        if error is not None:
            values["error"] = error
        if new is Status.IN_PROGRESS:
            values["attempts"] = MESSAGES.c.attempts + 1
        session_id = conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.message_id == mid)
            .values(values)
            .returning(MESSAGES.c.session_id)
        ).scalar_one_or_none()
        if session_id is None:
            raise StoreError(f"cannot set message {mid} to {new}: it is not in the store")
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
        self.set_acks([(message_id, code, text)], event=event, item=item)

    def set_acks(
        self,
        acks: Sequence[tuple[str | UUID, str, str | None]],
        *,
        event: str = "ack_sent",
        item: str | None = None,
    ) -> None:
        """Record many ``(message_id, code, text)`` ACKs in one transaction."""
        if acks:
            records = [AckRecord(_id(m), code, text, event, item) for m, code, text in acks]
            with self._write(f"record {len(records)} ACK(s)") as conn:
                self._hot.events(conn, self._hot.acks(conn, records, writes.now()))

    def write_batch(self, saves: Sequence[SaveRequest], acks: Sequence[AckRecord] = ()) -> None:
        """New messages and ACK records in one transaction: a gateway's group commit."""
        prepared = [prepare(r) for r in saves]
        if not prepared and not acks:
            return
        with self._write(f"save {len(prepared)} message(s), {len(acks)} ACK(s)") as conn:
            events = self._hot.save(conn, prepared) if prepared else []
            if acks:
                events += self._hot.acks(conn, list(acks), writes.now())
            self._hot.events(conn, events)

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
        self.record_events_many([NewEvent(_id(message_id), event, item, detail, duration_ms, sid)])

    def record_events_many(self, events: Iterable[NewEvent]) -> None:
        """Append many events in one transaction."""
        batch = list(events)
        if batch:
            with self._write(f"record {len(batch)} event(s)") as conn:
                self._hot.events(conn, batch)

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

    def record_hops(self, records: Sequence[HopRecord], *, running: Sequence[str] = ()) -> None:
        """How a batch's hops ended, ALL in one transaction.

        For each record: the message's status and event, the messages it sends on (saved as
        queued) and its reply (saved as completed), the host's events, ACK and duplicate flag,
        and for a completed hop the delivery record (message id + item). A worker killed before
        the commit leaves nothing half done (the batch runs again, and what it would send was
        never published); one killed after it never repeats these hops. ``running``: messages
        of the batch still to come, whose ``in_progress`` clock is reset (a long batch is not
        taken for a lost one).
        """
        if not records and not running:
            return
        with self._write(f"record {len(records)} hop(s)") as conn:
            self._hot.record(conn, records, running)

    def waiting(self, targets: Sequence[str]) -> dict[str, int]:
        """How many messages wait for each item in ``targets`` (queued: on the broker, retrying
        or parked). What backpressure compares with an item's ``max_queue_depth``: counted in
        messages, whatever number of tasks carry them."""
        counts = dict.fromkeys(targets, 0)
        if not targets:
            return counts
        with self._read("count waiting messages") as conn:
            rows = conn.execute(
                select(MESSAGES.c.target, func.count())
                .where(
                    MESSAGES.c.target.in_(list(targets)),
                    MESSAGES.c.status == str(Status.QUEUED),
                )
                .group_by(MESSAGES.c.target)
            )
            counts.update({target: int(n) for target, n in rows})
        return counts

    # -- idempotent delivery ---------------------------------------------------------------------

    # -- searching -------------------------------------------------------------------------------

    def find(
        self,
        *,
        status: Status | str | None = None,
        msg_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        target: str | None = None,
        control_id: str | None = None,
        field: tuple[str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MessageHeader]:
        """Headers matching every given filter, newest first.

        ``since`` is inclusive and ``until`` exclusive, on ``created_at``. ``field`` is an HL7
        path and value, e.g. ``("PID-3", "12345")``: SQL narrows to bodies containing the value,
        then each candidate's field is compared exactly (see ``hl7_fields.field_matches``).
        Values containing HL7 delimiters or escapes are not found (the SQL filter sees raw text).
        """
        query = select(*_HEADER_COLUMNS)
        conditions = [
            MESSAGES.c.status == str(Status(status)) if status is not None else None,
            MESSAGES.c.msg_type == msg_type if msg_type is not None else None,
            MESSAGES.c.created_at >= since if since is not None else None,
            MESSAGES.c.created_at < until if until is not None else None,
            MESSAGES.c.source == source if source is not None else None,
            MESSAGES.c.target == target if target is not None else None,
            MESSAGES.c.control_id == control_id if control_id is not None else None,
        ]
        query = query.where(*[c for c in conditions if c is not None])
        query = query.order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.message_id)
        if field is None:
            with self._read("search messages") as conn:
                rows = conn.execute(query.limit(limit).offset(offset))
                return [MessageHeader.from_row(r) for r in rows]
        path, value = field
        try:
            check_path(path)
        except ValueError as exc:
            raise StoreError(f"cannot search by field: {exc}") from exc
        return self._find_by_field(query, path, value, limit, offset)

    def _find_by_field(
        self, query: Select[Any], path: str, value: str, limit: int, offset: int
    ) -> list[MessageHeader]:
        query = (
            query.add_columns(BODIES.c.content)
            .join(BODIES, BODIES.c.body_id == MESSAGES.c.body_id)
            .where(BODIES.c.content_type == BODY_HL7)
            .where(BODIES.c.content.contains(value, autoescape=True))
        )
        found: list[MessageHeader] = []
        skipped = 0
        page, start = max(limit + offset, 50), 0
        with self._read("search messages by field") as conn:
            # Page through candidates: the exact check runs in Python, so SQL cannot apply
            # limit/offset to matches; memory stays bounded by one page of bodies.
            while len(found) < limit:
                rows = conn.execute(query.limit(page).offset(start)).all()
                for row in rows:
                    if not field_matches(row.content, path, value):
                        continue
                    if skipped < offset:
                        skipped += 1
                    elif len(found) < limit:
                        found.append(MessageHeader.from_row(row))
                if len(rows) < page:
                    break
                start += page
        return found

    def session(self, session_id: str | UUID) -> list[MessageHeader]:
        """Every message of a session, oldest first."""
        sid = _id(session_id)
        with self._read(f"read session {sid}") as conn:
            rows = conn.execute(
                select(*_HEADER_COLUMNS)
                .where(MESSAGES.c.session_id == sid)
                .order_by(MESSAGES.c.created_at, MESSAGES.c.message_id)
            )
            return [MessageHeader.from_row(r) for r in rows]

    def events(
        self, message_id: str | UUID | None = None, *, session_id: str | UUID | None = None
    ) -> list[EventRecord]:
        """The trail of one message, or of a whole session, oldest first."""
        if (message_id is None) == (session_id is None):
            raise ValueError("give exactly one of message_id or session_id")
        column, value = (
            (EVENTS.c.message_id, _id(message_id))
            if message_id is not None
            else (EVENTS.c.session_id, _id(cast(str, session_id)))
        )
        with self._read(f"read events of {value}") as conn:
            rows = conn.execute(
                select(EVENTS).where(column == value).order_by(EVENTS.c.at, EVENTS.c.id)
            )
            return [EventRecord.from_row(r) for r in rows]

    def trace(self, message_id: str | UUID) -> TraceNode:
        """The tree a message belongs to: its oldest ancestor, the messages each one caused
        (by ``parent_id``), and every node's events.

        Raises:
            StoreError: no such message.
        """
        start = self.header(message_id)
        headers = {h.message_id: h for h in self.session(start.session_id)}
        trail: dict[str, list[EventRecord]] = {}
        for ev in self.events(session_id=start.session_id):
            trail.setdefault(ev.message_id, []).append(ev)
        children: dict[str, list[MessageHeader]] = {}
        for h in headers.values():
            if h.parent_id is not None:
                children.setdefault(h.parent_id, []).append(h)
        root, seen = start, {start.message_id}
        while root.parent_id in headers and root.parent_id not in seen:
            root = headers[root.parent_id]
            seen.add(root.message_id)

        def build(h: MessageHeader, path: frozenset[str]) -> TraceNode:
            kids = [k for k in children.get(h.message_id, []) if k.message_id not in path]
            return TraceNode(
                h,
                trail.get(h.message_id, []),
                [build(k, path | {k.message_id}) for k in kids],
            )

        return build(root, frozenset({root.message_id}))

    def stale(
        self,
        older_than_seconds: float,
        statuses: Iterable[Status | str] = (Status.QUEUED, Status.IN_PROGRESS),
        limit: int = 1000,
    ) -> list[MessageHeader]:
        """Messages in ``statuses`` not updated for ``older_than_seconds``, least recent first.

        The recovery sweeper re-queues these: their task was lost or its worker died.
        """
        cutoff = _now() - timedelta(seconds=older_than_seconds)
        wanted = [str(Status(s)) for s in statuses]
        with self._read("find stale messages") as conn:
            rows = conn.execute(
                select(*_HEADER_COLUMNS)
                .where(MESSAGES.c.status.in_(wanted), MESSAGES.c.updated_at < cutoff)
                .order_by(MESSAGES.c.updated_at)
                .limit(limit)
            )
            return [MessageHeader.from_row(r) for r in rows]

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

    def events_after(
        self, after_id: int, names: Iterable[str], limit: int = 1000
    ) -> list[EventRecord]:
        """Events named ``names`` with an id above ``after_id``, oldest first (a cursor)."""
        with self._read("read new events") as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.id > after_id, EVENTS.c.event.in_(list(names)))
                .order_by(EVENTS.c.id)
                .limit(limit)
            )
            return [EventRecord.from_row(r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none): where a cursor starts."""
        with self._read("read the last event id") as conn:
            return int(conn.execute(select(func.max(EVENTS.c.id))).scalar() or 0)

    def counts_by_status(self) -> dict[Status, int]:
        """How many messages are in each status (absent statuses count 0)."""
        with self._read("count messages") as conn:
            rows = conn.execute(
                select(MESSAGES.c.status, func.count()).group_by(MESSAGES.c.status)
            ).all()
        counts = dict.fromkeys(Status, 0)
        counts.update({Status(s): n for s, n in rows})
        return counts

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
        cutoff = (now or _now()) - timedelta(days=days)
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
