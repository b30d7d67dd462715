"""AckLog: records the ACKs a gateway sent, in batches, off the event loop.

The ACK goes out first (the message was committed before it), so this record may trail it by a
few milliseconds; one transaction per batch keeps it from competing with the group commit of new
messages for SQLite's single writer.
"""

from __future__ import annotations

import logging
import queue
import threading
from uuid import UUID

from hie.errors import HIEError
from hie.store import MessageStore

log = logging.getLogger(__name__)

_STOP = object()
Ack = tuple[UUID, str, str | None]


class AckLog:
    """A thread that writes queued ACK records every few milliseconds."""

    def __init__(self, store: MessageStore, item: str, *, max_batch: int = 500) -> None:
        self.store = store
        self.item = item
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Ack | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"ack-log:{item}", daemon=True)
        self._thread.start()

    def record(self, message_id: UUID, code: str, text: str | None) -> None:
        """Queue one ACK record (never blocks)."""
        self._queue.put((message_id, code, text))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=0.002))
                except queue.Empty:
                    break
            acks = [b for b in batch if b is not _STOP]
            if acks:
                try:
                    self.store.set_acks(acks, event="ack_sent", item=self.item)  # type: ignore[arg-type]
                except HIEError as exc:
                    log.warning("cannot record %d ACK(s) of %s: %s", len(acks), self.item, exc)
            if len(acks) != len(batch):
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
