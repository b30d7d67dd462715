"""Group commit: many callers' saves, one transaction, then (optionally) one publish.

A commit costs a disk flush (SQLite) or a round trip and WAL flush (PostgreSQL) whatever its
size, so a single writer thread that commits whatever has queued up turns N flushes into one.
What arrives while a batch commits forms the next one: batches grow with load, and a lone message
is committed at once.

The MLLP gateway hands its messages here and awaits them before it ACKs: the committer stores
them (a commit synced to disk, ``MessageStore(durable=True)``), resolves their futures (the ACKs
may go), then calls ``after_commit`` with them: the gateway's outbox publishes them, packed, in
one broker round trip. So an ACK never goes out before its message is stored, and the broker's
round trip is not part of the ACK's wait. A publish that fails loses nothing: the messages are
stored as queued, and the recovery sweeper publishes them again. The ACK records the gateway
writes afterwards (``record_ack``) ride along in the next batch's transaction instead of costing
one of their own.

Example::

    committer = GroupCommitter(store, after_commit=outbox.publish)
    await committer.submit_async(envelope, raw_body=frame)  # stored and published
    committer.record_ack(envelope, "AA")                   # written with the next batch
    committer.close()
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Self, Unpack

from hie.errors import StoreError, StoreSyncError
from hie.messages import Envelope
from hie.store.records import AckRecord, SaveOptions, SaveRequest
from hie.store.store import MessageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Pending:
    requests: tuple[SaveRequest, ...]
    future: Future[None]


_STOP = object()
#: How long the committer gives way after resolving a batch (see ``_run``).
YIELD_SECONDS = 0.0002


class GroupCommitter:
    """A background thread that saves submitted messages in batches.

    Args:
        store: where to save.
        after_commit: called with the committed envelopes that have a target (e.g. the outbox's
            ``publish``), after their futures resolved; if it raises, the failure is logged and
            counted (``publish_failures``): they stay queued in the store for the sweeper.
        max_delay_ms: how long a batch may keep filling once started (it never waits when
            nothing else is queued).
        max_batch: commit at once when this many submissions are waiting.

    ``transactions`` and ``saved`` count what the thread did (for benchmarks and tests).
    Create it in the process that uses it: its thread does not survive a fork.
    """

    def __init__(
        self,
        store: MessageStore,
        *,
        after_commit: Callable[[list[Envelope]], Any] | None = None,
        max_delay_ms: float = 2.0,
        max_batch: int = 500,
    ) -> None:
        self.store = store
        self.after_commit = after_commit
        self.max_delay = max_delay_ms / 1000.0
        self.max_batch = max_batch
        self.transactions = 0
        self.saved = 0
        self.publish_failures = 0
        self._queue: queue.SimpleQueue[_Pending | AckRecord | object] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hie-group-commit", daemon=True)
        self._thread.start()

    def submit(self, envelope: Envelope, **options: Unpack[SaveOptions]) -> Future[None]:
        """Queue a save (same arguments as ``MessageStore.save``).

        Returns a future resolved once the message is committed, or failed with ``StoreError``.

        Raises:
            StoreError: the committer is closed.
        """
        request = SaveRequest(envelope, **options)
        return self.submit_many([request])

    def submit_many(self, requests: Sequence[SaveRequest]) -> Future[None]:
        """Queue saves that commit together (all or none), with one future for all of them."""
        future: Future[None] = Future()
        with self._close_lock:
            # Checked under the lock so nothing lands in the queue after the stop marker.
            if self._closed:
                ids = ", ".join(str(r.envelope.message_id) for r in requests)
                raise StoreError(f"group committer is closed; message {ids} not saved")
            self._queue.put(_Pending(tuple(requests), future))
        return future

    async def submit_async(self, envelope: Envelope, **options: Unpack[SaveOptions]) -> None:
        """``submit`` for asyncio: returns once committed, without blocking the event loop."""
        request = SaveRequest(envelope, **options)
        await asyncio.wrap_future(self.submit_many([request]))

    async def submit_many_async(self, requests: Sequence[SaveRequest]) -> None:
        """``submit_many`` for asyncio."""
        await asyncio.wrap_future(self.submit_many(requests))

    def record_ack(
        self, envelope: Envelope, code: str, text: str | None = None, *, item: str | None = None
    ) -> None:
        """Record an ACK sent for ``envelope``, in the next batch's transaction (never blocks)."""
        record = AckRecord(
            str(envelope.message_id), code, text, "ack_sent", item, str(envelope.session_id)
        )
        with self._close_lock:
            if self._closed:
                log.warning("ACK %s of %s not recorded: committer closed", code, record.message_id)
                return
            self._queue.put(record)

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

    # -- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            # No waiting for company when nobody else is there: what arrives while this batch
            # commits forms the next one. ``max_delay`` only bounds how long a batch keeps filling.
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
            saves = [p for p in batch if isinstance(p, _Pending)]
            acks = [a for a in batch if isinstance(a, AckRecord)]
            committed = self._commit(saves, acks)
            for pending in committed:
                pending.future.set_result(None)  # stored: its ACK may go
            if committed:
                # Let the event loop take the GIL first: the ACKs it is about to write wait on
                # it, the publish does not (without this, an ACK waited ~1 ms behind it).
                time.sleep(YIELD_SECONDS)
            self._publish(committed)

    def _commit(self, saves: list[_Pending], acks: list[AckRecord]) -> list[_Pending]:
        """Write ``saves`` and ``acks`` in one transaction; returns the saves that committed."""
        try:
            self.store.write_batch([r for p in saves for r in p.requests], acks)
        # Any failure, not only StoreError, must reach the callers waiting on these futures.
        except StoreSyncError as exc:
            # Committed but maybe not on disk: none of it may be acknowledged, and saving them
            # again one by one would only meet their own rows. The senders keep their messages
            # (AE) and send them again; the copies stored here wait, queued, for the sweeper.
            self.transactions += 1
            log.critical("%s; %d message(s) not acknowledged", exc, len(saves))
            for pending in saves:
                self._fail(pending, exc)
            return []
        except Exception as exc:
            self.transactions += 1
            if len(saves) + len(acks) == 1:
                if saves:
                    self._fail(saves[0], exc)
                else:
                    log.warning("cannot record ACK of %s: %s", acks[0].message_id, exc)
                return []
            # One bad message (a duplicate id, say) must not fail its neighbours: retry alone.
            log.warning(
                "group commit of %d submissions failed (%s); saving one by one",
                len(saves) + len(acks),
                exc,
            )
            committed = [p for p in saves if self._commit([p], [])]
            for ack in acks:
                self._commit([], [ack])
            return committed
        self.transactions += 1
        self.saved += sum(len(p.requests) for p in saves)
        return saves

    def _publish(self, committed: list[_Pending]) -> None:
        """Hand the committed envelopes to ``after_commit`` (the outbox publishes them)."""
        envelopes = [
            r.envelope for p in committed for r in p.requests if r.envelope.target is not None
        ]
        if self.after_commit is None or not envelopes:
            return
        try:
            self.after_commit(envelopes)
        except Exception as exc:
            # Stored as queued: the recovery sweeper publishes them once the broker answers.
            self.publish_failures += len(envelopes)
            log.error("cannot publish %d stored message(s) now: %r", len(envelopes), exc)

    @staticmethod
    def _fail(pending: _Pending, exc: Exception) -> None:
        if not isinstance(exc, StoreError):
            ids = ", ".join(str(r.envelope.message_id) for r in pending.requests)
            wrapped = StoreError(f"cannot save message {ids}: {exc}")
            wrapped.__cause__ = exc
            exc = wrapped
        pending.future.set_exception(exc)
