"""Publisher: hands envelopes to the broker from a thread of its own.

Celery's ``apply_async`` is blocking network I/O (a stalled Redis froze an event loop for
seconds), so the asyncio gateway never calls it: it queues envelopes here and awaits a future
that resolves once the broker took them. One producer is reused for a whole batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from hie.messages import Envelope
from hie.tasks.routing import Dispatcher

log = logging.getLogger(__name__)

_STOP = object()


class Publisher:
    """A single thread that publishes queued envelopes in batches."""

    def __init__(self, dispatcher: Dispatcher, *, max_batch: int = 200) -> None:
        self.dispatcher = dispatcher
        self.max_batch = max_batch
        self.published = 0
        self._queue: queue.SimpleQueue[tuple[list[Envelope], Future[None]] | object] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="hie-publisher", daemon=True)
        self._thread.start()

    def submit(self, envelopes: list[Envelope]) -> Future[None]:
        """Queue ``envelopes`` for publishing; the future resolves when the broker has them."""
        future: Future[None] = Future()
        self._queue.put((envelopes, future))
        return future

    async def publish(self, envelopes: list[Envelope]) -> None:
        """Publish from asyncio without blocking the loop."""
        await asyncio.wrap_future(self.submit(envelopes))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            self._publish([b for b in batch if b is not _STOP])  # type: ignore[misc]
            if stop:
                return

    def _publish(self, batch: list[tuple[list[Envelope], Future[None]]]) -> None:
        app = self.dispatcher.app
        try:
            with app.producer_or_acquire() as producer:
                for envelopes, future in batch:
                    try:
                        for envelope in envelopes:
                            self.dispatcher.publish(envelope, producer=producer)
                        self.published += len(envelopes)
                        future.set_result(None)
                    except Exception as exc:
                        future.set_exception(exc)
        except Exception as exc:
            log.error("cannot publish to the broker: %r", exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
