"""The message store: every message, body, event and delivery, in SQL (SQLite or PostgreSQL).

Example::

    store = MessageStore("sqlite:///var/hie.db")
    store.migrate()
    store.save(envelope, item="HL7.In")
    store.set_status(envelope.message_id, Status.COMPLETED, item="HL7.Out", duration_ms=12.5)
"""

from __future__ import annotations

from hie.store.group_commit import GroupCommitter
from hie.store.models import CounterName, Event, Status
from hie.store.records import (
    AckRecord,
    Claim,
    Completion,
    EventRecord,
    HopRecord,
    ItemCounters,
    MessageHeader,
    NewEvent,
    SaveRequest,
    TraceNode,
)
from hie.store.store import MessageStore

__all__ = [
    "AckRecord",
    "Claim",
    "Completion",
    "CounterName",
    "Event",
    "EventRecord",
    "GroupCommitter",
    "HopRecord",
    "ItemCounters",
    "MessageHeader",
    "MessageStore",
    "NewEvent",
    "SaveRequest",
    "Status",
    "TraceNode",
]
