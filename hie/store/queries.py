"""What the store answers: one message, searches, trails, traces, and counts.

Reads run on SQLAlchemy Core in read-only transactions (SQLite: a deferred ``BEGIN``, so they
never block a writer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Row, Select, func, or_, select

from hie.errors import StoreError
from hie.messages import BODY_HL7, BODY_NONE, BODY_TEXT, Envelope
from hie.store.database import Database
from hie.store.hl7_fields import check_path, field_matches
from hie.store.models import BODIES, COUNTERS, EVENTS, MESSAGES, Status
from hie.store.records import Completion, EventRecord, ItemCounters, MessageHeader, TraceNode

#: Candidate bodies read at once by a search by field.
_FIELD_SEARCH_PAGE = 500

_HEADER_COLUMNS = [c for c in MESSAGES.c if c.name != "headers"]


def _id(value: str | UUID) -> str:
    return str(value)


class Queries(Database):
    """The store's reading methods (part of ``MessageStore``)."""

    # -- reading one message ---------------------------------------------------------------------

    def _ours(self) -> list[ColumnElement[bool]]:
        """The condition that keeps a query to this store's production (see ``MessageStore``):
        its messages, and those stored before productions were recorded."""
        if self.production is None:
            return []
        m = MESSAGES.c
        return [or_(m.production == self.production, m.production.is_(None))]

    def _our_counters(self) -> list[ColumnElement[bool]]:
        if self.production is None:
            return []
        return [COUNTERS.c.production.in_([self.production, ""])]

    def load(self, message_id: str | UUID) -> Envelope:
        """The stored message as an ``Envelope``, body included.

        Raises:
            StoreError: no such message.
        """
        query = select(MESSAGES, BODIES.c.content, BODIES.c.content_type).outerjoin(
            BODIES, BODIES.c.body_id == MESSAGES.c.body_id
        )
        m = self._one(query, "load", message_id)._mapping
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
        return MessageHeader.from_row(self._one(select(*_HEADER_COLUMNS), "read", message_id))

    def _one(self, query: Select[Any], verb: str, message_id: str | UUID) -> Row[Any]:
        """``query``'s row for one message id; ``verb`` names the read in errors."""
        mid = _id(message_id)
        with self._read(f"{verb} message {mid}") as conn:
            row = conn.execute(query.where(MESSAGES.c.message_id == mid)).one_or_none()
        if row is None:
            raise StoreError(f"message {mid} is not in the store")
        return row

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
            *self._ours(),
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
        # Candidates are read a page at a time whatever the offset: a far page costs time, never
        # memory (a page sized by the offset once loaded every candidate body at once).
        page, start = min(max(limit, 50), _FIELD_SEARCH_PAGE), 0
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
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        wanted = [str(Status(s)) for s in statuses]
        with self._read("find stale messages") as conn:
            rows = conn.execute(
                select(*_HEADER_COLUMNS)
                .where(MESSAGES.c.status.in_(wanted), MESSAGES.c.updated_at < cutoff, *self._ours())
                .order_by(MESSAGES.c.updated_at)
                .limit(limit)
            )
            return [MessageHeader.from_row(r) for r in rows]

    def events_after(
        self, after_id: int, names: Iterable[str], limit: int = 1000
    ) -> list[EventRecord]:
        """Events named ``names`` with an id above ``after_id``, oldest first (a cursor)."""
        query = select(EVENTS).where(EVENTS.c.id > after_id, EVENTS.c.event.in_(list(names)))
        if ours := self._ours():
            query = query.where(EVENTS.c.message_id.in_(select(MESSAGES.c.message_id).where(*ours)))
        with self._read("read new events") as conn:
            rows = conn.execute(query.order_by(EVENTS.c.id).limit(limit))
            return [EventRecord.from_row(r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none): where a cursor starts."""
        with self._read("read the last event id") as conn:
            return int(conn.execute(select(func.max(EVENTS.c.id))).scalar() or 0)

    def counts_by_status(self) -> dict[Status, int]:
        """How many messages are in each status (absent statuses count 0)."""
        with self._read("count messages") as conn:
            rows = conn.execute(
                select(MESSAGES.c.status, func.count())
                .where(*self._ours())
                .group_by(MESSAGES.c.status)
            ).all()
        counts = dict.fromkeys(Status, 0)
        counts.update({Status(s): n for s, n in rows})
        return counts

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
                    *self._ours(),
                )
                .group_by(MESSAGES.c.target)
            )
            counts.update({target: int(n) for target, n in rows})
        return counts

    def counters(self, items: Sequence[str]) -> dict[str, ItemCounters]:
        """The counters of each item in ``items`` (all 0 for an item that has none yet).

        A few rows per item, whatever the number of messages: cheap at every scrape.
        """
        totals: dict[str, dict[str, int]] = {item: {} for item in items}
        if not items:
            return {}
        c = COUNTERS.c
        with self._read("read the item counters") as conn:
            rows = conn.execute(
                select(c.item, c.counter, func.sum(c.total))
                .where(c.item.in_(list(items)), *self._our_counters())
                .group_by(c.item, c.counter)
            )
            for item, counter, total in rows:
                totals[item][counter] = int(total)
        return {item: ItemCounters(**found) for item, found in totals.items()}

    def last_errors(self, items: Sequence[str]) -> dict[str, str | None]:
        """The error text of each item's most recent message in ``error`` (None: there is none
        among the newest 200 in error)."""
        errors: dict[str, str | None] = dict.fromkeys(items)
        if not items:
            return errors
        m = MESSAGES.c
        with self._read("read the last errors") as conn:
            rows = conn.execute(
                select(m.target, m.error)
                .where(m.target.in_(list(items)), m.status == str(Status.ERROR), *self._ours())
                .order_by(m.updated_at.desc())
                .limit(200)
            )
            for target, error in rows:
                if errors[target] is None:
                    errors[target] = error
        return errors

    def recent_counts(self, since: datetime) -> dict[str, dict[str, int]]:
        """``{target: {status: n}}`` for the messages created since ``since`` (the
        ``created_at`` index keeps this to the window, however large the store)."""
        m = MESSAGES.c
        with self._read("count recent messages") as conn:
            rows = conn.execute(
                select(m.target, m.status, func.count())
                .where(m.created_at >= since, *self._ours())
                .group_by(m.target, m.status)
            ).all()
        out: dict[str, dict[str, int]] = {}
        for target, status, n in rows:
            out.setdefault(target or "", {})[status] = n
        return out

    def completions(
        self, items: Sequence[str], since: datetime | None = None, limit: int = 10_000
    ) -> list[Completion]:
        """Messages completed at ``items``, updated at or after ``since``, oldest first, each
        with the time its session's first message was stored (end-to-end latency)."""
        if not items:
            return []
        m = MESSAGES.c
        first = MESSAGES.alias("first")
        started = (
            select(func.min(first.c.created_at))
            .where(first.c.session_id == m.session_id)
            .scalar_subquery()
        )
        query = (
            select(m.message_id, m.target, m.updated_at, started)
            .where(m.target.in_(list(items)), m.status == str(Status.COMPLETED), *self._ours())
            .order_by(m.updated_at)
            .limit(limit)
        )
        if since is not None:
            query = query.where(m.updated_at >= since)
        with self._read("read completed messages") as conn:
            return [Completion(*row) for row in conn.execute(query)]
