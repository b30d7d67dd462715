"""The message store's tables, as SQLAlchemy 2.0 typed ORM classes.

Five tables, one idea each:

* ``messages``: one header row per message (ids, routing, MSH-9/MSH-10, status, ACK, attempts).
* ``bodies``: message content, stored once and shared by every copy of the same content in a
  session (a routing process sends one ADT to five targets: one body row, six header rows).
* ``events``: the audit trail, append-only: what happened to a message, where, when, how long.
* ``deliveries``: one row per (message, target) an operation has finished sending, so a task that
  Celery delivers twice does not send twice.
* ``item_counters``: per item, how many messages it received, sent, completed, failed and
  retried since the store was made; they only grow (a purge leaves them), as Prometheus counters
  must, and status and metrics read them instead of counting every message at every scrape.

Rows stay inside ``hie.store``; callers get ``MessageHeader`` / ``EventRecord`` values instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: UUIDs are stored as their 36-character text form: portable and readable in a SQL console.
ID_LENGTH = 36
#: Item names, message types and control ids are short in practice; these bounds are generous.
NAME_LENGTH = 200
#: Rows per item and counter in ``item_counters`` (see ``CounterRow``).
COUNTER_SHARDS = 16

# SQLite only auto-increments an INTEGER PRIMARY KEY (a rowid alias), never a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Status(StrEnum):
    """Where a message is in its life; ``queued``, ``in_progress``, ``suspended`` are unfinished."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ERROR = "error"
    SUSPENDED = "suspended"
    DISCARDED = "discarded"
    SKIPPED = "skipped"


#: A session with any message in one of these states is never purged: someone may still act on it.
UNFINISHED = (Status.QUEUED, Status.IN_PROGRESS, Status.SUSPENDED)


class Event(StrEnum):
    """The words of the audit trail (``events.event``); other strings are accepted too."""

    RECEIVED = "received"
    STORED = "stored"
    QUEUED = "queued"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    SUSPENDED = "suspended"
    DISCARDED = "discarded"
    SKIPPED = "skipped"
    ACK_SENT = "ack_sent"
    ACK_RECEIVED = "ack_received"
    RESENT = "resent"
    ALERT = "alert"
    POSSIBLE_DUPLICATE = "possible_duplicate"
    LATE_REPLY = "late_reply"


class CounterName(StrEnum):
    """What ``item_counters`` counts per item (``status`` and ``/metrics`` show them)."""

    #: Messages stored with the item as their target.
    RECEIVED = "received"
    #: Messages stored with the item as their source (what a service sent in).
    SENT = "sent"
    #: Messages that became ``completed`` at the item.
    COMPLETED = "completed"
    #: Messages that went into ``error`` at the item.
    FAILED = "failed"
    #: Retries the item scheduled.
    RETRIED = "retried"


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are written as UTC and always read back timezone-aware.

    SQLite has no timezone type: values are stored as naive UTC text, which keeps them sortable
    and comparable with ``<`` in SQL; PostgreSQL gets ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the store's tables (``Base.metadata`` is what migrations create)."""


class Body(Base):
    """Message content, stored once per session and content."""

    __tablename__ = "bodies"

    body_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Dedupe scope: equal content in one session shares a row, so purging a session can never
    # pull a body out from under a message of another session.
    session_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    #: ``hl7v2``, ``text`` or the import path of a pydantic model (content is then JSON).
    content_type: Mapped[str] = mapped_column(String(NAME_LENGTH))
    content: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_bodies_session_sha256", "session_id", "sha256"),)


class MessageRow(Base):
    """One message header: who, what, where to, and how far it got."""

    __tablename__ = "messages"

    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    correlation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    parent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    source: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    target: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    #: MSH-9 message code and trigger event, e.g. ``ADT^A01``.
    msg_type: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    #: MSH-10 message control id.
    control_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    priority: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    body_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("bodies.body_id"))
    ack_code: Mapped[str | None] = mapped_column(String(10))
    ack_text: Mapped[str | None] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The envelope's free-form headers, as a JSON object.
    headers: Mapped[str | None] = mapped_column(Text)
    #: The production that stored it (None: stored before productions were recorded, or by a
    #: tool that names none): productions sharing one store each see their own.
    production: Mapped[str | None] = mapped_column(String(NAME_LENGTH))

    __table_args__ = (
        Index("ix_messages_session_id", "session_id"),
        Index("ix_messages_status_updated_at", "status", "updated_at"),
        Index("ix_messages_created_at", "created_at"),
        Index("ix_messages_msg_type", "msg_type"),
        Index("ix_messages_control_id", "control_id"),
        Index("ix_messages_source", "source"),
        # Backpressure counts the messages waiting for an item: (target, status) answers that
        # from the index alone, whatever the item handled before.
        Index("ix_messages_target_status", "target", "status"),
        Index("ix_messages_parent_id", "parent_id"),
        Index("ix_messages_body_id", "body_id"),
        Index("ix_messages_production_status", "production", "status"),
    )


class EventRow(Base):
    """One line of a message's audit trail."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key: an event may be written in the same batch as, or before, its message, and
    # the trail is append-only; purge removes it with its message.
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    session_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(40))
    item: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    pid: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_events_message_id", "message_id"),
        Index("ix_events_session_id", "session_id"),
    )


class DeliveryRow(Base):
    """Proof that ``target`` finished sending ``message_id``: an operation's idempotency key."""

    __tablename__ = "deliveries"

    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    target: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CounterRow(Base):
    """One share of one item's counter; the counter is the sum of its shares.

    Writers add to the share of their process (pid modulo ``COUNTER_SHARDS``): PostgreSQL holds a
    row's lock until the commit, and a gateway's commit waits for the disk, so processes sharing
    one row would commit one after the other.
    """

    __tablename__ = "item_counters"

    #: The production whose item this is ("": counted before productions were recorded).
    production: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    item: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    counter: Mapped[str] = mapped_column(String(20), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)


#: The tables as SQLAlchemy Core objects, which the store's queries are written against.
MESSAGES = cast(Table, MessageRow.__table__)
BODIES = cast(Table, Body.__table__)
EVENTS = cast(Table, EventRow.__table__)
DELIVERIES = cast(Table, DeliveryRow.__table__)
COUNTERS = cast(Table, CounterRow.__table__)
