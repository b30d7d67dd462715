"""What the store hands out and takes in: frozen values, never ORM rows.

``MessageHeader``, ``EventRecord``, ``ItemCounters`` and ``Completion`` are read views;
``SaveRequest``, ``NewEvent``, ``AckRecord`` and ``HopRecord`` describe a write, so a batch of
them can be committed in one transaction (``save_many``, ``write_batch``, ``record_hops``).
``SaveOptions`` are a ``SaveRequest``'s fields as the keyword arguments of a one-message save.
``Claim`` is what a worker learns as it takes a batch (``claim``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from hie.messages import Envelope
from hie.store.models import Status


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """One row of ``messages``: everything about a message except its body."""

    message_id: str
    session_id: str
    correlation_id: str | None
    parent_id: str | None
    source: str | None
    target: str | None
    msg_type: str | None
    control_id: str | None
    priority: int
    status: Status
    created_at: datetime
    updated_at: datetime
    error: str | None
    body_id: int | None
    ack_code: str | None
    ack_text: str | None
    key: str | None
    possible_duplicate: bool
    attempts: int
    #: The production that stored it (None: stored before productions were recorded).
    production: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> MessageHeader:
        """Build from a result row of ``messages`` columns (extra columns are ignored)."""
        m = row._mapping
        values = {name: m[name] for name in cls.__slots__}
        values["status"] = Status(values["status"])
        values["possible_duplicate"] = bool(values["possible_duplicate"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One line of the audit trail."""

    id: int
    message_id: str
    session_id: str | None
    at: datetime
    event: str
    item: str | None
    pid: int | None
    duration_ms: float | None
    detail: str | None

    @classmethod
    def from_row(cls, row: Any) -> EventRecord:
        """Build from a result row of ``events``."""
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """One message to save: the envelope and what the store cannot read from it.

    ``msg_type`` / ``control_id`` default to MSH-9 / MSH-10 of an HL7 body. ``raw_body`` (the exact
    text received) is stored as the body instead of the envelope's, e.g. by a gateway that stores
    bytes it could not parse. ``event`` (``None`` for none) is written to the trail with ``item``.
    """

    envelope: Envelope
    status: Status | str = Status.QUEUED
    msg_type: str | None = None
    control_id: str | None = None
    raw_body: str | bytes | None = None
    event: str | None = "stored"
    item: str | None = None
    #: The ACK (code, text) the sender gets once this commits: recorded in the same transaction
    #: (an ``ack_sent`` event), not in one of its own afterwards.
    ack: tuple[str, str | None] | None = None
    #: The envelope's session begins with this save (a gateway's new message): no body of it
    #: can be stored yet, so none is looked for to share.
    new_session: bool = False


class SaveOptions(TypedDict, total=False):
    """``SaveRequest``'s fields after the envelope, as keyword arguments of one-message saves
    (``MessageStore.save``, ``GroupCommitter.submit``); what is left out takes its default there."""

    status: Status | str
    msg_type: str | None
    control_id: str | None
    raw_body: str | bytes | None
    event: str | None
    item: str | None
    ack: tuple[str, str | None] | None
    new_session: bool


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; ``session_id`` is looked up from the message when left out."""

    message_id: str
    event: str
    item: str | None = None
    detail: str | None = None
    duration_ms: float | None = None
    session_id: str | None = None
    at: datetime | None = None
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True, slots=True)
class AckRecord:
    """An ACK sent (by a gateway) or received (by an operation) for one message."""

    message_id: str
    code: str
    text: str | None = None
    event: str = "ack_sent"
    item: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learns about one message as it takes it: skip it (and why), or which
    attempt this is (the message is now ``in_progress``)."""

    skip: str | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class HopRecord:
    """How one item's hop of one message ended, with everything it produced.

    ``status`` and ``event`` are the message's new status and the event that says why
    (completed/completed, queued/retried, queued/held, error/failed, suspended/suspended,
    skipped/skipped). ``delivered`` writes the delivery record (message id + item) that keeps a
    redelivered copy from running again. ``children`` are the messages the hop sends on (saved
    as queued), ``reply`` its response (saved as completed); ``events``, ``ack`` and
    ``possible_duplicate`` come from the host while it ran.
    """

    message_id: str
    session_id: str
    item: str
    status: Status
    event: str
    detail: str | None = None
    error: str | None = None
    duration_ms: float | None = None
    delivered: bool = False
    children: tuple[Envelope, ...] = ()
    reply: Envelope | None = None
    events: tuple[tuple[str, str], ...] = ()
    ack: tuple[str, str | None] | None = None
    possible_duplicate: str | None = None


@dataclass(frozen=True, slots=True)
class TraceNode:
    """A message in a trace: its header, its events (oldest first) and the messages it caused."""

    header: MessageHeader
    events: list[EventRecord]
    children: list[TraceNode]

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds from the message's creation to its last event (0 without events)."""
        if not self.events:
            return 0.0
        return (self.events[-1].at - self.header.created_at).total_seconds() * 1000.0

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
        """Every node of the tree, depth first, with its depth (the root is 0)."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass(frozen=True, slots=True)
class ItemCounters:
    """One item's counters since the store was made (see ``CounterName``); they never go down."""

    received: int = 0
    sent: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """A message completed at an item, and when its session's first message was stored."""

    message_id: str
    item: str
    completed_at: datetime
    session_started: datetime
