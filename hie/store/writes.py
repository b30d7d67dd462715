"""The store's hot path: what gateways and workers write for every message, in few statements.

A gateway writes once per group commit, a worker twice per batch (its claim, its record), and
the rest of HIE's writes go through the same few rows: new messages with their bodies and first
events, events, ACKs, hop outcomes, delivery records and the item counters they move. They run
thousands of times a second, so each kind of row takes ONE statement however many rows there are
(multi-row ``VALUES``, ``IN`` lists), written here once for both backends and run through the
driver (``exec_driver_sql``).
For these small, frequent transactions SQLAlchemy's statement compilation and bind processing
cost more than the database's own work: a worker's claim took 0.52 ms through SQLAlchemy Core
and 0.20 ms this way, on SQLite, measured (``bench/store.py``). Reads, searches and maintenance
stay on SQLAlchemy Core in ``hie.store.queries`` and ``hie.store.retention``.

Values are converted here as SQLAlchemy would: SQLite gets timestamps as naive UTC text in the
format of its ``DateTime`` type (so SQLAlchemy reads them back), PostgreSQL aware datetimes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table

from hie.errors import StoreError
from hie.messages import BODY_HL7, BODY_NONE, BODY_TEXT, Envelope
from hie.store.hl7_fields import msh_type_and_control_id
from hie.store.models import COUNTER_SHARDS, CounterName, Status
from hie.store.records import AckRecord, Claim, HopRecord, NewEvent, SaveRequest

#: Rows per multi-row statement: far below SQLite's 32766 and PostgreSQL's 65535 parameters.
CHUNK = 500
#: Statuses in which a message must not run: an operator set it aside.
SET_ASIDE = (str(Status.SUSPENDED), str(Status.DISCARDED))

_MESSAGE_COLUMNS = (
    "message_id", "session_id", "correlation_id", "parent_id", "source", "target", "msg_type",
    "control_id", "priority", "status", "created_at", "updated_at", "error", "body_id",
    "ack_code", "ack_text", "key", "possible_duplicate", "attempts", "headers", "production",
)  # fmt: skip
_EVENT_COLUMNS = (
    "message_id", "session_id", "at", "event", "item", "pid", "duration_ms", "detail",
)  # fmt: skip
_BODY_COLUMNS = ("session_id", "content_type", "content", "size", "sha256")
_COUNTER_COLUMNS = ("production", "item", "counter", "shard", "total")
# Adds to an existing share; the multi-row VALUES never names one (item, counter) twice, which
# PostgreSQL would refuse.
_ADD_TO_COUNTER = (
    " ON CONFLICT (production, item, counter, shard) "
    "DO UPDATE SET total = item_counters.total + excluded.total"
)
#: A status a message enters that ``item_counters`` counts, and the counter it adds to.
_COUNTED_STATUSES = {Status.COMPLETED: CounterName.COMPLETED, Status.ERROR: CounterName.FAILED}

#: Additions to ``item_counters`` gathered in one transaction: (item, counter) -> how many.
Tally = Counter[tuple[str, str]]


def now() -> datetime:
    """The time a write is stamped with: aware, UTC."""
    return datetime.now(UTC)


def status_counter(status: Status | str) -> CounterName | None:
    """The counter a message entering ``status`` adds to (None: that status is not counted)."""
    return _COUNTED_STATUSES.get(Status(status))


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A ``SaveRequest`` with its body hashed and its HL7 header read, done outside the lock."""

    request: SaveRequest
    content: str | None
    content_type: str
    sha256: str
    msg_type: str | None
    control_id: str | None

    @property
    def body_key(self) -> tuple[str, str, str]:
        """Bodies are stored once per session, content and type."""
        return (str(self.request.envelope.session_id), self.sha256, self.content_type)


def _decode_raw(raw: str | bytes) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Latin-1 maps every byte to one character, so the original bytes can be recovered.
        return raw.decode("latin-1")


def prepare(request: SaveRequest) -> Prepared:
    """Hash the body and read MSH-9 / MSH-10 of ``request`` (no database needed)."""
    env = request.envelope
    content: str | None
    content_type = env.body_type
    if request.raw_body is not None:
        content = _decode_raw(request.raw_body)
        if content_type not in (BODY_HL7, BODY_TEXT):
            content_type = BODY_HL7 if content.startswith("MSH") else BODY_TEXT
    elif env.body_type == BODY_NONE:
        content = None
    elif env.body_type in (BODY_HL7, BODY_TEXT):
        if not isinstance(env.body, str):
            raise StoreError(
                f"message {env.message_id}: a {env.body_type} body must be text, "
                f"not {type(env.body).__name__}"
            )
        content = env.body
    else:
        content = json.dumps(env.body, separators=(",", ":"), ensure_ascii=False)
    sha = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest() if content else ""
    msg_type, control_id = request.msg_type, request.control_id
    if content_type == BODY_HL7 and content and (msg_type is None or control_id is None):
        sniffed_type, sniffed_control = msh_type_and_control_id(content)
        msg_type = msg_type if msg_type is not None else sniffed_type
        control_id = control_id if control_id is not None else sniffed_control
    return Prepared(request, content, content_type, sha, msg_type, control_id)


_IN_IDS = "message_id IN ({ids})"
_IN_IDS_LOCKED_IN_ORDER = (
    "message_id IN (SELECT message_id FROM messages WHERE message_id IN ({ids}) "
    "ORDER BY message_id FOR UPDATE)"
)


class HotWrites:
    """The hot path's statements for one backend (``sqlite`` or ``postgresql``)."""

    def __init__(self, backend: str, production: str | None = None) -> None:
        self.sqlite = backend == "sqlite"
        #: Written on every new message and counter ("" on counters when None).
        self.production = production
        self._mark = "?" if self.sqlite else "%s"
        self._sql: dict[tuple[str, int], str] = {}

    # -- values and statement text ---------------------------------------------------------------
    def ts(self, value: datetime) -> Any:
        """A timestamp as the backend's ``DateTime`` column takes it (see the module docstring)."""
        if not self.sqlite:
            return value
        if value.utcoffset():
            value = value.astimezone(UTC)
        # SQLAlchemy's SQLite DateTime format; isoformat is several times faster than strftime.
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def marks(self, count: int) -> str:
        """``?, ?, ?`` (or ``%s, ...``): ``count`` parameter markers."""
        return ", ".join([self._mark] * count)

    def _insert_sql(self, table: Table | str, columns: Sequence[str], rows: int, tail: str) -> str:
        name = table if isinstance(table, str) else table.name
        key = (f"{name}:{tail}", rows)
        sql = self._sql.get(key)
        if sql is None:
            row = f"({self.marks(len(columns))})"
            values = ", ".join([row] * rows)
            sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES {values}{tail}"
            self._sql[key] = sql
        return sql

    def insert(
        self,
        conn: Connection,
        table: Table | str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        tail: str = "",
    ) -> list[Any]:
        """Insert ``rows`` (values in ``columns`` order), one statement per ``CHUNK`` rows.

        ``tail`` ends each statement (``ON CONFLICT DO NOTHING``, ``RETURNING ...``); returned
        rows are collected.
        """
        out: list[Any] = []
        for chunk in chunks(rows):
            sql = self._insert_sql(table, columns, len(chunk), tail)
            params = tuple(v for row in chunk for v in row)
            result = conn.exec_driver_sql(sql, params)
            if "RETURNING" in tail:
                out.extend(result.fetchall())
        return out

    def where_in(
        self, conn: Connection, head: str, ids: Sequence[str], params: Sequence[Any] = ()
    ) -> list[Any]:
        """Run ``head ... IN (ids)`` (``head`` has ``{ids}`` where the list goes) per chunk."""
        out: list[Any] = []
        for chunk in chunks(ids):
            sql = head.format(ids=self.marks(len(chunk)))
            result = conn.exec_driver_sql(sql, (*params, *chunk))
            if result.returns_rows:
                out.extend(result.fetchall())
        return out

    def _m(self, sql: str) -> str:
        """SQL written with ``?`` markers, in this backend's marker style.

        On PostgreSQL an ``UPDATE messages ... message_id IN ({ids})`` locks its rows in
        message id order first: two transactions updating the same rows (the gateway recording
        ACKs, a worker claiming the messages) otherwise lock them in whatever order their plans
        meet them, deadlock, and one of them waits out ``deadlock_timeout`` (1 s) to be aborted.
        SQLite has one writer at a time and needs no order.
        """
        if self.sqlite:
            return sql
        if sql.startswith("UPDATE messages ") and _IN_IDS in sql:
            sql = sql.replace(_IN_IDS, _IN_IDS_LOCKED_IN_ORDER, 1)
        return sql.replace("?", "%s")

    # -- new messages ----------------------------------------------------------------------------
    def save(self, conn: Connection, prepared: list[Prepared], tally: Tally) -> list[NewEvent]:
        """Insert prepared messages and their bodies; returns their first events, to be written
        with the transaction's other events (one statement for all of them). Their counts are
        added to ``tally``."""
        stamp = now()
        body_ids = self._body_ids(conn, prepared)
        self.insert(
            conn,
            "messages",
            _MESSAGE_COLUMNS,
            [self._message_row(p, body_ids, stamp) for p in prepared],
        )
        for p in prepared:
            env = p.request.envelope
            if env.target is not None:
                tally[(env.target, CounterName.RECEIVED)] += 1
                counter = status_counter(p.request.status)
                if counter is not None:
                    tally[(env.target, counter)] += 1
            if env.source is not None:
                tally[(env.source, CounterName.SENT)] += 1
        events: list[NewEvent] = []
        for p in prepared:
            request = p.request
            mid, sid = str(request.envelope.message_id), str(request.envelope.session_id)
            if request.event:
                events.append(NewEvent(mid, request.event, request.item, session_id=sid, at=stamp))
            if request.ack is not None:
                code, text = request.ack
                detail = code if text is None else f"{code} {text}"
                events.append(NewEvent(mid, "ack_sent", request.item, detail, None, sid, stamp))
        return events

    def _message_row(
        self, p: Prepared, body_ids: dict[tuple[str, str, str], int], stamp: datetime
    ) -> tuple[Any, ...]:
        env = p.request.envelope
        return (
            str(env.message_id),
            str(env.session_id),
            None if env.correlation_id is None else str(env.correlation_id),
            None if env.parent_id is None else str(env.parent_id),
            env.source,
            env.target,
            p.msg_type,
            p.control_id,
            env.priority,
            str(Status(p.request.status)),
            self.ts(env.created_at),
            self.ts(stamp),
            None,
            body_ids[p.body_key] if p.content is not None else None,
            None if p.request.ack is None else p.request.ack[0],
            None if p.request.ack is None else p.request.ack[1],
            env.key,
            False,
            0,
            json.dumps(env.headers) if env.headers else None,
            self.production,
        )

    def _body_ids(
        self, conn: Connection, prepared: list[Prepared]
    ) -> dict[tuple[str, str, str], int]:
        """Body id per (session, sha256, type): existing rows reused, missing ones inserted once."""
        wanted = {p.body_key: p for p in prepared if p.content is not None}
        if not wanted:
            return {}
        found: dict[tuple[str, str, str], int] = {}
        keys = list(wanted)
        # A session that begins in this transaction has no stored body to share yet: look only
        # for bodies some save of the key does not say so of.
        stored_before = {p.body_key for p in prepared if not p.request.new_session}
        for chunk in chunks([k for k in keys if k in stored_before]):
            sessions = sorted({k[0] for k in chunk})
            hashes = sorted({k[1] for k in chunk})
            sql = self._m(
                "SELECT body_id, session_id, sha256, content_type FROM bodies "
                f"WHERE session_id IN ({self.marks(len(sessions))}) "
                f"AND sha256 IN ({self.marks(len(hashes))})"
            )
            for body_id, session_id, sha, content_type in conn.exec_driver_sql(
                sql, (*sessions, *hashes)
            ):
                if (session_id, sha, content_type) in wanted:
                    found.setdefault((session_id, sha, content_type), body_id)
        missing = [k for k in keys if k not in found]
        if missing:
            rows = [
                (k[0], k[2], wanted[k].content, len(wanted[k].content or ""), k[1]) for k in missing
            ]
            tail = " RETURNING body_id, session_id, sha256, content_type"
            for body_id, session_id, sha, content_type in self.insert(
                conn, "bodies", _BODY_COLUMNS, rows, tail=tail
            ):
                found[(session_id, sha, content_type)] = body_id
        return found

    # -- events and ACKs -------------------------------------------------------------------------
    def events(self, conn: Connection, events: Sequence[NewEvent]) -> None:
        """Append ``events``; the session of an event that names none is looked up."""
        if not events:
            return
        unknown = sorted({e.message_id for e in events if e.session_id is None})
        sessions: dict[str, str] = {}
        if unknown:
            head = "SELECT message_id, session_id FROM messages WHERE message_id IN ({ids})"
            sessions = dict(self.where_in(conn, self._m(head), unknown))
        stamp = now()
        rows = [
            (
                e.message_id,
                e.session_id or sessions.get(e.message_id),
                self.ts(e.at or stamp),
                e.event,
                e.item,
                e.pid,
                e.duration_ms,
                e.detail,
            )
            for e in events
        ]
        self.insert(conn, "events", _EVENT_COLUMNS, rows)

    def acks(self, conn: Connection, acks: Sequence[AckRecord], stamp: datetime) -> list[NewEvent]:
        """Record ACK codes on their messages; returns the events that say so."""
        groups: dict[tuple[str, str | None], list[str]] = {}
        for a in acks:
            groups.setdefault((a.code, a.text), []).append(a.message_id)
        for (code, text), ids in groups.items():
            head = (
                "UPDATE messages SET ack_code = ?, ack_text = ?, updated_at = ? "
                "WHERE message_id IN ({ids})"
            )
            self.where_in(conn, self._m(head), ids, (code, text, self.ts(stamp)))
        return [
            NewEvent(
                a.message_id,
                a.event,
                item=a.item,
                detail=a.code if a.text is None else f"{a.code} {a.text}",
                session_id=a.session_id,
                at=stamp,
            )
            for a in acks
        ]

    def count(self, conn: Connection, tally: Tally) -> None:
        """Add ``tally`` to ``item_counters``: one statement, the last of its transaction.

        Last, and its rows in one order everywhere: a PostgreSQL transaction holding a counter's
        lock then only waits for its commit, never for another lock, so none deadlock on them.
        """
        if not tally:
            return
        shard = os.getpid() % COUNTER_SHARDS
        mine = self.production or ""
        rows = [
            (mine, item, str(counter), shard, n) for (item, counter), n in sorted(tally.items())
        ]
        self.insert(conn, "item_counters", _COUNTER_COLUMNS, rows, tail=_ADD_TO_COUNTER)

    # -- a worker's batch ------------------------------------------------------------------------
    def claim(
        self, conn: Connection, envelopes: Sequence[Envelope], item: str, redelivered: Any
    ) -> dict[str, Claim]:
        """See ``MessageStore.claim``."""
        by_id = {str(e.message_id): e for e in envelopes}
        ids = list(by_id)
        stamp = now()
        started = self._start(conn, ids, item, stamp)
        claims = {mid: Claim(attempt=n) for mid, n in started.items()}
        tally = Tally()
        if len(started) < len(ids):
            missing = [by_id[m] for m in ids if m not in started]
            claims |= self._not_started(conn, missing, item, stamp, tally)
        run = [m for m in ids if claims[m].skip is None]
        flagged = [m for m in run if m in redelivered]
        if flagged:
            head = "UPDATE messages SET possible_duplicate = ? WHERE message_id IN ({ids})"
            self.where_in(conn, self._m(head), flagged, (True,))
        events = [
            NewEvent(
                m,
                "started",
                item,
                f"attempt {claims[m].attempt}",
                None,
                str(by_id[m].session_id),
                stamp,
            )
            for m in run
        ]
        events += [
            NewEvent(
                m,
                "possible_duplicate",
                item,
                "redelivered by the broker",
                None,
                str(by_id[m].session_id),
                stamp,
            )
            for m in flagged
        ]
        self.events(conn, events)
        self.count(conn, tally)
        return claims

    def _start(
        self, conn: Connection, ids: Sequence[str], item: str, stamp: datetime
    ) -> dict[str, int]:
        """Move every message of ``ids`` that may run at ``item`` to ``in_progress``, one more
        attempt; returns the attempt number of each one moved."""
        head = self._m(
            "UPDATE messages SET status = ?, updated_at = ?, attempts = attempts + 1 "
            "WHERE message_id IN ({ids}) AND status NOT IN (?, ?) AND NOT EXISTS (SELECT 1 "
            "FROM deliveries WHERE deliveries.message_id = messages.message_id "
            "AND deliveries.target = ?) RETURNING message_id, attempts"
        )
        # The IN list comes first in the text, but the markers before it are the SET values.
        started: dict[str, int] = {}
        for chunk in chunks(ids):
            sql = head.format(ids=self.marks(len(chunk)))
            params = (str(Status.IN_PROGRESS), self.ts(stamp), *chunk, *SET_ASIDE, item)
            started.update(dict(conn.exec_driver_sql(sql, params).fetchall()))
        return started

    def check(
        self, conn: Connection, envelopes: Sequence[Envelope], item: str
    ) -> dict[str, Claim] | None:
        """See ``MessageStore.check``."""
        ids = [str(e.message_id) for e in envelopes]
        head = self._m(
            "SELECT message_id, status, attempts, EXISTS (SELECT 1 FROM deliveries WHERE "
            "deliveries.message_id = messages.message_id AND deliveries.target = ?) "
            "FROM messages WHERE message_id IN ({ids})"
        )
        rows = {row[0]: row[1:] for row in self.where_in(conn, head, ids, (item,))}
        if len(rows) < len(ids):
            return None  # one the store has never seen: the claim saves it
        claims: dict[str, Claim] = {}
        for mid in ids:
            status, attempts, done = rows[mid]
            if done:
                claims[mid] = Claim(skip="already completed")
            elif status in SET_ASIDE:
                claims[mid] = Claim(skip=f"it is {status}")
            else:
                claims[mid] = Claim(attempt=int(attempts or 0) + 1)
        return claims

    def _not_started(
        self, conn: Connection, envelopes: list[Envelope], item: str, stamp: datetime, tally: Tally
    ) -> dict[str, Claim]:
        """Why the claim did not take these: done, set aside, or never stored (saved now)."""
        ids = [str(e.message_id) for e in envelopes]
        statuses = dict(
            self.where_in(
                conn,
                self._m("SELECT message_id, status FROM messages WHERE message_id IN ({ids})"),
                ids,
            )
        )
        done = {
            m
            for (m,) in self.where_in(
                conn,
                self._m(
                    "SELECT message_id FROM deliveries WHERE target = ? AND message_id IN ({ids})"
                ),
                ids,
                (item,),
            )
        }
        claims: dict[str, Claim] = {}
        unknown: list[Envelope] = []
        for envelope, mid in zip(envelopes, ids, strict=True):
            if mid in done:
                claims[mid] = Claim(skip="already completed")
            elif mid in statuses:
                claims[mid] = Claim(skip=f"it is {statuses[mid]}")
            else:
                unknown.append(envelope)
                claims[mid] = Claim(attempt=1)
        if unknown:
            requests = [
                SaveRequest(e, Status.IN_PROGRESS, event="received", item=item) for e in unknown
            ]
            self.events(conn, self.save(conn, [prepare(r) for r in requests], tally))
            head = "UPDATE messages SET attempts = 1 WHERE message_id IN ({ids})"
            self.where_in(conn, self._m(head), [str(e.message_id) for e in unknown])
        return claims

    def record(
        self,
        conn: Connection,
        records: Sequence[HopRecord],
        running: Sequence[str],
        claim: Mapping[str, datetime] | None = None,
    ) -> set[str]:
        """See ``MessageStore.record_hops``; returns the ids of ``claim`` it dropped."""
        stamp = now()
        events: list[NewEvent] = []
        dropped: set[str] = set()
        if claim:
            # Messages run on a read (``check``): take them now, and keep only what they did
            # for those still there to take (an operator may have set one aside meanwhile).
            started = self._start(conn, list(claim), records[0].item, stamp)
            dropped = set(claim) - started.keys()
            records = [r for r in records if r.message_id not in dropped]
            pid = os.getpid()
            events += [
                NewEvent(m, "started", r.item, f"attempt {started[m]}", None, r.session_id,
                         claim[m], pid)
                for r in records
                if (m := r.message_id) in started
            ]  # fmt: skip
        prepared = [
            prepare(SaveRequest(c, Status.QUEUED, event="queued", item=c.target))
            for r in records
            for c in r.children
        ]
        prepared += [
            prepare(SaveRequest(r.reply, Status.COMPLETED, event="reply", item=r.item))
            for r in records
            if r.reply is not None
        ]
        tally = Tally()
        events += self.save(conn, prepared, tally) if prepared else []
        self._statuses(conn, records, stamp, tally)
        acks = [
            AckRecord(r.message_id, r.ack[0], r.ack[1], "ack_received", r.item, r.session_id)
            for r in records
            if r.ack is not None
        ]
        ack_events = {e.message_id: e for e in self.acks(conn, acks, stamp)} if acks else {}
        flagged = [r.message_id for r in records if r.possible_duplicate is not None]
        if flagged:
            head = "UPDATE messages SET possible_duplicate = ? WHERE message_id IN ({ids})"
            self.where_in(conn, self._m(head), flagged, (True,))
        pid = os.getpid()
        for r in records:
            # In the order they happened: the host's events, its ACK, the flag, then the end.
            events += [
                NewEvent(r.message_id, n, r.item, d, None, r.session_id, stamp, pid)
                for n, d in r.events
            ]
            if r.message_id in ack_events:
                events.append(ack_events[r.message_id])
            if r.possible_duplicate is not None:
                events.append(
                    NewEvent(
                        r.message_id,
                        "possible_duplicate",
                        r.item,
                        r.possible_duplicate,
                        None,
                        r.session_id,
                        stamp,
                        pid,
                    )
                )
            detail = r.detail if r.detail is not None else r.error
            events.append(
                NewEvent(
                    r.message_id, r.event, r.item, detail, r.duration_ms, r.session_id, stamp, pid
                )
            )
        self.events(conn, events)
        delivered = [(r.message_id, r.item, self.ts(stamp)) for r in records if r.delivered]
        if delivered:
            columns = ("message_id", "target", "completed_at")
            self.insert(conn, "deliveries", columns, delivered, tail=" ON CONFLICT DO NOTHING")
        if running:
            # Queued too: the messages of a batch run on a read are taken when recorded.
            head = (
                "UPDATE messages SET updated_at = ? WHERE status IN (?, ?) "
                "AND message_id IN ({ids})"
            )
            params = (self.ts(stamp), str(Status.IN_PROGRESS), str(Status.QUEUED))
            self.where_in(conn, self._m(head), list(running), params)
        self.count(conn, tally)
        return dropped

    def _statuses(
        self, conn: Connection, records: Sequence[HopRecord], stamp: datetime, tally: Tally
    ) -> None:
        """New statuses: one statement per (status, error), usually one for the whole batch.
        What the hops count is added to ``tally``."""
        groups: dict[tuple[str, str | None], list[str]] = {}
        for r in records:
            groups.setdefault((str(r.status), r.error), []).append(r.message_id)
            counter = status_counter(r.status)
            if counter is not None:
                tally[(r.item, counter)] += 1
            if r.event == "retried":
                tally[(r.item, CounterName.RETRIED)] += 1
        # A later success keeps the last error text; only a new error replaces it.
        head = self._m(
            "UPDATE messages SET status = ?, updated_at = ?, error = COALESCE(?, error) "
            "WHERE message_id IN ({ids})"
        )
        for (status, error), ids in groups.items():
            self.where_in(conn, head, ids, (status, self.ts(stamp), error))
