"""Group commit: many callers' saves, one transaction every few milliseconds.

A commit costs a disk flush (SQLite) or a round trip and WAL flush (PostgreSQL) whatever its
size, so a single writer thread that commits whatever has queued up turns N flushes into one. The
MLLP gateway awaits ``submit_async`` before it ACKs: a message is never ACKed before it is stored.

Example::

    committer = GroupCommitter(store)
    await committer.submit_async(envelope, raw_body=frame)  # durable once this returns
    committer.close()
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Self

from hie.errors import StoreError
from hie.messages import Envelope
from hie.store.models import Status
from hie.store.records import SaveRequest
from hie.store.store import MessageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Pending:
    request: SaveRequest
    future: Future[None]


_STOP = object()


class GroupCommitter:
    """A background thread that saves submitted messages in batches.

    Args:
        store: where to save.
        max_delay_ms: how long the first message of a batch may wait for company.
        max_batch: commit at once when this many are waiting.

    ``transactions`` and ``saved`` count what the thread did (for benchmarks and tests).
    Create it in the process that uses it: its thread does not survive a fork.
    """

    def __init__(
        self, store: MessageStore, *, max_delay_ms: float = 2.0, max_batch: int = 500
    ) -> None:
        self.store = store
        self.max_delay = max_delay_ms / 1000.0
        self.max_batch = max_batch
        self.transactions = 0
        self.saved = 0
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hie-group-commit", daemon=True)
        self._thread.start()

    def submit(
        self,
        envelope: Envelope,
        *,
        status: Status | str = Status.QUEUED,
        msg_type: str | None = None,
        control_id: str | None = None,
        raw_body: str | bytes | None = None,
        event: str | None = "stored",
        item: str | None = None,
    ) -> Future[None]:
        """Queue a save (same arguments as ``MessageStore.save``).

        Returns a future resolved once the message is committed, or failed with ``StoreError``.

        Raises:
            StoreError: the committer is closed.
        """
        request = SaveRequest(envelope, status, msg_type, control_id, raw_body, event, item)
        future: Future[None] = Future()
        with self._close_lock:
            # Checked under the lock so nothing lands in the queue after the stop marker.
            if self._closed:
                raise StoreError(
                    f"group committer is closed; message {envelope.message_id} not saved"
                )
            self._queue.put(_Pending(request, future))
        return future

    async def submit_async(
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
        """``submit`` for asyncio: returns once committed, without blocking the event loop."""
        future = self.submit(
            envelope,
            status=status,
            msg_type=msg_type,
            control_id=control_id,
            raw_body=raw_body,
            event=event,
            item=item,
        )
        await asyncio.wrap_future(future)

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit everything already submitted, then stop the thread. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            # No waiting for company when nobody else is there: what arrives while this batch
            # commits forms the next one, so batches grow with load and a lone message is
            # committed at once. ``max_delay`` only bounds how long a batch keeps filling.
            deadline = time.monotonic() + self.max_delay
            while len(batch) < self.max_batch and time.monotonic() < deadline:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit([p for p in batch if isinstance(p, _Pending)])

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self.store.save_many([p.request for p in batch])
        # Any failure, not only StoreError, must reach the callers waiting on these futures.
        except Exception as exc:
            self.transactions += 1
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            # One bad message (a duplicate id, say) must not fail its neighbours: retry alone.
            log.warning(
                "group commit of %d messages failed (%s); saving one by one", len(batch), exc
            )
            for pending in batch:
                self._commit([pending])
            return
        self.transactions += 1
        self.saved += len(batch)
        for pending in batch:
            pending.future.set_result(None)

    @staticmethod
    def _fail(pending: _Pending, exc: Exception) -> None:
        if not isinstance(exc, StoreError):
            message_id = pending.request.envelope.message_id
            wrapped = StoreError(f"cannot save message {message_id}: {exc}")
            wrapped.__cause__ = exc
            exc = wrapped
        pending.future.set_exception(exc)
